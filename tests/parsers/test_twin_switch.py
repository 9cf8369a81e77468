"""The one switch between twin pairs (hostdiag/parsers/__init__.py) and what
``diag version`` says about it, on this build and on a build without extensions."""

import os
import shutil
import subprocess
import sys

import hostdiag
from hostdiag import parsers
from hostdiag.encode import delta

PAIRS = {
    "hostdiag._proctext": "hostdiag.parsers.proctext",
    "hostdiag._rtnetlink": "hostdiag.parsers.rtnetlink",
    "hostdiag._procpid": "hostdiag.parsers.procpid",
    "hostdiag._cgroup": "hostdiag.parsers.cgroup",
    "hostdiag._tablecompare": "hostdiag.encode.tablecompare",
    "hostdiag._sockdiag": "hostdiag.parsers.sockdiag",
}


def test_every_pair_is_loaded_and_reported():
    assert set(parsers.TWINS) == set(PAIRS)
    live = {"hostdiag._proctext": parsers.live_proctext, "hostdiag._rtnetlink": parsers.live_rtnetlink,
            "hostdiag._procpid": parsers.live_procpid, "hostdiag._sockdiag": parsers.live_sockdiag,
            "hostdiag._cgroup": parsers.live_cgroup, "hostdiag._tablecompare": delta._twin}
    for compiled, (impl, reason) in parsers.TWINS.items():
        assert live[compiled].__name__ == (compiled if impl == "compiled" else PAIRS[compiled])
        assert impl == ("pure" if parsers.pure_forced() else "compiled"), reason
    assert parsers.parse_stat is parsers.live_proctext.parse_stat
    assert parsers.parse_replies is parsers.live_rtnetlink.parse_replies


def diag_version(package_parent, pure):
    env = dict(os.environ, PYTHONPATH=str(package_parent))
    env.pop("HOSTDIAG_PURE", None)
    if pure:
        env["HOSTDIAG_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "hostdiag", "version"],
                          capture_output=True, env=env, timeout=120)


def test_a_build_without_its_extensions_is_reported_broken(tmp_path):
    # The package's Python files without any compiled module: what an install
    # whose compile silently failed would hold.
    shutil.copytree(os.path.dirname(hostdiag.__file__), tmp_path / "hostdiag",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    broken = diag_version(tmp_path, pure=False)
    out = broken.stdout.decode()
    assert broken.returncode != 0, out
    assert "parsers pure" in out
    for compiled in PAIRS:
        assert "  %s: pure (compiled extension unavailable: " % compiled in out, out
    assert "WARNING: the compiled parsers failed to load; this build is broken" in out

    forced = diag_version(tmp_path, pure=True)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "WARNING" not in forced.stdout.decode()
