"""The collector against real agent processes on real sockets, and its store.

Agents run with a 0.2 s interval in a temporary directory of their own, the
collector as a process of its own; every wait polls a condition with a
deadline, and every process is stopped (or killed) at the end of its test.
The helpers (AgentProcess, CollectorProcess, wait_for) live in agentproc.py.
"""

import errno
import json
import os
import signal
import sqlite3
import zlib

import pytest

from hostdiag.apps import collector_pull
from hostdiag.apps.collector import Collector, build_parser, main_collector, overrides_from
from hostdiag.apps.collector_pull import AgentStatus, Backoff, Cursor
from hostdiag.store.sqlite import (
    CODEC_ZLIB, CODEC_ZLIB_DELTA, KEYFRAME_EVERY, SCHEMA_VERSION, CollectorStore, StoreError, StoreLocked,
)

from agentproc import INTERVAL, AgentProcess, CollectorProcess, wait_for, write_toml
from spoolhelpers import mount_tmpfs


@pytest.fixture
def processes():
    """Every AgentProcess / CollectorProcess registered here is stopped at the end."""
    started = []
    yield started
    for proc in reversed(started):
        proc.stop(signal.SIGKILL)


def ready_agent(processes, workdir, **sections):
    """An agent registered in ``processes``, started and serving."""
    agent = AgentProcess(workdir, **sections)
    processes.append(agent)
    agent.start().wait_ready().close()
    return agent


def assert_contiguous(seqs):
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seqs are not contiguous: %s" % seqs


# -- real processes ------------------------------------------------------------

def test_catches_up_after_being_down_and_survives_agent_restarts(workdir, processes):
    agent = ready_agent(processes, workdir)
    boot = agent.info()["boot_id"]
    collector = CollectorProcess(workdir, [("web1", agent.address)])
    processes.append(collector)

    # 1. Live: the collector follows the agent.
    collector.start()
    first = agent.wait_newest(1)["newest_seq"]
    collector.wait_stored("web1", boot, first + 5)

    # 2. The collector is down while the agent goes on, is killed (-9) and restarted.
    assert collector.stop() == 0
    down_at = collector.stored_seqs("web1", boot)[-1]
    agent.wait_newest(down_at + 5)
    agent.stop(signal.SIGKILL)
    agent.start().wait_ready().close()
    missed_until = agent.wait_newest(down_at + 12)["newest_seq"]

    # 3. Up again: it backfills what it missed, then follows live.
    collector.start()
    collector.wait_stored("web1", boot, missed_until + 3)

    # 4. The agent restarts (SIGTERM) under a live collector: it reconnects and resumes.
    agent.stop(signal.SIGTERM)
    agent.start().wait_ready().close()
    restarted = agent.wait_newest(1)["newest_seq"]
    collector.wait_stored("web1", boot, restarted + 5)
    status = wait_for(lambda: (lambda s: s if s and s["state"] == "live" and s["connects"] >= 2 else None)(
        collector.status("web1")), "a live status after the reconnect", on_fail=collector.log_tail)
    assert collector.stop() == 0

    # What the collector has is exactly what the agent has, from the first seq it took.
    agent_seqs = agent.seqs()
    stored = collector.stored_seqs("web1", boot)
    assert stored[0] == agent_seqs[0]
    assert stored == [s for s in agent_seqs if s <= stored[-1]]
    assert_contiguous(stored)
    with collector.store() as store:
        assert store.gaps("web1") == []
        rows = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT boot_key || ':' || seq) FROM records").fetchone()
        assert rows[0] == rows[1] == len(stored)
        # Every stored record reads back as the snapshot the agent serves for
        # it, across the chains the collector's restarts began anew.
        from hostdiag.transport.framing import decode_document
        with agent.client() as client:
            served = {r.seq: r.snapshot for r in client.range(from_seq=stored[0], to_seq=stored[-1], boot_id=boot)}
        read = {r.seq: decode_document(r.payload) for r in store.range("web1", boot)}
        assert sorted(read) == stored and store.corrupt_skipped == 0
        for seq in stored:
            assert read[seq] == served[seq], seq
        codecs = dict(store.db.execute("SELECT seq, codec FROM records"))
        assert set(codecs.values()) == {CODEC_ZLIB, CODEC_ZLIB_DELTA}
        # The first record after the collector was down starts a chain of its own.
        assert codecs[down_at + 1] == CODEC_ZLIB
    assert status["errors"] >= 1  # the restart was seen (and recovered from)
    assert status["duplicates"] == 0 and status["gaps"] == 0
    assert status["bytes_received"] > 0 and status["records_received"] > 0
    assert status["lag_seqs"] is not None and status["lag_s"] is not None


