"""Per-cgroup rates (hostdiag.derive.cgroup_rates): real cgroups with a
throttled burner and an OOM-killed hog, and the identity and counter rules on
recorded rows."""

import os
import signal
import time

import pytest

from hostdiag.derive.cgroup_rates import RATE_FIELDS, cgroup_key, cgroup_rates
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

from cgroupscenes import BURNER, DEADLINE_S, HOG, child, go, join, made_cgroup, write


def _row(path, inode=7, usage=0, throttled=0, periods=0, nr_throttled=0, oom_kill=0, rbytes=None):
    return {"path": path, "inode": inode,
            "cpu": {"usage_usec": usage, "throttled_usec": throttled, "nr_periods": periods,
                    "nr_throttled": nr_throttled},
            "memory": {"events": {"oom_kill": oom_kill, "max": 0}, "stat": {"pgmajfault": 0}},
            "io": {"8:0": {"rbytes": rbytes, "wbytes": 0}} if rbytes is not None else {},
            "pids": {"events_max": 0}, "pressure": None}


def _section(*rows):
    return {"cgroups": list(rows)}


def test_rates_of_recorded_rows():
    old = _section(_row("/a", usage=1000000, throttled=0, periods=100, nr_throttled=10, rbytes=0))
    new = _section(_row("/a", usage=1500000, throttled=200000, periods=200, nr_throttled=50, oom_kill=2,
                        rbytes=4 << 20))
    rates = cgroup_rates(old, new, 2.0)["/a"]
    assert rates["cpu_pct"] == pytest.approx(25.0)
    assert rates["throttled_time_pct"] == pytest.approx(10.0)
    assert rates["throttled_periods_pct"] == pytest.approx(40.0)
    assert rates["oom_kills"] == 2
    assert rates["read_bytes_per_s"] == pytest.approx(2 << 20)
    assert rates["write_bytes_per_s"] == 0
    assert rates["pressure"] is None


def test_a_cgroup_made_again_under_the_same_path_is_new():
    old = _section(_row("/a", inode=7, usage=100))
    new = _section(_row("/a", inode=8, usage=5000000))
    assert cgroup_rates(old, new, 1.0)["/a"] == dict.fromkeys(RATE_FIELDS)
    assert (cgroup_key(old["cgroups"][0]), cgroup_key({"path": "/b", "inode": None})) == ("/a#7", "/b")


def test_a_counter_going_backwards_or_a_bad_interval_gives_none():
    old = _section(_row("/a", usage=5000, periods=10, nr_throttled=5, rbytes=100))
    new = _section(_row("/a", usage=4000, periods=5, nr_throttled=6, rbytes=50))
    rates = cgroup_rates(old, new, 1.0)["/a"]
    assert (rates["cpu_pct"], rates["throttled_periods_pct"], rates["read_bytes_per_s"]) == (None, None, None)
    assert rates["oom_kills"] == 0
    assert cgroup_rates(old, old, 0)["/a"] == dict.fromkeys(RATE_FIELDS)
    assert cgroup_rates(old, _section({"path": 3}), 1.0) == {}


def test_a_device_new_in_the_interval_counts_from_zero():
    old = _section(_row("/a"))
    new = _section(_row("/a", rbytes=1000))
    assert cgroup_rates(old, new, 1.0)["/a"]["read_bytes_per_s"] == 1000


@pytest.fixture(scope="module")
def live():
    if os.geteuid() != 0:
        pytest.skip("making cgroups needs root")
    table = CgroupTable(HostRoot())
    table.hierarchies = table.probe(Problems())
    if not table.hierarchies:
        pytest.skip("no cgroup hierarchy mounted")
    return table


def _sample(table):
    return table.collect(Problems()), time.monotonic()


def test_a_throttled_burner_has_cpu_and_throttling_rates(live):
    with made_cgroup(live, ("cpu", "cpuacct")) as (path, dirs):
        write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), 10000)
        write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), 2000)
        with child(BURNER) as burner:
            join(burner, dirs)
            go(burner)
            first, started = _sample(live)
            deadline = time.monotonic() + DEADLINE_S
            while True:
                second, ended = _sample(live)
                rates = cgroup_rates(first, second, ended - started)[path]
                if (rates["cpu_pct"] or 0) > 0 and (rates["throttled_periods_pct"] or 0) > 0:
                    break
                assert time.monotonic() < deadline, rates
                time.sleep(0.05)
    assert rates["throttled_time_pct"] > 0
    assert rates["oom_kills"] is None or rates["oom_kills"] == 0


def test_an_oom_kill_in_the_interval_is_counted(live):
    with made_cgroup(live, ("memory",)) as (path, dirs):
        write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), 48 << 20)
        with child(HOG) as hog:
            join(hog, dirs)
            first, started = _sample(live)
            go(hog)
            hog.wait(timeout=DEADLINE_S)
            assert hog.returncode == -signal.SIGKILL
            second, ended = _sample(live)
    rates = cgroup_rates(first, second, ended - started)[path]
    assert rates["oom_kills"] == 1
    assert rates["memory_max_events"] > 0
