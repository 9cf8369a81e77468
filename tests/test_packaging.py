"""pyproject.toml says what the code needs: the Python it runs on, the
packages it imports at run time, and those only the tests and benchmarks use."""

import ast
import pathlib
import re
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent
# The distribution that provides each importable name, where the two differ.
DISTRIBUTION = {"yaml": "pyyaml"}


def _project():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _names(requirements):
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}


def _third_party_imports(folder):
    """Top-level module names imported anywhere under ``folder`` that are
    neither the standard library nor this project's own."""
    # The test and benchmark folders import each other's helpers by path.
    local = {p.stem for top in ("tests", "benchmarks") for p in (REPO / top).rglob("*.py")} | {"hostdiag"}
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.add(DISTRIBUTION.get(top, top).lower())
    return found


def test_requires_the_python_whose_standard_library_the_code_uses():
    """The settings loader imports tomllib, new in Python 3.11."""
    uses_tomllib = "tomllib" in {
        node.names[0].name for path in (REPO / "src").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)}
    assert uses_tomllib
    minimum = re.fullmatch(r">=\s*3\.(\d+)", _project()["requires-python"].strip())
    assert minimum and int(minimum.group(1)) >= 11, _project()["requires-python"]


def test_runtime_dependencies_are_what_the_code_imports():
    project = _project()
    assert _names(project["dependencies"]) == _third_party_imports(REPO / "src" / "hostdiag")


def test_test_extra_covers_what_tests_and_benchmarks_import():
    project = _project()
    available = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    needed = _third_party_imports(REPO / "tests") | _third_party_imports(REPO / "benchmarks")
    assert needed <= available, needed - available