def test_the_collector_stores_the_findings_the_agent_judged(workdir, processes):
    """A full tmpfs gives the real agent an fs_space finding on every sample: each
    record it stores carries its findings (culprits cut to 3), and the collector
    keeps for each record exactly those, row for row."""
    from hostdiag.findings.stream import RECORD_CULPRITS, typed
    from hostdiag.store.findings_rows import finding_rows

    full = os.path.join(workdir, "full")
    os.mkdir(full)
    with mount_tmpfs(full, "1m"):
        _fill_up(os.path.join(full, "fill"))
        agent = ready_agent(processes, workdir)
        boot = agent.info()["boot_id"]
        collector = CollectorProcess(workdir, [("web1", agent.address)])
        processes.append(collector)
        collector.start()
        first = agent.wait_newest(1)["newest_seq"]
        collector.wait_stored("web1", boot, first + 3)
        assert collector.stop() == 0
        stored = collector.stored_seqs("web1", boot)
        with agent.client() as client:
            served = {r.seq: r.snapshot for r in client.range(from_seq=stored[0], to_seq=stored[-1], boot_id=boot)}
        assert agent.stop() == 0
    with collector.store() as store:
        rows = store.db.execute("SELECT f.seq, f.n, f.rule, f.severity, f.subject, f.title FROM findings f "
                                "JOIN boots b ON b.boot_key = f.boot_key WHERE b.boot_id = ? "
                                "ORDER BY f.seq, f.n", (boot,)).fetchall()
    expected = []
    for seq in stored:
        found = served[seq]["findings"]
        assert any(f["id"] == "fs_space" and f["subject"] == full for f in found), found
        assert all(len(f["culprits"]) <= RECORD_CULPRITS for f in found)
        expected.extend((seq, r["n"], r["rule"], r["severity"], r["subject"], r["title"])
                        for r in finding_rows(found, typed(served[seq])))
    assert [tuple(row) for row in rows] == expected


