"""Helpers of the spool and history tests: a child process killed with SIGKILL,
a real tmpfs that fills up, a clock the test moves by hand."""

import contextlib
import os
import signal
import subprocess
import sys

import pytest

import hostdiag


@contextlib.contextmanager
def mount_tmpfs(mount_point, size):
    """A tmpfs of ``size`` ("1m") on ``mount_point`` for the block; skips the test
    when it cannot be mounted (needs root)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root): %s" % done.stderr.strip())
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def kill_after_acks(child, directory, acks):
    """Run the Python source ``child`` with ``directory`` as its argument; it
    writes one line per acknowledged seq on stdout. SIGKILL it once ``acks``
    seqs are acknowledged; its return code and the highest seq it acknowledged."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(hostdiag.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", child, str(directory)], stdout=subprocess.PIPE, env=env)
    acked = 0
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= acks:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        acked = max([acked] + [int(x) for x in proc.stdout.read().split()])
        proc.wait()
    return proc.returncode, acked
