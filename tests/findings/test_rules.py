"""Every findings rule fires when the counters it reads are edited past its
threshold and stays quiet just under it; no rule crashes on missing data.
The edits are in findingedits.py.
"""

import copy
import pathlib
import re

import pytest

from findingedits import (
    WORKLOAD_PATH, available, cgroup, conntrack, cpu_hog, d_state, disk, fd_use, fs, kernel, kmsg, kmsg_lines, link,
    listener, load, netns, one_cpu_ticks, oom_since_boot, proto, psi, retrans, rss_growth, softnet, total_ticks,
    user_tasks,
    vmstat, zombies,
)
from hostdiag import findings as F
from hostdiag.derive import derive_rates
from hostdiag.findings import netns as N
from hostdiag.findings import rules as R
from hostdiag.model import Cpu, Memory, Snapshot

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "findings.md"


# Kernel log lines as this kernel prints them.
OOM_VICTIM = ("Memory cgroup out of memory: Killed process 2590 (python3) total-vm:540856kB, "
              "anon-rss:52480kB, file-rss:6640kB, shmem-rss:0kB, UID:0 pgtables:176kB oom_score_adj:0")
OOM_CONTEXT = ("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
               "oom_memcg=/a.service,task_memcg=/a.service,task=python3,pid=2590,uid=0")
HUNG = "INFO: task jbd2/vdz1-8:812 blocked for more than 120 seconds."
IO_ERROR = "I/O error, dev loop3, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0"
SEGFAULT = "python3[4242]: segfault at 0 ip 00007f4 sp 00007ff error 4 in libc.so.6[7f+1]"
LINK = "ixgbe 0000:01:00.0 eth2: NIC Link is %s"