def _fill_up(path):
    """Write ``path`` until its file system is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(bytes(64 * 1024))
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def test_records_exact_gap_when_the_agent_no_longer_has_records(workdir, processes):
    # No spool and a ring of 5: records the collector misses while down are gone.
    agent = ready_agent(processes, workdir, spool={"enabled": False}, ring={"max_records": 5})
    boot = agent.info()["boot_id"]
    collector = CollectorProcess(workdir, [("web1", agent.address)])
    processes.append(collector)
    collector.start()
    collector.wait_stored("web1", boot, 3)
    assert collector.stop() == 0
    last = collector.stored_seqs("web1", boot)[-1]
    agent.wait_newest(last + 12)
    collector.start()

    def gap_noted():
        with collector.store() as store:
            return store.gaps("web1")
    gaps = wait_for(gap_noted, "the gap to be recorded", on_fail=collector.log_tail)
    collector.wait_stored("web1", boot, last + 14)
    assert collector.stop() == 0
    stored = collector.stored_seqs("web1", boot)
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap["boot_id"] == boot and gap["reason"] == "not_kept"
    assert gap["from_seq"] == last + 1
    after = [s for s in stored if s > last]
    assert gap["to_seq"] == after[0] - 1
    # Kept and gone together cover every seq exactly once.
    covered = sorted(stored + list(range(gap["from_seq"], gap["to_seq"] + 1)))
    assert_contiguous(covered)
    status = json.loads(collector.run("--status", "--format", "json").stdout)["agents"][0]
    assert status["gaps"] == 1 and status["gap_records"] == gap["to_seq"] - gap["from_seq"] + 1


def test_once_and_status(workdir, processes):
    agent = ready_agent(processes, workdir)
    newest = agent.wait_newest(3)["newest_seq"]
    collector = CollectorProcess(workdir, [("web1", agent.address), ("gone", "unix:" + workdir + "/none.sock")])
    done = collector.run("--once")
    assert done.returncode == 1  # one agent could not be reached
    assert "none.sock" in done.stderr or "gone" in done.stderr
    with collector.store() as store:
        boot = store.boots("web1")[0]
        assert boot["first_seq"] == 1 and boot["last_seq"] >= newest
        hosts = {h["name"]: h for h in store.hosts()}
        assert hosts["web1"]["hostname"] and hosts["gone"]["hostname"] is None
    text = collector.run("--status")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:2] == ["agent", "state"]
    web1 = next(line for line in lines if line.startswith("web1"))
    assert web1.split()[1] == "done"
    assert any(line.startswith("gone: last error") for line in lines)
    document = json.loads(collector.run("--status", "--format", "json").stdout)
    by_name = {a["name"]: a for a in document["agents"]}
    assert by_name["web1"]["records_received"] >= newest and by_name["web1"]["errors"] == 0
    assert by_name["gone"]["state"] == "failed" and by_name["gone"]["errors"] == 1


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pulls_over_tcp_with_a_token(workdir, processes):
    token_file = os.path.join(workdir, "token")
    with open(token_file, "w") as f:
        f.write("s3cret-token\n")
    os.chmod(token_file, 0o600)
    port = _free_port()
    agent = ready_agent(processes, workdir,
                        tcp={"enabled": True, "listen": "127.0.0.1:%d" % port, "token_file": token_file})
    newest = agent.wait_newest(3)["newest_seq"]
    wrong = os.path.join(workdir, "wrong")
    with open(wrong, "w") as f:
        f.write("nope\n")
    collector = CollectorProcess(workdir, [])
    write_toml(collector.config_path, {"collector": {"store": collector.store_dir, "poll_interval": INTERVAL}}, [
        {"name": "tcp1", "address": "tcp:127.0.0.1:%d" % port, "token_file": token_file},
        {"name": "tcp2", "address": "tcp:127.0.0.1:%d" % port, "token_file": wrong}])
    result = collector.run("--once")
    assert result.returncode == 1 and "tcp2" in result.stderr and "auth_failed" in result.stderr
    with collector.store() as store:
        kept = store.boots("tcp1")[0]
        assert kept["first_seq"] == 1 and kept["last_seq"] >= newest
        assert store.boots("tcp2") == []
        assert {row["name"]: row["state"] for row in store.status()} == {"tcp1": "done", "tcp2": "failed"}


def test_status_without_a_store_fails_in_one_line(workdir):
    collector = CollectorProcess(workdir, [("web1", "unix:/tmp/x.sock")])
    result = collector.run("--status")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no collector store" in result.stderr


def test_second_collector_on_the_same_store_is_refused(workdir):
    collector = CollectorProcess(workdir, [("web1", "unix:/tmp/x.sock")])
    with CollectorStore(collector.store_dir):
        result = collector.run("--once")
    assert result.returncode == 1
    assert "another collector" in result.stderr


# -- configuration and usage -------------------------------------------------

def _run_main(capsys, argv):
    code = main_collector(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("agents, key", [
    ([{"name": "web1", "address": "http://x"}], "collector.agents[0].address"),
    ([{"name": "web 1", "address": "unix:/tmp/a.sock"}], "collector.agents[0].name"),
    ([{"name": "web1", "address": "tcp:10.0.0.1:7781"}], "collector.agents[0].token_file"),
    ([{"name": "a", "address": "unix:/tmp/a.sock"}, {"name": "a", "address": "unix:/tmp/b.sock"}],
     "collector.agents[1].name"),
    ([{"name": "web1", "adress": "unix:/tmp/a.sock"}], "collector.agents[0].adress"),
    ([], "collector.agents"),
])
def test_bad_agents_config_is_one_line_naming_the_key(workdir, capsys, monkeypatch, agents, key):
    monkeypatch.delenv("HOSTDIAG_CONFIG", raising=False)
    path = os.path.join(workdir, "c.toml")
    write_toml(path, {"collector": {"store": os.path.join(workdir, "store")}}, agents)
    code, err = _run_main(capsys, ["--config", path])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("diag collector: error: ")
    assert key in err
    assert not os.path.exists(os.path.join(workdir, "store"))


@pytest.mark.parametrize("settings, key", [
    ({"collector": {"poll_interval": "soon"}}, "collector.poll_interval"),
    ({"collector": {"pol_interval": 1}}, "collector.pol_interval"),
    ({"collector": {"store": "relative/dir"}}, "collector.store"),
    ({"collector": {"store": "clickhouse://127.0.0.1/db"}}, "collector.store: must be clickhouse://HOST:PORT"),
    ({"collector": {"shard": "3/2"}}, "collector.shard: must be K/N"),
    ({"collector": {"shard": "1/2"}}, "collector.shard: no agent falls in shard 1/2"),  # web1 is in 2/2
])
def test_bad_collector_settings_are_one_line(workdir, capsys, monkeypatch, settings, key):
    monkeypatch.delenv("HOSTDIAG_CONFIG", raising=False)
    path = os.path.join(workdir, "c.toml")
    write_toml(path, settings, [{"name": "web1", "address": "unix:/tmp/a.sock"}])
    code, err = _run_main(capsys, ["--config", path])
    assert code == 2 and err.count("\n") == 1 and key in err


@pytest.mark.parametrize("argv, words", [
    (["--host-max-bytes", "lots"], "collector.host_max_bytes: must be a size"),
    (["--host-max-bytes", "10K"], "between 1 MiB and"),
    (["--host-max-age", "1s"], "collector.host_max_age: must be a duration between 1m and"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_options_are_one_line(workdir, capsys, argv, words):
    path = os.path.join(workdir, "c.toml")
    write_toml(path, {}, [{"name": "web1", "address": "unix:/tmp/a.sock"}])
    code, err = _run_main(capsys, ["--config", path, *argv])
    assert code == 2 and err.count("\n") == 1 and words in err


def test_unreadable_token_file_names_the_key(workdir, capsys):
    path = os.path.join(workdir, "c.toml")
    write_toml(path, {}, [{"name": "web1", "address": "tcp:127.0.0.1:7781",
                           "token_file": os.path.join(workdir, "missing-token")}])
    code, err = _run_main(capsys, ["--config", path])
    assert code == 2 and "collector.agents[0].token_file" in err and err.count("\n") == 1


# -- the store -----------------------------------------------------------------

# Text that zlib cannot shrink much, the same in every record (as most of a snapshot is).
_PAD = "".join("%08x" % zlib.crc32(b"%d" % n) for n in range(400))


def _payload(i):
    from hostdiag.encode.wire import encode_msgpack

    return encode_msgpack({"meta": {"wall_ns": i, "hostname": "h"}, "cpu": {"ctxt": 1000 * i, "pad": _PAD},
                           "counter": list(range(i, i + 50))})


def _fill(store, host, count, boot="b1", agent="a1", start=1, wall0=10**18, step_ns=10**9):
    store.begin()
    for seq in range(start, start + count):
        store.add_record(host, agent, boot, seq, wall0 + seq * step_ns, _payload(seq))
    store.commit()


def test_store_keeps_each_record_once_and_reads_it_back(tmp_path):
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 3)
        store.begin()
        assert store.add_record("h1", "a1", "b1", 2, 5, _payload(2)) is False
        assert store.add_record("h1", "a2", "b1", 2, 5, _payload(2)) is True  # another agent's history
        store.commit()
        assert [r.seq for r in store.range("h1", "b1", agent_id="a1")] == [1, 2, 3]
        assert store.get("h1", "b1", 3, agent_id="a1").payload == _payload(3)
        with pytest.raises(sqlite3.IntegrityError):
            store.db.execute("INSERT INTO records (boot_key, seq, host_id, wall_ns, codec, crc32, raw_bytes, "
                             "stored_bytes, payload) SELECT boot_key, seq, host_id, wall_ns, codec, crc32, "
                             "raw_bytes, stored_bytes, payload FROM records LIMIT 1")


def _codecs(store, host="h1"):
    return [row[0] for row in store.db.execute(
        "SELECT r.codec FROM records r JOIN hosts h ON h.host_id = r.host_id WHERE h.name = ? ORDER BY r.seq",
        (host,))]


def test_store_keeps_delta_chains_with_a_keyframe_every_n_records(tmp_path):
    count = KEYFRAME_EVERY * 2 + 5
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", count)
        codecs = _codecs(store)
        keyframes = [seq for seq, codec in enumerate(codecs, 1) if codec == CODEC_ZLIB]
        assert keyframes == [1, KEYFRAME_EVERY + 1, 2 * KEYFRAME_EVERY + 1]
        assert set(codecs) == {CODEC_ZLIB, CODEC_ZLIB_DELTA}
        raw, stored = store.db.execute("SELECT SUM(raw_bytes), SUM(stored_bytes) FROM records").fetchone()
        keyframe_bytes = store.db.execute("SELECT AVG(stored_bytes) FROM records WHERE codec = ?",
                                          (CODEC_ZLIB,)).fetchone()[0]
        delta_bytes = store.db.execute("SELECT AVG(stored_bytes) FROM records WHERE codec = ?",
                                       (CODEC_ZLIB_DELTA,)).fetchone()[0]
        assert delta_bytes < keyframe_bytes / 3
        assert stored < raw / 20
        assert store.hosts()[0]["stored_bytes"] == stored
        assert [r.payload for r in store.range("h1", "b1")] == [_payload(i) for i in range(1, count + 1)]
    # A reader of its own rebuilds any record cold, from its keyframe.
    with CollectorStore(tmp_path, readonly=True) as reader:
        for seq in (KEYFRAME_EVERY, KEYFRAME_EVERY + 1, count):
            assert reader.get("h1", "b1", seq).payload == _payload(seq)
        assert reader.at_or_before("h1", 10**18 + 59 * 10**9).payload == _payload(59)


def test_store_never_chains_across_a_missing_record(tmp_path):
    """A gap the agent reported, a collector restart, a record out of order:
    each next record is a keyframe, so no delta frame needs what is not stored."""
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 5)
        store.begin()
        store.add_gap("h1", "a1", "b1", 6, 9, "not_kept")
        store.commit()
        _fill(store, "h1", 3, start=10)
        _fill(store, "h1", 2, start=20)   # a hole nobody explained
        _fill(store, "h1", 1, start=15)   # an older record arriving late
        _fill(store, "h1", 1, start=22)
    with CollectorStore(tmp_path) as store:  # a new writer: no chain to continue
        _fill(store, "h1", 2, start=23)
        codecs = dict(store.db.execute("SELECT seq, codec FROM records"))
        keyframes = sorted(seq for seq, codec in codecs.items() if codec == CODEC_ZLIB)
        assert keyframes == [1, 10, 15, 20, 23]
        assert codecs[22] == CODEC_ZLIB_DELTA  # on 21, which is stored, though 15 came between
        assert [(r.seq, r.payload) for r in store.range("h1", "b1")] == [(s, _payload(s)) for s in sorted(codecs)]
        assert store.corrupt_skipped == 0


def test_store_retention_by_bytes_keeps_the_newest(tmp_path):
    with CollectorStore(tmp_path, max_host_bytes=20000) as store:
        _fill(store, "h1", 300)
        _fill(store, "h2", 10)
        store.begin()
        deleted = store.enforce_retention("h1")
        store.commit()
        assert deleted > 0
        seqs = store.seqs("h1", "b1")
        assert seqs[-1] == 300 and seqs == list(range(seqs[0], 301))
        assert store.hosts()[0]["stored_bytes"] <= 20000
        # Whole chains went: what is kept begins with a keyframe and every kept record reads.
        assert _codecs(store)[0] == CODEC_ZLIB
        assert [r.payload for r in store.range("h1", "b1")] == [_payload(s) for s in seqs]
        assert store.corrupt_skipped == 0
        assert store.seqs("h2", "b1") == list(range(1, 11))  # another host is untouched
        # The next record after a trim starts a chain of its own.
        _fill(store, "h1", 1, start=301)
        assert _codecs(store)[-1] == CODEC_ZLIB


def test_store_retention_by_age_against_the_host_newest(tmp_path):
    with CollectorStore(tmp_path, max_host_age_s=30) as store:
        _fill(store, "h1", 150, step_ns=10**9)  # 150 s of records: chains 1-60, 61-120, 121-150
        store.begin()
        store.add_gap("h1", "a1", "b1", 5, 6, "not_kept")
        deleted = store.enforce_retention("h1")
        store.commit()
        seqs = store.seqs("h1", "b1")
        assert deleted == 150 - len(seqs)
        # Older than newest - 30 s: the first chain entirely; the second ends at 120 s, kept whole.
        assert seqs[0] == KEYFRAME_EVERY + 1 and seqs[-1] == 150
        assert store.gaps("h1") == []  # a gap before what is kept is aged out with it
        assert len(list(store.range("h1", "b1"))) == len(seqs) and store.corrupt_skipped == 0


def test_store_gaps_merge_and_resume_points(tmp_path):
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 5)
        store.begin()
        store.add_gap("h1", "a1", "b1", 6, 9, "not_kept")
        store.add_gap("h1", "a1", "b1", 6, 12, "not_kept")  # the same gap, seen longer
        store.add_gap("h1", "a1", "b0", 40, None, "boot_not_kept")
        store.commit()
        _fill(store, "h1", 3, start=13)
        accounted, closed, last = store.resume_points("h1", "a1")
        assert accounted == {"b1": 15, "b0": 39}
        assert closed == {"b0"}
        assert last[:2] == ("b1", 15)
        gaps = [(g["boot_id"], g["from_seq"], g["to_seq"]) for g in store.gaps("h1")]
        assert gaps == [("b1", 6, 12), ("b0", 40, None)]
        assert store.resume_points("h1", "other") == ({}, set(), None)


def test_store_skips_a_damaged_record_and_reports_unexplained_holes(tmp_path):
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 6)
        _fill(store, "h1", 6, boot="b2")
        store.db.execute("UPDATE records SET payload = zeroblob(length(payload)) WHERE seq = 3 AND boot_key = 1")
        store.db.execute("DELETE FROM records WHERE seq = 5 AND boot_key = 2")
        # A damaged record takes the rest of its chain with it; so does a missing one.
        assert [r.seq for r in store.range("h1", "b1")] == [1, 2]
        assert store.corrupt_skipped == 4
        assert store.get("h1", "b1", 3) is None and store.get("h1", "b1", 6) is None
        assert store.at_or_before("h1", 10**18 + 4 * 10**9, boot_id="b1").seq == 2  # passed over
        assert [(r.seq, r.payload) for r in store.range("h1", "b2")] == [(s, _payload(s)) for s in (1, 2, 3, 4)]
        assert store.get("h1", "b2", 6) is None
        assert [(g["boot_id"], g["from_seq"], g["to_seq"], g["reason"]) for g in store.gaps("h1")] == [
            ("b2", 5, 5, "missing")]


def test_store_a_record_that_does_not_match_its_crc_is_never_returned(tmp_path):
    """A delta frame that decodes, on a base that decodes, to bytes other than
    those stored (here: frames swapped) is refused by the CRC-32 check."""
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 4)
        frames = dict(store.db.execute("SELECT seq, payload FROM records"))
        store.db.execute("UPDATE records SET payload = ? WHERE seq = 3", (frames[2],))
        assert [r.seq for r in store.range("h1", "b1")] == [1, 2]
        assert store.corrupt_skipped == 2


def test_store_of_the_older_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "collector.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE dictionaries (dict_id INTEGER PRIMARY KEY)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    for readonly in (False, True):
        with pytest.raises(StoreError) as caught:
            CollectorStore(tmp_path, readonly=readonly)
        message = str(caught.value)
        assert str(path) in message and "older collector" in message and "\n" not in message
        assert "schema %d" % SCHEMA_VERSION in message


def test_store_read_only_and_locked(tmp_path):
    with pytest.raises(StoreError, match="no collector store"):
        CollectorStore(tmp_path / "none", readonly=True)
    with CollectorStore(tmp_path) as writer:
        _fill(writer, "h1", 2)
        with pytest.raises(StoreLocked):
            CollectorStore(tmp_path)
        with CollectorStore(tmp_path, readonly=True) as reader:
            assert reader.seqs("h1", "b1") == [1, 2]
            with pytest.raises(sqlite3.Error):
                reader.db.execute("DELETE FROM records")
        assert writer.resolve_host("h1") == "h1"
        with pytest.raises(StoreError, match="no host"):
            writer.resolve_host("h9")


def test_store_finds_the_record_at_or_before_a_time(tmp_path):
    with CollectorStore(tmp_path) as store:
        _fill(store, "h1", 10, wall0=0, step_ns=10)
        _fill(store, "h1", 3, boot="b2", start=1, wall0=1000, step_ns=10)
        assert store.at_or_before("h1", 55).seq == 5
        assert store.at_or_before("h1", 50).seq == 5
        assert store.at_or_before("h1", 5) is None
        assert (store.at_or_before("h1", 2000).boot_id, store.at_or_before("h1", 2000).seq) == ("b2", 3)
        assert store.at_or_before("h1", 2000, boot_id="b1").seq == 10
        assert store.at_or_before("h1", 2000, boot_id="b1", before_seq=4).seq == 3
        assert zlib.crc32(store.get("h1", "b2", 1).payload) == zlib.crc32(_payload(1))


# -- units of the service ----------------------------------------------------

def test_cursor_accounts_for_records_and_gaps():
    cursor = Cursor({"b1": 4}, set(), ("b1", 4, 40))
    cursor.note_record("b1", 5, 50)
    cursor.note_gone("b1", 6, 9)
    assert cursor.next_seq("b1") == 10 and cursor.next_seq("b2") == 1
    cursor.note_gone("b0", 3, None)
    assert "b0" in cursor.closed and cursor.last == ("b1", 5, 50)


def test_backoff_doubles_to_the_cap_with_jitter():
    backoff = Backoff(0.5, cap=4, rng=lambda: 0.5)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    jittered = Backoff(1.0, rng=lambda: 1.0).next()
    assert jittered == pytest.approx(1.2)


def test_status_lags():
    status = AgentStatus("web1", "unix:/x")
    status.update(boot_id="b", agent_boot_id="b", newest_seq=10, agent_newest_seq=14, newest_wall_ns=5 * 10**9)
    snap = status.snapshot(now_ns=7 * 10**9)
    assert snap["lag_seqs"] == 4 and snap["lag_s"] == pytest.approx(2.0)
    status.update(agent_boot_id="c")
    assert status.snapshot()["lag_seqs"] is None


def test_retention_settings_resolve_file_env_command_line(tmp_path):
    """collector.host_max_bytes and .host_max_age: declared in the config with the
    store's defaults, set by file or environment, overridden by the options."""
    from hostdiag.store.sqlite import DEFAULT_MAX_HOST_AGE_S, DEFAULT_MAX_HOST_BYTES
    from hostdiag.apps.config import load_config

    config = load_config(env={})
    assert (config.collector.host_max_bytes, config.collector.host_max_age) == (
        DEFAULT_MAX_HOST_BYTES, DEFAULT_MAX_HOST_AGE_S)
    path = tmp_path / "c.toml"
    path.write_text('[collector]\nhost_max_bytes = "2GiB"\nhost_max_age = "60d"\n')
    config = load_config(str(path), env={"HOSTDIAG_COLLECTOR_HOST_MAX_AGE": "90m"})
    assert (config.collector.host_max_bytes, config.collector.host_max_age) == (2 << 30, 5400.0)
    assert config.source("collector.host_max_age") == "env HOSTDIAG_COLLECTOR_HOST_MAX_AGE"
    args = build_parser().parse_args(["--host-max-bytes", "512MiB", "--host-max-age", "3600"])
    config = load_config(str(path), env={}, overrides=overrides_from(args, None))
    assert (config.collector.host_max_bytes, config.collector.host_max_age) == (512 << 20, 3600.0)
    assert config.source("collector.host_max_bytes") == "command line"
    collector = Collector(config, [], [])
    assert (collector.max_host_bytes, collector.max_host_age_s) == (512 << 20, 3600.0)
    # Options not given leave the file's values alone.
    config = load_config(str(path), env={}, overrides=overrides_from(build_parser().parse_args([]), None))
    assert config.collector.host_max_bytes == 2 << 30 and config.source("collector.store") == "default"


