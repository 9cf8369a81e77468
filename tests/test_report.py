"""The one-screen text report: real snapshots with and without rates, the
recorded fixture trees, and snapshots with every section missing."""

import copy
import pathlib
import re
import time

import pytest

from hostdiag.sampler.system import SystemCollector
from hostdiag.derive import derive_rates
from hostdiag.sources.hostroot import HostRoot
from hostdiag.model import Cpu, ErrorRecord, Memory, Snapshot
from hostdiag.findings import evaluate
from hostdiag.parsers.procpid import RECORD_KEYS
from hostdiag.parsers.sockdiag import ROW_FIELDS
from hostdiag.views.report import render_text
from hostdiag.views.report_tables import socket_inodes_shown
from hostdiag.views.text import human_bits, human_bytes, human_count

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TREES = sorted(p.name for p in FIXTURES.iterdir() if (p / "proc").is_dir()) if FIXTURES.is_dir() else []
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def real_pair():
    with SystemCollector(HostRoot()) as collector:
        prev = collector.collect()
        time.sleep(0.3)
        cur = collector.collect(kmsg=True)
    return prev, cur


def test_report_with_rates(real_pair):
    prev, cur = real_pair
    rates = derive_rates(prev, cur)
    findings = evaluate(cur, rates)
    text = render_text(cur, rates, findings, width=132, full=True)
    lines = text.splitlines()
    assert lines[0].startswith("hostdiag  %s  kernel %s" % (cur.meta.hostname, cur.meta.kernel))
    # At least the 0.3 s slept; a loaded host adds the first collection's duration.
    interval = re.search(r"interval ([0-9]+\.[0-9]{2}) s", lines[0])
    assert interval and float(interval.group(1)) >= 0.3, lines[0]
    assert "parser %s" % cur.meta.parser_impl in lines[0]
    labels = ("FINDINGS", "LOAD", "CPU %", "PRESSURE", "MEMORY", "DISK", "FS", "NET", "TCP", "KERNEL")
    for label in labels:
        assert any(line.startswith(label) for line in lines), label
    assert "no rates" not in text
    assert not ANSI.search(text)
    assert 15 <= len(lines) <= 90
    assert max(len(line) for line in lines) <= 132
    screen = render_text(cur, rates, findings).splitlines()
    for label in labels:
        assert any(line.startswith(label) for line in screen), label
    assert len(screen) <= 40 and max(len(line) for line in screen) <= 80


def test_report_without_rates(real_pair):
    _, cur = real_pair
    text = render_text(cur, None, evaluate(cur, None))
    assert "no rates: one snapshot" in text.splitlines()[0]
    assert "CPU %" not in text and "r/s" not in text
    assert "MEMORY" in text and "LOAD" in text
    assert not ANSI.search(text)


def test_report_across_boots_says_why(real_pair):
    prev, cur = real_pair
    other = copy.deepcopy(prev)
    other.meta.boot_id = "another-boot"
    rates = derive_rates(other, cur)
    text = render_text(cur, rates, evaluate(cur, rates))
    assert "no rates: different boots" in text
    assert "CPU %" not in text


def test_findings_on_top_with_evidence_and_colour(real_pair):
    prev, cur = real_pair
    cur = copy.deepcopy(cur)
    cur.filesystems = [{"mountpoint": "/data", "fstype": "ext4", "size_bytes": 100 * 2**30,
                        "free_bytes": 2**30, "avail_bytes": 2**30, "files": 100, "files_free": 50,
                        "readonly": False, "options": "rw"}]
    cur.cpu = copy.deepcopy(cur.cpu)
    cur.cpu.loadavg = dict(cur.cpu.loadavg or {}, load1=50.0)
    rates = derive_rates(prev, cur)
    findings = evaluate(cur, rates)
    assert {"fs_space", "load_high"} <= {f["id"] for f in findings}
    plain = render_text(cur, rates, findings).splitlines()
    first = plain.index(next(line for line in plain if line.startswith("FINDINGS")))
    assert first <= 2
    assert plain[first + 1].startswith("  CRIT  /data 99 % of space used  [fs_space: space used >= 95 %]")
    assert "used_pct 99%" in plain[first + 2] and "avail_bytes 1.0GiB" in plain[first + 2]
    assert any("WARN" in line and "load_high" in line for line in plain)
    coloured = render_text(cur, rates, findings, color=True)
    assert "\x1b[31mCRIT" in coloured and "\x1b[33mWARN" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == "\n".join(plain) + "\n"


