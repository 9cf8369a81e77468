"""What damage on disk costs, and how it is reported (issue 8, item 8).

A record that fails its checks costs itself and the rest of its delta chain
(up to the next keyframe); those records are reported with the reason
``corrupt``, never as ``not_kept``. The measurement flips 4 random bytes in a
spool of real snapshots, many times, and counts the records lost; its figures
are in docs/spool.md ("Corruption and what it costs"). Run with ``-s`` to see
them.
"""

import os
import random
import shutil
import socket
import statistics

import pytest

from hostdiag.encode.wire import encode_msgpack
from hostdiag.sampler.system import SystemCollector
from hostdiag.sources.hostroot import HostRoot
from hostdiag.store import History
from hostdiag.store.spool import SEGMENT_HEADER, decode_record
from hostdiag.transport.client import AgentClient, Gone
from hostdiag.transport.flow import Limits
from hostdiag.transport.framing import FrameDecoder, encode_frame
from hostdiag.transport.listeners import Listener
from hostdiag.transport.server import AgentServer

BOOT = "2d880340-f39a-4ddb-94d1-2cbfd776c902"
KEYFRAME_EVERY = 60
RECORDS = 600
TRIALS = 60
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A spool of RECORDS snapshots: one real snapshot of this host, its
    counters moved on per record as a sampler would see them."""
    directory = tmp_path_factory.mktemp("pristine")
    collector = SystemCollector(HostRoot())
    try:
        base = collector.collect().to_dict()
    finally:
        collector.close()
    with History(directory, boot_id=BOOT, keyframe_every=KEYFRAME_EVERY, spool_fsync_interval_s=None) as history:
        for seq in range(1, RECORDS + 1):
            base["meta"]["wall_ns"] += SECOND
            for name, value in list(base["cpu"]["total"].items()):
                if isinstance(value, int):
                    base["cpu"]["total"][name] = value + seq % 7 + 1
            history.append(base["meta"]["wall_ns"], encode_msgpack(base))
    return directory


def _segments(directory):
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".hds"))


def _tail_start(directory):
    """The offset of the newest record in the newest segment."""
    data = open(_segments(directory)[-1], "rb").read()
    pos = start = SEGMENT_HEADER.size
    while pos < len(data):
        start = pos
        pos = decode_record(data, pos)[1]
    return start


def _flip(directory, rng, count=4):
    """Flip ``count`` consecutive bytes at a random place past a segment header;
    True when they hit the newest record (the tail of the newest segment)."""
    tail = _tail_start(directory)
    sizes = [(path, os.path.getsize(path)) for path in _segments(directory)]
    total = sum(size - SEGMENT_HEADER.size for _, size in sizes)
    at = rng.randrange(total - count)
    for path, size in sizes:
        room = size - SEGMENT_HEADER.size
        if at < room:
            with open(path, "r+b") as f:
                f.seek(SEGMENT_HEADER.size + at)
                data = bytearray(f.read(count))
                f.seek(SEGMENT_HEADER.size + at)
                f.write(bytes(b ^ 0xFF for b in data))
            return path == sizes[-1][0] and SEGMENT_HEADER.size + at + count > tail
        at -= room


def _kept_and_damaged(directory):
    with History(directory, boot_id=BOOT, keyframe_every=KEYFRAME_EVERY) as history:
        kept = [record.seq for record in history.range(limit=None)]
        damaged = history.damaged(BOOT, 1, RECORDS)
    return kept, damaged


def test_a_random_flip_costs_at_most_one_chain_and_is_reported_as_corrupt(pristine, tmp_path):
    rng = random.Random(8)
    losses = []
    for trial in range(TRIALS):
        copy = tmp_path / ("t%d" % trial)
        shutil.copytree(pristine, copy)
        hit_tail = _flip(copy, rng)
        kept, damaged = _kept_and_damaged(copy)
        lost = sorted(set(range(1, RECORDS + 1)) - set(kept))
        marked = sorted(seq for start, end in damaged for seq in range(start, end + 1))
        if hit_tail:
            # The newest record damaged reads as a torn write: cut, not damage
            # (its seq was never acknowledged), with the one before if hit too.
            assert lost in ([RECORDS], [RECORDS - 1, RECORDS]) and marked == [], (trial, lost, damaged)
        else:
            # Every record lost is reported as damaged, and nothing kept is.
            assert lost == marked, (trial, lost, damaged)
        # Four bytes hit one record, or two side by side: at most the rest of
        # one chain plus the record before it.
        assert len(lost) <= KEYFRAME_EVERY + 1, (trial, lost)
        losses.append(len(lost))
        shutil.rmtree(copy)
    print("\n4 random bytes flipped in %d records (keyframe every %d), %d trials: records lost "
          "mean %.1f, median %d, max %d, none in %d trials"
          % (RECORDS, KEYFRAME_EVERY, TRIALS, statistics.mean(losses), statistics.median(losses),
             max(losses), losses.count(0)))
    assert max(losses) > 0


def test_a_subscription_is_told_corrupt_for_exactly_the_records_lost(pristine, tmp_path):
    copy = tmp_path / "spool"
    shutil.copytree(pristine, copy)
    # Damage a delta frame in the middle of the first chain: it and the rest of its chain go.
    with open(_segments(copy)[0], "r+b") as f:
        data = bytearray(f.read())
        at = data.find(b"HDRC", SEGMENT_HEADER.size + 1)  # the second record
        for _ in range(9):
            at = data.find(b"HDRC", at + 1)  # ...the eleventh: seq 11
        data[at + 60] ^= 0xFF
        f.seek(0)
        f.write(data)
    with History(copy, boot_id=BOOT, keyframe_every=KEYFRAME_EVERY) as history:
        path = str(tmp_path / "agent.sock")
        server = AgentServer(history, [Listener("unix", path=path)], Limits())
        server.start()
        try:
            with AgentClient.connect("unix:" + path) as client:
                page = client.range_page(from_seq=1, to_seq=70, limit=1000)
                assert [(g.from_seq, g.to_seq, g.reason) for g in page.gone] == [(11, 60, "corrupt")]
                gone, seqs = [], []
                for item in client.subscribe(from_seq=1, idle_timeout=10):
                    if isinstance(item, Gone):
                        gone.append((item.from_seq, item.to_seq, item.reason))
                    else:
                        seqs.append(item.seq)
                    if seqs and seqs[-1] == RECORDS:
                        break
        finally:
            server.stop()
    assert gone == [(11, 60, "corrupt")]
    assert seqs == list(range(1, 11)) + list(range(61, RECORDS + 1))



def test_a_delta_right_after_a_gone_frame_is_based_on_the_record_before_the_gap(pristine, tmp_path):
    copy = tmp_path / "spool"
    shutil.copytree(pristine, copy)
    with History(copy, boot_id=BOOT, keyframe_every=KEYFRAME_EVERY) as history:
        for seq in (20, 21):  # a hole in the first chain: it and the rest of the chain go
            assert history.get(seq) is not None
    with open(_segments(copy)[0], "r+b") as f:
        data = bytearray(f.read())
        at = SEGMENT_HEADER.size
        for _ in range(19):
            at = data.find(b"HDRC", at + 1)  # the twentieth record: seq 20
        data[at + 60] ^= 0xFF
        f.seek(0)
        f.write(data)
    with History(copy, boot_id=BOOT, keyframe_every=KEYFRAME_EVERY) as history:
        path = str(tmp_path / "agent.sock")
        server = AgentServer(history, [Listener("unix", path=path)], Limits())
        server.start()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            s.sendall(encode_frame({"type": "hello", "versions": [1]}))
            s.sendall(encode_frame({"type": "subscribe", "from_seq": 1, "full_every": 1000}))
            decoder = FrameDecoder(64 << 20)
            frames = []
            while not any(m.get("seq") == 61 for m in frames):
                frames.extend(decoder.feed(s.recv(1 << 16)))
            s.close()
        finally:
            server.stop()
    kinds = [(m["type"], m.get("seq", m.get("from_seq"))) for m in frames[2:]]
    assert kinds[19] == ("gone", 20) and frames[2 + 19]["to_seq"] == 60
    after = frames[2 + 20]
    assert (after["type"], after["seq"], after["base_seq"]) == ("delta", 61, 19)
