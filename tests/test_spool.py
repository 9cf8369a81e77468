"""The on-disk spool: real files, a real process killed with SIGKILL, a real full filesystem."""

import os
import signal
import textwrap

import pytest

from hostdiag.store.spool import (
    RECORD_HEADER, SEGMENT_HEADER, Spool, SpoolLocked, decode_record, encode_record,
)

from spoolhelpers import FakeClock, kill_after_acks

BOOT = "6f1c2a4e-0d3b-4c55-9a7e-2b8f0c1d9e11"
MiB = 1024 * 1024

# Shared by the test and the child process it kills: the payload of each seq,
# different lengths and little redundancy, so any mix-up shows.
PAYLOAD_SRC = textwrap.dedent("""
    import hashlib
    def payload(seq, size=None):
        block = hashlib.sha256(b"record %d" % seq).digest()
        size = 64 + (seq * 37) % 900 if size is None else size
        return (block * (size // len(block) + 1))[:size]
""")
_ns = {}
exec(PAYLOAD_SRC, _ns)
payload = _ns["payload"]


def open_spool(directory, **kw):
    kw.setdefault("boot_id", BOOT)
    kw.setdefault("fsync_interval_s", None)
    return Spool(directory, kw.pop("max_bytes", 64 * MiB), kw.pop("max_age_s", 86400),
                 kw.pop("segment_bytes", 1 * MiB), **kw)


def segment_files(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith("seg-"))


def record_offsets(path):
    """{seq: (offset, length)} of the valid records of one segment file, read with the format alone."""
    data = open(path, "rb").read()
    out, pos = {}, SEGMENT_HEADER.size
    while pos < len(data):
        found = decode_record(data, pos)
        assert found is not None, "unexpected damage at %d" % pos
        out[found[0].seq] = (pos, found[1] - pos)
        pos = found[1]
    return out


def fill(spool, first, last, wall=lambda seq: seq * 1000):
    for seq in range(first, last + 1):
        assert spool.append(seq, wall(seq), payload(seq)) is True


def test_records_read_back_after_reopen(tmp_path):
    with open_spool(tmp_path, segment_bytes=16 * 1024) as spool:
        fill(spool, 1, 200)
        assert spool.read(7) == (7000, payload(7))
        assert [r.seq for r in spool.iter_range(10, 20)] == list(range(10, 21))
    with open_spool(tmp_path, segment_bytes=16 * 1024) as spool:
        stats = spool.stats()
        assert (stats["records"], stats["oldest_seq"], stats["newest_seq"]) == (200, 1, 200)
        assert stats["segments"] == len(segment_files(tmp_path)) > 1
        assert stats["bytes"] == sum(os.path.getsize(tmp_path / n) for n in segment_files(tmp_path))
        assert stats["corrupt_skipped"] == stats["torn_truncated"] == 0
        for record in spool.iter_range():
            assert (record.boot_id, record.wall_ns, record.payload) == (BOOT, record.seq * 1000, payload(record.seq))
        assert [r.seq for r in spool.iter_range(start_ns=50_000, end_ns=52_000)] == [50, 51, 52]
        assert spool.read(201) is None
        assert spool.read(7, boot_id="00000000-0000-4000-8000-000000000001") is None


def test_kill_9_loses_no_acknowledged_record(tmp_path):
    """A real child appends and acknowledges each record on a pipe; SIGKILL at an
    arbitrary moment after 400 acks; every acknowledged record reads back intact."""
    child = PAYLOAD_SRC + textwrap.dedent("""
        import os, sys
        from hostdiag.store.spool import Spool
        spool = Spool(sys.argv[1], 64 << 20, 86400, 16 << 10, boot_id=%r, fsync_interval_s=None)
        seq = 1
        while True:
            spool.append(seq, seq * 1000, payload(seq))
            os.write(1, b"%%d\\n" %% seq)
            seq += 1
    """ % BOOT)
    returncode, acked = kill_after_acks(child, tmp_path, 400)
    assert returncode == -signal.SIGKILL
    assert acked >= 400

    with open_spool(tmp_path, segment_bytes=16 * 1024) as spool:
        for seq in range(1, acked + 1):
            assert spool.read(seq) == (seq * 1000, payload(seq)), seq
        served = [r.seq for r in spool.iter_range()]
        # At most the record being written when killed is there unacknowledged.
        assert served[:acked] == list(range(1, acked + 1)) and len(served) <= acked + 1
        for record in spool.iter_range():
            assert record.payload == payload(record.seq)
        assert spool.stats()["corrupt_skipped"] == 0
        assert spool.append(served[-1] + 1, 0, b"after restart")
    assert len(segment_files(tmp_path)) > 2


