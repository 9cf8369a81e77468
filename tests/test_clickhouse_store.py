"""The fleet store (store/clickhouse.py) against a real clickhouse-server on loopback.

One server runs for the module (tests/clickhouseproc.py; skipped, saying why,
where the package is not installed), with one agent (0.2 s interval, the
process and socket tables every 2nd sample) and a collector that pulled it
once (`--once`) into the database "fleet". `diag show` must give the same
report from the agent and from that store; the columnar tables must hold
what the snapshots hold.
"""

import calendar
import json
import os
import shutil
import signal
import tempfile
import time

import pytest

from hostdiag.apps.history import main_diff, main_history, main_show
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store.clickhouse import ClickHouseStore, parse_url
from hostdiag.store.incidents import encode_bundle
from hostdiag.store.sqlite import StoreError

from agentproc import AgentProcess, CollectorProcess
from clickhouseproc import server_or_skip

RECORDS = 12


@pytest.fixture(scope="module")
def server():
    server = server_or_skip()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def world(server):
    workdir = tempfile.mkdtemp(prefix="hdch-", dir="/tmp")
    agent = AgentProcess(workdir, agent={"table_every": 2})
    try:
        agent.start().wait_ready().close()
        info = agent.wait_newest(RECORDS)
        url = server.url("fleet")
        collector = CollectorProcess(workdir, [("web1", agent.address)], extra_args=["--store", url])
        result = collector.run("--once", "--store", url)
        assert result.returncode == 0, result.stderr
        with agent.client() as client:
            records = {r.seq: r for r in client.range(from_seq=1, to_seq=RECORDS)}
        yield {"agent": agent, "url": url, "boot": info["boot_id"], "records": records}
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


def test_every_stored_record_is_what_the_agent_served(world):
    with ClickHouseStore(world["url"], readonly=True) as store:
        stored = {r.seq: r for r in store.range("web1", world["boot"])}
        assert set(world["records"]) <= set(stored)
        for seq, served in world["records"].items():
            assert decode_msgpack(stored[seq].payload) == served.snapshot, seq
            assert stored[seq].wall_ns == served.wall_ns
        assert store.corrupt_skipped == 0
        assert store.gaps("web1") == []


def test_show_gives_the_same_report_from_the_agent_and_the_fleet_store(world, capsys):
    moment = str(world["records"][9].wall_ns)
    # Wide enough that the first line holds the source and the record, whichever the source.
    code_a, from_agent, err_a = run(capsys, main_show, ["--at", moment, "--width", "200",
                                                        "--agent", world["agent"].address])
    code_s, from_store, err_s = run(capsys, main_show, ["--at", moment, "--width", "200",
                                                        "--store", world["url"], "--host", "web1"])
    assert code_a == code_s == 0, (err_a, err_s)
    assert "seq 9 at" in from_store.splitlines()[0]
    assert from_agent.splitlines()[1:] == from_store.splitlines()[1:]


def test_diff_and_history_read_the_fleet_store(world, capsys):
    records = world["records"]
    source = ["--store", world["url"], "--host", "web1"]
    code, out, err = run(capsys, main_diff, [str(records[3].wall_ns), str(records[10].wall_ns), *source])
    assert code == 0, err
    assert "seq 3" in out and "seq 10" in out
    code, out, err = run(capsys, main_history, source)
    assert code == 0, err
    assert world["boot"] in out


def test_columnar_tables_hold_what_the_snapshots_hold(world):
    records = world["records"]
    with ClickHouseStore(world["url"], readonly=True) as store:
        samples = {int(r["seq"]): r for r in store.rows(
            "SELECT seq, cpu_user, ctxt, load1, mem_available_bytes, cpu_busy_pct, ctxt_per_s FROM samples FINAL "
            "WHERE host = 'web1' AND boot_id = '%s'" % world["boot"])}
        for seq, record in records.items():
            snapshot = record.snapshot
            assert int(samples[seq]["cpu_user"]) == snapshot["cpu"]["total"]["user"]
            assert int(samples[seq]["ctxt"]) == snapshot["cpu"]["ctxt"]
            assert samples[seq]["load1"] == pytest.approx(snapshot["cpu"]["loadavg"]["load1"])  # 18.16 prints 17 digits
            assert int(samples[seq]["mem_available_bytes"]) == snapshot["memory"]["meminfo"]["MemAvailable"]
        # A rate is the change from the record before, over the wall time between.
        seconds = (records[5].wall_ns - records[4].wall_ns) / 1e9
        wanted = (records[5].snapshot["cpu"]["ctxt"] - records[4].snapshot["cpu"]["ctxt"]) / seconds
        assert samples[5]["ctxt_per_s"] == pytest.approx(wanted)
        assert 0 <= samples[5]["cpu_busy_pct"] <= 100
        with_tables = [seq for seq, r in records.items() if r.snapshot.get("processes") is not None]
        assert with_tables
        for seq in with_tables:
            snapshot = records[seq].snapshot
            pids = [int(r["pid"]) for r in store.rows(
                "SELECT pid FROM processes FINAL WHERE host = 'web1' AND seq = %d ORDER BY pid" % seq)]
            assert pids == sorted(p["pid"] for p in snapshot["processes"]["processes"])
            sockets = store.rows("SELECT state, local_port FROM sockets FINAL WHERE host = 'web1' AND seq = %d "
                                 "ORDER BY row" % seq)
            table = snapshot["sockets"]["tcp_table"]
            wanted = [dict(zip(table["fields"], row)) for row in table["rows"]]
            assert [(s["state"], int(s["local_port"])) for s in sockets] == [
                (w["state"], w["local_port"]) for w in wanted]
        parts = {r["partition"] for r in store.rows(
            "SELECT DISTINCT partition FROM system.parts WHERE database = 'fleet' AND table = 'records' AND active")}
        assert parts == {time.strftime("%Y%m%d", time.gmtime(r.wall_ns / 1e9)) for r in records.values()}


