"""`diag show`, `diag diff` and `diag history` against a real agent and the
store a real collector filled from it; the time parser and the diff's pure
functions on their own.

One agent (0.2 s interval) runs for the module; a collector pulls it once
(`--once`) after enough records exist. The agent's records before that pull
are therefore in both places, and the same moment must give the same report
from either.
"""

import datetime
import json
import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from hostdiag.apps import diag as cli
from hostdiag.apps.history import compute_diff, main_diff, main_history, main_show
from hostdiag.apps.history_readers import Rec, find_moment, table_records
from hostdiag.apps.timespec import NS, parse_span, parse_time
from hostdiag.derive.diff import counter_changes, finding_changes, process_changes, process_view, socket_changes
from hostdiag.store.sqlite import CollectorStore
from hostdiag.views.history import short_boot
from hostdiag.views.timefmt import format_time
from agentproc import AgentProcess, CollectorProcess, write_toml

RECORDS = 16


@pytest.fixture(scope="module")
def world():
    """A running agent with RECORDS records, and a store with all of them."""
    workdir = tempfile.mkdtemp(prefix="hds-", dir="/tmp")
    agent = AgentProcess(workdir)
    try:
        agent.start().wait_ready().close()
        info = agent.wait_newest(RECORDS)
        collector = CollectorProcess(workdir, [("web1", agent.address)])
        result = collector.run("--once")
        assert result.returncode == 0, result.stderr
        with agent.client() as client:
            records = {r.seq: r for r in client.range(from_seq=1, to_seq=RECORDS)}
        yield {"agent": agent, "store": collector.store_dir, "boot": info["boot_id"], "records": records,
               "dir": workdir, "config": agent.config_path}
    finally:
        agent.stop(signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_config_from_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("HOSTDIAG_") and name not in ("HOSTDIAG_PURE", "HOSTDIAG_DEBUG"):
            monkeypatch.delenv(name)


def run(capsys, main, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def agent_args(world):
    return ["--agent", world["agent"].address]


def store_args(world):
    return ["--store", world["store"], "--host", "web1"]


def at(record, offset_ns=0):
    """A TIME argument (epoch nanoseconds) for a record's wall clock."""
    return str(record.wall_ns + offset_ns)


# -- show ----------------------------------------------------------------------

@pytest.mark.parametrize("source", [agent_args, store_args])
def test_show_at_a_time_picks_the_record_at_or_before_it(world, capsys, source):
    records = world["records"]
    target = records[9]
    halfway = (records[10].wall_ns - target.wall_ns) // 2
    code, out, err = run(capsys, main_show, ["--at", at(target, halfway), "--width", "200", *source(world)])
    assert code == 0, err
    lines = out.splitlines()
    assert "seq 9 at" in lines[0]
    assert lines[1].startswith("rates    from seq 8 at")
    # This agent takes no tables (table_every 3600): the header says so.
    assert lines[2] == "tables   none: no record near this one has the process and socket tables"
    assert lines[3].startswith("hostdiag  ")
    # Consecutive records of a 0.2 s agent: the measured interval jitters around it.
    assert re.search(r"interval 0\.[1-3][0-9] s", lines[3]), lines[3]
    assert any(line.startswith("FINDINGS") for line in lines)
    assert any(line.startswith("CPU %") for line in lines)


def test_show_gives_the_same_report_from_the_agent_and_the_store(world, capsys):
    moment = at(world["records"][12])
    code_a, from_agent, _ = run(capsys, main_show, ["--at", moment, *agent_args(world)])
    code_s, from_store, _ = run(capsys, main_show, ["--at", moment, *store_args(world)])
    assert code_a == code_s == 0
    assert from_agent.splitlines()[1:] == from_store.splitlines()[1:]


def test_show_json_and_window(world, capsys):
    records = world["records"]
    code, out, _ = run(capsys, main_show, ["--at", at(records[14]), "--window", "1", "--format", "json",
                                           *store_args(world)])
    assert code == 0
    document = json.loads(out)
    assert document["record"]["seq"] == 14 and document["record"]["boot_id"] == world["boot"]
    previous = document["previous"]
    assert previous["seq"] <= 10
    assert records[14].wall_ns - previous["wall_ns"] >= 1 * NS
    assert document["rates"]["comparable"] is True
    assert document["rates"]["interval_s"] >= 1.0
    assert isinstance(document["findings"], list)
    assert document["snapshot"]["meta"]["boot_id"] == world["boot"]
    assert document["source"] == {"source": "store", "store": world["store"], "host": "web1",
                                  "hostname": document["snapshot"]["meta"]["hostname"]}


def test_show_accepts_iso_and_relative_times(world, capsys):
    target = world["records"][5]
    iso = datetime.datetime.fromtimestamp(target.wall_ns / NS, datetime.timezone.utc).isoformat()
    code, out, _ = run(capsys, main_show, ["--at", iso, "--format", "json", *agent_args(world)])
    assert code == 0 and json.loads(out)["record"]["seq"] in (4, 5)  # ISO keeps microseconds
    code, out, _ = run(capsys, main_show, ["--at", "-0s", "--format", "json", *agent_args(world)])
    assert code == 0 and json.loads(out)["record"]["seq"] >= RECORDS


def test_show_through_the_diag_command(world, capsysbinary):
    code = cli.main(["show", "--at", at(world["records"][3]), *store_args(world)])
    assert code == 0
    assert b"seq 3 at" in capsysbinary.readouterr().out


def test_show_from_the_agent_socket_named_in_the_settings(world, capsys):
    code, out, _ = run(capsys, main_show, ["--at", at(world["records"][7]), "--config", world["config"]])
    assert code == 0 and "agent unix:%s" % world["agent"].sock_path in out and "seq 7 at" in out


@pytest.mark.parametrize("source", [agent_args, store_args])
def test_show_before_the_history_fails_in_one_line(world, capsys, source):
    code, out, err = run(capsys, main_show, ["--at", "2001-01-01T00:00:00Z", *source(world)])
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "nothing at or before" in err and "oldest record" in err


@pytest.mark.parametrize("argv, code, words", [
    (["--agent", "unix:/tmp/hds-none/agent.sock"], 1, "cannot reach the agent"),
    (["--store", "/tmp/hds-none"], 1, "no collector store"),
    (["--at", "yesterday-ish"], 2, "--at: cannot read the time"),
    (["--window", "0"], 2, "--window"),
    (["--agent", "unix:/x", "--store", "/tmp"], 2, "two different histories"),
    (["--agent", "ftp://x"], 2, "--agent"),
])
def test_show_errors_are_one_line(capsys, argv, code, words):
    got, out, err = run(capsys, main_show, argv)
    assert got == code and out == ""
    assert err.count("\n") == 1 and words in err


def test_show_unknown_host_in_store(world, capsys):
    code, _, err = run(capsys, main_show, ["--store", world["store"], "--host", "db9"])
    assert code == 1 and "no host 'db9'" in err and "web1" in err


def test_bad_config_is_one_line_naming_the_key(world, capsys):
    path = os.path.join(world["dir"], "bad.toml")
    write_toml(path, {"server": {"unix_pth": "/tmp/x.sock"}})
    code, _, err = run(capsys, main_show, ["--config", path])
    assert code == 2 and err.count("\n") == 1 and "server.unix_pth" in err


# -- history -------------------------------------------------------------------

def test_history_from_the_agent_and_the_store(world, capsys):
    code, out, _ = run(capsys, main_history, [*agent_args(world), "--spool", world["agent"].spool_dir,
                                              "--format", "json"])
    assert code == 0
    from_agent = json.loads(out)
    boot = from_agent["boots"][-1]
    assert boot["boot_id"] == world["boot"] and boot["current"]
    assert boot["first_seq"] == 1 and boot["last_seq"] >= RECORDS
    assert boot["records"] >= RECORDS and from_agent["gaps"] == []
    assert from_agent["retention"]["spool_bytes"] > 0

    code, out, _ = run(capsys, main_history, [*store_args(world), "--format", "json"])
    assert code == 0
    from_store = json.loads(out)
    (kept,) = from_store["boots"]
    assert (kept["boot_id"], kept["first_seq"]) == (world["boot"], 1)
    assert kept["last_seq"] >= RECORDS and kept["records"] == kept["last_seq"]
    assert kept["first_wall_ns"] == world["records"][1].wall_ns
    assert from_store["gaps"] == []

    code, out, _ = run(capsys, main_history, store_args(world))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "history of web1 in the store %s" % world["store"]
    assert lines[1] == "BOOTS  1"
    assert lines[2].startswith("  %s  seq 1..%d" % (world["boot"], kept["last_seq"]))
    assert "GAPS   0" in lines


def test_history_gaps_from_the_agent_info_else_its_spool_else_unknown(world, capsys):
    from hostdiag.apps.history import history_document
    from hostdiag.apps.history_readers import connect_agent
    from hostdiag.views.history import render_history

    code, out, _ = run(capsys, main_history, agent_args(world))
    assert code == 0 and "GAPS   0" in out  # the agent's info lists them
    for spool_dir in (None, world["agent"].spool_dir):
        history = connect_agent(world["agent"].address, None, None, spool_dir)
        try:
            history.info.pop("gaps", None)  # an agent that does not say
            if spool_dir is None:
                assert history.gaps() is None
                assert "GAPS   not reported by the agent" in render_history(history_document(history))
            else:
                assert history.gaps() == []  # read from its spool
                assert history.boots(counts=True)[-1]["records"] >= RECORDS
        finally:
            history.close()


# -- diff ----------------------------------------------------------------------

@pytest.mark.parametrize("source", [agent_args, store_args])
def test_diff_between_two_times(world, capsys, source):
    records = world["records"]
    code, out, err = run(capsys, main_diff, [at(records[4]), at(records[15]), "--format", "json", *source(world)])
    assert code == 0, err
    diff = json.loads(out)
    assert diff["a"]["record"]["seq"] == 4 and diff["b"]["record"]["seq"] == 15
    assert diff["same_boot"] and diff["apart_s"] == pytest.approx((records[15].wall_ns - records[4].wall_ns) / NS)
    assert diff["rates"] == {"a": True, "b": True}
    assert set(diff["findings"]) == {"appeared", "cleared", "persisting"}
    assert isinstance(diff["counters"], list) and len(diff["counters"]) <= 15
    for row in diff["counters"]:
        assert row["change"] == pytest.approx(row["b"] - row["a"])
    # This agent takes no process or socket tables: skipped, not an error.
    assert diff["processes"] is None and diff["sockets"] is None

    code, out, _ = run(capsys, main_diff, [at(records[4]), at(records[15]), *source(world)])
    assert code == 0
    for heading in ("FINDINGS", "COUNTERS", "PROCESSES", "SOCKETS"):
        assert any(line.startswith(heading) for line in out.splitlines()), heading
    assert "not in these snapshots" in out


def test_diff_refuses_moments_in_the_wrong_order(capsys):
    code, out, err = run(capsys, main_diff, ["-1m", "-10m", "--agent", "unix:/nonexistent/agent.sock"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("diag diff: error: A (-1m, ")
    assert "is after B (-10m, " in err and "earlier moment first" in err


def test_diff_with_relative_times(world, capsys):
    code, out, err = run(capsys, main_diff, ["-2s", "now", "--format", "json", *agent_args(world)])
    assert code == 0, err
    diff = json.loads(out)
    assert diff["b"]["record"]["seq"] > diff["a"]["record"]["seq"]


# -- time ----------------------------------------------------------------------

NOW = 1795680000 * NS


def _local(*fields):
    return int(datetime.datetime(*fields).astimezone().timestamp()) * NS


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("-10m", NOW - 600 * NS),
    ("- 90s", NOW - 90 * NS),
    ("10 minutes ago", NOW - 600 * NS),
    ("1h30m ago", NOW - 5400 * NS),
    ("2 hours", NOW - 7200 * NS),
    ("10m", NOW - 600 * NS),
    ("1795670000", 1795670000 * NS),
    ("1795670000.5", 1795670000 * NS + NS // 2),
    ("@1795670000", 1795670000 * NS),
    ("1795670000123456789", 1795670000123456789),
    ("2026-11-26T08:00:00Z", int(datetime.datetime(2026, 11, 26, 8, tzinfo=datetime.timezone.utc).timestamp()) * NS),
    ("2026-11-26T09:00:00+01:00",
     int(datetime.datetime(2026, 11, 26, 8, tzinfo=datetime.timezone.utc).timestamp()) * NS),
    ("2026-11-26 08:00:00.250", _local(2026, 11, 26, 8, 0, 0) + 250 * 1000 * 1000),
    ("2026-11-26", _local(2026, 11, 26)),
])
def test_parse_time(text, expected):
    assert parse_time(text, NOW) == expected


def test_parse_time_of_day_is_today():
    today = datetime.datetime.fromtimestamp(NOW / NS).date()
    assert parse_time("08:15", NOW) == _local(today.year, today.month, today.day, 8, 15)


@pytest.mark.parametrize("text", ["", "yesterday", "-10 parsecs", "10 minutes from now", "2026-13-01", "ago"])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        parse_time(text, NOW)


@pytest.mark.parametrize("text, seconds", [("30", 30), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5d", 129600)])
def test_parse_span(text, seconds):
    assert parse_span(text) == seconds


# -- the diff's pure parts -----------------------------------------------------

def test_finding_changes_by_rule_and_subject():
    a = [{"id": "disk_util", "subject": "sda"}, {"id": "load_high", "subject": None}]
    b = [{"id": "disk_util", "subject": "sdb"}, {"id": "load_high", "subject": None}]
    changes = finding_changes(a, b)
    assert [f["subject"] for f in changes["appeared"]] == ["sdb"]
    assert [f["subject"] for f in changes["cleared"]] == ["sda"]
    assert [f["id"] for f in changes["persisting"]] == ["load_high"]


def test_counter_changes_rank_relative_change_above_a_noise_floor():
    before = {"rate.cpu.ctxt_per_s": 100.0, "rate.cpu.total.busy_pct": 10.0, "rate.tcp.x_per_s": 0.0,
              "gauge.memory.meminfo.MemFree": 8 << 30, "rate.cpu.total.idle_pct": 90.0,
              "rate.net.rx_bits_per_s": 1000.0, "only.in.a": 1}
    after = {"rate.cpu.ctxt_per_s": 150.0, "rate.cpu.total.busy_pct": 40.0, "rate.tcp.x_per_s": 5.0,
             "gauge.memory.meminfo.MemFree": (8 << 30) + 4096, "rate.cpu.total.idle_pct": 60.4,
             "rate.net.rx_bits_per_s": 2000.0, "only.in.b": 1}
    rows = counter_changes(before, after)
    assert [r["path"] for r in rows] == ["rate.tcp.x_per_s", "rate.cpu.total.busy_pct", "rate.cpu.ctxt_per_s",
                                         "rate.cpu.total.idle_pct"]
    assert rows[0]["relative"] is None and rows[1]["relative"] == pytest.approx(3.0)
    assert counter_changes(before, after, top=2) == rows[:2]


def _process(pid, comm, utime, rss, start_time=100):
    return {"pid": pid, "start_time": start_time, "comm": comm, "user": "root", "utime": utime, "stime": 0,
            "rss_bytes": rss, "read_bytes": 0, "write_bytes": 0, "minflt": 0, "majflt": 0,
            "voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}


def _snapshot(seq, processes=None, sockets=None, tables_seq=None):
    snapshot = {"meta": {"mono_ns": seq * NS, "clock_ticks": 100, "wall_ns": seq * NS},
                "agent": {"tables_seq": tables_seq}, "processes": None, "sockets": sockets}
    if processes is not None:
        snapshot["processes"] = {"processes": processes, "counts": {"total": len(processes), "threads": len(processes)}}
    return Rec("b1", seq, seq * NS, snapshot)


class _FakeHistory:
    def __init__(self, records):
        self.records = {r.seq: r for r in records}

    def get(self, boot_id, seq):
        return self.records.get(seq)


def test_process_and_socket_changes_from_table_records():
    sockets_a = {"tcp_total": 10, "udp_total": 2, "unix": {"total": 50},
                 "tcp_states": {"ESTABLISHED": 8, "LISTEN": 2},
                 "listeners": [{"local": "0.0.0.0", "local_port": 22}, {"local": "0.0.0.0", "local_port": 80}]}
    sockets_b = {"tcp_total": 40, "udp_total": 2, "unix": {"total": 50},
                 "tcp_states": {"ESTABLISHED": 30, "LISTEN": 2, "TIME_WAIT": 8},
                 "listeners": [{"local": "0.0.0.0", "local_port": 22}, {"local": "::", "local_port": 8080}]}
    history = _FakeHistory([
        _snapshot(5, [_process(1, "init", 100, 10 << 20), _process(7, "old", 100, 50 << 20)], sockets_a),
        _snapshot(10, [_process(1, "init", 110, 10 << 20), _process(7, "old", 300, 50 << 20)], sockets_a, 5),
        _snapshot(12, tables_seq=10),
        _snapshot(20, [_process(1, "init", 120, 12 << 20), _process(9, "new", 0, 80 << 20)], sockets_b, 10),
        _snapshot(25, [_process(1, "init", 130, 12 << 20), _process(9, "new", 400, 90 << 20)], sockets_b, 20),
        _snapshot(27, tables_seq=25),
    ])
    current_a, previous_a = table_records(history, history.records[12])
    assert (current_a.seq, previous_a.seq) == (10, 5)
    current_b, previous_b = table_records(history, history.records[27])
    assert (current_b.seq, previous_b.seq) == (25, 20)
    view_a, view_b = process_view(current_a, previous_a), process_view(current_b, previous_b)
    assert view_a["top"]["cpu"][0]["pid"] == 7 and view_a["top"]["cpu"][0]["cpu_pct"] == pytest.approx(40.0)
    changes = process_changes(view_a, view_b)
    assert changes["totals"]["total"] == {"a": 2, "b": 2}
    top_cpu = changes["top"]["cpu"]
    assert top_cpu[0]["pid"] == 9 and top_cpu[0]["new"] and top_cpu[0]["b"] == pytest.approx(80.0)
    assert top_cpu[1]["pid"] == 1 and top_cpu[1]["a"] == pytest.approx(2.0) and top_cpu[1]["b"] == pytest.approx(2.0)
    assert [p["pid"] for p in changes["exited"]] == [7]
    assert [p["pid"] for p in changes["started"]] == [9]

    sockets = socket_changes(current_a.snapshot["sockets"], current_b.snapshot["sockets"])
    assert sockets["totals"]["tcp"] == {"a": 10, "b": 40}
    assert sockets["tcp_states"] == {"ESTABLISHED": {"a": 8, "b": 30}, "TIME_WAIT": {"a": 0, "b": 8}}
    assert sockets["listeners_opened"] == [":::8080"] and sockets["listeners_closed"] == ["0.0.0.0:80"]
    assert socket_changes(None, sockets_b) is None
    assert process_changes(None, view_b) is None


def test_table_records_without_tables():
    history = _FakeHistory([_snapshot(3), _snapshot(4, tables_seq=2)])
    assert table_records(history, history.records[4]) == (None, None)


def test_nearest_tables_before_or_after_whichever_is_closer():
    from hostdiag.apps.history_readers import nearest_tables

    def every_10(rec):
        rec.snapshot["agent"]["table_every"] = 10
        return rec

    procs = [_process(1, "init", 100, 10 << 20)]
    history = _FakeHistory([every_10(r) for r in (
        _snapshot(10, procs), _snapshot(20, procs, tables_seq=10), _snapshot(22, tables_seq=20),
        _snapshot(28, tables_seq=20), _snapshot(30, procs, tables_seq=20))])
    assert [r.seq for r in nearest_tables(history, history.records[22])] == [20, 10]
    assert [r.seq for r in nearest_tables(history, history.records[28])] == [30, 20]
    assert [r.seq for r in nearest_tables(history, history.records[20])] == [20, 10]


def test_render_diff_with_process_and_socket_tables():
    from hostdiag.views.diff import render_diff

    history = _FakeHistory([
        _snapshot(5, [_process(1, "init", 100, 10 << 20), _process(7, "old", 100, 50 << 20)]),
        _snapshot(10, [_process(1, "init", 110, 10 << 20), _process(7, "old", 300, 50 << 20)],
                  {"tcp_total": 3, "tcp_states": {"LISTEN": 3}}, 5),
        _snapshot(20, [_process(1, "init", 120, 12 << 20), _process(9, "new", 0, 80 << 20)]),
        _snapshot(25, [_process(1, "init", 130, 12 << 20), _process(9, "new", 400, 90 << 20)],
                  {"tcp_total": 5, "tcp_states": {"LISTEN": 3, "ESTABLISHED": 2}}, 20),
    ])
    views = [process_view(history.records[10], history.records[5]),
             process_view(history.records[25], history.records[20])]
    moment = {"record": {"time": "T", "boot_id": "b1", "seq": 1}, "asked": "T"}
    diff = {"source": {"source": "store", "store": "/s", "host": "h"}, "a": moment, "b": moment, "apart_s": 15.0,
            "same_boot": True, "findings": {"appeared": [], "cleared": [], "persisting": []}, "counters": [],
            "rates": {"a": True, "b": True}, "tables_seq": [10, 25],
            "processes": dict(process_changes(*views), a_seq=10, b_seq=25, rated=True),
            "sockets": socket_changes(history.records[10].snapshot["sockets"], history.records[25].snapshot["sockets"])}
    text = render_diff(diff)
    assert "  tables of seq 10 and 25: 2 -> 2 processes, 2 -> 2 threads" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("  top ")]
    assert rows == [["top", "cpu", "9", "new", "-", "->", "80.0%", "(new)"],
                    ["top", "cpu", "1", "init", "2.0%", "->", "2.0%"],
                    ["top", "rss", "9", "new", "-", "->", "90.0MiB", "(new)"],
                    ["top", "rss", "1", "init", "10.0MiB", "->", "12.0MiB"]]
    assert "  exited   old[7]" in text and "  started  new[9]" in text
    assert "  totals   tcp 3 -> 5" in text and "  tcp      ESTABLISHED 0 -> 2" in text


def test_compute_diff_on_real_records(world):
    from hostdiag.apps.history_readers import StoreHistory
    from hostdiag.store.sqlite import CollectorStore

    history = StoreHistory(CollectorStore(world["store"], readonly=True), "web1")
    try:
        a = find_moment(history, world["records"][6].wall_ns)
        b = find_moment(history, world["records"][16].wall_ns, window_s=1.0)
        diff = compute_diff(history, a, b)
    finally:
        history.close()
    assert diff["a"]["previous"]["seq"] == 5
    assert diff["b"]["previous"]["seq"] <= 11
    assert diff["tables_seq"] == [None, None]
    assert time.time_ns() > diff["b"]["record"]["wall_ns"]


def test_store_ranges_gaps_and_replay_agree_with_the_agent(world, capsys):
    from hostdiag.apps.replay import main_replay

    records = world["records"]
    span = ["--from", str(records[1].wall_ns), "--to", str(records[RECORDS].wall_ns)]
    documents = []
    for source in (agent_args, store_args):
        assert main_history([*source(world), "--metric", "memory.meminfo.MemAvailable", "--every", "1",
                             *span, "--format", "json"]) == 0
        documents.append(json.loads(capsys.readouterr().out)["metrics"])
    assert documents[0] == documents[1]
    assert documents[0][0]["summary"]["samples"] == RECORDS

    # The store was filled once: 10 s after its newest record the report is
    # of that record, and says nothing was sampled since.
    with CollectorStore(world["store"], readonly=True) as store:
        (boot,) = store.boots("web1")
    later = str(boot["last_wall_ns"] + 10 * NS)
    code, out, _ = run(capsys, main_show, ["--at", later, "--width", "200", *store_args(world)])
    assert code == 0
    lines = out.splitlines()
    assert " seq %d at %s " % (boot["last_seq"], format_time(boot["last_wall_ns"])) in lines[0]
    assert lines[2] == ("GAP      no sample since %s (10.0s before the asked time): the agent is down or "
                        "stalled; this is the newest record" % format_time(boot["last_wall_ns"]))
    # Off a terminal: 80 columns, the notes wrapped between their parts, one screen in all.
    code, out, _ = run(capsys, main_show, ["--at", later, *store_args(world)])
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) <= 40
    assert lines[1].startswith("         record %s seq %d at %s" % (
        short_boot(boot["boot_id"]), boot["last_seq"], format_time(boot["last_wall_ns"])))
    gap = lines.index(next(line for line in lines if line.startswith("GAP")))
    assert " ".join(line[9:] for line in lines[gap:gap + 3]) == (
        "no sample since %s (10.0s before the asked time): the agent is down or stalled; this is the newest "
        "record" % format_time(boot["last_wall_ns"]))
    code, out, _ = run(capsys, main_show, ["--at", later, "--full", "--width", "132", *store_args(world)])
    assert len(out.splitlines()) > len(lines) and max(len(line) for line in out.splitlines()) <= 132

    assert main_replay([*store_args(world), "--once", *span, "--at", str(records[5].wall_ns)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("seq 5 (5/%d) " % RECORDS), lines[2]
