"""A real process in D state, sampled by the real collectors: reported as
stuck only when both snapshots of the pair see it in D.

The process is a vfork() parent: the kernel waits for the child in
TASK_KILLABLE, which /proc shows as ``D``, for as long as the child lives; the
child blocks reading its stdin, so the test decides when the D state ends.
"""

import shutil
import subprocess
import time

import pytest

from hostdiag.derive import derive_rates
from hostdiag.findings import evaluate
from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

VFORK_WAITER = r"""
#include <unistd.h>
int main(void) {
    char c;
    if (vfork() == 0) {
        while (read(0, &c, 1) > 0) {}
        _exit(0);
    }
    return 0;
}
"""
STATE_DEADLINE_S = 10.0


def _state(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def _wait_for_d_state(pid):
    deadline = time.monotonic() + STATE_DEADLINE_S
    while _state(pid) != "D":
        assert time.monotonic() < deadline, "the vfork parent never entered D state"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def waiter_binary(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the vfork waiter")
    directory = tmp_path_factory.mktemp("vfork")
    source = directory / "hd-vfork.c"
    source.write_text(VFORK_WAITER)
    binary = directory / "hd-vfork"
    subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


@pytest.fixture
def stuck_process(waiter_binary):
    """The pid of a process in D state until the fixture ends."""
    waiter = subprocess.Popen([str(waiter_binary)], stdin=subprocess.PIPE)
    try:
        _wait_for_d_state(waiter.pid)
        yield waiter.pid
    finally:
        waiter.stdin.close()
        assert waiter.wait(timeout=STATE_DEADLINE_S) == 0


@pytest.fixture(scope="module")
def sample():
    root = HostRoot()
    with SystemCollector(root) as system, TableCollector(root) as tables:
        def take():
            problems = Problems()
            processes, sockets, _ = tables.collect(problems)
            return attach(system.collect(), processes, sockets, problems)
        yield take


def _record(snapshot, pid):
    return next(r for r in snapshot.processes["processes"] if r["pid"] == pid)


def _stuck_pids(previous, snapshot):
    found = [f for f in evaluate(snapshot, derive_rates(previous, snapshot), previous)
             if f["id"] == "procs_d_state"]
    return [c["pid"] for f in found for c in f["culprits"]]


def test_a_process_in_d_in_both_snapshots_is_stuck(sample, stuck_process):
    first, second = sample(), sample()
    for snapshot in (first, second):
        assert _record(snapshot, stuck_process)["state"] == "D"
    assert _record(first, stuck_process)["start_time"] == _record(second, stuck_process)["start_time"]
    assert stuck_process in _stuck_pids(first, second)
    finding = next(f for f in evaluate(second, derive_rates(first, second), first)
                   if f["id"] == "procs_d_state")
    culprit = next(c for c in finding["culprits"] if c["pid"] == stuck_process)
    assert culprit["comm"] == "hd-vfork" and culprit["command"].endswith("hd-vfork")
    assert stuck_process not in [c["pid"] for f in evaluate(second) for c in f["culprits"]]


def test_a_process_in_d_in_one_snapshot_only_is_not_stuck(sample, waiter_binary):
    before = sample()
    waiter = subprocess.Popen([str(waiter_binary)], stdin=subprocess.PIPE)
    try:
        _wait_for_d_state(waiter.pid)
        during = sample()
    finally:
        waiter.stdin.close()
        assert waiter.wait(timeout=STATE_DEADLINE_S) == 0
    after = sample()
    identity = (waiter.pid, _record(during, waiter.pid)["start_time"])
    assert _record(during, waiter.pid)["state"] == "D"
    for other in (before, after):
        assert identity not in [(r["pid"], r["start_time"]) for r in other.processes["processes"]]
    assert waiter.pid not in _stuck_pids(before, during)
    assert waiter.pid not in _stuck_pids(during, after)
