"""The agent's history: identity, sequences across restarts and boots, ring and
spool together, a real SIGKILL, a real full disk, and what gaps() reports."""

import hashlib
import os
import signal
import textwrap
import uuid
import zlib

import msgpack
import pytest

from hostdiag.encode.delta import apply
from hostdiag.store import History, Record
from hostdiag.store.spool import FLAG_DELTA, RECORD_HEADER, SEGMENT_HEADER, decode_record

from spoolhelpers import FakeClock, kill_after_acks

BOOT = "6f1c2a4e-0d3b-4c55-9a7e-2b8f0c1d9e11"
NEXT_BOOT = "0b9d6c3a-5e2f-4a18-8c7d-3f4e5a6b7c8d"
SECOND = 10 ** 9

# A snapshot-like document per seq, shared with the child process: counters that
# move a little each sample, like the real thing, so dictionary compression is exercised.
SNAPSHOT_SRC = textwrap.dedent("""
    import hashlib
    import msgpack
    def snapshot(seq, big=0):
        return msgpack.packb({
            "meta": {"seq": seq, "host": "test-host", "schema": 1},
            "cpu": {"cpu%d" % i: [seq * 97 + i, seq * 13, 4242 + seq, 0, 17 * i] for i in range(8)},
            "disks": [{"name": "vd%s" % c, "reads": seq * 3 + i, "writes": seq * 5} for i, c in enumerate("abcd")],
            "mounts": [{"path": "/srv/volume%d" % i, "fstype": "ext4", "options": "rw,relatime"} for i in range(20)],
            "blob": b"".join(hashlib.sha256(b"%d %d" % (seq, i)).digest() for i in range(big // 32)),
        })
""")
_ns = {}
exec(SNAPSHOT_SRC, _ns)
snapshot = _ns["snapshot"]


def open_history(directory, boot_id=BOOT, **kw):
    kw.setdefault("spool_fsync_interval_s", None)
    return History(directory, boot_id=boot_id, **kw)


def fill(history, count, start_wall=0, **kw):
    seqs = []
    for _ in range(count):
        seq = history.info()["next_seq"]
        seqs.append(history.append(start_wall + seq * SECOND, snapshot(seq, **kw)))
    return seqs


def check(record, boot_id=BOOT, **kw):
    assert isinstance(record, Record)
    assert record.boot_id == boot_id
    assert record.wall_ns == record.seq * SECOND
    assert record.payload == snapshot(record.seq, **kw)


def segment_paths(directory):
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("seg-"))


def flip_record(directory, seq):
    """Damage record ``seq`` of whichever segment holds it."""
    for path in segment_paths(directory):
        data = open(path, "rb").read()
        pos = SEGMENT_HEADER.size
        while pos < len(data):
            record, end = decode_record(data, pos)
            if record.seq == seq:
                with open(path, "r+b") as f:
                    f.seek(end - 1)
                    f.write(bytes([data[end - 1] ^ 0xFF]))
                return
            pos = end
    raise AssertionError("record %d not found" % seq)


def test_sequences_continue_on_the_same_boot_and_restart_on_a_new_one(tmp_path):
    with open_history(tmp_path) as history:
        assert fill(history, 5) == [1, 2, 3, 4, 5]
        agent_id = history.agent_id
    with open_history(tmp_path) as history:
        assert history.agent_id == agent_id
        assert history.latest().seq == 5  # before the first sample of this process
        assert fill(history, 3) == [6, 7, 8]
        assert [r.seq for r in history.range()] == list(range(1, 9))
    with open_history(tmp_path, boot_id=NEXT_BOOT) as history:
        assert history.agent_id == agent_id
        assert history.latest().boot_id == BOOT  # nothing of this boot yet
        assert history.append(100 * SECOND, snapshot(1)) == 1
        info = history.info()
        assert (info["boot_id"], info["oldest_seq"], info["newest_seq"]) == (NEXT_BOOT, 1, 1)
        assert [(b["boot_id"], b["oldest_seq"], b["newest_seq"]) for b in info["boots"]] == [
            (BOOT, 1, 8), (NEXT_BOOT, 1, 1)]
        # The earlier boot's records stay readable under their own boot id.
        check(history.get(3, boot_id=BOOT))
        assert [r.seq for r in history.range(boot_id=BOOT)] == list(range(1, 9))
        assert history.get(3) is None
        # A boot id from a client may be anything: it names no records.
        assert history.range(boot_id="not-a-boot") == [] and history.get(1, boot_id=b"\x00") is None
        assert history.get(1).payload == snapshot(1) and history.get(1).boot_id == NEXT_BOOT


