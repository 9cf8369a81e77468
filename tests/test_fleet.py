"""`diag fleet` and the findings tables, on a real ClickHouse server and on the SQLite store.

Four simulated hosts (tests/fleetscenes.py: web1 retransmitting, web2 CPU
busy, db1 short of memory, web3 calm) are stored through the collector's
writer (apps/collector.py Writer.commit) into each store, in two writer
lifetimes (the second starts mid-stream, so it finds the bases of its rates
in the store). Then the stored findings and every `diag fleet` answer are
checked against what the scene was built to show, on both backends. The
ClickHouse server (tests/clickhouseproc.py, skipped where it is not
installed) runs once for the module; the SQL examples of docs/fleet.md run
on it too.
"""

import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time

import pytest

from hostdiag.apps.collector import Writer
from hostdiag.apps.fleet import main_fleet
from hostdiag.encode.wire import encode_msgpack
from hostdiag.store.clickhouse import ClickHouseStore
from hostdiag.store.collector_store import open_collector_store

import fleetscenes as scenes
from clickhouseproc import server_or_skip
from test_clickhouse_store import socket_closed_port

S = 10**9
START = scenes.START_NS
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "fleet.md")
# The writer's first lifetime stores seqs up to this one, the second the rest.
FIRST_LIFETIME_SEQS = 3

# What the scene shows: (host, seq, rule, severity, culprit pid, comm, workload).
# A culprit process is known on the samples with tables (even seqs), whose
# process and connection rates span the two seconds since the last tables.
EXPECTED_FINDINGS = sorted(
    [("web1", seq, "tcp_retransmits", "warn") + ((200, "pgbouncer", "pgbouncer.service") if seq % 2 == 0 else
                                                  (None, None, None)) for seq in range(3, 9)]
    + [("web1", seq, "tcp_conn_retrans", "warn", 200, "pgbouncer", "pgbouncer.service") for seq in (4, 6, 8)]
    + [("web2", seq, "cpu_busy", "warn") + ((300, "burner", "burner.service") if seq % 2 == 0 else
                                            (None, None, None)) for seq in range(3, 9)]
    + [("web2", seq, "process_cpu", "warn", 300, "burner", "burner.service") for seq in (4, 6, 8)]
    + [("db1", seq, "memory_low", "crit") + ((300, "postgres", "postgres.service") if seq % 2 == 0 else
                                             (None, None, None)) for seq in range(1, 9)],
    key=lambda row: row[:3])


def _store_scene(location):
    """Store the scene through the collector's writer, in two lifetimes of it."""
    items = scenes.record_items()
    first = [i for i in items if i[0] == "host" or i[4] <= FIRST_LIFETIME_SEQS]
    rest = [i for i in items if i[0] == "record" and i[4] > FIRST_LIFETIME_SEQS]
    for batch in (first, rest):
        store = open_collector_store(location)
        try:
            writer = Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1))
            assert writer.commit(batch), writer.failed
        finally:
            store.close()


@pytest.fixture(scope="module")
def server():
    server = server_or_skip()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clickhouse_url(server):
    url = server.url("fleet")
    _store_scene(url)
    return url


@pytest.fixture(scope="module")
def sqlite_dir():
    path = tempfile.mkdtemp(prefix="hdfleet-", dir="/tmp")
    _store_scene(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["clickhouse", "sqlite"])
def store(request):
    """The location of a store holding the scene, each backend in turn."""
    if request.param == "clickhouse":
        return request.getfixturevalue("clickhouse_url")
    return request.getfixturevalue("sqlite_dir")


@pytest.fixture(autouse=True)
def _no_config_from_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("HOSTDIAG_") and name not in ("HOSTDIAG_PURE", "HOSTDIAG_DEBUG"):
            monkeypatch.delenv(name)


