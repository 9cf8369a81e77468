"""Every findings rule fires when the counters it reads are edited past its
threshold and stays quiet just under it; no rule crashes on missing data.

The base is a real snapshot of this host with the inputs of every rule set to
calm values (the host running the tests may itself be loaded); ``cur`` is a
copy one second later, edited per case.
"""

import copy
import pathlib

import pytest

from hostdiag.sampler.system import SystemCollector
from hostdiag.derive import derive_rates
from hostdiag.sources.hostroot import HostRoot
from hostdiag.model import Cpu, Memory, Snapshot
from hostdiag.parsers.procpid import RECORD_KEYS
from hostdiag.parsers.sockdiag import ROW_FIELDS
from hostdiag.findings import rules as F

GIB = 1 << 30
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "findings.md"


@pytest.fixture(scope="module")
def real_snapshot():
    with SystemCollector(HostRoot()) as collector:
        return collector.collect()


def _calm(snapshot):
    """A copy of ``snapshot`` in which every rule's input is known and calm."""
    s = copy.deepcopy(snapshot)
    n = len(s.cpu.cpus)
    s.cpu.loadavg = {"load1": 0.1, "load5": 0.1, "load15": 0.1, "runnable": 1, "threads": 50, "last_pid": 1}
    s.cpu.procs_running, s.cpu.procs_blocked = 1, 0
    assert n >= 1
    s.memory.meminfo = dict(s.memory.meminfo or {}, MemTotal=8 * GIB, MemAvailable=4 * GIB)
    s.memory.vmstat = dict(s.memory.vmstat or {}, pswpin=1000, pswpout=1000, pgfault=10**6,
                           pgmajfault=1000, oom_kill=0)
    line = {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total_us": 1000}
    s.pressure = {r: {"some": dict(line), "full": dict(line)} for r in ("cpu", "memory", "io")}
    s.pressure["irq"] = None
    disk = dict.fromkeys(("reads_completed", "reads_merged", "sectors_read", "read_time_ms",
                          "writes_completed", "writes_merged", "sectors_written", "write_time_ms",
                          "io_time_ms", "weighted_io_time_ms"), 1000)
    s.disks = [dict(disk, major=254, minor=0, name="vdz", ios_in_progress=0, is_partition=False, parent=None),
               dict(disk, major=254, minor=1, name="vdz1", ios_in_progress=0, is_partition=True, parent="vdz")]
    s.filesystems = [{"mountpoint": "/data", "device": "/dev/vdz1", "fstype": "ext4", "major": 254,
                      "minor": 1, "options": "rw,relatime", "size_bytes": 1000, "free_bytes": 500,
                      "avail_bytes": 450, "files": 1000, "files_free": 900, "readonly": False}]
    stats = dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors",
                           "tx_errors", "rx_dropped", "tx_dropped"), 1000)
    s.network = dict(s.network or {})
    s.network.update(
        links=[{"name": "eth9", "index": 9, "kind": None, "operstate": "up", "mtu": 1500,
                "address": None, "carrier_changes": 0, "stats": stats}],
        snmp={"Tcp": dict.fromkeys(("ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets",
                                    "OutRsts", "InErrs", "InSegs", "OutSegs", "RetransSegs"), 1000)
              | {"CurrEstab": 5},
              "Udp": dict.fromkeys(("InDatagrams", "OutDatagrams", "InErrors", "RcvbufErrors",
                                    "SndbufErrors", "NoPorts"), 1000)},
        netstat={"TcpExt": {"ListenOverflows": 10, "ListenDrops": 10}},
        softnet=[{"cpu": i, "processed": 1000, "dropped": 5, "time_squeeze": 5} for i in range(n)],
        conntrack={"count": 10, "max": 1000},
    )
    s.kernel = dict(s.kernel or {}, tainted=0, taint_flags="", kmsg=None,
                    file_nr={"allocated": 1000, "unused": 0, "max": 100000})
    return s