def test_errors_shown_compactly(real_pair):
    _, cur = real_pair
    cur = copy.deepcopy(cur)
    cur.meta.errors = [ErrorRecord("src%d" % i, "/proc/x%d" % i, "missing", "gone") for i in range(5)]
    lines = render_text(cur, None, [], width=132).splitlines()
    assert "errors 5" in lines[0]
    assert lines[1].startswith("errors   src0: missing /proc/x0; src1: missing /proc/x1; src2: missing /proc/x2")
    assert lines[1].endswith("(+2 more)")
    lines = render_text(cur, None, [], width=44).splitlines()
    assert "errors 5" in lines[0]
    assert lines[1] == "errors   src0: missing /proc/x0 (+4 more)"


def _all_none(meta):
    return [
        Snapshot(meta=meta),
        Snapshot(meta=meta, cpu=Cpu(*([None] * 11)), memory=Memory(None, None, None),
                 pressure={"cpu": None}, disks=[{}, None], filesystems=[{}, None],
                 network=dict.fromkeys(("links", "snmp", "netstat", "sockstat", "softnet", "conntrack"))
                 | {"links": [{}, None, {"name": "x", "operstate": "up", "stats": None}]},
                 kernel={"kmsg": [None, {}], "file_nr": None, "tainted": None}),
    ]


def test_report_with_every_section_missing(real_pair):
    prev, cur = real_pair
    meta = copy.deepcopy(cur.meta)
    meta.hostname = meta.kernel = None
    for snapshot in _all_none(meta):
        for rates in (None, derive_rates(prev, cur), derive_rates(snapshot, snapshot),
                      derive_rates(Snapshot(meta=prev.meta), snapshot)):
            text = render_text(snapshot, rates, evaluate(snapshot, rates))
            assert text.startswith("hostdiag  ?  kernel ?")
            assert not ANSI.search(text)


@pytest.mark.parametrize("tree", TREES)
def test_report_on_fixture_trees(tree):
    base = FIXTURES / tree
    root = HostRoot(str(base / "proc"), str(base / "sys"), str(base))
    with SystemCollector(root) as collector:
        first = collector.collect()
        second = collector.collect()
    second.meta.mono_ns = first.meta.mono_ns + 10**9
    for rates in (None, derive_rates(first, second)):
        text = render_text(second, rates, evaluate(second, rates))
        assert text.count("\n") <= 70
        assert not ANSI.search(text)
    assert "errors %d" % len(second.meta.errors) in text


@pytest.mark.parametrize("func, value, expected", [
    (human_bytes, 0, "0B"), (human_bytes, 1023, "1023B"), (human_bytes, 1536, "1.5KiB"),
    (human_bytes, 3 * 2**30, "3.0GiB"), (human_bytes, None, "-"),
    (human_bits, 999, "999b"), (human_bits, 12_300_000, "12.3Mb"), (human_bits, 2.5e9, "2.5Gb"),
    (human_count, 7, "7"), (human_count, 0.25, "0.2"), (human_count, 1234, "1.2k"),
    (human_count, 3_400_000, "3.4M"), (human_count, None, "-"), (human_count, "x", "-"),
])
def test_human_units(func, value, expected):
    assert func(value) == expected


# --- the process and socket tables ---------------------------------------------------

