"""Snapshot.to_dict is shallow (the sections' containers are shared): what the
agent encodes and hands its history must be the same as a deep copy gives,
in msgpack's decoded types, and must stay so while the agent goes on."""

import dataclasses

from hostdiag.derive.rates import derive_rates
from hostdiag.encode.prometheus import encode_metrics
from hostdiag.encode.tablecompare import same
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.findings import evaluate
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot


def test_to_dict_is_what_a_deep_copy_gives_and_stays_so_while_sampling_goes_on():
    with Sampler(HostRoot()) as sampler:
        first = sampler.sample(tables=True)
        plain = first.to_dict()
        payload = encode_msgpack(plain)
        assert plain["processes"] is not None and plain["sockets"] is not None
        assert plain["meta"]["errors"] is not None
        # The same map, key order included, as dataclasses.asdict's deep copy.
        assert payload == encode_msgpack(dataclasses.asdict(first))
        # Only msgpack's decoded types: the history may keep it as a delta base.
        assert same(plain, decode_msgpack(payload))
        # The agent's next samples, rates, findings and /metrics leave it as it was.
        previous = first
        for tables in (False, True, True):
            taken = sampler.sample(tables=tables)
            rates = derive_rates(previous, taken)
            encode_metrics(taken.to_dict(), rates, evaluate(taken, rates, previous))
            encode_metrics(first, None, evaluate(first))
            previous = taken
        assert encode_msgpack(plain) == payload
        assert encode_msgpack(first.to_dict()) == payload


def test_to_dict_of_a_system_only_snapshot_has_null_tables():
    with Sampler(HostRoot(), tables=False) as sampler:
        snapshot = sampler.sample()
    plain = snapshot.to_dict()
    assert plain["processes"] is None and plain["sockets"] is None
    assert list(plain) == [f.name for f in dataclasses.fields(snapshot)]
    assert encode_msgpack(plain) == encode_msgpack(dataclasses.asdict(snapshot))