@pytest.fixture
def pair(real_snapshot):
    prev = _calm(real_snapshot)
    cur = copy.deepcopy(prev)
    cur.meta.mono_ns = prev.meta.mono_ns + 1_000_000_000
    return prev, cur


def _add_ticks(times, **ticks):
    for state, value in ticks.items():
        times[state] += value


# --- edits: each takes (prev, cur) and changes cur (or both) --------------------

def load(factor):
    def edit(prev, cur):
        cur.cpu.loadavg["load1"] = factor * len(cur.cpu.cpus)
    return edit


def total_ticks(**ticks):
    def edit(prev, cur):
        _add_ticks(cur.cpu.total, **ticks)
    return edit


def one_cpu_ticks(busy):
    def edit(prev, cur):
        for i, name in enumerate(sorted(cur.cpu.cpus)):
            _add_ticks(cur.cpu.cpus[name], **({"user": busy, "idle": 100 - busy} if i == 0 else {"idle": 100}))
    return edit


def available(fraction):
    def edit(prev, cur):
        cur.memory.meminfo["MemAvailable"] = int(fraction * cur.memory.meminfo["MemTotal"])
    return edit


def vmstat(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.memory.vmstat[key] += value
    return edit


def oom_since_boot(prev, cur):
    prev.memory.vmstat["oom_kill"] = cur.memory.vmstat["oom_kill"] = 3


def psi(resource, kind, avg10):
    def edit(prev, cur):
        cur.pressure[resource][kind]["avg10"] = avg10
    return edit


def disk(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.disks[0][key] += value
    return edit


def fs(**fields):
    def edit(prev, cur):
        cur.filesystems[0].update(fields)
    return edit


def link(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network["links"][0]["stats"][key] += value
    return edit


def proto(section, group, **inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network[section][group][key] += value
    return edit


def softnet(**inc):
    def edit(prev, cur):
        for key, value in inc.items():
            cur.network["softnet"][0][key] += value
    return edit


def kernel(**fields):
    def edit(prev, cur):
        cur.kernel.update(fields)
    return edit


def conntrack(count):
    def edit(prev, cur):
        cur.network["conntrack"] = {"count": count, "max": 100}
    return edit


def kmsg(severity):
    return kernel(kmsg=[{"severity": severity, "level": "x", "facility": 0, "seq": 1, "ts_us": 5,
                         "message": "EXT4-fs error (device vdz1)"}])


# --- process and socket tables, built by hand --------------------------------

def proc(pid, state="S", ppid=1, comm=None, start_time=None, **fields):
    """A process record with every key of the table; counters at calm values."""
    record = dict.fromkeys(RECORD_KEYS)
    record.update(pid=pid, ppid=ppid, comm=comm or "p%d" % pid, cmdline=["/usr/bin/p%d" % pid, "-x"],
                  state=state, uid=0, user="root", start_time=start_time or 1000 + pid,
                  kernel_thread=False, utime=100, stime=100, minflt=1000, majflt=10,
                  num_threads=1, nice=0, priority=20, rss_bytes=pid * 4096, vsize_bytes=pid * 8192,
                  delayacct_blkio_ticks=0, voluntary_ctxt_switches=10,
                  nonvoluntary_ctxt_switches=10, read_bytes=0, write_bytes=0, fd_count=5,
                  cgroup="/", oom_score_adj=0, denied=[])
    record.update(fields)
    return record


def processes_section(records):
    by_state = {}
    for r in records:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    return {"processes": records, "counts": {"total": len(records), "threads": len(records),
                                             "by_state": by_state}, "vanished": 0, "denied": 0}


def table(records_prev, records_cur):
    """Edit: give both snapshots a process table."""
    def edit(prev, cur):
        prev.processes = processes_section(records_prev)
        cur.processes = processes_section(records_cur)
    return edit


def d_state(count):
    return table([], [proc(100 + i, state="D") for i in range(count)] + [proc(10)])


def zombies(count):
    parent = proc(50, comm="spawner")
    return table([], [parent] + [proc(200 + i, state="Z", ppid=50, cmdline=[]) for i in range(count)])


def conn_row(local_port, remote_port, inode, total_retrans, state="ESTABLISHED", rtt=2000,
             rqueue=0, wqueue=0):
    values = {"family": "inet", "state": state, "local": "127.0.0.1", "local_port": local_port,
              "remote": "127.0.0.2", "remote_port": remote_port, "rqueue": rqueue, "wqueue": wqueue,
              "uid": 0, "inode": inode, "rtt": rtt, "total_retrans": total_retrans,
              "bytes_acked": 1000, "drops": 0}
    return [values[name] for name in ROW_FIELDS]


def sockets_section(rows, listeners=(), owners=None):
    return {"source": "netlink", "limits": {"tcp_rows": 100000, "udp": 10000, "detail_per_rank": 20},
            "tcp_total": len(rows) + len(listeners),
            "tcp_states": {"ESTABLISHED": len(rows), "LISTEN": len(listeners)},
            "tcp_table": {"fields": list(ROW_FIELDS), "rows": rows, "dropped": 0},
            "tcp": [], "listeners": list(listeners), "udp": [], "udp_total": 0, "udp_dropped": 0,
            "unix": {"total": 0, "by_state": {}, "by_type": {}}, "owners": owners or {}}


def retrans(per_second, owners=None):
    """Edit: one connection retransmits ``per_second`` segments/s over the 1 s interval."""
    def edit(prev, cur):
        prev.sockets = sockets_section([conn_row(5000, 6000, 77, 10), conn_row(5001, 6001, 78, 3)])
        cur.sockets = sockets_section([conn_row(5000, 6000, 77, 10 + per_second),
                                       conn_row(5001, 6001, 78, 3)], owners=owners)
    return edit


def listener(backlog, backlog_max=128, owners=None):
    def edit(prev, cur):
        full = {"family": "inet", "local": "0.0.0.0", "local_port": 8080, "inode": 99,
                "backlog": backlog, "backlog_max": backlog_max}
        calm = {"family": "inet6", "local": "::", "local_port": 22, "inode": 98, "backlog": 0,
                "backlog_max": 128}
        prev.sockets = sockets_section([], [calm])
        cur.sockets = sockets_section([], [calm, full], owners=owners)
    return edit


# (rule, id, severity, subject, edit past the threshold, edit just under it, needs rates)
CASES = [
    (F.rule_load, "load_high", "warn", None, load(2.1), load(1.9), False),
    (F.rule_cpu_states, "cpu_busy", "warn", None, total_ticks(user=95, idle=5),
     total_ticks(user=85, idle=15), True),
    (F.rule_cpu_states, "cpu_iowait", "warn", None, total_ticks(iowait=25, idle=75),
     total_ticks(iowait=15, idle=85), True),
    (F.rule_cpu_states, "cpu_steal", "warn", None, total_ticks(steal=12, idle=88),
     total_ticks(steal=8, idle=92), True),
    (F.rule_one_cpu_busy, "cpu_one_busy", "warn", "first-cpu", one_cpu_ticks(97), one_cpu_ticks(94), True),
    (F.rule_memory_available, "memory_low", "warn", None, available(0.08), available(0.12), False),
    (F.rule_memory_available, "memory_low", "crit", None, available(0.04), available(0.12), False),
    (F.rule_swapping, "swapping", "warn", None, vmstat(pswpin=60, pswpout=60),
     vmstat(pswpin=40, pswpout=40), True),
    (F.rule_major_faults, "major_faults", "warn", None, vmstat(pgmajfault=150), vmstat(pgmajfault=50), True),
    (F.rule_oom_kills, "oom_kill", "crit", None, vmstat(oom_kill=1), vmstat(oom_kill=0), True),
    (F.rule_oom_kills, "oom_kill_since_boot", "warn", None, oom_since_boot, vmstat(oom_kill=0), False),
    (F.rule_pressure, "psi_cpu_some", "warn", "cpu", psi("cpu", "some", 25.0), psi("cpu", "some", 15.0), False),
    (F.rule_pressure, "psi_memory_some", "warn", "memory", psi("memory", "some", 12.0),
     psi("memory", "some", 8.0), False),
    (F.rule_pressure, "psi_io_some", "warn", "io", psi("io", "some", 25.0), psi("io", "some", 15.0), False),
    (F.rule_pressure, "psi_memory_full", "warn", "memory", psi("memory", "full", 6.0),
     psi("memory", "full", 4.0), False),
    (F.rule_disk_util, "disk_util", "warn", "vdz", disk(io_time_ms=950), disk(io_time_ms=850), True),
    (F.rule_disk_await, "disk_await", "warn", "vdz", disk(reads_completed=10, read_time_ms=600),
     disk(reads_completed=10, read_time_ms=400), True),
    (F.rule_disk_await, "disk_await", "warn", "vdz", disk(writes_completed=10, write_time_ms=600),
     disk(writes_completed=4, write_time_ms=400), True),     # 100 ms, but under 5 IOPS
    (F.rule_filesystems, "fs_space", "warn", "/data", fs(free_bytes=80, avail_bytes=80),
     fs(free_bytes=150, avail_bytes=150), False),
    (F.rule_filesystems, "fs_space", "crit", "/data", fs(free_bytes=40, avail_bytes=40),
     fs(free_bytes=150, avail_bytes=150), False),
    (F.rule_filesystems, "fs_inodes", "warn", "/data", fs(files_free=80), fs(files_free=200), False),
    (F.rule_filesystems, "fs_inodes", "crit", "/data", fs(files_free=50), fs(files_free=200), False),
    (F.rule_readonly, "fs_readonly", "warn", "/data", fs(readonly=True), fs(readonly=False), False),
    (F.rule_readonly, "fs_readonly", "warn", "/data", fs(readonly=None, options="ro,relatime"),
     fs(readonly=True, fstype="tmpfs"), False),
    (F.rule_links, "nic_errors", "warn", "eth9", link(rx_errors=1), link(rx_errors=0), True),
    (F.rule_links, "nic_drops", "warn", "eth9", link(rx_dropped=6, tx_dropped=5), link(rx_dropped=9), True),
    (F.rule_tcp_retransmits, "tcp_retransmits", "warn", None, proto("snmp", "Tcp", OutSegs=1000, RetransSegs=30),
     proto("snmp", "Tcp", OutSegs=1000, RetransSegs=10), True),
    (F.rule_tcp_retransmits, "tcp_retransmits", "warn", None, proto("snmp", "Tcp", OutSegs=100, RetransSegs=3),
     proto("snmp", "Tcp", OutSegs=50, RetransSegs=5), True),     # 10 %, but under 100 segments/s
    (F.rule_tcp_listen, "tcp_listen_overflow", "warn", None, proto("netstat", "TcpExt", ListenOverflows=1),
     proto("netstat", "TcpExt", ListenOverflows=0), True),
    (F.rule_tcp_listen, "tcp_listen_overflow", "warn", None, proto("netstat", "TcpExt", ListenDrops=2),
     proto("netstat", "TcpExt", ListenDrops=0), True),
    (F.rule_tcp_resets, "tcp_resets", "warn", None, proto("snmp", "Tcp", EstabResets=11),
     proto("snmp", "Tcp", EstabResets=5, AttemptFails=10), True),
    (F.rule_tcp_resets, "tcp_resets", "warn", None, proto("snmp", "Tcp", AttemptFails=11),
     proto("snmp", "Tcp", OutRsts=500), True),
    (F.rule_udp_errors, "udp_errors", "warn", None, proto("snmp", "Udp", InErrors=1, RcvbufErrors=1),
     proto("snmp", "Udp", NoPorts=50), True),
    (F.rule_softnet, "softnet", "warn", None, softnet(dropped=1), softnet(processed=10**6), True),
    (F.rule_softnet, "softnet", "warn", None, softnet(time_squeeze=11), softnet(time_squeeze=9), True),
    (F.rule_file_handles, "file_handles", "warn", None, kernel(file_nr={"allocated": 85, "unused": 0, "max": 100}),
     kernel(file_nr={"allocated": 79, "unused": 0, "max": 100}), False),
    (F.rule_conntrack, "conntrack_full", "warn", None, conntrack(85), conntrack(79), False),
    (F.rule_conntrack, "conntrack_full", "crit", None, conntrack(96), conntrack(79), False),
    (F.rule_tainted, "kernel_tainted", "warn", None, kernel(tainted=4096, taint_flags="O"),
     kernel(tainted=0, taint_flags=""), False),
    (F.rule_kernel_log, "kernel_log_errors", "warn", None, kmsg(3), kmsg(4), False),
    (F.rule_kernel_log, "kernel_log_errors", "crit", None, kmsg(2), kmsg(4), False),
    (F.rule_procs_d_state, "procs_d_state", "warn", None, d_state(1), d_state(0), False),
    (F.rule_procs_zombies, "procs_zombie", "warn", None, zombies(11), zombies(10), False),
    (F.rule_tcp_conn_retrans, "tcp_conn_retrans", "warn", "127.0.0.1:5000 -> 127.0.0.2:6000",
     retrans(6), retrans(4), True),
    (F.rule_tcp_listener_full, "tcp_listener_full", "warn", "0.0.0.0:8080", listener(129),
     listener(127), False),
    (F.rule_tcp_listener_full, "tcp_listener_full", "warn", "0.0.0.0:8080", listener(5, 5),
     listener(5, None), False),     # /proc gives no backlog limit: never full
]
CASE_IDS = ["%s-%s-%d" % (c[1], c[2], i) for i, c in enumerate(CASES)]


def _run(rule, prev, cur, with_rates=True):
    rates = derive_rates(prev, cur) if with_rates else None
    return list(rule(cur, rates)), F.evaluate(cur, rates)


def test_calm_snapshot_has_no_findings(pair):
    prev, cur = pair
    assert F.evaluate(cur, derive_rates(prev, cur)) == []
    assert F.evaluate(cur, None) == []


@pytest.mark.parametrize("rule, rule_id, severity, subject, fire, quiet, needs_rates", CASES, ids=CASE_IDS)
def test_rule_fires_past_threshold(pair, rule, rule_id, severity, subject, fire, quiet, needs_rates):
    prev, cur = pair
    fire(prev, cur)
    found, everything = _run(rule, prev, cur)
    assert [f["id"] for f in found] == [rule_id]
    finding = found[0]
    assert finding["severity"] == severity
    if subject == "first-cpu":
        subject = sorted(cur.cpu.cpus)[0]
    assert finding["subject"] == subject
    assert finding["title"] and finding["threshold"]
    assert finding["evidence"] and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in finding["evidence"].values())
    assert finding in everything
    if needs_rates:
        # --interval 0: only the gauge rules run.
        assert rule_id not in [f["id"] for f in rule(cur, None)]
        assert rule_id not in [f["id"] for f in F.evaluate(cur, None)]


@pytest.mark.parametrize("rule, rule_id, severity, subject, fire, quiet, needs_rates", CASES, ids=CASE_IDS)
def test_rule_quiet_under_threshold(pair, rule, rule_id, severity, subject, fire, quiet, needs_rates):
    prev, cur = pair
    quiet(prev, cur)
    found, everything = _run(rule, prev, cur)
    assert found == []
    assert everything == []


def test_rate_rules_quiet_across_boots(pair):
    prev, cur = pair
    total_ticks(user=95, idle=5)(prev, cur)
    disk(io_time_ms=990)(prev, cur)
    link(rx_errors=100)(prev, cur)
    cur.meta.boot_id = "another-boot"
    assert F.evaluate(cur, derive_rates(prev, cur)) == []


def test_crit_first(pair):
    prev, cur = pair
    load(5)(prev, cur)
    fs(free_bytes=10, avail_bytes=10)(prev, cur)
    vmstat(oom_kill=2)(prev, cur)
    link(rx_errors=3)(prev, cur)
    found = F.evaluate(cur, derive_rates(prev, cur))
    severities = [f["severity"] for f in found]
    assert severities == sorted(severities, key=["crit", "warn"].index)
    assert {f["id"] for f in found} == {"load_high", "fs_space", "oom_kill", "nic_errors"}
    assert found[0]["severity"] == "crit"


def _blank_meta(real_snapshot):
    return copy.deepcopy(real_snapshot.meta)


def _every_none_snapshots(real_snapshot):
    meta = _blank_meta(real_snapshot)
    yield Snapshot(meta=meta)
    yield Snapshot(
        meta=meta, cpu=Cpu(*([None] * 11)), memory=Memory(None, None, None),
        pressure={"cpu": None, "memory": {"some": None, "full": None}, "io": {"some": {}, "full": {}}},
        disks=[], filesystems=[], network={}, kernel={})
    yield Snapshot(
        meta=meta, cpu=Cpu(total={}, cpus={"cpu0": {}}, **dict.fromkeys(
            ("ctxt", "intr", "softirq", "processes", "procs_running", "procs_blocked", "btime",
             "loadavg", "uptime"))),
        memory=Memory({}, {}, []), pressure={},
        disks=[{}, {"name": None, "is_partition": None}], filesystems=[{}, dict.fromkeys(
            ("mountpoint", "fstype", "size_bytes", "free_bytes", "avail_bytes", "files",
             "files_free", "readonly", "options"))],
        network=dict.fromkeys(("link_source", "links", "addresses", "routes", "neighbours", "snmp",
                               "netstat", "snmp6", "sockstat", "sockstat6", "softnet", "conntrack")),
        kernel=dict.fromkeys(("hostname", "tainted", "taint_flags", "file_nr", "kmsg"))
        | {"kmsg": [None, {}, {"severity": None}], "file_nr": {"allocated": None, "max": 0}})


def test_no_rule_crashes_on_missing_data(real_snapshot, pair):
    prev, cur = pair
    real_rates = derive_rates(prev, cur)
    odd_rates = [
        None,
        real_rates,
        {"interval_s": 0.0, "comparable": False, "reason": "x", "cpu": None, "memory": None,
         "disks": None, "partitions": None, "network": None, "pressure": None},
        {"cpu": {"total": None, "cpus": {"cpu0": None}}, "memory": {}, "disks": {"x": None},
         "network": {"links": {"y": None}, "tcp": None, "udp": {}, "softnet": {"total": None}},
         "pressure": {"cpu": None}},
    ]
    for snapshot in _every_none_snapshots(real_snapshot):
        odd_rates.append(derive_rates(snapshot, snapshot))
        for rates in odd_rates:
            assert F.evaluate(snapshot, rates) == [], (snapshot, rates)
    for rates in odd_rates:
        for rule in F.RULES:
            list(rule(cur, rates))


def test_docs_name_every_rule_and_threshold():
    text = DOCS.read_text()
    for name in F.THRESHOLDS:
        assert "`%s`" % name in text, name
    for rule_id in {case[1] for case in CASES}:
        assert "`%s`" % rule_id in text, rule_id
    assert len(F.RULES) == len({case[0] for case in CASES})


# --- culprits: the processes and connections behind a finding -------------------

def _only(rule, prev, cur, with_rates=True):
    found = list(rule(cur, derive_rates(prev, cur) if with_rates else None))
    assert len(found) == 1, found
    return found[0]


def test_cpu_busy_names_the_top_cpu_processes(pair):
    prev, cur = pair
    total_ticks(user=95, idle=5)(prev, cur)
    ticks = cur.meta.clock_ticks
    table([proc(300), proc(301), proc(302), proc(303)],
          [proc(300, utime=100 + ticks * 9 // 10), proc(301, stime=100 + ticks // 20), proc(302),
           proc(303, start_time=99999, utime=10**6)])(prev, cur)   # 303: pid reused, no rate
    finding = _only(F.rule_cpu_states, prev, cur)
    assert finding["id"] == "cpu_busy"
    assert [c["pid"] for c in finding["culprits"]] == [300, 301]
    top = finding["culprits"][0]
    assert top["kind"] == "process" and top["comm"] == "p300" and top["user"] == "root"
    assert top["command"] == "/usr/bin/p300 -x"
    assert abs(top["cpu_pct"] - 100.0 * (ticks * 9 // 10) / ticks) < 0.01
    assert "p300[300]" in finding["title"] and "% CPU" in finding["title"]


def test_without_tables_there_are_no_culprits(pair):
    prev, cur = pair
    total_ticks(user=95, idle=5)(prev, cur)
    finding = _only(F.rule_cpu_states, prev, cur)
    assert finding["culprits"] == []
    assert finding["title"] == "CPUs 95 % busy"


def test_iowait_and_disks_name_the_top_io_processes(pair):
    prev, cur = pair
    total_ticks(iowait=25, idle=75)(prev, cur)
    disk(io_time_ms=950)(prev, cur)
    table([proc(410), proc(411)],
          [proc(410, write_bytes=50 << 20), proc(411, read_bytes=1 << 20)])(prev, cur)
    for rule in (F.rule_cpu_states, F.rule_disk_util):
        finding = _only(rule, prev, cur)
        assert [c["pid"] for c in finding["culprits"]] == [410, 411]
        assert finding["culprits"][0]["io_bytes_per_s"] == 50 << 20
        assert "p410[410] 50.0 MiB/s I/O" in finding["title"]


def test_memory_low_names_the_top_rss_processes_from_one_snapshot(pair):
    prev, cur = pair
    available(0.08)(prev, cur)
    table([], [proc(1), proc(2, rss_bytes=6 << 30, comm="hog"), proc(3)])(prev, cur)
    finding = _only(F.rule_memory_available, prev, cur, with_rates=False)
    assert finding["culprits"][0]["pid"] == 2 and finding["culprits"][0]["rss_bytes"] == 6 << 30
    assert [c["pid"] for c in finding["culprits"]] == [2, 3, 1]
    assert "hog[2] 6144 MiB resident" in finding["title"]


def test_major_faults_name_the_faulting_processes(pair):
    prev, cur = pair
    vmstat(pgmajfault=150)(prev, cur)
    table([proc(500), proc(501)], [proc(500, majflt=10 + 140), proc(501, minflt=10**6)])(prev, cur)
    finding = _only(F.rule_major_faults, prev, cur)
    assert [(c["pid"], c["majflt_per_s"]) for c in finding["culprits"]] == [(500, 140.0)]


def test_d_state_names_user_processes_first(pair):
    prev, cur = pair
    table([], [proc(7, state="D", comm="jbd2/vda1-8", kernel_thread=True, cmdline=[]),
               proc(900, state="D", comm="postgres"), proc(901, state="R")])(prev, cur)
    cur.cpu.procs_blocked = 2
    finding = _only(F.rule_procs_d_state, prev, cur, with_rates=False)
    assert [(c["pid"], c["comm"]) for c in finding["culprits"]] == [(900, "postgres"), (7, "jbd2/vda1-8")]
    assert finding["culprits"][1]["command"] == "[jbd2/vda1-8]"
    assert finding["evidence"] == {"d_state": 2, "procs_blocked": 2}
    assert "postgres[900]" in finding["title"]


def test_zombies_name_their_parents(pair):
    prev, cur = pair
    records = [proc(50, comm="spawner"), proc(60, comm="other")]
    records += [proc(200 + i, state="Z", ppid=50, cmdline=[]) for i in range(12)]
    records += [proc(300, state="Z", ppid=60, cmdline=[])]
    table([], records)(prev, cur)
    finding = _only(F.rule_procs_zombies, prev, cur, with_rates=False)
    assert [(c["kind"], c["pid"], c["comm"], c["zombies"]) for c in finding["culprits"]] == [
        ("parent", 50, "spawner", 12), ("parent", 60, "other", 1)]
    assert finding["evidence"] == {"zombies": 13, "parents": 2}
    assert "spawner[50] has 12 zombie(s)" in finding["title"]


def test_retransmits_name_the_connection_and_its_process(pair):
    prev, cur = pair
    proto("snmp", "Tcp", OutSegs=1000, RetransSegs=30)(prev, cur)
    retrans(30, owners={"77": [{"pid": 4242, "comm": "nginx"}]})(prev, cur)
    rates = derive_rates(prev, cur)
    assert F.socket_inodes_named(cur, rates) == {77}
    for rule in (F.rule_tcp_retransmits, F.rule_tcp_conn_retrans):
        finding = _only(rule, prev, cur)
        assert len(finding["culprits"]) == 1, "the connection that did not retransmit is not named"
        culprit = finding["culprits"][0]
        assert culprit == {"kind": "connection", "local": "127.0.0.1:5000", "remote": "127.0.0.2:6000",
                           "state": "ESTABLISHED", "rtt_ms": 2.0, "total_retrans": 40,
                           "retrans_per_s": 30.0, "processes": [{"pid": 4242, "comm": "nginx"}]}
        assert "127.0.0.1:5000 -> 127.0.0.2:6000 30 retrans/s (nginx[4242])" in finding["title"]


def test_listen_overflow_names_the_full_listener_and_its_process(pair):
    prev, cur = pair
    proto("netstat", "TcpExt", ListenOverflows=3)(prev, cur)
    holders = [{"pid": 812, "comm": "haproxy"}, {"pid": 813, "comm": "haproxy"}]
    listener(129, owners={"99": holders})(prev, cur)
    assert F.socket_inodes_named(cur, None) == {99}
    for rule, with_rates in ((F.rule_tcp_listen, True), (F.rule_tcp_listener_full, False)):
        finding = _only(rule, prev, cur, with_rates)
        assert finding["culprits"] == [{"kind": "listener", "local": "0.0.0.0:8080", "backlog": 129,
                                        "backlog_max": 128,
                                        "processes": [{"pid": 812, "comm": "haproxy"},
                                                      {"pid": 813, "comm": "haproxy"}]}]
        assert "0.0.0.0:8080 backlog 129/128 (haproxy[812] +1)" in finding["title"]


@pytest.mark.parametrize("processes, sockets", [
    ({}, {}),
    ({"processes": None, "counts": None}, {"tcp_table": None, "listeners": None, "owners": None}),
    ({"processes": [None, {}, {"pid": None, "state": "D"}, {"pid": 5, "start_time": None, "state": "Z",
                                                           "ppid": None, "cmdline": None}]},
     {"tcp_table": {"fields": ["state"], "rows": [["ESTABLISHED"]]}, "listeners": [{}],
      "owners": {"1": None}}),
])
def test_odd_tables_never_crash_a_rule(pair, processes, sockets):
    prev, cur = pair
    total_ticks(user=95, idle=5)(prev, cur)
    table([proc(5)], [proc(5, utime=10**6)])(prev, cur)
    retrans(10)(prev, cur)
    rates = derive_rates(prev, cur)
    cur.processes = copy.deepcopy(processes)
    cur.sockets = copy.deepcopy(sockets)
    for rule in F.RULES:
        list(rule(cur, rates))
        list(rule(cur, None))
    assert [f["id"] for f in F.evaluate(cur, rates)] == ["cpu_busy"]
