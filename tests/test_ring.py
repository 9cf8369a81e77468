"""The memory ring keeps the newest ``max_records`` whatever the chains
(issue 8, item 7: a ring of 30 with a keyframe every 60 used to hold anywhere
from 1 to 30 records in a sawtooth)."""

import msgpack
import pytest

from hostdiag.store import History, Ring

BOOT = "2d880340-f39a-4ddb-94d1-2cbfd776c902"


@pytest.mark.parametrize("max_records,chain", [(30, 60), (30, 7), (1, 60), (5, 5), (10, 1)])
def test_the_ring_always_holds_the_newest_max_records(max_records, chain):
    ring = Ring(max_records, 1 << 30)
    for seq in range(1, 400):
        base = None if (seq - 1) % chain == 0 else seq - 1
        ring.append(seq, seq, b"x" * 10, 0, base)
        held = [entry.seq for entry in ring.range()]
        newest = list(range(max(1, seq - max_records + 1), seq + 1))
        assert held[-len(newest):] == newest, (seq, held)
        assert len(held) <= max_records + chain - 1
        # Never a record without its base.
        assert ring.oldest().base_seq is None or len(held) == 1


def test_the_byte_bound_still_evicts_whole_chains():
    ring = Ring(1000, 100)
    for seq in range(1, 50):
        ring.append(seq, seq, b"x" * 10, 0, None if seq % 4 == 1 else seq - 1)
        assert ring.bytes <= 100 and ring.oldest().base_seq is None


def test_a_history_with_a_small_ring_serves_its_newest_records():
    with History(None, boot_id=BOOT, ring_max_records=30, keyframe_every=60) as history:
        for seq in range(1, 200):
            history.append(seq, msgpack.packb({"meta": {"n": seq}, "cpu": {"user": seq * 7}}))
            kept = [record.seq for record in history.range(limit=None)]
            assert kept[-min(seq, 30):] == list(range(max(1, seq - 29), seq + 1)), (seq, kept)
            assert history.info()["ring"]["records"] >= min(seq, 30)
