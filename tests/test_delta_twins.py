"""The delta encoder's comparisons, compiled (``hostdiag._tablecompare``) and pure
(``hostdiag.encode.tablecompare``), and the shortcuts that make a delta cost what
changed rather than what the tables hold.

Every table test runs over both twins; the compiled one fails (it is not
skipped) when the extension is missing, unless HOSTDIAG_PURE is set. Then
both twins meet the same generated values and must agree, and deltas of real
snapshots with their process and socket tables come out byte for byte the same
whichever twin compares. The shortcuts of encode/delta.py (one pass for two
lists aligned by identity, a positional candidate left unbuilt when it cannot
win, a lower bound that spares encoding a whole table) are held to the long
way round.
"""

import copy
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostdiag.encode import delta as delta_module
from hostdiag.encode import tablecompare
from hostdiag.encode.delta import apply, delta, key_order_fixes, with_key_order
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from twinsupport import compiled_twin

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=["compiled", "pure"])
def twin(request):
    return compiled_twin("tablecompare") if request.param == "compiled" else tablecompare


NAN = float("nan")


@pytest.mark.parametrize("a,b,expected", [
    (1, 1, True),
    (1, 1.0, False),
    (1, True, False),
    (0, False, False),
    (1.0, 1.0, True),
    (NAN, float("nan"), False),
    ("x", "x", True),
    ("x", b"x", False),
    (None, None, True),
    (None, 0, False),
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ({"a": 1, "b": 2}, {"a": 1, "c": 2}, False),
    ({"a": [1, {"b": True}]}, {"a": [1, {"b": 1}]}, False),
    ([1, 2, 3], [1, 2, 3], True),
    ([1, 2, 3], [1, 2], False),
    ([1, 2], (1, 2), False),
    ([[1], [2]], [[1], [2.0]], False),
    ({}, {}, True),
    ([], [], True),
    ({}, [], False),
])
def test_same_compares_types_all_the_way_down(twin, a, b, expected):
    assert twin.same(a, b) is expected
    assert twin.same(b, a) is expected


def test_same_on_one_object_with_nan_inside(twin):
    # The same object is the same, NaN or not (one identity check, as before).
    doc = {"a": [NAN]}
    assert twin.same(doc, doc) is True
    assert twin.same(doc, {"a": [NAN]}) is True  # the same NaN object
    assert twin.same(doc, {"a": [float("nan")]}) is False


def test_deep_nesting_raises_recursion_error(twin):
    deep_a, deep_b = [], []
    for _ in range(sys.getrecursionlimit() + 100):
        deep_a, deep_b = [deep_a], [deep_b]
    with pytest.raises(RecursionError):
        twin.same(deep_a, deep_b)
    maps_a, maps_b = {}, {}
    for _ in range(sys.getrecursionlimit() + 100):
        maps_a, maps_b = {"k": maps_a}, {"k": maps_b}
    with pytest.raises(RecursionError):
        twin.same(maps_a, maps_b)


@pytest.mark.parametrize("old,new,expected", [
    ([], [], []),
    ([1, 2, 3], [1, 2, 3], []),
    ([1, 2, 3], [1, 5, 3], [1]),
    ([1, 2, 3], [1.0, 2, True], [0, 2]),
    ([{"pid": 1}, {"pid": 2}], [{"pid": 2}, {"pid": 1}], [0, 1]),
    ([1, 2, 3, 4], [1, 9], [1]),
    ([1], [1, 2, 3], []),
])
def test_different_positions(twin, old, new, expected):
    assert twin.different_positions(old, new) == expected


@pytest.mark.parametrize("old,new", [((1, 2), [1, 2]), ([1], None), ("ab", "ab")])
def test_different_positions_takes_lists_only(twin, old, new):
    with pytest.raises(TypeError):
        twin.different_positions(old, new)


def _value_change_for_test(a, b):
    # What encode/delta.py's _value_change gives, in short: maps change by a
    # nested delta, anything else is replaced.
    return ("c", {"to": b}) if type(a) is dict and type(b) is dict else ("i", b)