def test_agent_id_is_persisted_and_recovered(tmp_path):
    with open_history(tmp_path) as history:
        agent_id = history.agent_id
        fill(history, 2)
    assert uuid.UUID(hex=agent_id).version == 4
    assert (tmp_path / "agent_id").read_text().strip() == agent_id
    (tmp_path / "agent_id").unlink()
    with open_history(tmp_path) as history:  # the segments remember it
        assert history.agent_id == agent_id
    assert (tmp_path / "agent_id").read_text().strip() == agent_id

    ring_only = [History(None, boot_id=BOOT) for _ in range(2)]
    assert ring_only[0].agent_id != ring_only[1].agent_id
    assert ring_only[0].info()["spool"] is None


def test_kill_9_of_a_real_agent_process(tmp_path):
    """A child appends snapshots and acknowledges each seq; SIGKILL after 300
    acks; a restart on the same boot serves every acknowledged record and
    continues the sequence."""
    child = SNAPSHOT_SRC + textwrap.dedent("""
        import os, sys
        from hostdiag.store import History
        history = History(sys.argv[1], boot_id=%r, spool_segment_bytes=64 << 10, keyframe_every=10)
        while True:
            seq = history.info()["next_seq"]
            history.append(seq * 10 ** 9, snapshot(seq))
            os.write(1, b"%%d\\n" %% seq)
    """ % BOOT)
    returncode, acked = kill_after_acks(child, tmp_path, 300)
    assert returncode == -signal.SIGKILL and acked >= 300

    with open_history(tmp_path, spool_segment_bytes=64 << 10) as history:
        served = history.range(limit=None)
        assert [r.seq for r in served][:acked] == list(range(1, acked + 1))
        assert len(served) <= acked + 1
        for record in served:
            check(record)
        info = history.info()
        assert info["decode_errors"] == 0 and info["spool"]["corrupt_skipped"] == 0
        assert history.gaps() == []
        newest = served[-1].seq
        assert history.append((newest + 1) * SECOND, snapshot(newest + 1)) == newest + 1


def test_range_spans_spool_and_ring(tmp_path):
    with open_history(tmp_path, ring_max_records=20, keyframe_every=7, spool_segment_bytes=16 << 10) as history:
        fill(history, 200)
        assert history.info()["ring"]["records"] == 20
        everything = history.range(limit=None)
        assert [r.seq for r in everything] == list(range(1, 201))
        for record in everything:
            check(record)
        assert [r.seq for r in history.range(170, 190)] == list(range(170, 191))  # spool then ring
        assert [r.seq for r in history.range(start_seq=50, limit=3)] == [50, 51, 52]
        assert [r.seq for r in history.range(start_ns=100 * SECOND, end_ns=103 * SECOND)] == [100, 101, 102, 103]
        assert [r.seq for r in history.range(start_ns=195 * SECOND)] == list(range(195, 201))
        assert history.range(201, 300) == []
        check(history.get(3))
        check(history.get(199))
        assert history.get(500) is None
        with pytest.raises(ValueError):
            history.range(limit=0)


