"""Deltas between snapshot dicts: exact round trips, small frames, safe apply."""

import copy
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostdiag.encode.delta import apply, delta
from hostdiag.encode.wire import encode_msgpack


def roundtrip(old, new):
    """The delta, after a msgpack round trip, applied to a copy of old, equals new."""
    before = copy.deepcopy(old)
    change = delta(old, new)
    wire = msgpack.unpackb(encode_msgpack(change), raw=False, strict_map_key=True)
    result = apply(wire, old)
    assert result == new
    assert _typed(result) == _typed(new)
    assert old == before, "delta or apply mutated the base"
    return change


def _typed(value):
    """value with every scalar tagged by its type: 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def test_equal_dicts_give_an_empty_delta():
    snap = {"a": 1, "b": {"c": [1, 2, 3]}}
    assert delta(snap, copy.deepcopy(snap)) == {}
    assert apply({}, snap) == snap


@pytest.mark.parametrize("old,new", [
    ({}, {"a": 1}),
    ({"a": 1}, {}),
    ({"a": 1}, {"a": 2}),
    ({"a": 10 ** 12}, {"a": 10 ** 12 + 1500}),
    ({"a": 5}, {"a": -(2 ** 63)}),
    ({"a": 2 ** 64 - 1}, {"a": 0}),
    ({"a": 1}, {"a": 1.0}),
    ({"a": 1}, {"a": True}),
    ({"a": True}, {"a": 1}),
    ({"a": 1.5}, {"a": 2.25}),
    ({"a": None}, {"a": {"b": 1}}),
    ({"a": {"b": 1}}, {"a": None}),
    ({"a": "x"}, {"a": b"x"}),
    ({"a": [1, 2, 3]}, {"a": [1, 2, 3, 4, 5]}),
    ({"a": [1, 2, 3, 4, 5]}, {"a": [1, 2]}),
    ({"a": [1, 2, 3, 4, 5]}, {"a": []}),
    ({"a": []}, {"a": [1, 2, 3, 4, 5]}),
    ({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}, {"x": 3}]}),
    ({"a": {"b": {"c": {"d": 1}}}}, {"a": {"b": {"c": {"d": 2, "e": 3}}}}),
    ({"z": 1, "a": 2, "m": 3}, {"m": 3, "z": 2, "a": 2, "b": 0}),
])
def test_table_of_changes_round_trip(old, new):
    roundtrip(old, new)


def procs(*pids, start=1000, utime=0):
    return [{"pid": pid, "start_time": start + pid, "comm": "p%d" % pid, "utime": utime + pid,
             "cmdline": ["/usr/bin/p%d" % pid, "--flag"]} for pid in pids]


def test_keyed_lists_follow_identity_through_inserts_and_removals():
    old = {"processes": procs(*range(1, 200))}
    new_pids = [p for p in range(1, 200) if p not in (5, 77)] + [250, 251]
    new_pids.insert(10, 150_000)
    new = {"processes": procs(*new_pids, utime=3)}
    change = roundtrip(old, new)
    # Far cheaper than sending the table again: the unchanged records are runs.
    assert len(encode_msgpack(change)) < len(encode_msgpack(new)) / 3


def test_a_reused_pid_is_a_new_process():
    old = {"processes": procs(1, 2, 3, 4, 5)}
    new = {"processes": procs(1, 2, 3, 4, 5)}
    new["processes"][2] = dict(new["processes"][2], start_time=99999, comm="other")
    roundtrip(old, new)


def test_reordered_records_round_trip():
    old = {"disks": [{"name": n, "reads": i} for i, n in enumerate("abcdefgh")]}
    new = {"disks": list(reversed(old["disks"]))}
    roundtrip(old, new)


def test_table_rows_follow_their_identity_columns():
    fields = ["family", "state", "local", "local_port", "remote", "remote_port", "rtt", "inode"]

    def row(i, rtt=100):
        return [2, 1, "10.0.0.1", 40000 + i, "10.0.0.2", 443, rtt, 0]  # inode 0: not unique

    old = {"tcp_table": {"fields": fields, "rows": [row(i) for i in range(2000)], "dropped": 0}}
    rows = [row(i, rtt=150 if i % 100 == 0 else 100) for i in range(2000) if i not in (3, 1500)]
    rows.insert(700, row(5000))
    new = {"tcp_table": {"fields": fields, "rows": rows, "dropped": 0}}
    change = roundtrip(old, new)
    assert len(encode_msgpack(change)) < 1000, len(encode_msgpack(change))


def test_a_record_that_changed_shape_is_sent_literally():
    old = {"l": [{"name": "a", "v": 1}, {"name": "b", "v": 2}, {"name": "c", "v": 3}]}
    new = {"l": [{"name": "a", "v": 1}, {"name": "b", "v": 2}, {"name": "c", "v": [1, 2]}]}
    roundtrip(old, new)
    rows_old = {"t": {"fields": ["name", "v"], "rows": [["a", 1], ["b", 2], ["c", 3], ["d", 4]]}}
    rows_new = {"t": {"fields": ["name", "v"], "rows": [["a", 1], ["b", 2, 9], ["c", 4], ["e", 5]]}}
    roundtrip(rows_old, rows_new)


def test_lists_without_identity_use_positions():
    old = {"v": list(range(100))}
    new = {"v": list(range(100))}
    new["v"][50] = -1
    change = roundtrip(old, new)
    assert len(encode_msgpack(change)) < 20


def test_a_table_back_from_null_is_a_change_from_its_prior_value():
    table = {"processes": procs(*range(1, 300)), "counts": {"total": 299}}
    later = {"processes": procs(*range(2, 301), utime=5), "counts": {"total": 299}}
    old = {"cpu": 1, "processes": None}
    new = {"cpu": 2, "processes": later}
    change = delta(old, new, prior={"processes": table})
    assert list(change["p"]) == ["processes"]
    assert len(encode_msgpack(change)) < len(encode_msgpack(later)) / 5
    wire = msgpack.unpackb(encode_msgpack(change), raw=False, strict_map_key=True)
    assert apply(wire, old, prior={"processes": table}) == new
    with pytest.raises(ValueError):
        apply(wire, old)
    # Unchanged since the prior value: an empty change.
    same = delta(old, {"cpu": 1, "processes": table}, prior={"processes": table})
    assert same == {"p": {"processes": {}}}
    # Without a prior value, or a prior of another shape, the value is sent whole.
    assert "p" not in delta(old, new) and "p" not in delta(old, new, prior={"processes": [1]})


def test_apply_rejects_deltas_that_do_not_fit():
    base = {"a": 1, "b": [1, 2, 3, 4]}
    for bad in (
        {"i": [5, 1]},                 # no key at position 5
        {"i": [0]},                    # not pairs
        {"n": [0, 1.5]},               # an integer step that is not an integer
        {"c": [0, {"i": [0, 1]}]},     # a nested delta for an int
        {"c": [1, {"l": 9}]},          # a list length that does not add up
        {"c": [1, {"l": 2, "m": [[0, 9]]}]},
        {"c": [1, {"l": 1, "m": [[0, 1, 2]]}]},   # an item that is neither run nor {"v": ...}
        {"c": [1, {"l": 1, "m": [{"x": 1}]}]},
        {"q": 1},                      # an unknown member
        {"s": [1, 2]},                 # added keys that are not a map
        {"r": ["a"]},                  # a removed position that is not an int
    ):
        with pytest.raises(ValueError):
            apply(bad, base)
    with pytest.raises(ValueError):
        apply([], base)


def test_delta_takes_dicts_only():
    with pytest.raises(TypeError):
        delta([], {})


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8))
keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


def _records(children):
    return st.lists(st.fixed_dictionaries({"pid": st.integers(0, 30), "v": children}),
                    max_size=8, unique_by=lambda r: r["pid"])


tables = st.fixed_dictionaries({
    "fields": st.just(["name", "v"]),
    "rows": st.lists(st.lists(st.one_of(st.integers(0, 9), scalars), min_size=1, max_size=3), max_size=8),
})


values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6)
                      | _records(children) | tables),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=8)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, documents)
def test_hypothesis_any_two_documents_round_trip(old, new):
    roundtrip(old, new)


@st.composite
def document_and_edit(draw):
    """A document and a version of it with a few edits: the common case."""
    old = draw(documents)
    new = copy.deepcopy(old)
    for _ in range(draw(st.integers(0, 5))):
        if new and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(new)))
            if draw(st.booleans()):
                del new[key]
            else:
                new[key] = draw(values)
        else:
            new[draw(keys)] = draw(values)
    return old, new


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document_and_edit())
def test_hypothesis_edited_documents_round_trip(pair):
    roundtrip(*pair)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document_and_edit(), st.dictionaries(keys, st.dictionaries(keys, values, max_size=4), max_size=4))
def test_hypothesis_null_keys_with_prior_values_round_trip(pair, prior):
    old, new = pair
    old = dict(old, **{key: None for key in prior})
    change = delta(old, new, prior=prior)
    wire = msgpack.unpackb(encode_msgpack(change), raw=False, strict_map_key=True)
    assert apply(wire, old, prior=prior) == new


@pytest.fixture(scope="module")
def real_snapshots():
    from hostdiag.sampler.system import SystemCollector
    from hostdiag.sources.hostroot import HostRoot

    root = HostRoot()
    if not root.looks_like_procfs():
        pytest.skip("no procfs at /proc")
    snaps = []
    with SystemCollector(root) as collector:
        for i in range(4):
            if i:
                time.sleep(0.5)
            snaps.append(collector.collect().to_dict())
    return snaps


def test_real_snapshots_round_trip_and_stay_small(real_snapshots):
    for old, new in zip(real_snapshots, real_snapshots[1:]):
        change = roundtrip(old, new)
        assert len(encode_msgpack(change)) <= 2048, "a system-counter delta must fit in 2 KB"
        assert len(encode_msgpack(change)) < len(encode_msgpack(new)) / 5


def test_real_snapshot_chain_rebuilds_the_last(real_snapshots):
    state = real_snapshots[0]
    for new in real_snapshots[1:]:
        state = apply(delta(state, new), state)
    assert state == real_snapshots[-1]
