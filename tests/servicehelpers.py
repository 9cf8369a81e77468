"""Shared by the tests of the unit, `diag service` and the privileges.

The unit the tests check is the one `diag service install --root DIR` writes,
not the file in the repository, so that what is checked is what is installed.
Its ExecStart must name an executable that exists on this machine for
`systemd-analyze verify`, outside the directories the unit hides
(ProtectHome=, PrivateTmp=). The installed diag qualifies when it lives in
/usr/bin or /usr/local/bin (the .deb, pip as root on a system Python); a
development machine's interpreter under /root does not, and then
:func:`diag_launcher` writes a two-line launcher for this interpreter and this
tree into a directory of its own under /usr/local/lib, removed afterwards.
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import hostdiag
from hostdiag.apps import service

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_TREE = os.path.dirname(os.path.dirname(hostdiag.__file__))
EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


@contextlib.contextmanager
def diag_launcher():
    """The path of a diag the unit may start: the installed one when the
    service could run it, else a launcher written for the test."""
    installed = service.installed_diag()
    if installed and not installed.startswith(service.HIDDEN_PREFIXES):
        yield installed
        return
    directory = tempfile.mkdtemp(prefix="hostdiag-test-", dir="/usr/local/lib")
    try:
        path = os.path.join(directory, "diag")
        with open(path, "w") as out:
            out.write("#!/bin/sh\nPYTHONPATH=%s exec %s -m hostdiag \"$@\"\n" % (SOURCE_TREE, sys.executable))
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(directory)


def run_diag_service(*args):
    """`diag service ARGS` in a child process: (exit status, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "hostdiag.apps.service", *args],
        env=dict(os.environ, PYTHONPATH=SOURCE_TREE), capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def unit_directives(text):
    """{key: [values]} of a unit file's text (comments and sections dropped)."""
    directives = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def exposure(unit_path):
    """systemd-analyze's overall exposure score of the unit file (0 to 10)."""
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", unit_path],
                          capture_output=True, text=True, timeout=120)
    match = EXPOSURE_RE.search(done.stdout)
    assert match, "no exposure line in systemd-analyze's output:\n%s%s" % (done.stdout, done.stderr)
    return float(match.group(1))