# (rule, id, severity, subject, edit past the threshold, edit just under it,
#  needs two snapshots: rates or the previous snapshot)
W = WORKLOAD_PATH
CASES = [
    (R.rule_cgroup_oom_kills, "cgroup_oom_kill", "crit", W, cgroup({}, {"oom_kill": 1}), cgroup({}, {}), True),
    (R.rule_cgroup_oom_kills, "cgroup_oom_kill", "crit", W, cgroup({}, {"oom_kill": 2}),
     cgroup({"oom_kill": 3}, {"oom_kill": 3}), True),      # since boot only: quiet
    (R.rule_cgroup_pids, "cgroup_pids", "warn", W, cgroup({}, {"pids": 91}), cgroup({}, {"pids": 90}), False),
    (R.rule_cgroup_pids, "cgroup_pids", "crit", W, cgroup({}, {"refused": 4}),
     cgroup({"refused": 4}, {"refused": 4}), False),
    (R.rule_cgroup_throttling, "cgroup_cpu_throttled", "warn", W,
     cgroup({}, {"usage": 500000, "periods": 10, "throttled": 3}),
     cgroup({}, {"usage": 500000, "periods": 10, "throttled": 2}), True),
    (R.rule_cgroup_memory, "cgroup_memory", "warn", W, cgroup({}, {"current": 240 << 20}),
     cgroup({}, {"current": 250 << 20, "file": 100 << 20}), False),     # page cache is not counted
    (R.rule_cgroup_pressure, "cgroup_pressure", "warn", W, cgroup({}, {"psi": {"memory": 25.0}}),
     cgroup({}, {"psi": {"memory": 15.0}}), False),
    (R.rule_load, "load_high", "warn", None, load(2.1), load(1.9), False),
    (R.rule_cpu_states, "cpu_busy", "warn", None, total_ticks(user=95, idle=5),
     total_ticks(user=85, idle=15), True),
    (R.rule_cpu_states, "cpu_iowait", "warn", None, total_ticks(iowait=25, idle=75),
     total_ticks(iowait=15, idle=85), True),
    (R.rule_cpu_states, "cpu_steal", "warn", None, total_ticks(steal=12, idle=88),
     total_ticks(steal=8, idle=92), True),
    (R.rule_one_cpu_busy, "cpu_one_busy", "warn", "first-cpu", one_cpu_ticks(97), one_cpu_ticks(94), True),
    (R.rule_memory_available, "memory_low", "warn", None, available(0.08), available(0.12), False),
    (R.rule_memory_available, "memory_low", "crit", None, available(0.04), available(0.12), False),
    (R.rule_swapping, "swapping", "warn", None, vmstat(pswpin=60, pswpout=60),
     vmstat(pswpin=40, pswpout=40), True),
    (R.rule_major_faults, "major_faults", "warn", None, vmstat(pgmajfault=150), vmstat(pgmajfault=50), True),
    (R.rule_oom_kills, "oom_kill", "crit", None, vmstat(oom_kill=1), vmstat(oom_kill=0), True),
    (R.rule_oom_kills, "oom_kill_since_boot", "warn", None, oom_since_boot, vmstat(oom_kill=0), False),
    (R.rule_pressure, "psi_cpu_some", "warn", "cpu", psi("cpu", "some", 25.0), psi("cpu", "some", 15.0), False),
    (R.rule_pressure, "psi_memory_some", "warn", "memory", psi("memory", "some", 12.0),
     psi("memory", "some", 8.0), False),
    (R.rule_pressure, "psi_io_some", "warn", "io", psi("io", "some", 25.0), psi("io", "some", 15.0), False),
    (R.rule_pressure, "psi_memory_full", "warn", "memory", psi("memory", "full", 6.0),
     psi("memory", "full", 4.0), False),
    (R.rule_disk_util, "disk_util", "warn", "vdz", disk(io_time_ms=950), disk(io_time_ms=850), True),
    (R.rule_disk_await, "disk_await", "warn", "vdz", disk(reads_completed=10, read_time_ms=600),
     disk(reads_completed=10, read_time_ms=400), True),
    (R.rule_disk_await, "disk_await", "warn", "vdz", disk(writes_completed=10, write_time_ms=600),
     disk(writes_completed=4, write_time_ms=400), True),     # 100 ms, but under 5 IOPS
    (R.rule_filesystems, "fs_space", "warn", "/data", fs(free_bytes=80, avail_bytes=80),
     fs(free_bytes=150, avail_bytes=150), False),
    (R.rule_filesystems, "fs_space", "crit", "/data", fs(free_bytes=40, avail_bytes=40),
     fs(free_bytes=150, avail_bytes=150), False),
    (R.rule_filesystems, "fs_inodes", "warn", "/data", fs(files_free=80), fs(files_free=200), False),
    (R.rule_filesystems, "fs_inodes", "crit", "/data", fs(files_free=50), fs(files_free=200), False),
    (R.rule_readonly, "fs_readonly", "warn", "/data", fs(readonly=True), fs(readonly=False), False),
    (R.rule_readonly, "fs_readonly", "warn", "/data", fs(readonly=None, options="ro,relatime"),
     fs(readonly=True, fstype="tmpfs"), False),
    (R.rule_links, "nic_errors", "warn", "eth9", link(rx_errors=1), link(rx_errors=0), True),
    (R.rule_links, "nic_drops", "warn", "eth9", link(rx_dropped=6, tx_dropped=5), link(rx_dropped=9), True),
    (R.rule_tcp_retransmits, "tcp_retransmits", "warn", None, proto("snmp", "Tcp", OutSegs=1000, RetransSegs=30),
     proto("snmp", "Tcp", OutSegs=1000, RetransSegs=10), True),
    (R.rule_tcp_retransmits, "tcp_retransmits", "warn", None, proto("snmp", "Tcp", OutSegs=100, RetransSegs=3),
     proto("snmp", "Tcp", OutSegs=50, RetransSegs=5), True),     # 10 %, but under 100 segments/s
    (R.rule_tcp_listen, "tcp_listen_overflow", "warn", None, proto("netstat", "TcpExt", ListenOverflows=1),
     proto("netstat", "TcpExt", ListenOverflows=0), True),
    (R.rule_tcp_listen, "tcp_listen_overflow", "warn", None, proto("netstat", "TcpExt", ListenDrops=2),
     proto("netstat", "TcpExt", ListenDrops=0), True),
    (R.rule_tcp_resets, "tcp_resets", "warn", None, proto("snmp", "Tcp", EstabResets=11),
     proto("snmp", "Tcp", EstabResets=5, AttemptFails=10), True),
    (R.rule_tcp_resets, "tcp_resets", "warn", None, proto("snmp", "Tcp", AttemptFails=11),
     proto("snmp", "Tcp", OutRsts=500), True),
    (R.rule_udp_errors, "udp_errors", "warn", None, proto("snmp", "Udp", InErrors=1, RcvbufErrors=1),
     proto("snmp", "Udp", NoPorts=50), True),
    (R.rule_softnet, "softnet", "warn", "cpu0", softnet(dropped=1), softnet(processed=10**6), True),
    (R.rule_softnet, "softnet", "warn", "cpu0", softnet(time_squeeze=11), softnet(time_squeeze=9), True),
    (R.rule_file_handles, "file_handles", "warn", None, kernel(file_nr={"allocated": 85, "unused": 0, "max": 100}),
     kernel(file_nr={"allocated": 79, "unused": 0, "max": 100}), False),
    (R.rule_conntrack, "conntrack_full", "warn", None, conntrack(85), conntrack(79), False),
    (R.rule_conntrack, "conntrack_full", "crit", None, conntrack(96), conntrack(79), False),
    (R.rule_tainted, "kernel_tainted", "warn", None, kernel(tainted=4096, taint_flags="O"),
     kernel(tainted=0, taint_flags=""), False),
    (R.rule_kernel_log, "kernel_log_errors", "warn", None, kmsg(3), kmsg(4), False),
    (R.rule_kernel_log, "kernel_log_errors", "crit", None, kmsg(2), kmsg(4), False),
    (R.rule_kernel_log, "kernel_log_errors", "warn", None, kmsg(2, ago_s=120), kmsg(4), False),
    (R.rule_process_cpu, "process_cpu", "warn", None, cpu_hog(0.9), cpu_hog(0.9, busy=85), True),
    (R.rule_process_rss_growing, "process_rss_growing", "warn", None, rss_growth(11 << 20),
     rss_growth(9 << 20), True),
    (R.rule_process_fd_limit, "process_fd_limit", "warn", None, fd_use(95), fd_use(90), False),
    (R.rule_process_fd_limit, "process_fd_limit", "crit", None, fd_use(100), fd_use(90), False),
    (R.rule_user_nproc_limit, "user_nproc_limit", "warn", "app", user_tasks(19), user_tasks(18), False),
    (R.rule_user_nproc_limit, "user_nproc_limit", "crit", "app", user_tasks(20), user_tasks(18), False),
    (R.rule_kernel_events, "kernel_oom_kill", "crit", "/a.service",
     kmsg_lines((6, OOM_CONTEXT, 0.5), (3, OOM_VICTIM, 0.5)), kmsg_lines((4, "RBP: 0000", 0.5)), False),
    (R.rule_kernel_events, "kernel_oom_kill", "warn", None, kmsg_lines((3, OOM_VICTIM, 300)), kmsg(4), False),
    (R.rule_kernel_events, "kernel_hung_task", "warn", None, kmsg_lines((3, HUNG, 0.5)), kmsg(4), False),
    (R.rule_kernel_events, "kernel_io_error", "crit", "loop3", kmsg_lines((3, IO_ERROR, 0.5)), kmsg(4), False),
    (R.rule_kernel_events, "kernel_io_error", "warn", "loop3", kmsg_lines((3, IO_ERROR, 90)), kmsg(4), False),
    (R.rule_kernel_events, "kernel_segfault", "warn", None, kmsg_lines((6, SEGFAULT, 60)), kmsg(4), False),
    (R.rule_kernel_events, "kernel_link", "warn", "eth2", kmsg_lines((6, LINK % "Down", 60)),
     kmsg_lines((6, LINK % "Up", 60)), False),     # only up: a link coming up is no fault
    (R.rule_procs_d_state, "procs_d_state", "warn", None, d_state(1), d_state(1, before=False), True),
    (R.rule_procs_d_state, "procs_d_state", "warn", None, d_state(2), d_state(2, reused=True), True),
    (R.rule_procs_zombies, "procs_zombie", "warn", None, zombies(11), zombies(10), False),
    (R.rule_tcp_conn_retrans, "tcp_conn_retrans", "warn", "127.0.0.1:5000 -> 127.0.0.2:6000",
     retrans(6), retrans(4), True),
    (R.rule_tcp_listener_full, "tcp_listener_full", "warn", "0.0.0.0:8080", listener(129),
     listener(127), False),
    (R.rule_tcp_listener_full, "tcp_listener_full", "warn", "0.0.0.0:8080", listener(5, 5),
     listener(5, None), False),     # /proc gives no backlog limit: never full
    (N.rule_netns_retransmits, "netns_tcp_retransmits", "warn", "netns web-ns", netns(OutSegs=1000, RetransSegs=30),
     netns(OutSegs=1000, RetransSegs=10), True),
    (N.rule_netns_retransmits, "netns_tcp_retransmits", "warn", "netns web-ns", netns(OutSegs=100, RetransSegs=3),
     netns(OutSegs=50, RetransSegs=5), True),     # 10 %, but under 100 segments/s
    (N.rule_netns_listen, "netns_listen_overflow", "warn", "netns web-ns", netns(ListenOverflows=1),
     netns(PassiveOpens=50), True),
    (N.rule_netns_listen, "netns_listen_overflow", "warn", "netns web-ns", netns(ListenDrops=2),
     netns(ActiveOpens=50), True),
    (N.rule_netns_udp_errors, "netns_udp_errors", "warn", "netns web-ns", netns(InErrors=2, RcvbufErrors=2),
     netns(NoPorts=40, InDatagrams=500), True),
]
CASE_IDS = ["%s-%s-%d" % (c[1], c[2], i) for i, c in enumerate(CASES)]