def fleet(capsys, *argv):
    code = main_fleet(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def fleet_json(capsys, store, *argv):
    code, out, err = fleet(capsys, *argv, "--store", store, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _stored_findings(location):
    if location.startswith("clickhouse://"):
        with ClickHouseStore(location, readonly=True) as ch:
            rows = ch.rows("SELECT host, seq, rule, severity, culprit_pid, culprit_comm, culprit_workload "
                           "FROM findings FINAL")
        return sorted(((r["host"], int(r["seq"]), r["rule"], r["severity"],
                        None if r["culprit_pid"] is None else int(r["culprit_pid"]), r["culprit_comm"],
                        r["culprit_workload"]) for r in rows), key=lambda row: row[:3])
    with open_collector_store(location, readonly=True) as db:
        rows = db.db.execute("SELECT h.name, f.seq, f.rule, f.severity, f.culprit_pid, f.culprit_comm, "
                             "f.culprit_workload FROM findings f JOIN hosts h ON h.host_id = f.host_id").fetchall()
    return sorted((tuple(r) for r in rows), key=lambda row: row[:3])


def test_the_writer_stores_each_hosts_findings(store):
    assert _stored_findings(store) == EXPECTED_FINDINGS


def test_findings_keep_their_evidence(clickhouse_url, sqlite_dir):
    with ClickHouseStore(clickhouse_url, readonly=True) as ch:
        row = ch.rows("SELECT subject, evidence_values[indexOf(evidence_keys, 'retrans_per_s')] AS rate, "
                      "threshold FROM findings FINAL WHERE host = 'web1' AND seq = 6 AND rule = 'tcp_conn_retrans'")
    assert row[0]["subject"] == "10.0.0.1:40000 -> 10.0.0.9:5432"
    assert row[0]["rate"] == 50.0
    with open_collector_store(sqlite_dir, readonly=True) as db:
        subject, evidence, threshold = db.db.execute(
            "SELECT subject, evidence, threshold FROM findings WHERE seq = 6 AND rule = 'tcp_conn_retrans'").fetchone()
    assert subject == row[0]["subject"] and threshold == row[0]["threshold"]
    assert json.loads(evidence)["retrans_per_s"] == 50.0


def test_hosts_are_listed_with_the_findings_of_their_newest_record(store, capsys):
    document = fleet_json(capsys, store, "hosts", "--within", "3650d")
    rows = {r["host"]: r for r in document["rows"]}
    assert sorted(rows) == ["db1", "web1", "web2", "web3"]
    for row in rows.values():
        assert (row["boot_id"], row["seq"], row["last_ns"]) == ("boot-" + row["host"], 8, START + 7 * S)
        assert row["lag_s"] == pytest.approx((document["now_ns"] - START - 7 * S) / S)
    assert [(h, rows[h]["findings"], rows[h]["crit"], rows[h]["rules"]) for h in sorted(rows)] == [
        ("db1", 1, 1, ["memory_low"]), ("web1", 1, 0, ["tcp_conn_retrans"]),
        ("web2", 1, 0, ["process_cpu"]), ("web3", 0, 0, [])]
    # Nothing within the last hour: the hosts are listed, not seen.
    recent = fleet_json(capsys, store, "hosts", "--within", "1h")["rows"]
    assert [(r["host"], r["last_ns"], r["findings"]) for r in recent] == [
        ("db1", None, 0), ("web1", None, 0), ("web2", None, 0), ("web3", None, 0)]


def test_findings_say_which_host_had_what_and_when(store, capsys):
    rows = fleet_json(capsys, store, "findings", "--since", str(START), "--until", str(START + 10 * S))["rows"]
    assert [(r["host"], r["rule"], r["severity"], r["first_ns"], r["last_ns"], r["samples"], r["culprit_pid"],
             r["culprit_comm"], r["culprit_workload"]) for r in rows] == [
        ("db1", "memory_low", "crit", START, START + 7 * S, 8, 300, "postgres", "postgres.service"),
        ("web1", "tcp_retransmits", "warn", START + 2 * S, START + 7 * S, 6, 200, "pgbouncer", "pgbouncer.service"),
        ("web1", "tcp_conn_retrans", "warn", START + 3 * S, START + 7 * S, 3, 200, "pgbouncer",
         "pgbouncer.service"),
        ("web2", "cpu_busy", "warn", START + 2 * S, START + 7 * S, 6, 300, "burner", "burner.service"),
        ("web2", "process_cpu", "warn", START + 3 * S, START + 7 * S, 3, 300, "burner", "burner.service")]
    assert rows[2]["subject"] == "10.0.0.1:40000 -> 10.0.0.9:5432" and rows[0]["subject"] == ""
    assert rows[3]["title"] == "CPUs 95 % busy; burner[300] 90 % CPU"  # the newest (seq 8) names the culprit
    # A window and a host pattern: web hosts, seqs 6 and 7 only (the newest there, seq 7, names no culprit:
    # the culprit is the newest one named in the window).
    rows = fleet_json(capsys, store, "findings", "--since", str(START + 5 * S), "--until", str(START + 6 * S),
                      "--hosts", "web[!3]")["rows"]
    # Both of web1's first seen at seq 6: by rule then.
    assert [(r["host"], r["rule"], r["samples"], r["culprit_comm"], r["title"]) for r in rows] == [
        ("web1", "tcp_conn_retrans", 1, "pgbouncer", rows[0]["title"]),
        ("web1", "tcp_retransmits", 2, "pgbouncer", "TCP retransmits 9.1 % of segments sent"),
        ("web2", "cpu_busy", 2, "burner", "CPUs 95 % busy"),
        ("web2", "process_cpu", 1, "burner", rows[3]["title"])]


def _top(capsys, store, *argv):
    return fleet_json(capsys, store, "top", *argv)["rows"]


def test_top_processes_across_hosts(store, capsys):
    rows = _top(capsys, store, "--by", "cpu", "--at", str(START + 7 * S + S // 2))
    assert [(r["host"], r["pid"], r["comm"], r["value"]) for r in rows] == [
        ("web2", 300, "burner", 90.0),
        ("db1", 300, "postgres", 30.0), ("web1", 300, "burner", 30.0), ("web3", 300, "burner", 30.0),
        ("db1", 200, "pgbouncer", 20.0), ("web1", 200, "pgbouncer", 20.0), ("web2", 200, "pgbouncer", 20.0),
        ("web3", 200, "pgbouncer", 20.0),
        ("db1", 100, "sshd", 10.0), ("web1", 100, "nginx", 10.0), ("web2", 100, "nginx", 10.0),
        ("web3", 100, "nginx", 10.0)]
    assert {(r["seq"], r["wall_ns"]) for r in rows} == {(8, START + 7 * S)}
    # Between table samples: each host at its newest one before, seq 4.
    rows = _top(capsys, store, "--by", "rss", "--at", str(START + 4 * S), "--hosts", "web[12]", "--limit", "3")
    assert [(r["host"], r["pid"], r["value"], r["seq"]) for r in rows] == [
        ("web1", 300, 300 * scenes.MIB, 4), ("web2", 300, 300 * scenes.MIB, 4), ("web1", 200, 200 * scenes.MIB, 4)]
    rows = _top(capsys, store, "--by", "io", "--at", str(START + 5 * S), "--hosts", "db*")
    assert [(r["pid"], r["value"]) for r in rows] == [(300, 3e6), (200, 2e6), (100, 1e6)]
    # The first table sample has no rates yet: no CPU to rank; its sizes are known.
    assert _top(capsys, store, "--by", "cpu", "--at", str(START + S + S // 2)) == []
    assert len(_top(capsys, store, "--by", "rss", "--at", str(START + S + S // 2))) == 12
    # Nothing in the window before the moment.
    assert _top(capsys, store, "--by", "rss", "--at", str(START + 30 * S), "--window", "10s") == []


def test_top_connections_by_retransmits(store, capsys):
    rows = _top(capsys, store, "--by", "retrans", "--at", str(START + 6 * S))
    assert [(r["host"], r["local"], r["remote"], r["value"], r["total_retrans"], r["rtt_ms"], r["pid"], r["comm"],
             r["seq"]) for r in rows] == [
        ("web1", "10.0.0.1:40000", "10.0.0.9:5432", 50.0, 200, 2.0, 200, "pgbouncer", 6)]


def test_text_tables_fit_80_columns(store, capsys):
    at = str(START + 7 * S)
    for argv, words in ((("hosts", "--within", "3650d"), ("tcp_conn_retrans", "memory_low")),
                        (("findings", "--since", str(START), "--until", at), ("pgbouncer[200]", "CPUs 95 % busy")),
                        (("top", "--by", "cpu", "--at", at), ("burner", "90.0")),
                        (("top", "--by", "retrans", "--at", at), ("10.0.0.9:5432", "pgbouncer[200]"))):
        code, out, err = fleet(capsys, *argv, "--store", store)
        assert code == 0, err
        assert max(len(line) for line in out.splitlines()) <= 80, out
        for word in words:
            assert word in out, (word, out)


def test_bad_input_is_one_line(sqlite_dir, capsys):
    for argv, code, words in (
            (("top", "--by", "load", "--store", sqlite_dir), 2, "unknown measure 'load'"),
            (("top", "--by", "cpu", "--at", "half past", "--store", sqlite_dir), 2, "--at: cannot read the time"),
            (("findings", "--since", "yesterdayish", "--store", sqlite_dir), 2, "--since"),
            (("hosts", "--within", "0", "--store", sqlite_dir), 2, "--within"),
            (("top", "--by", "cpu", "--limit", "0", "--store", sqlite_dir), 2, "--limit"),
            (("hosts", "--store", sqlite_dir + "/nothing"), 1, "no collector store")):
        got, out, err = fleet(capsys, *argv)
        assert (got, out) == (code, ""), err
        assert words in err and err.count("\n") == 1, err
    with socket_closed_port() as port:
        got, out, err = fleet(capsys, "hosts", "--store", "clickhouse://127.0.0.1:%d/fleet" % port)
    assert got == 1 and "127.0.0.1:%d" % port in err and err.count("\n") == 1, err


def _doc_queries():
    """Every ```sql block of docs/fleet.md: [(its first line, the query)]."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    return [(block.strip().splitlines()[0], block) for block in re.findall(r"```sql\n(.*?)```", text, re.S)]


def test_the_docs_sql_runs_on_the_server(clickhouse_url):
    queries = _doc_queries()
    assert len(queries) >= 3
    # Grafana's time range macros, as its ClickHouse data source expands them: the scene's seconds.
    macros = {"$__fromTime": "toDateTime(%d)" % (START // S), "$__toTime": "toDateTime(%d)" % (START // S + 7)}
    answers = {}
    with ClickHouseStore(clickhouse_url, readonly=True) as ch:
        for first, sql in queries:
            for macro, value in macros.items():
                sql = sql.replace(macro, value)
            answers[first] = ch.rows(sql.strip().rstrip(";"))
    by_title = {first.lstrip("- ").strip(): rows for first, rows in answers.items() if first.startswith("--")}
    retransmitting = by_title["hosts with connections retransmitting, and the worst connection"]
    assert [(r["host"], r["worst_retrans_per_s"], r["connection"]) for r in retransmitting] == [
        ("web1", 50, "10.0.0.1:40000 -> 10.0.0.9:5432")]
    busiest = by_title["the top processes by CPU across the hosts named web*, over the time range"]
    assert [(r["host"], int(r["pid"]), r["comm"], r["avg_cpu_pct"]) for r in busiest][:2] == [
        ("web2", 300, "burner", 90.0), ("web1", 300, "burner", 30.0)]
    per_hour = by_title["findings per host per hour"]
    assert [(r["host"], int(r["crit"]), int(r["warn"])) for r in per_hour] == [
        ("db1", 8, 0), ("web1", 0, 9), ("web2", 0, 9)]


def _spaced(ddl):
    """A statement with its blanks made one and none beside parentheses and commas."""
    return re.sub(r"\s*([(),])\s*", r"\1", " ".join(ddl.split()))


def test_the_docs_schema_is_the_stores(clickhouse_url):
    """Each ```text block of docs/fleet.md that creates a table is what the server says of that table,
    and every table of the store is there."""
    with open(DOC, encoding="utf-8") as f:
        blocks = re.findall(r"```text\n(CREATE TABLE .*?)```", f.read(), re.S)
    documented = {re.match(r"CREATE TABLE fleet\.(\w+)", b).group(1): _spaced(b) for b in blocks}
    with ClickHouseStore(clickhouse_url, readonly=True) as ch:
        tables = [r["name"] for r in ch.rows("SELECT name FROM system.tables WHERE database = 'fleet'")]
        for table in tables:
            assert table in documented, "docs/fleet.md's Schema lacks the table %s: add its SHOW CREATE TABLE" % table
            created = ch.query("SHOW CREATE TABLE %s FORMAT TSVRaw" % table).replace(
                " SETTINGS index_granularity = 8192", "")
            assert _spaced(created) == documented[table], table
    assert sorted(documented) == sorted(tables)


def test_findings_off_stores_none(server, tmp_path, capsys):
    url = server.url("nofindings")
    for location in (url, str(tmp_path)):
        store = open_collector_store(location, findings=False)
        try:
            assert Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1)).commit(scenes.record_items())
        finally:
            store.close()
        assert fleet_json(capsys, location, "findings", "--since", str(START), "--until", str(START + 9 * S)) \
            ["rows"] == []
        assert _top(capsys, location, "--by", "rss", "--at", str(START + 7 * S))  # the tables are kept
    with ClickHouseStore(url, readonly=True) as ch:
        assert ch.rows("SELECT count() AS n, countIf(cpu_pct IS NOT NULL) AS rated FROM processes") == [
            {"n": str(4 * 4 * 3), "rated": "0"}]


def test_findings_go_with_their_records_at_retention(server, tmp_path):
    """SQLite deletes a deleted record's findings; ClickHouse drops their day with the records'."""
    day = 86400 * S
    old = [i for i in scenes.record_items(hosts=("db1",)) if i[0] == "record"]
    # db1's seqs 5-8 a day ago, its seqs 1-4 ten days before them: retention (5 days, against the
    # clock in ClickHouse, against the newest record in SQLite) takes the first four.
    shift = time.time_ns() - START - day
    items = [i[:5] + (i[5] + shift - (10 * day if i[4] <= 4 else 0),) + i[6:] for i in old]
    for location in (server.url("retention_findings"), str(tmp_path)):
        # Two writer lifetimes: the second starts a new chain of keyframe and deltas in SQLite,
        # which retention deletes whole.
        store = open_collector_store(location)
        try:
            assert Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1)).commit(items[:4])
        finally:
            store.close()
        store = open_collector_store(location, max_host_age_s=5 * 86400)
        try:
            assert Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1)).commit(items[4:])
            store.begin()
            assert store.enforce_retention("db1") == 4
            store.commit()
        finally:
            store.close()
        assert [r[1] for r in _stored_findings(location)] == [5, 6, 7, 8]


def test_a_store_made_before_the_rate_columns_gets_them(server):
    url = server.url("older")
    with ClickHouseStore(url) as store:
        for table, column, _ in (("processes", "cpu_pct", 0), ("processes", "io_bytes_per_s", 0),
                                 ("sockets", "inode", 0), ("sockets", "retrans_per_s", 0), ("sockets", "pid", 0),
                                 ("sockets", "comm", 0), ("findings", "cause", 0)):
            store.query("ALTER TABLE %s DROP COLUMN %s" % (table, column))
    _store_scene(url)  # a writer of this version opens it, adds the columns and writes them
    with ClickHouseStore(url, readonly=True) as store:
        assert store.rows("SELECT pid, cpu_pct FROM processes FINAL WHERE host = 'web2' AND seq = 8 "
                          "ORDER BY pid") == [{"pid": 100, "cpu_pct": 10}, {"pid": 200, "cpu_pct": 20},
                                               {"pid": 300, "cpu_pct": 90}]
    assert _stored_findings(url) == EXPECTED_FINDINGS


def test_a_symptom_folded_under_its_cause_is_a_row_of_its_own():
    """Findings ranked by cause carry the symptoms they explain; each is stored as a row naming its
    cause and the cause's culprit, after the cause."""
    from hostdiag.model.snapshot import Snapshot
    from hostdiag.store.findings_rows import finding_rows

    snapshot = Snapshot.from_dict(scenes.snapshot("web1", 4))
    cause = {"id": "tcp_conn_retrans", "severity": "warn", "title": "1 connection(s) retransmitting",
             "evidence": {"retrans_per_s": 50.0}, "threshold": "> 5", "subject": "10.0.0.1:40000 -> 10.0.0.9:5432",
             "culprits": [{"kind": "connection", "processes": [{"pid": 200, "comm": "pgbouncer"}]}],
             "symptoms": [{"id": "tcp_retransmits", "severity": "warn", "title": "TCP retransmits 9.1 %",
                           "subject": None, "evidence": {"retransmit_pct": 9.09, "note": "text"}}]}
    alone = {"id": "memory_low", "severity": "crit", "title": "only 4.0 %", "evidence": {}, "threshold": "< 5",
             "subject": None, "culprits": []}
    rows = finding_rows([alone, cause], snapshot)
    assert [(r["n"], r["rule"], r["cause"], r["culprit_pid"], r["culprit_workload"], r["evidence"]) for r in rows] == [
        (0, "memory_low", None, None, None, {}),
        (1, "tcp_conn_retrans", None, 200, "pgbouncer.service", {"retrans_per_s": 50.0}),
        (2, "tcp_retransmits", "tcp_conn_retrans", 200, "pgbouncer.service", {"retransmit_pct": 9.09})]
    assert rows[2]["threshold"] == "" and rows[2]["subject"] is None


def test_a_sqlite_store_made_before_the_cause_column_gets_it(tmp_path):
    import sqlite3

    open_collector_store(str(tmp_path)).close()
    db = sqlite3.connect(str(tmp_path / "collector.sqlite3"))
    db.execute("ALTER TABLE findings DROP COLUMN cause")
    db.close()
    _store_scene(str(tmp_path))  # a writer of this version opens it, adds the column and writes it
    assert _stored_findings(str(tmp_path)) == EXPECTED_FINDINGS


# What an agent that judged its own samples puts in them (their `findings`
# section): a finding no rule gives for the scene, so that a stored row can
# only have come from the record.
CARRIED = [{"id": "judged_by_the_agent", "severity": "crit", "title": "said by the agent", "subject": "/srv",
            "evidence": {"used_pct": 99.5}, "threshold": "fs_used_crit_pct = 95",
            "culprits": [{"kind": "process", "pid": 200, "start_time": 1200, "comm": "pgbouncer"}],
            "symptoms": [], "look_next": None}]


def _items_carrying(hosts):
    """The scene's writer items, the records of ``hosts`` carrying :data:`CARRIED`."""
    items = []
    for item in scenes.record_items():
        if item[0] == "record" and item[1] in hosts:
            snap = dict(item[7], findings=CARRIED)
            item = item[:6] + (encode_msgpack(snap), snap) + item[8:]
        items.append(item)
    return items


@pytest.mark.parametrize("backend", ["sqlite", "clickhouse"])
def test_a_record_carrying_findings_is_stored_with_exactly_those(backend, request, tmp_path):
    """web2 and web3 carry the agent's findings: they are stored as they are and
    no rule runs for those records (web2's cpu_busy and process_cpu, which the
    rules give, are absent); web1 and db1 carry none and are evaluated as
    before. ClickHouse still derives the process rates of the carrying records."""
    location = request.getfixturevalue("server").url("carried") if backend == "clickhouse" else str(tmp_path)
    store = open_collector_store(location)
    try:
        writer = Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1))
        assert writer.commit(_items_carrying(("web2", "web3"))), writer.failed
    finally:
        store.close()
    carried = [(host, seq, "judged_by_the_agent", "crit", 200, "pgbouncer",
                "pgbouncer.service" if seq % scenes.TABLE_EVERY == 0 else None)
               for host in ("web2", "web3") for seq in range(1, scenes.SAMPLES + 1)]
    assert _stored_findings(location) == sorted(
        [row for row in EXPECTED_FINDINGS if row[0] in ("web1", "db1")] + carried, key=lambda row: row[:3])
    if backend == "clickhouse":
        with ClickHouseStore(location, readonly=True) as ch:
            assert ch.rows("SELECT pid, cpu_pct FROM processes FINAL WHERE host = 'web2' AND seq = 8 "
                           "ORDER BY pid") == [{"pid": 100, "cpu_pct": 10}, {"pid": 200, "cpu_pct": 20},
                                                {"pid": 300, "cpu_pct": 90}]
            assert ch.rows("SELECT evidence_keys, evidence_values, threshold, subject FROM findings FINAL "
                           "WHERE host = 'web3' AND seq = 4") == [
                {"evidence_keys": ["used_pct"], "evidence_values": [99.5], "threshold": "fs_used_crit_pct = 95",
                 "subject": "/srv"}]


def test_cpu_busy_leaves_steal_apart(server):
    """samples.cpu_busy_pct is 100 - idle - iowait - steal, as derive/rates.py and the report have it."""
    url = server.url("steal")
    first, second = scenes.snapshot("web3", 1), scenes.snapshot("web3", 2)
    # Over the second: user 20, system 10, idle 40, iowait 10, steal 20 ticks (100 in all).
    second["cpu"] = dict(second["cpu"], total=dict(first["cpu"]["total"], **{
        name: first["cpu"]["total"][name] + ticks
        for name, ticks in (("user", 20), ("system", 10), ("idle", 40), ("iowait", 10), ("steal", 20))}))
    items = [("host", "web3", "tcp:web3:7781", "web3.example")] + [
        ("record", "web3", scenes.agent_id("web3"), scenes.boot_id("web3"), seq, snap["meta"]["wall_ns"],
         encode_msgpack(snap), snap, None) for seq, snap in ((1, first), (2, second))]
    store = open_collector_store(url)
    try:
        assert Writer(store, queue.Queue(), [], 5.0, threading.Event(), threading.BoundedSemaphore(1)).commit(items)
    finally:
        store.close()
    with ClickHouseStore(url, readonly=True) as ch:
        assert ch.rows("SELECT seq, cpu_busy_pct FROM samples FINAL ORDER BY seq") == [
            {"seq": "1", "cpu_busy_pct": None}, {"seq": "2", "cpu_busy_pct": 30}]


@pytest.mark.parametrize("section", [None, "crit", ["not a finding"], [dict(CARRIED[0], culprits=7)],
                                     [dict(CARRIED[0], evidence=[1, 2])], [dict(CARRIED[0], id=None)]])
def test_a_record_whose_findings_are_not_findings_is_evaluated(section):
    """A null or malformed ``findings`` section counts as none: the rules run, as for an older agent."""
    from hostdiag.findings.stream import FindingsStream

    plain, carrying = FindingsStream(), FindingsStream()
    for seq in range(1, 5):
        doc = scenes.snapshot("web2", seq)
        want = plain.evaluate("web2", "a", "b", seq, doc).findings
        got = carrying.evaluate("web2", "a", "b", seq, dict(doc, findings=section)).findings
        assert got == want
    assert [(f["id"], [s["id"] for s in f["symptoms"]]) for f in want] == [("process_cpu", ["cpu_busy"])]


def test_the_findings_section_keeps_three_culprits():
    from hostdiag.findings.stream import findings_section

    culprits = [{"kind": "process", "pid": pid, "comm": "p%d" % pid} for pid in range(1, 6)]
    many, few = dict(CARRIED[0], culprits=culprits), dict(CARRIED[0], culprits=culprits[:2])
    section = findings_section([many, few])
    assert section == [dict(many, culprits=culprits[:3]), few]
    assert many["culprits"] == culprits  # the agent's own findings (for /metrics, the incidents) keep all
