"""Load generator for the process-table benchmarks: N extra sleeping processes.

A few forking parents each fork their share of children; a child does nothing
but wait for a signal. Each parent reports "ready" on a pipe once all its
children exist, so a benchmark never measures a half-built load. Cleanup is
layered so that nothing outlives the run:

* :meth:`ProcessLoad.stop` (also on ``with`` exit, fixture teardown and
  interpreter exit through ``atexit``) sends SIGTERM to each parent, which
  SIGKILLs its own children and reaps them before it exits, so no orphan is
  left for pid 1 to reap;
* every child asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), so a parent killed outright still takes its children;
* parents run in their own session; ``stop`` finishes with SIGKILL to each
  parent's process group and waits for the parent.

Run by hand: ``python benchmarks/procload.py 5000`` holds 5,000 extra
processes until Ctrl-C.
"""

import atexit
import os
import signal
import subprocess
import sys

# The parent program, run as ``python -c``. argv[1] is its share of children.
_PARENT = r"""
import ctypes, os, signal, sys

PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)
count = int(sys.argv[1])
children = []
stopping = False

def stop(signum, frame):
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
# Children inherit a blocked SIGTERM set so that none dies between fork and
# its own setup; they unblock after PR_SET_PDEATHSIG is in place.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
parent = os.getpid()
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        while True:
            signal.pause()
    children.append(pid)
os.write(1, b"ready\n")
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
while not stopping:
    signal.pause()
for pid in children:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
for pid in children:
    os.waitpid(pid, 0)
os.write(1, b"done\n")
"""


class ProcessLoad:
    """``count`` extra sleeping processes spread over ``parents`` forking parents.

    ``pids`` lists the parents and children once :meth:`start` returns.
    """

    def __init__(self, count, parents=4):
        self.count = count
        self.parents = max(1, min(parents, count)) if count else 0
        self.procs = []
        self.pids = []

    def start(self):
        atexit.register(self.stop)
        try:
            base, extra = divmod(self.count, self.parents) if self.parents else (0, 0)
            for i in range(self.parents):
                share = base + (1 if i < extra else 0)
                proc = subprocess.Popen(
                    [sys.executable, "-c", _PARENT, str(share)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    start_new_session=True,
                )
                self.procs.append(proc)
            for proc in self.procs:
                line = proc.stdout.readline()
                if line != b"ready\n":
                    raise RuntimeError("load parent %d failed to start its children" % proc.pid)
            self.pids = self._all_pids()
        except BaseException:
            self.stop()
            raise
        return self

    def _all_pids(self):
        parents = {proc.pid for proc in self.procs}
        pids = sorted(parents)
        for parent in parents:
            try:
                with open("/proc/%d/task/%d/children" % (parent, parent), "rb") as f:
                    pids.extend(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue
        return pids

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            proc.stdout.close()
        self.procs = []
        self.pids = []
        atexit.unregister(self.stop)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 1000
    with ProcessLoad(count) as load:
        print("%d extra processes (%d pids with their parents); Ctrl-C to stop"
              % (count, len(load.pids)))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv)