def test_store_url_and_shard_settings_resolve():
    from hostdiag.apps.collector import shard_of
    from hostdiag.apps.config import Shard, load_config

    config = load_config(env={})
    assert config.collector.shard == Shard(1, 1)
    args = build_parser().parse_args(["--shard", "2/3", "--store", "clickhouse://db.example:8123/fleet"])
    config = load_config(env={}, overrides=overrides_from(args, args.store))
    assert config.collector.shard == Shard(2, 3) and config.collector.store == "clickhouse://db.example:8123/fleet"
    config = load_config(env={"HOSTDIAG_COLLECTOR_SHARD": "1/4"})
    assert config.collector.shard == Shard(1, 4)
    # A stable hash: the same shard in every process (CRC-32 of the name, not hash()).
    assert shard_of("web1", 4) == zlib.crc32(b"web1") % 4 + 1
    names = ["host%d" % i for i in range(200)]
    shares = [sum(1 for n in names if shard_of(n, 4) == k) for k in range(1, 5)]
    assert sum(shares) == 200 and min(shares) > 0


def test_client_address_from_config_entries():
    from hostdiag.apps.common import client_address

    assert client_address("unix:/run/a.sock") == "unix:/run/a.sock"
    assert client_address("tcp:10.0.0.1:7781") == "tcp://10.0.0.1:7781"
    assert client_address("tcp:[::1]:7781", "/ca") == "tls://[::1]:7781"
    assert client_address("tcp://[::1]:7781", "/ca") == "tls://[::1]:7781"