def _run(rule, prev, cur):
    rates = derive_rates(prev, cur)
    return list(rule(cur, rates, prev)), F.evaluate(cur, rates, prev)


def test_calm_snapshot_has_no_findings(pair):
    prev, cur = pair
    assert F.evaluate(cur, derive_rates(prev, cur), prev) == []
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
    # Ranked: a symptom may be folded under this finding (its title stays).
    assert [f for f in everything if (f["id"], f["title"]) == (rule_id, finding["title"])]
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
    d_state(3)(prev, cur)
    cur.meta.boot_id = "another-boot"
    assert F.evaluate(cur, derive_rates(prev, cur), prev) == []


def test_crit_first(pair):
    prev, cur = pair
    load(5)(prev, cur)
    fs(free_bytes=10, avail_bytes=10)(prev, cur)
    vmstat(oom_kill=2)(prev, cur)
    link(rx_errors=3)(prev, cur)
    found = F.evaluate(cur, derive_rates(prev, cur), prev)
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
            assert F.evaluate(snapshot, rates, snapshot) == [], (snapshot, rates)
            assert F.evaluate(cur, rates, snapshot) == F.evaluate(cur, rates), (snapshot, rates)
    for rates in odd_rates:
        for rule in F.RULES:
            list(rule(cur, rates, prev))