@pytest.mark.parametrize("cut", [1, 20, RECORD_HEADER.size, RECORD_HEADER.size + 30, -1, "zeros"])
def test_torn_tail_is_truncated(tmp_path, cut):
    with open_spool(tmp_path) as spool:
        fill(spool, 1, 30)
    (name,) = segment_files(tmp_path)
    path = tmp_path / name
    good_size = os.path.getsize(path)
    whole = encode_record(31, 31000, bytes(16), 0, payload(31))
    tail = bytes(4096) if cut == "zeros" else whole[:cut]
    with open(path, "ab") as f:
        f.write(tail)

    with open_spool(tmp_path) as spool:
        stats = spool.stats()
        assert stats["torn_truncated"] == 1 and stats["corrupt_skipped"] == 0
        assert os.path.getsize(path) == good_size
        assert [r.seq for r in spool.iter_range()] == list(range(1, 31))
        assert spool.read(31) is None
        fill(spool, 31, 35)
    with open_spool(tmp_path) as spool:
        assert spool.stats()["torn_truncated"] == 0
        assert [r.payload for r in spool.iter_range()] == [payload(s) for s in range(1, 36)]


def test_torn_segment_creation_is_dropped(tmp_path):
    with open_spool(tmp_path) as spool:
        fill(spool, 1, 5)
    # Killed after creating the next segment and before its header was whole.
    (tmp_path / "seg-00000000000000ff.hds").write_bytes(b"HDSPOOL\x00" + bytes(12))
    with open_spool(tmp_path) as spool:
        assert spool.stats()["torn_truncated"] == 1
        assert segment_files(tmp_path) == ["seg-0000000000000001.hds"]
        fill(spool, 6, 6)
    assert segment_files(tmp_path)[-1] == "seg-0000000000000100.hds"


# Where in record 15 a byte is flipped: payload, length, magic, seq, checksum.
@pytest.mark.parametrize("where", [RECORD_HEADER.size + 3, 8, 0, 16, 5])
def test_corrupt_record_in_the_middle_is_skipped_and_counted(tmp_path, where):
    with open_spool(tmp_path) as spool:
        fill(spool, 1, 30)
    (name,) = segment_files(tmp_path)
    path = tmp_path / name
    offset, _length = record_offsets(path)[15]
    with open(path, "r+b") as f:
        f.seek(offset + where)
        byte = f.read(1)
        f.seek(offset + where)
        f.write(bytes([byte[0] ^ 0x5A]))

    with open_spool(tmp_path) as spool:
        stats = spool.stats()
        assert stats["corrupt_skipped"] == 1 and stats["torn_truncated"] == 0
        assert spool.read(15) is None
        assert spool.read(16) == (16000, payload(16))
        assert [r.seq for r in spool.iter_range()] == [s for s in range(1, 31) if s != 15]
        assert spool.seq_runs() == [(1, 14), (16, 30)]
        fill(spool, 31, 31)  # still appendable after the damage


