"""Real faults inside real cgroups: the first finding names the workload.

Each scene of tests/cgroupscenes.py runs in a cgroup named like a systemd
unit (``/hd-test-<random>.service``): a CPU burner under a CFS quota, a memory
hog OOM-killed under its limit, a fork loop under pids.max. The throttled
burner is judged by the real ``diag --interval 1 --format json``; the OOM
kill and the refused forks happen between the two samples of the same
Sampler, derive and evaluate that `diag` uses (run in-process, so that the
fault falls inside the interval without waiting on luck).
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from hostdiag.derive import derive_rates
from hostdiag.findings import evaluate
from hostdiag.sampler import Sampler
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

from cgroupscenes import BURNER, DEADLINE_S, FORK_LOOP, HOG, child, go, join, made_cgroup, write

if os.geteuid() != 0:
    pytest.skip("making cgroups needs root", allow_module_level=True)


@pytest.fixture(scope="module")
def table():
    found = CgroupTable(HostRoot())
    found.hierarchies = found.probe(Problems())
    if not found.hierarchies:
        pytest.skip("no cgroup hierarchy mounted")
    return found


def _unit(path):
    return path.lstrip("/")


def test_diag_names_a_throttled_burner_first(table):
    # memory too: a v1 process's cgroup is its memory controller's path, so
    # that the process table places the burner in the unit.
    with made_cgroup(table, ("cpu", "cpuacct", "memory"), suffix=".service") as (path, dirs):
        write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), 10000)
        write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), 1000)
        with child(BURNER) as burner:
            join(burner, dirs)
            go(burner)
            done = subprocess.run([sys.executable, "-m", "hostdiag", "--interval", "1", "--format", "json"],
                                  capture_output=True, timeout=DEADLINE_S, check=True)
            pid = burner.pid
    first = json.loads(done.stdout)["findings"][0]
    assert first["id"] == "cgroup_cpu_throttled" and first["subject"] == path
    assert ("in %s (limit 10 %% of a CPU)" % _unit(path)) in first["title"]
    assert first["culprits"][0]["pid"] == pid
    assert first["evidence"]["throttled_periods_pct"] > 25


def _findings_across(fault):
    """The findings of a Sampler pair with ``fault()`` run between the samples."""
    with Sampler(HostRoot()) as sampler:
        previous = sampler.sample()
        fault()
        current = sampler.sample(kmsg=True)
    return evaluate(current, derive_rates(previous, current), previous)


def test_an_oom_kill_in_a_unit_is_the_first_finding(table):
    with made_cgroup(table, ("memory",), suffix=".service") as (path, dirs):
        write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), 48 << 20)
        with child(HOG) as hog:
            join(hog, dirs)

            def fault():
                go(hog)
                hog.wait(timeout=DEADLINE_S)

            found = _findings_across(fault)
            assert hog.returncode == -signal.SIGKILL
    first = found[0]
    assert (first["id"], first["severity"], first["subject"]) == ("cgroup_oom_kill", "crit", path)
    assert first["title"].startswith("1 OOM kill(s) in %s" % _unit(path))
    assert first["evidence"]["memory_max_bytes"] == 48 << 20
    # The hog was the cgroup's only process: the kernel log names it, the victim.
    victim = first["culprits"][0]
    assert (victim["kind"], victim["pid"], victim["cgroup"]) == ("victim", hog.pid, path)
    assert "kernel_oom_kill" in [s["id"] for s in first["symptoms"]]


def test_forks_refused_at_pids_max_are_the_first_finding(table):
    with made_cgroup(table, ("pids", "memory"), suffix=".service") as (path, dirs):
        write(os.path.join(dirs["pids"], "pids.max"), 5)
        with child(FORK_LOOP) as loop:
            join(loop, dirs)
            refused = []

            def fault():
                go(loop)
                refused.append(int(loop.stdout.readline()))

            found = _findings_across(fault)
            go(loop)
            loop.wait(timeout=DEADLINE_S)
    first = found[0]
    assert (first["id"], first["severity"], first["subject"]) == ("cgroup_pids", "crit", path)
    assert first["title"].startswith("%d fork(s) refused at pids.max in %s" % (refused[0], _unit(path)))
    assert (first["evidence"]["pids_current"], first["evidence"]["pids_max"]) == (5, 5)
