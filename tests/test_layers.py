"""The one-way flow of docs/architecture.md, checked by a real import checker.

import-linter reads every import in src/hostdiag (those inside functions too)
and holds them to the layers contract in `.importlinter`. The second test plants
a back-edge in a copy of the tree, to show that the check can fail.
"""

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRACT = os.path.join(REPO, ".importlinter")


def _lint(src_dir, cwd):
    env = dict(os.environ, PYTHONPATH=src_dir)
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--no-cache", "--no-logo", CONTRACT],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept(tmp_path):
    done = _lint(os.path.join(REPO, "src"), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(REPO, "src", "hostdiag"), src / "hostdiag",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    rates = src / "hostdiag" / "derive" / "rates.py"
    rates.write_text(rates.read_text() + "\nimport hostdiag.views.report  # a back-edge\n")
    done = _lint(str(src), tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hostdiag.derive.rates -> hostdiag.views.report" in done.stdout


def test_every_package_is_in_a_layer():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(CONTRACT)
    layers = parser["importlinter:contract:layers"]["layers"]
    named = {name.strip() for line in layers.split("\n") for name in line.split("|") if name.strip()}
    base = os.path.join(REPO, "src", "hostdiag")
    packages = {"hostdiag." + entry for entry in os.listdir(base)
                if os.path.isfile(os.path.join(base, entry, "__init__.py"))}
    modules = {"hostdiag." + entry[:-3] for entry in os.listdir(base)
               if entry.endswith(".py") and entry not in ("__init__.py", "__main__.py")}
    assert packages == named, "packages and layers differ: %s" % sorted(packages ^ named)
    assert not modules, "modules outside every layer: %s" % sorted(modules)


# The layers whose every module docs/architecture.md names; parsers/ and
# sources/ are one module per kernel file, named there by example ("...").
NAMED_LAYERS = ("sampler", "derive", "findings", "encode", "store", "transport", "views", "apps")


def test_architecture_names_every_module_of_the_named_layers():
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        text = f.read()
    base = os.path.join(REPO, "src", "hostdiag")
    unnamed = ["%s/%s" % (layer, entry) for layer in NAMED_LAYERS
               for entry in sorted(os.listdir(os.path.join(base, layer)))
               if entry.endswith(".py") and entry != "__init__.py" and "`%s`" % entry not in text]
    assert not unnamed, "docs/architecture.md does not name: %s" % unnamed
