"""The collector's ingest path: what a puller hands the writer besides the bytes
(the snapshot it decoded, and the delta it was built with) is used by the store,
and never changes what is stored or read back.

Snapshots here are real: taken from this host by the sampler, with the process
and socket tables, and a real agent's subscription.
"""

import copy
import signal
import threading
import zlib

import pytest

from hostdiag.apps import collector_pull
from hostdiag.apps.collector import Writer
from hostdiag.apps.collector_pull import Cursor
from hostdiag.encode.delta import apply, delta
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store.history import StoredChange
from hostdiag.store.sqlite import CODEC_ZLIB, CODEC_ZLIB_DELTA, CollectorStore

from agentproc import AgentProcess


@pytest.fixture(scope="module")
def snapshots():
    """Six snapshots of this host: the tables in the first and the fifth, the
    system sections only in the others (as the agent takes them)."""
    from hostdiag.sampler import Sampler
    from hostdiag.sources.hostroot import HostRoot

    with Sampler(HostRoot()) as sampler:
        return [sampler.sample(tables=n in (0, 4)).to_dict() for n in range(6)]


def _rows(store):
    return store.db.execute("SELECT seq, codec, crc32, raw_bytes, stored_bytes, payload FROM records "
                            "ORDER BY seq").fetchall()


def _store(path, snapshots, with_doc):
    store = CollectorStore(str(path))
    store.begin()
    for seq, snapshot in enumerate(snapshots, 1):
        payload = encode_msgpack(snapshot)
        assert store.add_record("h1", "a1", "b1", seq, seq, payload, snapshot if with_doc else None)
    store.commit()
    return store


def test_a_given_document_stores_the_very_rows_decoding_would(tmp_path, snapshots):
    with _store(tmp_path / "decoded", snapshots, with_doc=False) as decoded, \
            _store(tmp_path / "given", snapshots, with_doc=True) as given:
        rows = _rows(given)
        assert rows == _rows(decoded)
        assert [row[1] for row in rows] == [CODEC_ZLIB] + [CODEC_ZLIB_DELTA] * 5
        read = [record.payload for record in given.range("h1", "b1")]
    assert read == [encode_msgpack(s) for s in snapshots]


def test_a_document_that_does_not_match_its_bytes_never_changes_what_is_read(tmp_path, snapshots):
    """The store checks every delta frame against the bytes: a wrong document
    costs a keyframe, and the record read back is the bytes given."""
    wrong = copy.deepcopy(snapshots[2])
    wrong["cpu"] = {"not": "the snapshot"}
    with CollectorStore(str(tmp_path / "s")) as store:
        store.begin()
        for seq, snapshot in enumerate(snapshots[:4], 1):
            store.add_record("h1", "a1", "b1", seq, seq, encode_msgpack(snapshot), wrong if seq == 3 else snapshot)
        store.commit()
        codecs = [row[1] for row in _rows(store)]
        read = {record.seq: decode_msgpack(record.payload) for record in store.range("h1", "b1")}
    assert codecs[2] == CODEC_ZLIB  # the frame built from the wrong document did not give the bytes back
    assert read == {seq: snapshot for seq, snapshot in enumerate(snapshots[:4], 1)}


def _frame(store, seq):
    row = store.db.execute("SELECT codec, payload FROM records WHERE seq = ?", (seq,)).fetchone()
    return row[0], decode_msgpack(zlib.decompress(row[1]))


def test_a_delta_built_on_the_chains_tip_is_stored_as_it_came(tmp_path, snapshots):
    """As a subscription builds records: each from the one before by a delta.
    Built here without prior values, so that the fifth record (the tables,
    after four records without) carries its whole table: the store, left to
    itself, would write it as a change from the first record's table."""
    built, changes = [snapshots[0]], [None]
    for snapshot in snapshots[1:]:
        change = delta(built[-1], snapshot, {})
        built.append(apply(change, built[-1], {}))
        changes.append(change)
    with CollectorStore(str(tmp_path / "s")) as store:
        store.begin()
        for seq, (doc, change) in enumerate(zip(built, changes), 1):
            stored = None if change is None else StoredChange(seq, seq - 1, built[seq - 2], change, {})
            assert store.add_record("h1", "a1", "b1", seq, seq, encode_msgpack(doc), doc, stored)
        store.commit()
        for seq in range(2, 7):
            assert _frame(store, seq) == (CODEC_ZLIB_DELTA, {"d": changes[seq - 1]})
        read = [record.payload for record in store.range("h1", "b1")]
    assert read == [encode_msgpack(doc) for doc in built]
    assert [decode_msgpack(p) for p in read] == snapshots


def test_a_delta_on_another_base_is_not_reused(tmp_path, snapshots):
    """A change whose base is an equal copy (not the document the chain ends
    with), or that names another base seq, is computed again by the store."""
    base, doc = snapshots[0], snapshots[1]
    change = delta(base, doc, {})
    with CollectorStore(str(tmp_path / "s")) as store:
        store.begin()
        store.add_record("h1", "a1", "b1", 1, 1, encode_msgpack(base), base)
        store.add_record("h1", "a1", "b1", 2, 2, encode_msgpack(doc), doc,
                         StoredChange(2, 1, copy.deepcopy(base), {"bogus": "never stored"}, {}))
        store.add_record("h1", "a1", "b1", 3, 3, encode_msgpack(snapshots[2]), snapshots[2],
                         StoredChange(3, 1, doc, {"bogus": "never stored"}, {}))
        store.commit()
        assert _frame(store, 2)[1] == {"d": change}
        assert _frame(store, 3)[1] == {"d": delta(doc, snapshots[2], store._tips[1].prior)}
        read = [record.payload for record in store.range("h1", "b1")]
    assert read == [encode_msgpack(s) for s in snapshots[:3]]


class _Sink:
    """What the collector is to a puller: the items it queues, kept in order."""

    def __init__(self):
        self.items = []
        self.stop_event = threading.Event()
        self.poll_interval = 0.1
        self.once = False
        self.store_dir = None

    def put(self, item):
        self.items.append(item)


def test_a_real_subscription_stores_its_own_deltas_and_reads_back_exactly(workdir, tmp_path):
    from hostdiag.apps.config import AgentEntry

    agent = AgentProcess(workdir, spool={"enabled": False})
    try:
        agent.start()
        agent.wait_ready().close()
        sink = _Sink()
        puller = collector_pull.Puller(AgentEntry("web1", agent.address, None, None), None, sink)
        cursor = Cursor({}, set(), None)
        records = []
        with agent.client() as client:
            newest = client.latest().seq
            for record in client.subscribe(from_seq=newest, idle_timeout=10):
                puller.deliver("a1", cursor, record, verify_with=None)
                records.append(record)
                if len(records) == 6:
                    break
        assert agent.stop() == 0
    finally:
        agent.stop(signal.SIGKILL)
    # The client says how each delta record was built, on the very snapshot before it.
    assert records[0].change is None and all(r.change is not None for r in records[1:])
    for before, record in zip(records, records[1:]):
        assert record.base is before.snapshot and record.base_seq == before.seq
        assert apply(record.change, record.base, record.prior) == record.snapshot
    with CollectorStore(str(tmp_path / "s")) as store:
        writer = Writer(store, None, [], 1.0, threading.Event(), threading.BoundedSemaphore(1))
        assert writer.commit(sink.items)
        for record in records[1:]:
            assert _frame(store, record.seq) == (CODEC_ZLIB_DELTA, {"d": record.change})
        read = [r.payload for r in store.range("web1", records[0].boot_id)]
    assert read == [encode_msgpack(r.snapshot) for r in records]