def _proc(pid, state="S", ppid=1, **fields):
    record = dict.fromkeys(RECORD_KEYS)
    record.update(pid=pid, ppid=ppid, comm="w%d" % pid, cmdline=["/opt/app/bin/worker", "--id", str(pid)],
                  state=state, uid=1000, user="app", start_time=5000 + pid, kernel_thread=False,
                  utime=100, stime=100, minflt=10, majflt=1, num_threads=2, nice=0, priority=20,
                  rss_bytes=pid * 4096, vsize_bytes=pid * 8192, delayacct_blkio_ticks=0,
                  voluntary_ctxt_switches=1, nonvoluntary_ctxt_switches=1, read_bytes=0,
                  write_bytes=0, fd_count=4, cgroup="/app", oom_score_adj=0, denied=[])
    record.update(fields)
    return record


def _procs_section(records):
    by_state = {}
    for r in records:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    return {"processes": records, "counts": {"total": len(records), "threads": 2 * len(records),
                                             "by_state": by_state}, "vanished": 3, "denied": 1}


def _row(i, total_retrans, rtt, wqueue, state="ESTABLISHED"):
    values = {"family": "inet", "state": state, "local": "10.0.0.1", "local_port": 443,
              "remote": "10.9.%d.%d" % (i // 250, i % 250), "remote_port": 40000 + i, "rqueue": 0,
              "wqueue": wqueue, "uid": 0, "inode": 10**6 + i, "rtt": rtt,
              "total_retrans": total_retrans, "bytes_acked": 10**6, "drops": 0}
    return [values[name] for name in ROW_FIELDS]


def _sockets_section(rows, listeners, owners):
    return {"source": "netlink", "limits": {"tcp_rows": 100000, "udp": 10000, "detail_per_rank": 20},
            "tcp_total": len(rows) + len(listeners),
            "tcp_states": {"ESTABLISHED": len(rows) - 10, "TIME_WAIT": 10, "LISTEN": len(listeners)},
            "tcp_table": {"fields": list(ROW_FIELDS), "rows": rows, "dropped": 0},
            "tcp": [{"family": "inet", "state": "ESTABLISHED", "local": "10.0.0.1", "local_port": 443,
                     "remote": "10.9.0.7", "remote_port": 40007, "rqueue": 0, "wqueue": 0, "uid": 0,
                     "inode": 10**6 + 7, "cong": "cubic", "skmem": None,
                     "tcp_info": {"cwnd": 42, "rtt": 150000}}],
            "listeners": listeners, "udp": [], "udp_total": 4, "udp_dropped": 0,
            "unix": {"total": 120, "by_state": {}, "by_type": {}}, "owners": owners}


@pytest.fixture(scope="module")
def busy_pair(real_pair):
    """The real system sections with a busy host's tables: 3000 processes (20 in D
    state, 30 zombies, many using CPU, I/O and faults) and 5000 connections
    (many retransmitting, slow or queued) behind 10 full listeners."""
    prev, cur = copy.deepcopy(real_pair)
    ticks = cur.meta.clock_ticks
    dt = (cur.meta.mono_ns - prev.meta.mono_ns) / 1e9
    before, after = [], []
    for pid in range(100, 3100):
        state = "D" if pid < 120 else "Z" if pid < 150 else "S"
        before.append(_proc(pid, state=state))
        after.append(_proc(pid, state=state, ppid=3000 if state == "Z" else 1,
                           utime=100 + int(ticks * dt * (pid % 97) / 100), read_bytes=pid * 1000,
                           write_bytes=pid * 5000, minflt=10 + pid, majflt=1 + pid % 7))
    prev.processes, cur.processes = _procs_section(before), _procs_section(after)
    rows_before = [_row(i, i % 50, 1000 + i, 0) for i in range(5000)]
    rows_after = [_row(i, i % 50 + i % 13, 1000 + i * 10, (i % 17) * 4096) for i in range(5000)]
    listeners = [{"family": "inet", "local": "0.0.0.0", "local_port": 8000 + i, "inode": 500 + i,
                  "backlog": 129, "backlog_max": 128} for i in range(10)]
    owners = {str(10**6 + i): [{"pid": 3000, "comm": "frontend"}] for i in range(5000)}
    owners.update({str(500 + i): [{"pid": 2000 + i, "comm": "acceptor"}] for i in range(10)})
    prev.sockets = _sockets_section(rows_before, listeners, {})
    cur.sockets = _sockets_section(rows_after, listeners, owners)
    # 200 services, each process in one; a third throttled, one with an OOM kill.
    units = ["/system.slice/svc-%03d.service" % i for i in range(200)]
    for records in (before, after):
        for record in records:
            record["cgroup"] = units[record["pid"] % 200]
    prev.cgroups = _cgroups_section(units, dt, busy=False)
    cur.cgroups = _cgroups_section(units, dt, busy=True)
    return prev, cur


def _cgroups_section(units, dt, busy):
    rows = []
    for i, path in enumerate(["/", "/system.slice"] + units):
        used = int(dt * 1e6 * (i % 7) / 10) if busy else 0
        rows.append({
            "path": path, "inode": 100 + i,
            "cpu": {"usage_usec": 10**6 + used, "user_usec": 0, "system_usec": 0,
                    "nr_periods": 100 + (10 if busy else 0), "nr_throttled": 5 + (8 if busy and i % 3 == 0 else 0),
                    "throttled_usec": 0, "quota_usec": 50000 if i % 3 == 0 else "max", "period_usec": 100000},
            "memory": {"current": (200 + i % 30) << 20, "max": 256 << 20 if i > 1 else "max", "high": "max",
                       "swap_current": 0, "swap_max": "max",
                       "events": {"oom": 0, "oom_kill": 1 if busy and i == 7 else 0, "high": 0, "max": 0},
                       "stat": {"anon": 0, "file": 0, "kernel": 0, "sock": 0, "shmem": 0, "pgmajfault": 0}},
            "io": {"8:0": {"rbytes": (i * 4096 if busy else 0), "wbytes": 0, "dbytes": 0, "rios": 0, "wios": 0,
                           "dios": 0}},
            "pids": {"current": 3, "max": 100, "events_max": 0},
            "pressure": None})
    workloads = {r["path"]: {"kind": "slice" if r["path"].endswith(".slice") else "unit" if r["path"] != "/"
                             else "other", "name": r["path"].rsplit("/", 1)[-1] or "/"} for r in rows}
    return {"layout": "unified", "hierarchies": [], "cgroups": rows, "vanished": 0, "omitted": 0,
            "max_depth": 5, "max_cgroups": 2000, "workloads": workloads}


def test_busy_tables_in_full(busy_pair):
    prev, cur = busy_pair
    rates = derive_rates(prev, cur)
    findings = evaluate(cur, rates, prev)
    text = render_text(cur, rates, findings, width=132, full=True)
    lines = text.splitlines()
    for label in ("WORKLOADS", "PROCS", "PROC CPU", "PROC MEM", "PROC IO", "PROC FLT", "SOCKETS", "CONNS",
                  "LISTEN"):
        assert any(line.startswith(label) for line in lines), label
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKLOADS"))
    assert lines[start] == "WORKLOADS 202 cgroups (unified)  top by cpu, memory, io, pressure"
    assert lines[start + 1].split() == ["workload", "cpu%", "limit%", "thr%", "mem", "mem", "max", "io/s", "psi%",
                                        "pids", "oom"]
    workload_rows = [line for line in lines[start + 2:start + 7] if line.startswith("         svc-")]
    assert len(workload_rows) == 4
    assert re.match(r"         svc-\d{3}\.service +60 +50 +80 +\d+\.\dMiB +256\.0MiB +[\d.]+KiB/s +- +3/100$",
                    workload_rows[0]), workload_rows[0]
    procs = next(line for line in lines if line.startswith("PROCS"))
    assert "3.0k processes  6.0k threads" in procs and "D 20" in procs and "Z 30" in procs
    assert "vanished 3  denied 1" in procs
    stuck = next(line for line in lines if "D state:" in line)
    named = re.findall(r"w\d+\[\d+\]", stuck)
    assert 1 <= len(named) <= 5 and named[0] == "w100[100]"
    assert stuck.endswith("(+%d more)" % (20 - len(named)))
    zombie = next(line for line in lines if "zombies:" in line)
    named = re.findall(r"w\d+\[\d+\] of w3000\[3000\]", zombie)
    assert named and named[0] == "w120[120] of w3000[3000]"
    assert zombie.endswith("(+%d more)" % (30 - len(named)))
    for label in ("PROC CPU", "PROC MEM", "PROC IO", "PROC FLT"):
        start = next(i for i, line in enumerate(lines) if line.startswith(label))
        rows = [line for line in lines[start + 1:start + 7] if line.startswith("         ")]
        assert len(rows) == 5, label
    cpu_rows = lines[next(i for i, line in enumerate(lines) if line.startswith("PROC CPU")) + 1]
    assert re.match(r" +\d+ app +w\d+ +\d+ svc-\d{3}\.service worker --id \d+$", cpu_rows), cpu_rows
    conns = next(i for i, line in enumerate(lines) if line.startswith("CONNS"))
    assert lines[conns + 1].startswith(" retrans ") and "frontend[3000]" in lines[conns + 1]
    assert sum(1 for line in lines[conns + 1:] if "->" in line) == 9
    listen = next(line for line in lines if line.startswith("LISTEN"))
    assert "10 of 10 full: 0.0.0.0:8000 backlog 129/128 acceptor[2000]" in listen
    assert listen.endswith("(+%d more)" % (10 - listen.count("backlog")))
    ids = {f["id"] for f in findings}
    assert {"procs_d_state", "procs_zombie", "tcp_conn_retrans", "tcp_listener_full"} <= ids
    retransmitting = next(f for f in findings if f["id"] == "tcp_conn_retrans")
    assert len(retransmitting["culprits"]) == 3
    assert retransmitting["evidence"]["connections_over"] > 100, "all counted, not just those named"
    assert any(line.startswith("        who: ") for line in lines)
    assert max(len(line) for line in lines) <= 132


def test_busy_tables_fit_one_screen(busy_pair):
    """The one-screen view of the busy host: 40 lines of 80 columns, every
    finding's title, a folded line per quiet block, and the top processes
    last, with all their measures."""
    prev, cur = busy_pair
    rates = derive_rates(prev, cur)
    findings = evaluate(cur, rates, prev)
    lines = render_text(cur, rates, findings).splitlines()
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 80
    titles = [line for line in lines if line.startswith(("  WARN  ", "  CRIT  "))]
    assert len(titles) == len(findings)
    for label in ("LOAD", "CPU %", "MEMORY", "FS", "SOCKETS", "CONNS", "LISTEN", "WORKLOADS", "PROCS", "PROC TOP"):
        assert sum(line.startswith(label) for line in lines) == 1, label
    top = next(i for i, line in enumerate(lines) if line.startswith("PROC TOP"))
    # Major faults go first when the rows' figures leave no room for them.
    assert [c for c in lines[top].split()[2:] if c != "majflt"] == ["pid", "user", "cpu%", "rss", "io/s", "workload",
                                                                    "command"]
    rows = lines[top + 1:]
    assert 3 <= len(rows) and all(re.match(r" +\d+ app +\d+ ", row) for row in rows), rows
    cpu = [int(row.split()[2]) for row in rows]
    assert cpu == sorted(cpu, reverse=True)
    conns = next(i for i, line in enumerate(lines) if line.startswith("CONNS"))
    assert lines[conns + 1].startswith(" retrans 10.0.0.1:443 -> 10.9.")


def test_sockets_shown_are_the_ones_the_report_names(busy_pair):
    prev, cur = busy_pair
    rates = derive_rates(prev, cur)
    shown = socket_inodes_shown(cur, rates)
    text = render_text(cur, rates, evaluate(cur, rates))
    # Ranked connections (3 per ranking) and full listeners (4 shown, 5 named by findings).
    assert {500, 501, 502, 503, 504} <= shown
    assert 3 <= len(shown - set(range(500, 510))) <= 9
    assert all(i >= 10**6 or 500 <= i < 510 for i in shown)
    without_owners = copy.deepcopy(cur)
    without_owners.sockets["owners"] = {}
    assert "frontend[" in text
    assert "frontend[" not in render_text(without_owners, rates, evaluate(without_owners, rates))


def test_tables_without_rates_show_memory_only(busy_pair):
    _, cur = busy_pair
    text = render_text(cur, None, evaluate(cur, None), full=True)
    assert "PROC MEM" in text and "D state:" in text
    assert "PROC CPU" not in text and "PROC IO" not in text and "PROC FLT" not in text
    assert "CONNS" in text      # ranked by total retransmits, rtt and queue: no rates needed
    lines = render_text(cur, None, evaluate(cur, None)).splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("PROC TOP"))
    assert lines[top].split()[2:] == ["pid", "user", "comm", "rss", "workload", "command"]
    assert lines[top + 1].split()[:4] == ["3099", "app", "w3099", "12.1MiB"]