def test_damage_after_the_scan_is_caught_on_read(tmp_path):
    with open_spool(tmp_path) as spool:
        fill(spool, 1, 10)
        path = tmp_path / segment_files(tmp_path)[0]
        offset, length = record_offsets(path)[4]
        with open(path, "r+b") as f:
            f.seek(offset + length - 1)
            last = f.read(1)[0]
            f.seek(offset + length - 1)
            f.write(bytes([last ^ 0xFF]))
        assert spool.read(4) is None
        assert spool.read(4) is None
        assert spool.stats()["corrupt_skipped"] == 1  # counted once
        assert [r.seq for r in spool.iter_range(3, 5)] == [3, 5]


def test_record_without_its_base_is_never_served(tmp_path):
    with open_spool(tmp_path) as spool:
        assert spool.append(1, 1000, payload(1))
        for seq in range(2, 6):
            assert spool.append(seq, seq * 1000, payload(seq), flags=0x3, base_seq=1)
        assert spool.append(6, 6000, payload(6))
        assert spool.get(3).base_seq == 1 and spool.get(6).base_seq is None
    path = tmp_path / segment_files(tmp_path)[0]
    offset, _length = record_offsets(path)[1]
    with open(path, "r+b") as f:
        f.seek(offset + RECORD_HEADER.size)
        f.write(b"\x00\x00")
    with open_spool(tmp_path) as spool:
        stats = spool.stats()
        assert (stats["corrupt_skipped"], stats["orphans_skipped"]) == (1, 4)
        assert [r.seq for r in spool.iter_range()] == [6]


def test_a_chain_is_cut_where_a_record_is_damaged(tmp_path):
    """Each record needing the one before (the history's delta frames): a damaged
    record makes every later one of its chain an orphan, up to the next record
    without a base."""
    with open_spool(tmp_path) as spool:
        for seq in range(1, 21):
            base = None if seq in (1, 11) else seq - 1
            assert spool.append(seq, seq * 1000, payload(seq), flags=0x5 if base else 0x1, base_seq=base)
    path = tmp_path / segment_files(tmp_path)[0]
    offset, length = record_offsets(path)[4]
    last = path.read_bytes()[offset + length - 1]
    with open(path, "r+b") as f:
        f.seek(offset + length - 1)
        f.write(bytes([last ^ 0xFF]))
    with open_spool(tmp_path) as spool:
        stats = spool.stats()
        assert (stats["corrupt_skipped"], stats["orphans_skipped"]) == (1, 6)
        assert [r.seq for r in spool.iter_range()] == [1, 2, 3] + list(range(11, 21))
        assert spool.seq_runs() == [(1, 3), (11, 20)]


def test_base_rules(tmp_path):
    with open_spool(tmp_path, segment_bytes=4096, max_bytes=1 * MiB) as spool:
        assert spool.next_append_starts_segment
        with pytest.raises(ValueError):
            spool.append(1, 0, b"x", base_seq=0)  # nothing to depend on
        assert spool.append(1, 0, b"k")
        assert not spool.next_append_starts_segment
        assert spool.append(2, 0, b"d", base_seq=1)
        assert spool.append(3, 0, bytes(5000), base_seq=1)  # fills the segment: it is closed
        assert spool.next_append_starts_segment
        with pytest.raises(ValueError):
            spool.append(4, 0, b"d", base_seq=1)  # its base is in a closed segment
        with pytest.raises(ValueError):
            spool.append(3, 0, b"again")  # seqs only grow


def test_retention_by_bytes(tmp_path):
    max_bytes = 64 * 1024
    with open_spool(tmp_path, max_bytes=max_bytes, segment_bytes=8 * 1024) as spool:
        for seq in range(1, 501):
            assert spool.append(seq, seq, payload(seq))
            on_disk = sum(os.path.getsize(tmp_path / n) for n in segment_files(tmp_path))
            assert on_disk == spool.stats()["bytes"] <= max_bytes
        stats = spool.stats()
        assert stats["deleted_segments"] > 0 and stats["newest_seq"] == 500
        assert spool.read(1) is None and spool.read(500) == (500, payload(500))
        kept = [r.seq for r in spool.iter_range()]
        assert kept == list(range(stats["oldest_seq"], 501))
    with open_spool(tmp_path, max_bytes=max_bytes, segment_bytes=8 * 1024) as spool:
        assert [r.seq for r in spool.iter_range()] == kept
    # A smaller budget applies on the next open.
    with open_spool(tmp_path, max_bytes=32 * 1024, segment_bytes=8 * 1024) as spool:
        assert spool.stats()["bytes"] <= 32 * 1024
        assert spool.stats()["newest_seq"] == 500