@pytest.mark.parametrize("old,new,expected", [
    # unchanged: one run
    ([{"k": 1}, {"k": 2}, {"k": 3}], [{"k": 1}, {"k": 2}, {"k": 3}], ([[0, 3]], [])),
    # a lone element, a new one, a removed one
    ([{"k": 1}, {"k": 2}, {"k": 3}], [{"k": 3}, {"k": 9}, {"k": 1}], ([2, {"v": {"k": 9}}, 0], [])),
    # a change by a nested delta stays in its run
    ([{"k": 1, "x": 0}, {"k": 2}], [{"k": 1, "x": 5}, {"k": 2}],
     ([[0, 2]], [0, {"to": {"k": 1, "x": 5}}])),
    # a replacement breaks the run
    ([{"k": 1}, 7, {"k": 3}], [{"k": 1}, 8, {"k": 3}], ([0, {"v": 8}, 2], [])),
    # the same values of other types are not the same
    ([{"k": 1, "x": 1}], [{"k": 1, "x": True}], ([0], [0, {"to": {"k": 1, "x": True}}])),
])
def test_keyed_items(twin, old, new, expected):
    idents = {id(e): (e["k"] if type(e) is dict else "n") for e in old + new}
    old_index = {idents[id(e)]: pos for pos, e in enumerate(old)}
    new_idents = [idents[id(e)] for e in new]
    assert twin.keyed_items(old, new, old_index, new_idents, _value_change_for_test) == expected


@pytest.mark.parametrize("old_index,new_idents,error", [
    ({1: 5}, [1], IndexError),      # an old position past the old list
    ({1: -1}, [1], IndexError),
    ({}, [1, 2], IndexError),       # more identities than new elements
    ({}, [[1]], TypeError),         # an unhashable identity
])
def test_keyed_items_rejects_what_does_not_fit(twin, old_index, new_idents, error):
    with pytest.raises(error):
        twin.keyed_items([{"k": 1}], [{"k": 1}], old_index, new_idents, _value_change_for_test)


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)
           | st.floats() | st.text(max_size=4) | st.binary(max_size=4))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text("abc", max_size=2), children,
                                                                     max_size=5),
    max_leaves=25,
)


@st.composite
def value_and_edit(draw):
    """A value and a copy of it with one leaf replaced: mostly near misses."""
    value = draw(values)
    edited = copy.deepcopy(value)
    node = edited
    while type(node) in (dict, list) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if type(node) is dict else range(len(node))))
        if type(node[key]) not in (dict, list) or not node[key]:
            node[key] = draw(scalars)
            break
        node = node[key]
    return value, edited


@HYPOTHESIS
@given(st.one_of(st.tuples(values, values), value_and_edit()))
def test_twins_agree_on_generated_values(pair):
    a, b = pair
    expected = tablecompare.same(a, b)
    assert compiled_twin("tablecompare").same(a, b) is expected
    assert compiled_twin("tablecompare").same(b, a) is expected
    if type(a) is list and type(b) is list:
        assert compiled_twin("tablecompare").different_positions(a, b) == tablecompare.different_positions(a, b)


@HYPOTHESIS
@given(value_and_edit())
def test_same_is_equality_with_types_when_there_is_no_nan(pair):
    a, b = pair
    if "nan" in repr((a, b)):
        return
    assert tablecompare.same(a, b) is (_typed(a) == _typed(b))


def _typed(value):
    if type(value) is dict:
        return {k: _typed(v) for k, v in value.items()}
    if type(value) is list:
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


# -- real snapshots: the same deltas whichever twin compares ---------------------

@pytest.fixture(scope="module")
def table_snapshots():
    """Four snapshots of this host as the agent takes them (tables on the 1st,
    3rd and 4th), through msgpack, with children started and ended between
    them so that the process list changes shape."""
    import subprocess

    from hostdiag.sampler.system import SystemCollector
    from hostdiag.sources.hostroot import HostRoot
    from hostdiag.sources.problems import Problems
    from hostdiag.sources.proc_pid import ProcessTable
    from hostdiag.sources.sock_diag import SocketTable

    root = HostRoot()
    if not root.looks_like_procfs():
        pytest.skip("no procfs at /proc")
    children = []
    snaps = []
    sockets = SocketTable(root)
    processes = ProcessTable(root)
    try:
        with SystemCollector(root) as collector:
            for i in range(4):
                if i == 1:
                    children.extend(subprocess.Popen(["sleep", "60"]) for _ in range(3))
                if i == 3:
                    children.pop(0).kill()
                snap = collector.collect().to_dict()
                if i != 1:
                    problems = Problems()
                    snap["sockets"] = sockets.collect(problems)
                    snap["processes"] = processes.scan(problems)
                else:
                    snap["sockets"] = snap["processes"] = None
                snaps.append(decode_msgpack(encode_msgpack(snap)))
    finally:
        sockets.close()
        for child in children:
            child.kill()
            child.wait()
    return snaps