def _doc(i):
    return encode_msgpack({"meta": {"hostname": "old"}, "cpu": {"ctxt": 10 * i}, "blob": bytes(range(256)) * 2})


def test_retention_drops_whole_days_and_a_record_is_stored_once(server):
    day_ns = 86400 * 10**9
    now = time.time_ns()
    with ClickHouseStore(server.url("retention"), max_host_age_s=5 * 86400) as store:
        store.begin()
        for seq in (1, 2):
            assert store.add_record("h1", "a1", "b1", seq, now - 10 * day_ns + seq, _doc(seq))
        for seq in (3, 4):
            assert store.add_record("h1", "a1", "b1", seq, now + seq, _doc(seq))
        store.add_gap("h1", "a1", "b1", 5, 7, "not_kept")
        store.commit()
        store.begin()
        assert store.add_record("h1", "a1", "b1", 2, now, _doc(2)) is False  # stored before this batch
        assert store.add_record("h1", "a1", "b1", 8, now + 8, _doc(8)) is True
        assert store.add_record("h1", "a1", "b1", 8, now + 8, _doc(8)) is False  # twice in one batch
        store.commit()
        assert store.resume_points("h1", "a1") == ({"b1": 8}, set(), ("b1", 8, now + 8))
        assert [r.payload for r in store.range("h1", "b1")] == [_doc(s) for s in (1, 2, 3, 4, 8)]
        assert store.enforce_retention("h1") == 2
        assert store.seqs("h1", "b1") == [3, 4, 8]
        assert store.enforce_retention("h1") == 0  # at most every RETENTION_PERIOD_S


def test_a_new_writer_knows_what_is_stored(server):
    url = server.url("restart")
    with ClickHouseStore(url) as store:
        store.begin()
        store.add_record("h1", "a1", "b1", 1, 10**18, _doc(1))
        store.commit()
    with ClickHouseStore(url) as store:
        store.begin()
        assert store.add_record("h1", "a1", "b1", 1, 10**18, _doc(1)) is False
        store.commit()
        assert store.stats()["records"] == 1


def test_incident_bundles_are_kept_whole_and_replaced_by_newer_versions(server, capsys):
    from hostdiag.apps.incidents import main_incident, main_incidents
    from hostdiag.store.incidents import decode_bundle, encode_bundle

    url = server.url("incidents")
    start = 1_790_000_000 * 10**9
    opened = {"id": "20260921-000000-abcd", "state": "open", "start_ns": start, "detected_ns": start + 10**9,
              "end_ns": None, "title": "/srv 100 % of space used", "severity": "crit", "open_after": 1}
    closed = dict(opened, state="closed", end_ns=start + 5 * 10**9, end_reason="cleared")
    body = {"records": [], "findings": [], "probes": [], "blob": bytes(range(256)) * 4}
    with ClickHouseStore(url) as store:
        store.add_incident("h1", opened, encode_bundle(opened, body))
        store.add_incident("h1", closed, encode_bundle(closed, body))
        assert [(i["id"], i["state"], i["host"]) for i in store.incidents()] == [(opened["id"], "closed", "h1")]
        ((host, data),) = store.incident_bundle("h1", opened["id"])
        assert host == "h1" and decode_bundle(data) == (closed, body)
        assert store.incident_bundle(None, "nope") == []
    code, out, err = run(capsys, main_incidents, ["--store", url])
    assert code == 0 and opened["id"] in out and "5.0s" in out, err
    code, out, err = run(capsys, main_incident, [opened["id"], "--store", url])
    assert code == 0 and out.startswith("# Incident %s: /srv 100 %% of space used" % opened["id"]), err


