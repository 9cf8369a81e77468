"""Real cgroup scenes for the tests: a cgroup made in every hierarchy that
holds the controllers asked for, and children that wait for a word before
running their fault (a CPU burner, a memory hog, a fork loop). Everything
made is removed at exit, the processes in it killed first."""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

# How long a test waits for the kernel to show what a process does (a throttled
# period, an OOM kill); polled, so a fast machine does not wait.
DEADLINE_S = 30
# The faults, as child code (run after the child reads its word).
BURNER = "while True: pass"
HOG = "b = b'x' * (512 << 20)"
# 20 forks under a pids.max of 5: prints the refused count, then waits for a
# second word to let its children go and reap them.
FORK_LOOP = ("import os\n"
             "r, w = os.pipe()\n"
             "refused = 0\n"
             "for _ in range(20):\n"
             "    try:\n"
             "        pid = os.fork()\n"
             "    except BlockingIOError:\n"
             "        refused += 1\n"
             "        continue\n"
             "    if pid == 0:\n"
             "        os.close(w); os.read(r, 1); os._exit(0)\n"
             "print(refused, flush=True)\n"
             "sys.stdin.readline()\n"
             "os.close(w)\n"
             "for _ in range(20 - refused):\n"
             "    os.wait()\n")


def bases(table, wanted):
    """{controller: hierarchy mount directory} for the controllers in ``wanted``
    ("unified" names the cgroup2 tree)."""
    found = {}
    for hierarchy in table.hierarchies:
        if hierarchy.kind == "cgroup2":
            if "unified" in wanted:
                found["unified"] = hierarchy.base
        else:
            for controller in hierarchy.controllers:
                if controller in wanted:
                    found[controller] = hierarchy.base
    return found


@contextmanager
def made_cgroup(table, controllers, suffix=""):
    """A new cgroup ``/hd-test-<random><suffix>`` in each hierarchy holding one of
    ``controllers``: yields (cgroup path, {controller: directory}). Removed at
    exit (deepest first), after the processes in it are gone."""
    name = "/hd-test-%s%s" % (uuid.uuid4().hex[:10], suffix)
    dirs = {c: base + name for c, base in bases(table, controllers).items()}
    missing = set(controllers) - set(dirs)
    if missing:
        pytest.skip("this host mounts no hierarchy for %s" % sorted(missing))
    made = []
    try:
        for directory in dict.fromkeys(dirs.values()):
            os.mkdir(directory)
            made.append(directory)
        yield name, dirs
    finally:
        for directory in made:
            for sub, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                _kill_all(sub)
                os.rmdir(sub)


def _kill_all(directory):
    """Kill what is left in a cgroup (a failed test's children, orphans of a
    fork loop) and wait until it is empty, so that it can be removed."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        with open(os.path.join(directory, "cgroup.procs")) as handle:
            pids = [int(line) for line in handle if line.strip()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert time.monotonic() < deadline, "processes %s stay in %s" % (pids, directory)
        time.sleep(0.01)


def write(path, value):
    with open(path, "w") as handle:
        handle.write(str(value))


@contextmanager
def child(code):
    """A Python child that waits for a line on stdin before running ``code``."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def join(proc, dirs):
    for directory in set(dirs.values()):
        write(os.path.join(directory, "cgroup.procs"), proc.pid)


def go(proc):
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