def _with_pure_twin(monkeypatch):
    monkeypatch.setattr(delta_module, "_same", tablecompare.same)
    monkeypatch.setattr(delta_module, "_different_positions", tablecompare.different_positions)
    monkeypatch.setattr(delta_module, "_keyed_items", tablecompare.keyed_items)


def test_real_deltas_are_the_same_bytes_with_either_twin(table_snapshots, monkeypatch):
    pairs = [(table_snapshots[0], table_snapshots[2], None),
             (table_snapshots[1], table_snapshots[2], {"processes": table_snapshots[0]["processes"],
                                                       "sockets": table_snapshots[0]["sockets"]}),
             (table_snapshots[2], table_snapshots[3], None),
             (table_snapshots[0], table_snapshots[3], None)]
    live = [encode_msgpack(delta(old, new, prior)) for old, new, prior in pairs]
    _with_pure_twin(monkeypatch)
    assert [encode_msgpack(delta(old, new, prior)) for old, new, prior in pairs] == live
    for (old, new, prior), change in zip(pairs, live):
        # Byte for byte once the key order is restored, as the history does
        # (maps of links or mounts that came meanwhile put their new keys last).
        rebuilt = apply(decode_msgpack(change), old, prior)
        rebuilt = with_key_order(rebuilt, key_order_fixes(rebuilt, new))
        assert encode_msgpack(rebuilt) == encode_msgpack(new)


# -- the shortcuts, against the long way round ------------------------------------

records = st.lists(st.fixed_dictionaries({"pid": st.integers(0, 40), "v": values}), max_size=10,
                   unique_by=lambda r: r["pid"])


@st.composite
def aligned_lists(draw):
    """Two lists of records with the same pids in the same order, some edited."""
    old = draw(records.filter(bool))
    new = []
    for record in old:
        record = dict(record)
        if draw(st.booleans()):
            record["v"] = draw(values)
        new.append(record)
    return old, new


@HYPOTHESIS
@given(aligned_lists())
def test_one_pass_over_aligned_lists_gives_both_candidates(pair):
    old, new = pair
    match = delta_module._keyed_match(old, new)
    assert match is not None and match[0] == match[1]
    assert delta_module._aligned_list_deltas(old, new) == (
        delta_module._keyed_list_delta(old, new, match), delta_module._positional_list_delta(old, new))


@HYPOTHESIS
@given(records.filter(bool), records.filter(bool))
def test_a_positional_delta_said_not_to_win_does_not(old, new):
    if len(old) != len(new):
        new = (new * len(old))[:len(old)]
        new = list({r["pid"]: r for r in new}.values())
        if len(new) != len(old):
            return
    match = delta_module._keyed_match(old, new)
    if match is None:
        return
    keyed = delta_module._keyed_list_delta(old, new, match)
    if delta_module._positional_cannot_win(old, new, keyed):
        positional = delta_module._positional_list_delta(old, new)
        assert len(encode_msgpack(positional)) >= len(encode_msgpack(keyed))


@HYPOTHESIS
@given(values)
def test_the_size_floor_is_a_lower_bound(value):
    assert delta_module._encoded_size_floor(value) <= len(encode_msgpack(value))


def test_the_size_floor_decides_a_table_delta_without_encoding_the_table(table_snapshots):
    # What spares encoding a whole table every table sample: the change from
    # one table to the next encodes smaller than the table's lower bound.
    for section in ("processes", "sockets"):
        old, new = table_snapshots[2][section], table_snapshots[3][section]
        change = delta({section: old}, {section: new})
        if section == "processes":
            assert change, "a child ended between the samples: the table changed"
        assert len(encode_msgpack(change)) < delta_module._encoded_size_floor(new) <= len(encode_msgpack(new))


def test_nan_in_a_table_still_round_trips():
    old = {"t": [{"pid": 1, "v": 1.0}, {"pid": 2, "v": NAN}]}
    new = {"t": [{"pid": 1, "v": 2.0}, {"pid": 2, "v": NAN}]}
    rebuilt = apply(delta(old, new), old)
    assert rebuilt["t"][0] == {"pid": 1, "v": 2.0}
    assert math.isnan(rebuilt["t"][1]["v"])