# -- the puller's backfill against a scripted agent ------------------------------

class _ScriptedAgent:
    """range_page over a set of kept seqs; ``lies`` are gone ranges it reports
    once although it has them (a reply built while a record was being added)."""

    def __init__(self, kept, lies=(), skip_silently=()):
        self.kept = sorted(kept)
        self.lies = list(lies)
        self.skip_silently = set(skip_silently)  # served by a second, bounded request only
        self.bytes_received = 0
        self.requests = []
        self.closed = 0

    def close(self):
        self.closed += 1

    def range_page(self, from_seq=None, to_seq=None, boot_id=None, limit=100, **_):
        from hostdiag.transport.client import RangePage, SnapshotRecord

        self.requests.append((from_seq, to_seq))
        stop = self.kept[-1] if to_seq is None else min(to_seq, self.kept[-1])
        bounded = to_seq is not None
        wanted = [s for s in self.kept if from_seq <= s <= stop and (bounded or s not in self.skip_silently)]
        page, more = wanted[:limit], len(wanted) > limit
        gone, expected = [], from_seq
        for seq in page:
            if seq > expected and not any(expected <= s < seq for s in self.skip_silently):
                gone.append((expected, seq - 1))
            expected = seq + 1
        if not more and expected <= stop:
            gone.append((expected, stop))
        if self.lies:
            gone.append(self.lies.pop(0))
            page = [s for s in page if not gone[-1][0] <= s <= gone[-1][1]]
        records = [SnapshotRecord(boot_id, s, s * 1000, {"meta": {"seq": s}}) for s in page]
        gone = [_gone(boot_id, a, b) for a, b in gone]
        return RangePage(records, more, page[-1] + 1 if more else None, gone, self.kept[0], self.kept[-1])