def test_retention_by_age(tmp_path):
    second = 10 ** 9
    with open_spool(tmp_path, max_age_s=60, segment_bytes=4096) as spool:
        for seq in range(1, 201):  # one record per second of wall time
            assert spool.append(seq, seq * second, payload(seq))
        kept = [r.seq for r in spool.iter_range()]
        assert kept[-1] == 200 and 1 not in kept
        # Nothing younger than 60 s was deleted; whole segments go, so a few older stay.
        assert set(range(140, 201)) <= set(kept) and kept[0] <= 140
        assert kept == list(range(kept[0], 201))
        # A day later only the segment being written is left.
        assert spool.append(201, 201 * second + 86400 * second, payload(201))
        assert spool.stats()["segments"] == 1
        assert [r.seq for r in spool.iter_range()][-1] == 201


def test_one_writer_per_directory(tmp_path):
    with open_spool(tmp_path) as spool:
        fill(spool, 1, 3)
        with pytest.raises(SpoolLocked):
            open_spool(tmp_path)
    path = tmp_path / segment_files(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(b"HDRC partial")
    size = os.path.getsize(path)
    reader = open_spool(tmp_path, readonly=True)  # takes no lock
    assert [r.seq for r in reader.iter_range()] == [1, 2, 3]
    assert reader.stats()["torn_truncated"] == 1
    assert os.path.getsize(path) == size  # a reader never truncates
    with open_spool(tmp_path) as spool:  # the lock died with its holder
        assert spool.stats()["torn_truncated"] == 1
        assert os.path.getsize(path) < size
        fill(spool, 4, 5)
        reader.scan()  # the reader sees what the writer added since
        assert [r.seq for r in reader.iter_range()] == [1, 2, 3, 4, 5]
        assert reader.stats()["torn_truncated"] == 0
    reader.close()


def test_full_disk_degrades_and_recovers(small_fs):
    filler = small_fs / "filler"
    filler.write_bytes(bytes(256 * 1024))
    clock = FakeClock()
    directory = small_fs / "spool"
    spool = open_spool(directory, segment_bytes=64 * 1024, clock=clock, retry_interval_s=10)
    seq, written = 1, []
    while seq < 1000:
        if not spool.append(seq, seq, payload(seq, 8000)):
            break
        written.append(seq)
        seq += 1
    stats = spool.stats()
    assert stats["degraded"] is not None and "ENOSPC" in stats["degraded"], stats
    assert stats["write_errors"] == 1 and len(written) > 50
    for later in range(seq + 1, seq + 6):  # keeps returning, raises nothing, writes nothing
        assert spool.append(later, later, payload(later, 8000)) is False
    assert spool.stats()["dropped_while_degraded"] == 5
    assert [r.seq for r in spool.iter_range()] == written

    filler.unlink()
    seq += 6
    assert spool.append(seq, seq, payload(seq, 8000)) is False  # the backoff has not passed
    clock.now += 10
    seq += 1
    before = set(segment_files(directory))
    assert spool.append(seq, seq, payload(seq, 8000)) is True
    stats = spool.stats()
    assert stats["degraded"] is None and stats["recoveries"] == 1
    (new_segment,) = set(segment_files(directory)) - before
    assert spool.get(seq) is not None
    spool.close()

    with open_spool(directory, segment_bytes=64 * 1024) as spool:
        stats = spool.stats()
        assert stats["corrupt_skipped"] == stats["torn_truncated"] == 0
        assert [r.seq for r in spool.iter_range()] == written + [seq]
        for record in spool.iter_range():
            assert record.payload == payload(record.seq, 8000)