def test_incidents_go_by_the_month_of_their_start_once_all_of_it_is_past_retention(server):
    """Now 2026-12-03 12:00 UTC, retention 5 days (the cutoff in November):
    October's incidents go, November's stay (their month is not wholly past
    the cutoff), however old; an incident's versions share its partition."""
    now_s = calendar.timegm((2026, 12, 3, 12, 0, 0))
    starts = {"october": calendar.timegm((2026, 10, 31, 23, 0, 0)),
              "november": calendar.timegm((2026, 11, 1, 0, 30, 0)), "december": now_s - 3600}
    url = server.url("incidents_retention")
    with ClickHouseStore(url, max_host_age_s=5 * 86400, clock=lambda: now_s * 10**9) as store:
        for name, start_s in starts.items():
            opened = {"id": name, "state": "open", "start_ns": start_s * 10**9, "end_ns": None, "title": name}
            store.add_incident("h1", opened, encode_bundle(opened, {"records": []}))
            closed = dict(opened, state="closed", end_ns=(start_s + 60) * 10**9)
            store.add_incident("h1", closed, encode_bundle(closed, {"records": []}))
        partitions = store.rows("SELECT DISTINCT partition FROM system.parts WHERE database = 'incidents_retention' "
                                "AND table = 'incidents' AND active ORDER BY partition")
        assert [p["partition"] for p in partitions] == ["202610", "202611", "202612"]
        assert [(i["id"], i["state"]) for i in store.incidents()] == [
            ("december", "closed"), ("november", "closed"), ("october", "closed")]
        assert store.enforce_retention("h1") == 0  # no records: only incidents went
        assert [i["id"] for i in store.incidents()] == ["december", "november"]
        # A store made before the incidents were partitioned: retention leaves its table alone.
        store.query("CREATE DATABASE incidents_unpartitioned", database=None)
        store.query("CREATE TABLE incidents_unpartitioned.incidents (host String, id String, start_ns UInt64, "
                    "end_ns Nullable(UInt64), title String, severity String, summary String, bundle String, "
                    "stored_ns UInt64, time DateTime) ENGINE = ReplacingMergeTree(stored_ns) ORDER BY (host, id)",
                    database=None)
    with ClickHouseStore(server.url("incidents_unpartitioned"), max_host_age_s=5 * 86400,
                         clock=lambda: now_s * 10**9) as store:
        old = {"id": "october", "state": "closed", "start_ns": starts["october"] * 10**9, "end_ns": None}
        store.add_incident("h1", old, encode_bundle(old, {"records": []}))
        assert store.enforce_retention("h1") == 0
        assert [i["id"] for i in store.incidents()] == ["october"]


@pytest.mark.parametrize("url, words", [
    ("clickhouse://127.0.0.1/db", "HOST:PORT"),
    ("clickhouse://127.0.0.1:8123/", "database"),
    ("clickhouse://127.0.0.1:8123/a;b", "database"),
    ("http://127.0.0.1:8123/db", "clickhouse://"),
])
def test_bad_urls_say_what_is_wanted(url, words):
    with pytest.raises(ValueError, match=words):
        parse_url(url)


def test_unreachable_or_missing_store_is_one_line(server):
    with socket_closed_port() as port:
        with pytest.raises(StoreError) as caught:
            ClickHouseStore("clickhouse://127.0.0.1:%d/fleet" % port)
    assert "127.0.0.1:%d" % port in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(StoreError, match="no fleet store"):
        ClickHouseStore(server.url("nothing_here"), readonly=True)


class socket_closed_port:
    """A loopback port that nothing listens on while the block runs (bound, not listening)."""

    def __enter__(self):
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def test_diag_fleet_reads_what_the_collector_stored(world, capsys):
    """`diag fleet` on the store the collector process wrote: the host at its newest record, and the
    top processes by memory at a moment, exactly those of the newest table before it."""
    from hostdiag.apps.fleet import main_fleet

    records = world["records"]
    code, out, err = run(capsys, main_fleet, ["hosts", "--store", world["url"], "--format", "json"])
    assert code == 0, err
    with ClickHouseStore(world["url"], readonly=True) as store:
        newest = store.newest("web1")[1]
        stored_findings = store.rows("SELECT count() AS n FROM findings FINAL WHERE host = 'web1' AND seq = %d "
                                     "AND isNull(cause)"   # diag fleet hosts counts causes, not symptoms
                                     % newest[1])
    [host] = json.loads(out)["rows"]
    assert (host["host"], host["boot_id"], host["seq"], host["last_ns"]) == ("web1",) + newest
    assert host["findings"] == int(stored_findings[0]["n"])
    at = records[RECORDS].wall_ns
    code, out, err = run(capsys, main_fleet, ["top", "--by", "rss", "--at", str(at), "--limit", "5",
                                              "--store", world["url"], "--format", "json"])
    assert code == 0, err
    tables = max(seq for seq, r in records.items() if r.snapshot.get("processes") is not None)
    wanted = sorted(((p["rss_bytes"], p["pid"]) for p in records[tables].snapshot["processes"]["processes"]
                     if p.get("rss_bytes")), key=lambda v: (-v[0], v[1]))[:5]
    rows = json.loads(out)["rows"]
    assert [(r["value"], r["pid"], r["seq"]) for r in rows] == [(rss, pid, tables) for rss, pid in wanted]