def _gone(boot_id, from_seq, to_seq):
    from hostdiag.transport.client import Gone

    return Gone(boot_id, from_seq, to_seq, None, "not_kept")


class _Sink:
    def __init__(self):
        import threading

        self.items = []
        self.stop_event = threading.Event()
        self.poll_interval = 0.1
        self.once = False
        self.store_dir = None

    def put(self, item):
        self.items.append(item)

    def seqs(self):
        return sorted(item[4] for item in self.items if item[0] == "record")

    def gaps(self):
        return [item[4:6] for item in self.items if item[0] == "gap"]


def _puller(sink, agent):
    from hostdiag.apps.config import AgentEntry

    puller = collector_pull.Puller(AgentEntry("web1", "unix:/tmp/x.sock", None, None), None, sink)
    puller._connect = lambda: agent
    return puller


def _info(agent):
    return {"agent_id": "a1", "boot_id": "b1", "boots": [
        {"boot_id": "b1", "oldest_seq": agent.kept[0], "newest_seq": agent.kept[-1], "oldest_wall_ns": 1}]}


def test_backfill_records_exactly_what_the_agent_no_longer_has():
    sink, agent = _Sink(), _ScriptedAgent([1, 2, 3, 6, 7, 8, 9, 10])
    puller, cursor = _puller(sink, agent), Cursor({}, set(), None)
    puller.backfill(agent, "a1", _info(agent), cursor)
    assert sink.seqs() == [1, 2, 3, 6, 7, 8, 9, 10]
    assert sink.gaps() == [(4, 5)]
    assert cursor.next_seq("b1") == 11