def test_ring_only_history_keeps_its_bounds():
    history = History(None, boot_id=BOOT, ring_max_records=50, keyframe_every=10)
    fill(history, 120)
    assert [r.seq for r in history.range(limit=None)] == list(range(71, 121))
    for record in history.range(limit=None):
        check(record)
    assert history.get(70) is None
    info = history.info()
    assert (info["oldest_seq"], info["newest_seq"], info["retention"]["spool_bytes"]) == (71, 120, None)
    # The ring never keeps a delta frame without its chain: it evicts keyframe to keyframe,
    # and a chain only once the newest 45 are all after it.
    history = History(None, boot_id=BOOT, ring_max_records=45, keyframe_every=10)
    fill(history, 120)
    assert [r.seq for r in history.range(limit=None)] == list(range(71, 121))
    assert 45 <= history.info()["ring"]["records"] == 50 <= 45 + 10 - 1
    history = History(None, boot_id=BOOT, ring_max_records=1000, ring_max_bytes=64 * 1024)
    fill(history, 100, big=4000)
    assert history.info()["ring"]["bytes"] <= 64 * 1024


def test_compresses_like_a_snapshot_stream(tmp_path):
    """Records share a keyframe's dictionary: far smaller than each compressed alone."""
    with open_history(tmp_path, keyframe_every=60) as history:
        fill(history, 120)
        stats = history.info()["spool"]
    alone = sum(RECORD_HEADER.size + len(zlib.compress(snapshot(s), 6)) for s in range(1, 121))
    assert stats["bytes"] < alone / 2


@pytest.mark.parametrize("damaged, gap", [(15, (15, 20)), (11, (11, 20)), (20, (20, 20))])
def test_gaps_name_what_was_lost(tmp_path, damaged, gap):
    """A damaged record is a gap, and takes along the delta frames after it up
    to the next keyframe (21): they need it to be decoded."""
    with open_history(tmp_path, keyframe_every=10) as history:
        fill(history, 30)
    flip_record(tmp_path, damaged)
    with open_history(tmp_path, keyframe_every=10) as history:
        assert history.gaps() == [{"boot_id": BOOT, "start_seq": gap[0], "end_seq": gap[1]}]
        served = [r.seq for r in history.range(limit=None)]
        assert served == [s for s in range(1, 31) if not gap[0] <= s <= gap[1]]
        assert history.get(damaged) is None
        assert history.info()["decode_errors"] == 0  # skipped at the scan, never tried
        assert history.append(31 * SECOND, snapshot(31)) == 31


def test_full_disk_keeps_history_in_memory_and_recovers(small_fs):
    filler = small_fs / "filler"
    filler.write_bytes(bytes(256 * 1024))
    clock = FakeClock()
    spool_dir = small_fs / "spool"
    options = dict(spool_segment_bytes=64 << 10, spool_retry_interval_s=10, clock=clock, keyframe_every=5)
    history = open_history(spool_dir, **options)
    big = 6000  # little redundancy: the disk fills after some 100 records
    while history.info()["spool"]["degraded"] is None:
        fill(history, 1, big=big)
        assert history.info()["next_seq"] < 1000
    fill(history, 10, big=big)  # raises nothing, in memory only
    info = history.info()
    newest, on_disk = info["newest_seq"], info["spool"]["newest_seq"]
    assert "ENOSPC" in info["spool"]["degraded"] and on_disk < newest
    assert [r.seq for r in history.range(limit=None)] == list(range(1, newest + 1))
    assert history.gaps() == []  # the ring still has what the disk has not
    history.close()

    # A restart on the same boot, disk still full: seqs seen only in memory are not reused.
    history = open_history(spool_dir, **options)
    assert history.info()["next_seq"] == newest + 1
    assert history.gaps() == [{"boot_id": BOOT, "start_seq": on_disk + 1, "end_seq": newest}]
    filler.unlink()
    assert history.append((newest + 1) * SECOND, snapshot(newest + 1, big)) == newest + 1
    fill(history, 3, big=big)
    info = history.info()
    assert info["spool"]["degraded"] is None
    assert info["spool"]["newest_seq"] == newest + 4
    served = history.range(limit=None)
    assert [r.seq for r in served] == list(range(1, on_disk + 1)) + list(range(newest + 1, newest + 5))
    for record in served:
        check(record, big=big)
    history.close()


