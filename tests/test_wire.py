"""The JSON and msgpack encoders round-trip real snapshots and refuse garbage."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from hostdiag.sampler.system import SystemCollector
from hostdiag.encode.wire import decode_msgpack, encode_json, encode_msgpack
from hostdiag.sources.hostroot import HostRoot
from hostdiag.model import Snapshot


@pytest.fixture(scope="module")
def snapshot():
    with SystemCollector(HostRoot()) as collector:
        return collector.collect(kmsg=True)


def test_msgpack_round_trip_of_a_real_snapshot(snapshot):
    data = snapshot.to_dict()
    assert decode_msgpack(encode_msgpack(data)) == data
    assert Snapshot.from_dict(decode_msgpack(encode_msgpack(data))) == snapshot


def test_json_round_trip_of_a_real_snapshot(snapshot):
    data = snapshot.to_dict()
    assert json.loads(encode_json(data)) == data


def test_every_document_carries_the_schema_version(snapshot):
    assert decode_msgpack(encode_msgpack(snapshot.to_dict()))["meta"]["schema_version"] == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_is_a_value_error_never_anything_else(payload):
    try:
        decode_msgpack(payload)
    except ValueError:
        pass


def test_truncated_documents_are_refused(snapshot):
    payload = encode_msgpack(snapshot.to_dict())
    for cut in range(0, len(payload), max(1, len(payload) // 200)):
        with pytest.raises(ValueError):
            decode_msgpack(payload[:cut])


def test_from_dict_refuses_the_wrong_shape():
    with pytest.raises(ValueError):
        Snapshot.from_dict({"cpu": {}})
    with pytest.raises(ValueError):
        Snapshot.from_dict({"meta": {"hostname": "x"}})