def test_tables_absent_or_odd(real_pair):
    prev, cur = real_pair
    text = render_text(cur, derive_rates(prev, cur), [])
    assert "PROCS    - (no process table)" in text and "SOCKETS  - (no socket table)" in text
    odd = copy.deepcopy(cur)
    for processes, sockets in (({}, {}),
                               ({"processes": [None, {"pid": 1}], "counts": None},
                                {"tcp_table": {"fields": ["state"], "rows": [["LISTEN"]]},
                                 "listeners": [{"backlog": 1, "backlog_max": 1}], "unix": None})):
        odd.processes, odd.sockets = processes, sockets
        for rates in (None, derive_rates(prev, cur)):
            text = render_text(odd, rates, evaluate(odd, rates))
            assert "PROCS" in text and "SOCKETS" in text


def test_findings_past_the_line_budget_are_listed_by_id(real_pair):
    from hostdiag.views.report import MAX_FINDING_LINES
    prev, cur = real_pair
    findings = [{"id": "rule_%d" % i, "severity": "warn", "title": "finding %d" % i, "threshold": "x > 1",
                 "evidence": {"value": i}, "subject": None,
                 "culprits": [{"kind": "process", "pid": p, "comm": "c"} for p in (1, 2)]} for i in range(12)]
    lines = render_text(cur, None, findings, full=True).splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("LOAD"))
    block = lines[lines.index("FINDINGS 12") + 1:end]
    # Every title, then the details of the first ones while they fit.
    assert [line for line in block if line.startswith("  WARN")] == [
        "  WARN  finding %d  [rule_%d: x > 1]" % (i, i) for i in range(12)]
    assert len(block) == MAX_FINDING_LINES
    assert block[1:3] == ["        value 0", "        who: c[1]; c[2]"]
    more = findings + [dict(findings[0], id="rule_%d" % i) for i in range(12, 15)]
    lines = render_text(cur, None, more, full=True).splitlines()
    assert lines[lines.index("  WARN  finding 11  [rule_11: x > 1]") + 1] == "  (+3 more: rule_12, rule_13, rule_14)"


def test_a_damaged_cgroups_section_still_renders(real_pair):
    prev, cur = real_pair
    cur.cgroups = {"cgroups": [None, {"path": 3}, {"path": "/z.service", "memory": "x", "pids": [], "pressure": 1,
                                                   "cpu": {"quota_usec": 0, "period_usec": 0}}],
                   "workloads": [], "layout": None}
    lines = render_text(cur, {"comparable": True, "interval_s": 1.0, "cgroups": {"/z.service": None}},
                        []).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKLOADS"))
    assert lines[start] == "WORKLOADS 3 cgroups (?)  top by cpu, memory, io, pressure"
    assert lines[start + 1] == "         none busy"
