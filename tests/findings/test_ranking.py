"""Findings ranked by cause: symptoms folded under the cause that explains
them, now before past, and each finding's "look next" line equal to the
docs/findings.md table."""

import pathlib
import re

from findingedits import (
    cpu_hog, d_state, kmsg_lines, link, load, one_cpu_ticks, proto, psi, retrans, softnet, total_ticks, vmstat,
    zombies,
)
from hostdiag import findings as F
from hostdiag.derive import derive_rates
from hostdiag.findings.guide import LOOK_NEXT

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "findings.md"
OOM_VICTIM = "Memory cgroup out of memory: Killed process 2590 (python3) total-vm:540856kB, UID:0"
OOM_CONTEXT = "oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/a.service,task=python3,pid=2590,uid=0"


def _evaluate(prev, cur):
    return F.evaluate(cur, derive_rates(prev, cur), prev)


def _documented_look_next():
    section = DOCS.read_text().split("\n## Rules\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)` \|", line)
        if match:
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            found[match.group(1)] = cells[-1].strip().replace("\\|", "|")
    return found


def test_look_next_is_the_docs_column():
    assert LOOK_NEXT == _documented_look_next()


def test_one_process_explains_the_cpu_symptoms(pair):
    prev, cur = pair
    cpu_hog(1.8)(prev, cur)
    one_cpu_ticks(99)(prev, cur)
    load(3)(prev, cur)
    psi("cpu", "some", 30.0)(prev, cur)
    found = _evaluate(prev, cur)
    assert [f["id"] for f in found] == ["process_cpu"]
    first = found[0]
    assert first["culprits"][0]["pid"] == 300 and "p300[300] 180 % CPU" in first["title"]
    assert [s["id"] for s in first["symptoms"]] == ["load_high", "cpu_busy", "cpu_one_busy", "psi_cpu_some"]
    assert all(set(s) == {"id", "severity", "title", "subject", "evidence"} for s in first["symptoms"])
    assert first["look_next"] == LOOK_NEXT["process_cpu"]


def test_a_process_under_half_a_cpu_is_no_cause(pair):
    prev, cur = pair
    cpu_hog(0.49)(prev, cur)
    found = _evaluate(prev, cur)
    assert [f["id"] for f in found] == ["cpu_busy"]
    assert found[0]["culprits"][0]["pid"] == 300


def test_d_state_is_the_cause_of_iowait_and_io_pressure(pair):
    prev, cur = pair
    d_state(2)(prev, cur)
    total_ticks(iowait=40, idle=60)(prev, cur)
    psi("io", "some", 45.0)(prev, cur)
    cur.cpu.procs_blocked, cur.cpu.procs_running = 2, 1
    load(3)(prev, cur)
    found = _evaluate(prev, cur)
    assert [f["id"] for f in found] == ["procs_d_state"]
    assert [s["id"] for s in found[0]["symptoms"]] == ["load_high", "cpu_iowait", "psi_io_some"]
    assert [c["pid"] for c in found[0]["culprits"]] == [100, 101]


def test_a_retransmitting_connection_explains_the_hosts_ratio(pair):
    prev, cur = pair
    retrans(8)(prev, cur)
    proto("snmp", "Tcp", OutSegs=1000, RetransSegs=30)(prev, cur)
    found = _evaluate(prev, cur)
    assert [f["id"] for f in found] == ["tcp_conn_retrans"]
    assert [s["id"] for s in found[0]["symptoms"]] == ["tcp_retransmits"]


def test_a_full_backlog_explains_the_links_drops(pair):
    prev, cur = pair
    softnet(dropped=40)(prev, cur)
    link(rx_dropped=40)(prev, cur)
    cur.kernel["sysctl"] = {"net.core.netdev_max_backlog": 8, "net.core.somaxconn": 4096}
    found = _evaluate(prev, cur)
    assert [(f["id"], f["subject"]) for f in found] == [("softnet", "cpu0")]
    assert [s["id"] for s in found[0]["symptoms"]] == ["nic_drops"]
    assert found[0]["title"] == ("softnet backlog full: 40 packets/s dropped, most on cpu0 (40/s) "
                                 "(net.core.netdev_max_backlog 8)")


def test_the_past_never_ranks_above_now(pair):
    prev, cur = pair
    zombies(11)(prev, cur)
    prev.memory.vmstat["oom_kill"] = cur.memory.vmstat["oom_kill"] = 4
    kmsg_lines((6, OOM_CONTEXT, 600), (3, OOM_VICTIM, 600))(prev, cur)
    found = _evaluate(prev, cur)
    assert [(f["id"], f["when"]) for f in found] == [("procs_zombie", "now"), ("kernel_oom_kill", "past")]
    past = found[1]
    assert past["severity"] == "warn" and past["ago_s"] == 600.0
    assert past["title"] == "1 OOM kill(s) in the kernel log, the last 10 min ago; killed python3[2590] in /a.service"
    assert [s["id"] for s in past["symptoms"]] == ["oom_kill_since_boot"]


def test_an_oom_kill_now_names_its_victim_from_the_kernel_log(pair):
    prev, cur = pair
    vmstat(oom_kill=1)(prev, cur)
    kmsg_lines((6, OOM_CONTEXT, 0.2), (3, OOM_VICTIM, 0.2))(prev, cur)
    found = _evaluate(prev, cur)
    assert [(f["id"], f["severity"], f["when"]) for f in found] == [("oom_kill", "crit", "now")]
    assert found[0]["culprits"] == [{"kind": "victim", "pid": 2590, "comm": "python3", "cgroup": "/a.service"}]
    assert found[0]["title"].endswith("; killed python3[2590] in /a.service")
    assert [s["id"] for s in found[0]["symptoms"]] == ["kernel_oom_kill"]


def test_every_finding_has_the_ranked_shape(pair):
    prev, cur = pair
    zombies(12)(prev, cur)
    for found in _evaluate(prev, cur) + F.evaluate(cur):
        assert {"when", "ago_s", "symptoms", "look_next"} <= set(found)
        assert found["look_next"] == LOOK_NEXT[found["id"]]


def test_the_report_shows_what_a_cause_explains(pair):
    from hostdiag.views.report import render_text

    prev, cur = pair
    cpu_hog(1.5)(prev, cur)
    load(3)(prev, cur)
    rates = derive_rates(prev, cur)
    lines = render_text(cur, rates, F.evaluate(cur, rates, prev)).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("FINDINGS"))
    assert "CPUs saturated by 1 process(es); p300[300] 150 % CPU" in lines[first + 1]
    assert "        explains: load_high, cpu_busy" in lines