def test_history_from_config(tmp_path):
    from hostdiag.apps.config import load_config

    config = load_config(env={"HOSTDIAG_SPOOL_DIR": str(tmp_path / "spool"), "HOSTDIAG_RING_MAX_RECORDS": "10",
                              "HOSTDIAG_SPOOL_RETRY_INTERVAL": "2s"})
    with History.from_config(config, boot_id=BOOT) as history:
        fill(history, 12)
        info = history.info()
        assert info["retention"] == {"ring_records": 10, "ring_bytes": 64 << 20,
                                     "spool_bytes": 256 << 20, "spool_age_s": 7 * 86400}
        assert info["spool"]["retry_interval_s"] == 2.0
        assert [r.seq for r in history.range(limit=None)] == list(range(1, 13))
        assert msgpack.unpackb(history.latest().payload)["meta"]["seq"] == 12


# -- delta frames: what is read back is what was appended, byte for byte ----------

def table_doc(seq):
    """A snapshot-like map with the traits the delta frames must survive: tables
    every 5th record and null between, processes that come and go, a map whose
    key order changes from one record to the next, a key that appears in the
    middle of a map, floats, bytes and nested lists."""
    pids = [pid for pid in range(100, 160) if pid != 100 + seq // 5 % 60]  # one gone, one back
    states = {"ESTABLISHED": 3 + seq % 4, "LISTEN": 5, "TIME_WAIT": seq % 3}
    if seq % 2:
        states = dict(reversed(list(states.items())))
    memory = {"total": 8 << 30, "free": (1 << 30) + seq * 4096}
    if seq % 3 == 0:
        memory = {"total": 8 << 30, "cached": seq * 1000, "free": (1 << 30) + seq * 4096}
    return {
        "meta": {"seq": seq, "wall_ns": seq * SECOND, "hostname": "test-host"},
        "cpu": {"user": seq * 97, "system": seq * 13, "load": [0.5 + seq / 100, 0.25, 0.125]},
        "memory": memory,
        "blob": b"\x00\x01" * (seq % 4),
        "processes": None if seq % 5 else {
            "rows": [{"pid": pid, "start_time": pid * 10, "comm": "proc-%d" % pid,
                      "utime": seq * pid // 50 if pid % 10 == 0 else pid,
                      "cmdline": ["/usr/bin/proc", "--id", hashlib.sha256(b"%d" % pid).hexdigest()]}
                     for pid in pids],
            "counts": states,
        },
    }


def segments_of(directory):
    """[[SpoolRecord, ...] per segment file], oldest first."""
    out = []
    for path in segment_paths(directory):
        data = open(path, "rb").read()
        pos, records = SEGMENT_HEADER.size, []
        while pos < len(data):
            record, pos = decode_record(data, pos)
            records.append(record)
        out.append(records)
    return out


def test_delta_frames_give_back_the_very_bytes_appended(tmp_path):
    payloads = {}
    options = dict(keyframe_every=20, spool_segment_bytes=6 << 10)
    with open_history(tmp_path, **options) as history:
        for seq in range(1, 131):
            if seq == 47:
                payload = msgpack.packb([seq, "not a map"])  # stored whole
            elif seq == 88:
                payload = msgpack.packb(table_doc(seq), use_single_float=True)  # not our encoder's bytes
            else:
                payload = msgpack.packb(table_doc(seq), use_bin_type=True)
            payloads[seq] = payload
            assert history.append(seq * SECOND, payload) == seq
        encoding = history.info()["encoding"]
        assert encoding["deltas"] > 100 and encoding["reordered"] > 10 and encoding["exact_fallbacks"] == 1
        assert [r.payload for r in history.range(limit=None)] == [payloads[s] for s in range(1, 131)]
        assert history.info()["decode_errors"] == 0

    segments = segments_of(tmp_path)
    assert len(segments) > 2
    for records in segments:
        assert records[0].base_seq is None  # a segment starts with a keyframe
        held = set()
        for record in records:
            if record.flags & FLAG_DELTA:
                assert record.base_seq == record.seq - 1 and record.base_seq in held
            held.add(record.seq)
    runs = [0]
    for record in (r for records in segments for r in records):
        runs[-1:] = [0] if record.base_seq is None else [runs[-1] + 1]
        assert runs[-1] < 20  # a keyframe at least every 20 records

    # From the spool alone: in order, and one record at a time from a cold start.
    with open_history(tmp_path, **options) as history:
        assert [r.payload for r in history.range(limit=None)] == [payloads[s] for s in range(1, 131)]
    for seq in (1, 19, 20, 21, 48, 88, 89, 130):
        with open_history(tmp_path, **options) as history:
            assert history.get(seq).payload == payloads[seq]
            assert history.get(seq - 1 or 1).payload == payloads[seq - 1 or 1]


def test_a_document_handed_with_its_payload_stores_what_decoding_would(tmp_path):
    """append(wall_ns, payload, doc) keeps the caller's map as the next base
    instead of decoding the payload: the frames stored are the same bytes,
    and a payload the map does not encode to (single floats) still falls
    back to a keyframe."""
    options = dict(keyframe_every=20, spool_segment_bytes=6 << 10)
    payloads = {}
    for directory, hand_doc in (("decoded", False), ("handed", True)):
        with open_history(tmp_path / directory, **options) as history:
            for seq in range(1, 131):
                doc = [seq, "not a map"] if seq == 47 else table_doc(seq)
                payload = msgpack.packb(doc, use_bin_type=True, use_single_float=seq == 88)
                payloads[seq] = payload
                assert history.append(seq * SECOND, payload, doc if hand_doc else None) == seq
            assert history.info()["encoding"]["exact_fallbacks"] == 1
            assert [r.payload for r in history.range(limit=None)] == [payloads[s] for s in range(1, 131)]
    stored = {d: [(r.seq, r.flags, r.base_seq, r.payload) for records in segments_of(tmp_path / d) for r in records]
              for d in ("decoded", "handed")}
    assert stored["handed"] == stored["decoded"]
    with open_history(tmp_path / "handed", **options) as history:
        assert [r.payload for r in history.range(limit=None)] == [payloads[s] for s in range(1, 131)]


def test_newest_change_rebuilds_the_newest_record_exactly_or_is_none():
    """What a subscriber's delta frame may reuse: the change stored for the
    newest record, only while it is the newest, and never for a keyframe or
    a frame that needed key-order fixes."""
    history = History(None, boot_id=BOOT, keyframe_every=20)
    seen = {"delta": 0, "none": 0}
    for seq in range(1, 61):
        doc = table_doc(seq)
        payload = msgpack.packb(doc, use_bin_type=True)
        before = history.info()["encoding"]
        history.append(seq * SECOND, payload, doc)
        after = history.info()["encoding"]
        stored = history.newest_change(seq)
        exact_delta = after["deltas"] > before["deltas"] and after["reordered"] == before["reordered"]
        if not exact_delta:
            assert stored is None
            seen["none"] += 1
            continue
        seen["delta"] += 1
        assert stored.seq == seq and stored.base_seq == seq - 1
        assert msgpack.packb(apply(stored.change, stored.base, stored.prior), use_bin_type=True) == payload
        assert history.newest_change(seq - 1) is None
    assert seen["delta"] > 30 and seen["none"] > 5  # keyframes and reordered maps


def test_a_table_record_is_stored_as_a_change_from_the_table_before(tmp_path):
    with open_history(tmp_path, keyframe_every=60) as history:
        fill_docs = [history.append(seq * SECOND, msgpack.packb(table_doc(seq))) for seq in range(1, 31)]
    assert fill_docs == list(range(1, 31))
    sizes = {r.seq: len(r.payload) for records in segments_of(tmp_path) for r in records}
    whole = len(zlib.compress(msgpack.packb(table_doc(25)), 6))
    # seq 5 carries the first tables of the chain whole; 10, 15... only what changed.
    assert sizes[5] > whole / 2
    assert max(sizes[s] for s in (10, 15, 20, 25, 30)) < whole / 4


def test_key_order_fixes_walk_past_shared_objects_and_scalar_rows_only():
    """The walk skips what cannot hold a reordered map (one object on both
    sides, a list of scalars) and still finds one in a list of mixed rows."""
    from hostdiag.encode.delta import key_order_fixes

    shared = {"z": 1, "a": {"y": 1, "x": 2}}
    got = {"rows": [[1, 2, "x"], [3, {"p": 1, "q": 2}]], "shared": shared, "t": {"b": 1, "c": 2}}
    wanted = {"rows": [[1, 2, "x"], [3, {"q": 2, "p": 1}]], "shared": shared, "t": {"c": 2, "b": 1}}
    assert key_order_fixes(got, wanted) == [[["rows", 1, 1], ["q", "p"]], [["t"], ["c", "b"]]]
    wanted["shared"] = {"a": {"x": 2, "y": 1}, "z": 1}
    assert key_order_fixes(got, wanted)[1:3] == [[["shared"], ["a", "z"]], [["shared", "a"], ["x", "y"]]]


def test_key_order_fixes_restore_what_a_delta_does_not_carry():
    from hostdiag.encode.delta import apply, delta, key_order_fixes, with_key_order

    old = {"a": 1, "m": {"x": 1, "y": 2, "sub": {"p": 1}},
           "rows": [{"k": i, "v": {"p": i, "q": 2}} for i in range(20)]}
    new = {"m": {"y": 3, "x": 1, "sub": {"n": 0, "p": 1}}, "a": 2,
           "rows": [{"k": i, "v": {"q": 2, "p": i, "n": 0} if i == 3 else {"p": i, "q": 2}} for i in range(20)]}
    rebuilt = apply(delta(old, new), old)
    assert rebuilt == new and list(rebuilt) != list(new)
    fixes = key_order_fixes(rebuilt, new)
    assert fixes == [[[], ["m", "a", "rows"]], [["m"], ["y", "x", "sub"]], [["m", "sub"], ["n", "p"]],
                     [["rows", 3, "v"], ["q", "p", "n"]]]
    snapshot = msgpack.packb(rebuilt)
    fixed = with_key_order(rebuilt, msgpack.unpackb(msgpack.packb(fixes)))
    assert msgpack.packb(fixed) == msgpack.packb(new)
    assert msgpack.packb(rebuilt) == snapshot  # pure: the input is left as it was
    assert key_order_fixes(new, new) == []
    for bad in ([[["nope"], ["x"]]], [[[], ["a", "a", "m"]]], [[["m"], ["x"]]], [[["rows", 5], ["k"]]],
                [["m", ["x", "y"]]]):
        with pytest.raises(ValueError):
            with_key_order(rebuilt, bad)


def test_damage_found_while_reading_is_skipped_with_its_chain_never_wrong(tmp_path):
    with open_history(tmp_path, keyframe_every=10) as history:
        fill(history, 30)
    with open_history(tmp_path, keyframe_every=10) as history:
        flip_record(tmp_path, 15)  # after the scan: found by the read's own check
        served = history.range(limit=None)
        assert [r.seq for r in served] == list(range(1, 15)) + list(range(21, 31))
        for record in served:
            check(record)
        assert history.get(17) is None and history.get(20) is None
        info = history.info()
        assert info["spool"]["corrupt_skipped"] == 1 and info["decode_errors"] >= 5
