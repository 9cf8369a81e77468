"""Rates from two snapshots: real ones from this host's /proc with work in
between, and edited copies for the edge cases (counters going backwards,
another boot, missing values, no time between)."""

import copy
import math
import os
import subprocess
import sys

import pytest

from hostdiag.sampler.system import SystemCollector
from hostdiag.derive import counter_rate, derive_rates
from hostdiag.derive.rates import CPU_STATES, cpu_percent
from hostdiag.sources.hostroot import HostRoot
from hostdiag.model import Cpu, Memory, Snapshot

# Values in the rates dict that are readings of the second snapshot, not rates.
GAUGES = {"in_flight", "curr_estab"}
TOP_LEVEL = {"interval_s", "comparable", "reason"}

# Burns CPU for about 0.2 s, then writes and fsyncs a file: CPU, forks and disk
# writes all move between the two snapshots.
BUSY_CHILD = """
import os, sys, time
end = time.monotonic() + 0.2
n = 0
while time.monotonic() < end:
    n += 1
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(1 << 20))
    f.flush()
    os.fsync(f.fileno())
"""


@pytest.fixture(scope="module")
def real_pair(tmp_path_factory):
    target = tmp_path_factory.mktemp("rates") / "busy.bin"
    with SystemCollector(HostRoot()) as collector:
        prev = collector.collect()
        subprocess.run([sys.executable, "-c", BUSY_CHILD, str(target)], check=True)
        cur = collector.collect()
    return prev, cur, target


@pytest.fixture
def pair(real_pair):
    """Copies of the real pair that a test may edit."""
    prev, cur, _ = real_pair
    return copy.deepcopy(prev), copy.deepcopy(cur)


