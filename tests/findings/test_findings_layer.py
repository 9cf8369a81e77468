"""The findings layer reads only the layers to its left: the agent evaluates
findings without importing anything that encodes, stores or shows."""

import ast
import pathlib

import hostdiag.findings

ALLOWED = {"hostdiag.findings", "hostdiag.model", "hostdiag.derive"}


def test_findings_import_only_model_and_derive():
    package = pathlib.Path(hostdiag.findings.__file__).parent
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.startswith("hostdiag")}
    assert {".".join(name.split(".")[:2]) for name in ours} <= ALLOWED
    assert "hostdiag.findings.rules" in ours and "hostdiag.derive.socket_rates" in ours
