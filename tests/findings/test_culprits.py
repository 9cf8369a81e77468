"""The culprits of a finding: the processes and connections behind it, taken
from hand-built process and socket tables over a real snapshot."""

import copy

import pytest

from findingedits import (
    available, disk, listener, proc, proto, retrans, table, total_ticks, vmstat,
)
from hostdiag import findings as F
from hostdiag.derive import derive_rates
from hostdiag.findings import rules as R


def _only(rule, prev, cur, with_rates=True):
    """The one finding of ``rule``: over the pair, or over ``cur`` alone."""
    found = list(rule(cur, derive_rates(prev, cur), prev) if with_rates else rule(cur, None))
    assert len(found) == 1, found
    return found[0]


def test_cpu_busy_names_the_top_cpu_processes(pair):
    prev, cur = pair
    total_ticks(user=95, idle=5)(prev, cur)
    ticks = cur.meta.clock_ticks
    table([proc(300), proc(301), proc(302), proc(303)],
          [proc(300, utime=100 + ticks * 9 // 10), proc(301, stime=100 + ticks // 20), proc(302),
           proc(303, start_time=99999, utime=10**6)])(prev, cur)   # 303: pid reused, no rate
    finding = _only(R.rule_cpu_states, prev, cur)
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
    finding = _only(R.rule_cpu_states, prev, cur)
    assert finding["culprits"] == []
    assert finding["title"] == "CPUs 95 % busy"


def test_iowait_and_disks_name_the_top_io_processes(pair):
    prev, cur = pair
    total_ticks(iowait=25, idle=75)(prev, cur)
    disk(io_time_ms=950)(prev, cur)
    table([proc(410), proc(411)],
          [proc(410, write_bytes=50 << 20), proc(411, read_bytes=1 << 20)])(prev, cur)
    for rule in (R.rule_cpu_states, R.rule_disk_util):
        finding = _only(rule, prev, cur)
        assert [c["pid"] for c in finding["culprits"]] == [410, 411]
        assert finding["culprits"][0]["io_bytes_per_s"] == 50 << 20
        assert "p410[410] 50.0 MiB/s I/O" in finding["title"]


def test_memory_low_names_the_top_rss_processes_from_one_snapshot(pair):
    prev, cur = pair
    available(0.08)(prev, cur)
    table([], [proc(1), proc(2, rss_bytes=6 << 30, comm="hog"), proc(3)])(prev, cur)
    finding = _only(R.rule_memory_available, prev, cur, with_rates=False)
    assert finding["culprits"][0]["pid"] == 2 and finding["culprits"][0]["rss_bytes"] == 6 << 30
    assert [c["pid"] for c in finding["culprits"]] == [2, 3, 1]
    assert "hog[2] 6144 MiB resident" in finding["title"]


def test_major_faults_name_the_faulting_processes(pair):
    prev, cur = pair
    vmstat(pgmajfault=150)(prev, cur)
    table([proc(500), proc(501)], [proc(500, majflt=10 + 140), proc(501, minflt=10**6)])(prev, cur)
    finding = _only(R.rule_major_faults, prev, cur)
    assert [(c["pid"], c["majflt_per_s"]) for c in finding["culprits"]] == [(500, 140.0)]


def test_d_state_names_user_processes_first(pair):
    prev, cur = pair
    kworker = proc(7, state="D", comm="jbd2/vda1-8", kernel_thread=True, cmdline=[])
    postgres = proc(900, state="D", comm="postgres")
    briefly = proc(902, state="D", comm="briefly")
    table([kworker, postgres, proc(901, state="R"), proc(902, state="S")],
          [kworker, postgres, proc(901, state="R"), briefly])(prev, cur)
    cur.cpu.procs_blocked = 3
    finding = _only(R.rule_procs_d_state, prev, cur)
    assert [(c["pid"], c["comm"]) for c in finding["culprits"]] == [(900, "postgres"), (7, "jbd2/vda1-8")]
    assert finding["culprits"][1]["command"] == "[jbd2/vda1-8]"
    assert finding["evidence"] == {"d_state_both": 2, "d_state_now": 3, "interval_s": 1, "procs_blocked": 3}
    assert finding["title"] == ("2 process(es) stuck in D state (uninterruptible) for 1 s or more; "
                                "postgres[900]")


def test_d_state_in_one_snapshot_only_is_not_stuck(pair):
    prev, cur = pair
    table([proc(900, state="D")], [proc(900, state="S"), proc(901, state="D")])(prev, cur)
    assert list(R.rule_procs_d_state(cur, derive_rates(prev, cur), prev)) == []
    assert list(R.rule_procs_d_state(cur, None)) == []


def test_zombies_name_their_parents(pair):
    prev, cur = pair
    records = [proc(50, comm="spawner"), proc(60, comm="other")]
    records += [proc(200 + i, state="Z", ppid=50, cmdline=[]) for i in range(12)]
    records += [proc(300, state="Z", ppid=60, cmdline=[])]
    table([], records)(prev, cur)
    finding = _only(R.rule_procs_zombies, prev, cur, with_rates=False)
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
    for rule in (R.rule_tcp_retransmits, R.rule_tcp_conn_retrans):
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
    for rule, with_rates in ((R.rule_tcp_listen, True), (R.rule_tcp_listener_full, False)):
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
        list(rule(cur, rates, cur))
        list(rule(cur, None))
    assert [f["id"] for f in F.evaluate(cur, rates, cur)] == ["cpu_busy"]