def leaves(data, path=()):
    """(path, value) for every non-container value in nested dicts."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, path + (key,))
    else:
        yield path, data


def rate_leaves(rates):
    return [(p, v) for p, v in leaves(rates) if p[0] not in TOP_LEVEL and p[-1] not in GAUGES]


def test_real_rates_are_sane(real_pair):
    prev, cur, _ = real_pair
    rates = derive_rates(prev, cur)
    assert rates["comparable"] and rates["reason"] is None
    assert rates["interval_s"] == (cur.meta.mono_ns - prev.meta.mono_ns) / 1e9
    assert rates["interval_s"] > 0.2, "the child ran for 0.2 s between the snapshots"
    numbers = [(p, v) for p, v in rate_leaves(rates) if v is not None]
    assert numbers, "no rate at all"
    for path, value in numbers:
        assert isinstance(value, (int, float)), path
        assert value >= 0 and math.isfinite(value), (path, value)
        if path[-1].endswith("_pct"):
            assert value <= 100.0 + 1e-9, (path, value)


def test_real_cpu_percent_sums_to_100(real_pair):
    prev, cur, _ = real_pair
    cpu = derive_rates(prev, cur)["cpu"]
    total = cpu["total"]
    assert sum(total[s + "_pct"] for s in CPU_STATES) == pytest.approx(100.0, abs=0.01)
    assert total["busy_pct"] > 0, "the child burned CPU"
    assert set(cpu["cpus"]) == set(cur.cpu.cpus)
    for name, states in cpu["cpus"].items():
        values = [states[s + "_pct"] for s in CPU_STATES]
        if None not in values:
            assert sum(values) == pytest.approx(100.0, abs=0.01), name
    dt = (cur.meta.mono_ns - prev.meta.mono_ns) / 1e9
    for counter, key in (("ctxt", "ctxt_per_s"), ("intr", "intr_per_s"), ("processes", "forks_per_s")):
        assert cpu[key] == (getattr(cur.cpu, counter) - getattr(prev.cpu, counter)) / dt, key
    assert cur.cpu.processes - prev.cpu.processes >= 1, "the child was forked between the snapshots"
    ticks = {s: cur.cpu.total[s] - prev.cpu.total[s] for s in CPU_STATES}
    ticks["user"] -= ticks["guest"]
    ticks["nice"] -= ticks["guest_nice"]
    assert total["idle_pct"] == pytest.approx(100.0 * ticks["idle"] / sum(ticks.values()))
    busy_ticks = sum(ticks.values()) - ticks["idle"] - ticks["iowait"] - ticks["steal"]
    assert total["busy_pct"] == pytest.approx(100.0 * busy_ticks / sum(ticks.values()))


def test_real_disk_writes_seen(real_pair):
    prev, cur, target = real_pair
    rates = derive_rates(prev, cur)
    assert set(rates["disks"]).isdisjoint(rates["partitions"])
    for device in cur.disks:
        assert device["name"] in (rates["partitions"] if device["is_partition"] else rates["disks"])
    st_dev = os.stat(target).st_dev
    holder = [d for d in cur.disks if (d["major"], d["minor"]) == (os.major(st_dev), os.minor(st_dev))]
    if not holder:
        pytest.skip("the temporary directory is not on a block device in diskstats")
    device = holder[0]
    table = rates["partitions"] if device["is_partition"] else rates["disks"]
    before = next(d for d in prev.disks if d["name"] == device["name"])
    dt = rates["interval_s"]
    assert table[device["name"]]["writes_per_s"] == (
        device["writes_completed"] - before["writes_completed"]) / dt
    written = table[device["name"]]["write_bytes_per_s"] * dt
    assert written == pytest.approx((device["sectors_written"] - before["sectors_written"]) * 512)
    assert written >= 1 << 20, "the child wrote and fsynced 1 MiB"


def test_same_counters_give_zero_rates(real_pair):
    _, cur, _ = real_pair
    later = copy.deepcopy(cur)
    later.meta.mono_ns += 2_000_000_000
    rates = derive_rates(cur, later)
    assert rates["interval_s"] == pytest.approx(2.0)
    for path, value in rate_leaves(rates):
        if path[0] == "cpu" and path[-1].endswith("_pct"):
            assert value is None, path      # no CPU time elapsed: no share of it
        elif path[-1] in ("await_ms", "r_await_ms", "w_await_ms", "retransmit_pct"):
            assert value is None, path      # no I/O or segments: no mean
        else:
            assert value in (0, None), (path, value)


# --- counter_rate --------------------------------------------------------------

@pytest.mark.parametrize("a, b, dt, expected", [
    (100, 300, 2.0, 100.0),
    (0, 0, 1.0, 0.0),
    (5, 5.5, 0.5, 1.0),
    (300, 100, 1.0, None),          # backwards: wrap or reset
    (None, 100, 1.0, None),
    (100, None, 1.0, None),
    (100, 200, 0.0, None),
    (100, 200, -1.0, None),
    (100, 200, None, None),
    (True, 5, 1.0, None),           # a bool is not a counter
    ("1", "2", 1.0, None),
    (2**64 - 10, 5, 1.0, None),     # a 64-bit wrap is not a huge rate
])
def test_counter_rate(a, b, dt, expected):
    assert counter_rate(a, b, dt) == expected


def test_busy_leaves_steal_apart():
    """busy is what sar and top count as the CPUs' own work: steal (time the
    hypervisor gave to another guest) is neither busy nor idle."""
    a = dict.fromkeys(CPU_STATES, 0)
    b = dict(a, user=50, system=10, steal=20, iowait=5, idle=15)
    pct = cpu_percent(a, b, 1.0)
    assert pct["steal_pct"] == pytest.approx(20.0)
    assert pct["busy_pct"] == pytest.approx(60.0)


def test_cpu_percent_splits_guest_out_of_user():
    a = dict.fromkeys(CPU_STATES, 0)
    b = dict(a, user=60, guest=20, nice=10, guest_nice=10, idle=30)
    pct = cpu_percent(a, b, 1.0)
    assert pct["user_pct"] == pytest.approx(40.0)
    assert pct["guest_pct"] == pytest.approx(20.0)
    assert pct["nice_pct"] == pytest.approx(0.0)
    assert pct["busy_pct"] == pytest.approx(70.0)
    assert sum(pct[s + "_pct"] for s in CPU_STATES) == pytest.approx(100.0)


def test_cpu_percent_without_guest_columns():
    a = dict.fromkeys(CPU_STATES, 0)
    a.update(guest=None, guest_nice=None)
    b = dict(a, user=50, idle=50)
    pct = cpu_percent(a, b, 1.0)
    assert pct["user_pct"] == 50.0 and pct["guest_pct"] is None


# --- edge cases over edited copies of real snapshots ---------------------------

def test_counters_going_backwards_give_none(pair):
    prev, cur = pair
    cur.cpu.total["user"] = prev.cpu.total["user"] - 1
    cur.cpu.ctxt = prev.cpu.ctxt - 1
    cur.memory.vmstat["pgmajfault"] = prev.memory.vmstat["pgmajfault"] - 1
    cur.memory.vmstat["oom_kill"] = -1
    disk = next(d for d in cur.disks if not d["is_partition"])
    before = next(d for d in prev.disks if d["name"] == disk["name"])
    disk["sectors_written"] = before["sectors_written"] - 8
    disk["io_time_ms"] = 0 if before["io_time_ms"] else -1
    rates = derive_rates(prev, cur)
    assert rates["cpu"]["total"]["user_pct"] is None
    # The other states are shares of the CPU time that is still known.
    known = {s: cur.cpu.total[s] - prev.cpu.total[s] for s in CPU_STATES if s != "user"}
    known["nice"] -= known["guest_nice"]
    for state, ticks in known.items():
        assert rates["cpu"]["total"][state + "_pct"] == pytest.approx(100.0 * ticks / sum(known.values()))
    assert rates["cpu"]["ctxt_per_s"] is None
    assert rates["memory"]["major_faults_per_s"] is None
    assert rates["memory"]["oom_kills"] is None
    assert rates["disks"][disk["name"]]["write_bytes_per_s"] is None
    assert rates["disks"][disk["name"]]["util_pct"] is None
    assert [(path, value) for path, value in rate_leaves(rates) if value is not None and value < 0] == []


def test_network_counters_going_backwards_give_none(pair):
    prev, cur = pair
    if cur.network is None:
        pytest.skip("no network section on this host")
    net_prev, net_cur = prev.network, cur.network
    net_prev["snmp"] = {"Tcp": {"OutSegs": 1000, "RetransSegs": 5}}
    net_cur["snmp"] = {"Tcp": {"OutSegs": 10, "RetransSegs": 6}}
    net_prev["softnet"] = [{"cpu": 0, "processed": 10, "dropped": 5, "time_squeeze": 1}]
    net_cur["softnet"] = [{"cpu": 0, "processed": 20, "dropped": 4, "time_squeeze": 1}]
    link = {"name": "test0", "index": 99, "stats": {"rx_bytes": 100, "tx_bytes": 100}}
    net_prev["links"] = [link]
    net_cur["links"] = [dict(link, stats={"rx_bytes": 50, "tx_bytes": 200})]
    prev.pressure = {"io": {"some": {"total_us": 500}, "full": None}}
    cur.pressure = {"io": {"some": {"total_us": 100}, "full": None}}
    rates = derive_rates(prev, cur)
    tcp = rates["network"]["tcp"]
    assert tcp["out_segs_per_s"] is None and tcp["retransmit_pct"] is None
    softnet = rates["network"]["softnet"]
    assert softnet["cpus"][0]["dropped_per_s"] is None
    assert softnet["cpus"][0]["processed_per_s"] == 10 / rates["interval_s"]
    assert softnet["total"]["dropped_per_s"] is None
    test0 = rates["network"]["links"]["test0"]
    assert test0["rx_bits_per_s"] is None and test0["tx_bits_per_s"] == 100 * 8 / rates["interval_s"]
    assert rates["pressure"]["io"]["some_pct"] is None
    assert rates["pressure"]["io"]["full_pct"] is None
    assert rates["pressure"]["cpu"] == {"some_pct": None, "full_pct": None}


def test_recreated_devices_give_none(pair):
    prev, cur = pair
    prev.network = {"links": [{"name": "veth0", "index": 5, "stats": {"rx_bytes": 1}}]}
    cur.network = {"links": [{"name": "veth0", "index": 6, "stats": {"rx_bytes": 100}}]}
    disk = next(d for d in cur.disks if not d["is_partition"])
    disk["minor"] += 1000
    rates = derive_rates(prev, cur)
    assert rates["network"]["links"]["veth0"]["rx_bits_per_s"] is None
    assert rates["disks"][disk["name"]]["reads_per_s"] is None


def _assert_no_rates(rates):
    assert rates["comparable"] is False and rates["reason"]
    values = rate_leaves(rates)
    assert values
    for path, value in values:
        assert value is None, path


def test_different_boots_give_no_rates(pair):
    prev, cur = pair
    cur.meta.boot_id = "00000000-0000-0000-0000-000000000000"
    rates = derive_rates(prev, cur)
    assert rates["reason"] == "different boots"
    _assert_no_rates(rates)


@pytest.mark.parametrize("offset_ns", [0, -1_000_000_000])
def test_no_time_between_gives_no_rates(pair, offset_ns):
    prev, cur = pair
    cur.meta.mono_ns = prev.meta.mono_ns + offset_ns
    _assert_no_rates(derive_rates(prev, cur))


def test_missing_sections_give_none(pair):
    prev, cur = pair
    cur.cpu = cur.memory = cur.pressure = cur.disks = cur.network = None
    rates = derive_rates(prev, cur)
    for section in ("cpu", "memory", "pressure", "disks", "partitions", "network"):
        assert rates[section] is None, section
    rates = derive_rates(cur, copy.deepcopy(prev))
    assert rates["cpu"] is None


def test_none_fields_everywhere(pair):
    prev, cur = pair
    for snap in (prev, cur):
        snap.cpu.total = None
        snap.cpu.cpus = {name: dict.fromkeys(CPU_STATES) for name in snap.cpu.cpus}
        snap.cpu.ctxt = snap.cpu.intr = snap.cpu.softirq = snap.cpu.processes = None
        snap.memory.vmstat = None
        snap.memory.meminfo = None
        snap.disks = [dict.fromkeys(d, None) | {"name": d["name"], "is_partition": d["is_partition"]}
                      for d in snap.disks]
        snap.pressure = {"cpu": None, "memory": {"some": None, "full": None}, "io": {"some": {}}}
        snap.network = {"links": [{"name": "x", "stats": None}, {"name": "y"}, None],
                        "snmp": None, "netstat": {"TcpExt": None}, "softnet": [None, {"cpu": 1}],
                        "conntrack": None}
    rates = derive_rates(prev, cur)
    assert rates["comparable"]
    for path, value in rate_leaves(rates):
        assert value is None, path
    assert set(rates["network"]["links"]) == {"x", "y"}


def test_empty_lists_and_empty_snapshots(pair):
    prev, cur = pair
    for snap in (prev, cur):
        snap.disks = []
        snap.network = {"links": [], "softnet": []}
    rates = derive_rates(prev, cur)
    assert rates["disks"] == {} and rates["partitions"] == {}
    assert rates["network"]["links"] == {}
    assert rates["network"]["softnet"] == {
        "cpus": {}, "total": {"processed_per_s": None, "dropped_per_s": None, "time_squeeze_per_s": None}}

    bare_prev, bare_cur = Snapshot(meta=prev.meta), Snapshot(meta=cur.meta)
    rates = derive_rates(bare_prev, bare_cur)
    assert rates["comparable"] and rates["cpu"] is None and rates["network"] is None


def test_empty_typed_sections():
    from hostdiag.model import Meta

    def meta(mono_ns):
        return Meta(hostname=None, boot_id=None, kernel=None, wall_ns=0, mono_ns=mono_ns,
                    duration_ns=0, parser_impl="pure", clock_ticks=100, proc_root="/proc",
                    sys_root="/sys", live=False)

    def snap(mono_ns):
        return Snapshot(meta=meta(mono_ns), cpu=Cpu(*([None] * 11)), memory=Memory(None, None, None))

    rates = derive_rates(snap(0), snap(10**9))
    assert rates["cpu"]["cpus"] == {}
    assert rates["cpu"]["total"]["busy_pct"] is None
    assert rates["memory"]["oom_kills"] is None


def test_retransmit_ratio_counts_retransmits_in_what_was_sent(pair):
    prev, cur = pair
    prev.network = {"snmp": {"Tcp": {"OutSegs": 1000, "RetransSegs": 100, "CurrEstab": 3}}}
    cur.network = {"snmp": {"Tcp": {"OutSegs": 1970, "RetransSegs": 130, "CurrEstab": 4}}}
    cur.meta.mono_ns = prev.meta.mono_ns + 2_000_000_000
    tcp = derive_rates(prev, cur)["network"]["tcp"]
    assert tcp["out_segs_per_s"] == pytest.approx(485.0)
    assert tcp["retrans_segs_per_s"] == pytest.approx(15.0)
    assert tcp["retransmit_pct"] == pytest.approx(3.0)
    assert tcp["curr_estab"] == 4


def test_disk_rates_arithmetic():
    from hostdiag.derive.rates import disk_rates

    a = {"reads_completed": 1000, "writes_completed": 500, "sectors_read": 8000,
         "sectors_written": 4000, "read_time_ms": 5000, "write_time_ms": 7000,
         "io_time_ms": 10000, "weighted_io_time_ms": 20000, "ios_in_progress": 0}
    b = dict(a, reads_completed=1100, writes_completed=550, sectors_read=8800, sectors_written=4100,
             read_time_ms=5500, write_time_ms=8000, io_time_ms=11000, weighted_io_time_ms=23000,
             ios_in_progress=2)
    r = disk_rates(a, b, 2.0)
    assert r["reads_per_s"] == 50 and r["writes_per_s"] == 25
    assert r["read_bytes_per_s"] == 800 * 512 / 2 and r["write_bytes_per_s"] == 100 * 512 / 2
    assert r["await_ms"] == pytest.approx(10.0)
    assert r["r_await_ms"] == pytest.approx(5.0) and r["w_await_ms"] == pytest.approx(20.0)
    assert r["util_pct"] == pytest.approx(50.0)
    assert r["avg_queue"] == pytest.approx(1.5)
    assert r["in_flight"] == 2
    # io_time can run ahead of the monotonic clock a little: never above 100 %.
    assert disk_rates(a, dict(b, io_time_ms=12500), 2.0)["util_pct"] == 100.0
    idle = disk_rates(a, a, 2.0)
    assert idle["await_ms"] is None and idle["util_pct"] == 0.0
