"""The collector's ingest path: what a puller hands the writer besides the bytes
(the snapshot it decoded) is used by the store, and never changes what is stored.

Snapshots here are real: taken from this host by the sampler, with the process
and socket tables, and then changed as the next samples would change them.
"""

import copy

import pytest

from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store.sqlite import CODEC_ZLIB, CODEC_ZLIB_DELTA, CollectorStore


@pytest.fixture(scope="module")
def snapshots():
    """Six snapshots of this host: a table sample, then system-only ones whose counters grow."""
    from hostdiag.sampler import Sampler
    from hostdiag.sources.hostroot import HostRoot

    with Sampler(HostRoot()) as sampler:
        first = sampler.sample(tables=True).to_dict()
        rest = [sampler.sample(tables=False).to_dict() for _ in range(5)]
    return [first] + rest


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