def test_docs_name_every_rule_and_every_rule_has_cases():
    rule_ids = re.findall(r"^\| `(\w+)` \| (?:gauge|rates|two snapshots|kernel log|history) \|",
                          DOCS.read_text(), re.M)
    # The rule over history has tests of its own (test_history_rules.py).
    assert sorted(rule_ids) == sorted({case[1] for case in CASES} | {"process_rss_leak"})
    assert set(F.RULES) == {case[0] for case in CASES}


def test_a_cgroup_finding_names_the_workload_and_its_top_process(pair):
    prev, cur = pair
    cgroup({}, {"usage": 500000, "periods": 10, "throttled": 8})(prev, cur)
    found = F.evaluate(cur, derive_rates(prev, cur), prev)
    assert found[0]["title"] == ("CPU throttled 80 % of periods in web.service (limit 50 % of a CPU); "
                                 "web[60] 50 % CPU")
    assert [c["pid"] for c in found[0]["culprits"]] == [60]


def test_cgroup_rules_survive_rates_without_their_snapshot(pair):
    """Rates of cgroups the snapshot lacks (a damaged stored pair), and rows of
    the wrong shape: findings named by path, no exception."""
    prev, cur = pair
    odd = {"cgroups": {"/x": {"oom_kills": 1, "forks_refused": 2, "throttled_periods_pct": 90.0}, "/y": None}}
    found = F.evaluate(cur, odd)
    # The pids rule reads the snapshot's rows (pids.max): none here.
    assert [(f["id"], f["subject"]) for f in found] == [("cgroup_oom_kill", "/x"), ("cgroup_cpu_throttled", "/x")]
    cur.cgroups = {"cgroups": [None, {"path": 3}, {"path": "/z", "memory": "x", "pids": [], "pressure": 1}],
                   "workloads": []}
    assert F.evaluate(cur, None) == []


def test_a_netns_finding_names_the_namespace_its_workload_and_a_process(pair):
    prev, cur = pair
    netns(OutSegs=1000, RetransSegs=50)(prev, cur)
    found = F.evaluate(cur, derive_rates(prev, cur), prev)
    assert [f["id"] for f in found] == ["netns_tcp_retransmits"]
    assert found[0]["title"] == ("TCP retransmits 4.8 % of segments sent in netns web-ns (web.service, api[61]); "
                                 "10.0.0.2:8080 -> 10.0.0.9:5555 50 retrans/s")
    # The host's own counters are flat (the calm pair sent nothing): no host ratio to show.
    assert "host_retransmit_pct" not in found[0]["evidence"]