def test_backfill_checks_a_gone_notice_before_believing_it():
    sink, agent = _Sink(), _ScriptedAgent(range(1, 11), lies=[(9, 10)])
    puller = _puller(sink, agent)
    puller.backfill(agent, "a1", _info(agent), Cursor({}, set(), None))
    assert sink.seqs() == list(range(1, 11)) and sink.gaps() == []
    assert (9, 10) in agent.requests  # the second look, for exactly those seqs


def test_a_jump_nobody_explained_is_checked_with_the_agent():
    sink, agent = _Sink(), _ScriptedAgent(range(1, 11), skip_silently=[4, 5])
    puller = _puller(sink, agent)
    puller.backfill(agent, "a1", _info(agent), Cursor({}, set(), None))
    assert sink.seqs() == list(range(1, 11)) and sink.gaps() == []


def test_resume_skips_what_the_store_has_and_notes_a_lost_boot():
    sink, agent = _Sink(), _ScriptedAgent(range(1, 21))
    puller = _puller(sink, agent)
    cursor = Cursor({"b0": 7, "b1": 15}, set(), ("b1", 15, 150))
    info = _info(agent)
    puller.backfill(agent, "a1", info, cursor)
    assert sink.seqs() == [16, 17, 18, 19, 20]
    assert sink.gaps() == []  # b0 is older than what we follow: not ours to mourn
    cursor = Cursor({"b9": 7}, set(), ("b9", 7, 10**12))
    sink.items.clear()
    puller.backfill(agent, "a1", info, cursor)
    assert sink.gaps() == [(8, None)] and "b9" in cursor.closed
    assert sink.seqs() == list(range(1, 21))  # the current boot, all of it


def test_a_gone_frame_on_a_subscription_is_checked_on_a_connection_of_its_own():
    sink, agent = _Sink(), _ScriptedAgent(range(1, 11))
    puller = _puller(sink, agent)
    cursor = Cursor({"b1": 5}, set(), ("b1", 5, 5000))
    puller.missing(None, "a1", cursor, "b1", 6, 8, "not_kept")
    assert sink.seqs() == [6, 7, 8] and sink.gaps() == [] and agent.closed == 1
    sink, agent = _Sink(), _ScriptedAgent([1, 2, 3, 4, 5, 9, 10])
    puller = _puller(sink, agent)
    puller.missing(None, "a1", cursor, "b1", 6, 8, "not_kept")
    assert sink.seqs() == [] and sink.gaps() == [(6, 8)]
    assert cursor.next_seq("b1") == 9
