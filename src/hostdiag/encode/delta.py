"""Deltas between two snapshot dicts, small enough to send every second.

``apply(delta(old, new), old) == new`` exactly, for any plain data (dicts with
str keys, lists, str, bytes, int, float, bool, None). Both functions are pure:
neither mutates its arguments; the result of :func:`apply` shares unchanged
subtrees with the base, so treat bases and results as read-only.

The wire form (docs/protocol.md, "Delta encoding") is plain msgpack data. A
dict delta is a map with these optional members; ``IDX`` is the position of a
key in the *sorted* key list of the base dict, so it does not depend on the
order either side happened to build its dicts in:

``"i"``: ``[IDX, value, ...]``   the key's value is replaced by ``value``
``"n"``: ``[IDX, diff, ...]``    an integer value grows by ``diff`` (counters)
``"c"``: ``[IDX, delta, ...]``   a dict or list value changes by a nested delta
``"s"``: ``{key: value}``        keys the base does not have
``"r"``: ``[IDX, ...]``          keys removed

At the top level only, ``"p"``: ``{key: delta}`` says that a key whose base
value is null now holds a map that is *prior[key]* changed by ``delta``, where
prior is the newest non-null value of that key the receiver holds. The process
and socket tables are taken every few samples and are null in between: their
new value is a small change from the previous table, not from null.

A list delta is a map with ``"l"`` (the new length) and either positional
changes (``"i"``/``"n"``/``"c"`` with element positions, the base truncated or
extended with ``"x"``) or, for lists of records with an identity (``pid`` and
start time, ``name``, ``device``...; the rows of a table map, ``{"fields":
[column names], "rows": [[...], ...]}``, by the same names among its columns),
``"m"``: the new list as a sequence of items, each an int (a base element by
position), a ``[start, stop]`` pair (a run of base elements) or ``{"v":
element}`` (a new element); then ``"c"`` changes by new position. A list is
sent whole when that is not larger.

Integer counters travel as differences because cumulative counters are large
numbers that move little: 1,234,567,890,123 costs 9 bytes, +1,500 costs 3.

A delta carries data, not key order: :func:`apply` keeps the base's order and
puts new keys last. Where the order matters too (the history stores deltas
and must give back the very bytes it was given), :func:`key_order_fixes`
lists the maps whose order differs and :func:`with_key_order` restores it.
The protocol never sends these.
"""

from operator import itemgetter

from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.parsers import load_twin

# The comparisons made of every element of a table: compiled
# (csrc/_tablecompare.pyx) unless HOSTDIAG_PURE is set or the build lacks it.
_twin = load_twin("hostdiag._tablecompare", "hostdiag.encode.tablecompare")
_same = _twin.same
_different_positions = _twin.different_positions
_keyed_items = _twin.keyed_items

# Fields that identify an element of a list of records, tried in this order.
# The wire form does not name them: matching is the encoder's business only.
IDENTITY_FIELDS = (
    ("pid", "start_time"),
    ("pid", "starttime"),
    ("pid",),
    ("family", "local", "local_port", "remote", "remote_port"),
    ("name",),
    ("device",),
    ("dev",),
    ("mountpoint",),
    ("id",),
    ("inode",),
    ("key",),
)

def delta(old, new, prior=None):
    """The delta turning dict ``old`` into dict ``new`` (``{}`` when equal).

    ``prior``: {key: value} of top-level keys, the newest non-null value the
    receiver holds for each; a key null in ``old`` is then sent as a change
    from its prior value when that is smaller (the ``"p"`` member)."""
    if type(old) is not dict or type(new) is not dict:
        raise TypeError("delta() takes two dicts")
    return _dict_delta(old, new, prior) or {}


def apply(change, base, prior=None):
    """``base`` changed by ``change`` (``prior`` as given to :func:`delta`);
    raises ValueError on a delta that does not fit the base (the caller then
    asks for a full snapshot)."""
    if type(change) is not dict or type(base) is not dict:
        raise ValueError("a delta and its base must be maps")
    try:
        out = _apply_dict({k: v for k, v in change.items() if k != "p"}, base)
        for key, sub in _prior_changes(change).items():
            if prior is None or type(prior.get(key)) is not dict:
                raise KeyError("no prior value for %r" % (key,))
            out[key] = _apply_dict(sub, prior[key])
        return out
    except (IndexError, KeyError, TypeError) as exc:
        raise ValueError("delta does not apply to this base: %s: %s"
                         % (type(exc).__name__, exc)) from None


def prior_keys(change):
    """The top-level keys a delta takes from prior values."""
    return list(_prior_changes(change))


def _prior_changes(change):
    found = change.get("p", {})
    if type(found) is not dict or not all(type(v) is dict for v in found.values()):
        raise TypeError("prior changes are a map of maps")
    return found


def _value_change(old, new, columns=None):
    """How a changed value travels: ("n", diff), ("c", delta) or ("i", new).
    ``columns``: the column names when the value is the rows of a table."""
    to, tn = type(old), type(new)
    if to is int and tn is int:
        diff = new - old
        if abs(diff) < abs(new):
            return "n", diff
        return "i", new
    if to is tn and to is dict:
        sub = _dict_delta(old, new)
        if sub is not None:
            return "c", sub
    elif to is tn and to is list:
        sub = _list_delta(old, new, columns)
        if sub is not None:
            return "c", sub
    return "i", new


def _table_columns(old, new):
    """The column names of a table map ({"fields": [names], "rows": [[...]]})
    whose columns did not change, else None."""
    fields = new.get("fields")
    if (type(fields) is list and "rows" in new and _same(old.get("fields"), fields)
            and all(type(f) is str for f in fields)):
        return fields
    return None


def _dict_delta(old, new, prior=None):
    """A dict delta, or None when the two are the same."""
    keys = sorted(old)
    out = {}
    removed = []
    columns = _table_columns(old, new)
    for idx, key in enumerate(keys):
        if key not in new:
            removed.append(idx)
            continue
        a, b = old[key], new[key]
        if _same(a, b):
            continue
        if a is None and prior and type(b) is dict and type(prior.get(key)) is dict:
            sub = _dict_delta(prior[key], b) or {}
            if _encodes_smaller(sub, b):
                out.setdefault("p", {})[key] = sub
                continue
        op, value = _value_change(a, b, columns if key == "rows" else None)
        out.setdefault(op, []).extend((idx, value))
    # Every key of new that old has was met above: new has others only when
    # it has more keys than old kept.
    if len(new) > len(old) - len(removed):
        out["s"] = {key: value for key, value in new.items() if key not in old}
    if removed:
        out["r"] = removed
    return out or None


def _identities(items, fields, columns):
    """The identity of each element of ``items`` by ``fields`` (map keys, or
    the column names of rows of a table whose column names are ``columns``);
    None when an element has none (not a map, not a row of the table's
    width, a field missing). An identity is the field's value for one field,
    else the tuple of values."""
    if columns is None:
        if set(map(type, items)) != {dict}:
            return None
        getter = itemgetter(*fields)
    else:
        width = len(columns)
        if set(map(type, items)) != {list} or set(map(len, items)) != {width}:
            return None
        getter = itemgetter(*[columns.index(f) for f in fields])
    try:
        return list(map(getter, items))
    except KeyError:
        return None


def _unique(idents):
    """True when the identities are hashable and no two are equal."""
    try:
        return len(set(idents)) == len(idents)
    except TypeError:
        return False


def _keyed_match(old, new, columns=None):
    """``(old identities, new identities)`` by the first of IDENTITY_FIELDS
    that every element of both lists has, uniquely in each list; None when
    none fits. Elements are maps, or rows of a table whose column names are
    ``columns``."""
    if not old or not new or (columns is None and type(old[0]) is not dict):
        return None
    names = old[0] if columns is None else columns
    for fields in IDENTITY_FIELDS:
        if not all(f in names for f in fields):
            continue
        old_idents = _identities(old, fields, columns)
        if old_idents is None or not _unique(old_idents):
            continue
        new_idents = _identities(new, fields, columns)
        # The same identities in the same order are unique as the old ones are.
        if new_idents is not None and (new_idents == old_idents or _unique(new_idents)):
            return old_idents, new_idents
    return None


def _keyed_list_delta(old, new, match):
    """The "m" form of a list delta from a :func:`_keyed_match`."""
    old_idents, new_idents = match
    old_index = dict(zip(old_idents, range(len(old_idents))))
    items, changes = _keyed_items(old, new, old_index, new_idents, _value_change)
    out = {"l": len(new), "m": items}
    if changes:
        out["c"] = changes
    return out


def _aligned_list_deltas(old, new):
    """Both forms of the delta between two lists of the same length whose
    elements have the same identities in the same order, from one pass: the
    keyed ("m") form and the positional one, as :func:`_keyed_list_delta`
    and :func:`_positional_list_delta` would give them."""
    count = len(new)
    items = []
    changes = []
    positional = {"l": count}
    run_start = 0
    for pos in _different_positions(old, new):
        b = new[pos]
        op, value = _value_change(old[pos], b)
        positional.setdefault(op, []).extend((pos, value))
        if op == "c":
            changes.extend((pos, value))
        else:
            _close_run(items, run_start, pos)
            items.append({"v": b})
            run_start = pos + 1
    _close_run(items, run_start, count)
    keyed = {"l": count, "m": items}
    if changes:
        keyed["c"] = changes
    return keyed, positional


def _close_run(items, start, stop):
    if stop <= start:
        return
    if stop - start == 1:
        items.append(start)
    else:
        items.append([start, stop])


def _positional_list_delta(old, new):
    out = {"l": len(new)}
    for pos in _different_positions(old, new):
        op, value = _value_change(old[pos], new[pos])
        out.setdefault(op, []).extend((pos, value))
    if len(new) > len(old):
        out["x"] = new[len(old):]
    return out


def _list_delta(old, new, columns=None):
    """A list delta, or None when sending the list whole is not larger.

    The candidates are the keyed form (when the elements have identities) and
    the positional one (when the lengths are equal or there is no identity);
    the smallest encoding wins, the keyed form on a tie, the whole list when
    neither is smaller. The cost follows the changes, not the size: unchanged
    elements cost one compiled comparison, a candidate that cannot win is not
    built, and the whole list is encoded only when a candidate might not be
    smaller than it."""
    if not new:
        return None
    match = _keyed_match(old, new, columns)
    candidates = []
    if match is not None and len(old) == len(new) and match[0] == match[1]:
        candidates.extend(_aligned_list_deltas(old, new))
    elif match is not None:
        keyed = _keyed_list_delta(old, new, match)
        candidates.append(keyed)
        if len(old) == len(new) and not _positional_cannot_win(old, new, keyed):
            candidates.append(_positional_list_delta(old, new))
    else:
        candidates.append(_positional_list_delta(old, new))
    floor = _encoded_size_floor(new)
    best, best_size = None, None
    for candidate in candidates:
        size = len(encode_msgpack(candidate))
        if best_size is None and size >= floor:
            best_size = len(encode_msgpack(new))
        if best_size is None or size < best_size:
            best, best_size = candidate, size
    return best


def _positional_cannot_win(old, new, keyed):
    """True when the positional delta of two lists of the same length cannot
    encode smaller than ``keyed``: it holds at least a position and a value
    (a byte each) for every position whose elements differ, in a map of at
    least "l", its length and one member's name and array header."""
    different = len(_different_positions(old, new))
    return different and len(encode_msgpack(keyed)) <= 7 + 2 * different


def _encoded_size_floor(value):
    """A lower bound of ``len(encode_msgpack(value))``, cheap to compute: a
    byte for a scalar; for a map, a header byte, a byte for each key and the
    bound of each value; for a list, a header byte and a byte for each
    element, and a byte more for each member of an element that is a list (at
    least a byte an item) and two for each member of one that is a map (a key
    and a value). A list's elements are not looked into further."""
    kind = type(value)
    if kind is dict:
        return 1 + len(value) + sum(map(_encoded_size_floor, value.values()))
    if kind is not list:
        return 1
    size = 1 + len(value)
    kinds = set(map(type, value))
    if kinds == {dict}:
        size += 2 * sum(map(len, value))
    elif kinds <= {dict, list}:
        size += sum(map(len, value))
    return size


def _encodes_smaller(change, value):
    """``len(encode_msgpack(change)) < len(encode_msgpack(value))``, encoding
    ``value`` only when its lower bound does not already decide it."""
    size = len(encode_msgpack(change))
    return size < _encoded_size_floor(value) or size < len(encode_msgpack(value))


def _pairs(flat):
    if type(flat) is not list or len(flat) % 2:
        raise TypeError("a change list holds position, value pairs")
    return zip(flat[0::2], flat[1::2])


def _changed(op, base_value, value):
    if op == "i":
        return value
    if op == "n":
        if type(base_value) is not int or type(value) is not int:
            raise TypeError("an integer step applies to an integer")
        return base_value + value
    if type(value) is not dict:
        raise TypeError("a nested delta is a map")
    if type(base_value) is dict:
        return _apply_dict(value, base_value)
    if type(base_value) is list:
        return _apply_list(value, base_value)
    raise TypeError("a nested delta applies to a map or a list")


def _check_index(idx, size):
    if type(idx) is not int or not 0 <= idx < size:
        raise IndexError("position %r outside 0..%d" % (idx, size - 1))
    return idx


def _apply_dict(change, base):
    for op in change:
        if op not in ("i", "n", "c", "s", "r"):
            raise KeyError("unknown dict delta member %r" % (op,))
    keys = sorted(base)
    out = dict(base)
    for op in ("i", "n", "c"):
        for idx, value in _pairs(change.get(op, [])):
            key = keys[_check_index(idx, len(keys))]
            out[key] = _changed(op, base[key], value)
    for idx in change.get("r", ()):
        out.pop(keys[_check_index(idx, len(keys))], None)
    added = change.get("s")
    if added is not None:
        if type(added) is not dict:
            raise TypeError("added keys are a map")
        out.update(added)
    return out


def _apply_list(change, base):
    for op in change:
        if op not in ("l", "m", "i", "n", "c", "x"):
            raise KeyError("unknown list delta member %r" % (op,))
    length = change.get("l")
    if type(length) is not int or length < 0:
        raise TypeError("a list delta needs its new length")
    if "m" in change:
        out = []
        for item in change["m"]:
            if type(item) is int:
                out.append(base[_check_index(item, len(base))])
            elif type(item) is list and len(item) == 2:
                start, stop = item
                _check_index(start, len(base))
                if type(stop) is not int or not start < stop <= len(base):
                    raise IndexError("run %r outside the base" % (item,))
                out.extend(base[start:stop])
            elif type(item) is dict and len(item) == 1 and "v" in item:
                out.append(item["v"])
            else:
                raise TypeError("a list item is a position, a [start, stop] run or {\"v\": element}")
        ops = ("c",)
    else:
        out = list(base[:length])
        out.extend(change.get("x", ()))
        ops = ("i", "n", "c")
    if len(out) != length:
        raise IndexError("list delta gives %d elements, not %d" % (len(out), length))
    for op in ops:
        for pos, value in _pairs(change.get(op, [])):
            pos = _check_index(pos, length)
            out[pos] = _changed(op, out[pos], value)
    return out


def key_order_fixes(got, wanted):
    """Where ``got`` orders the keys of a map differently from ``wanted``, two
    documents otherwise equal (``got`` from :func:`apply`): ``[[path, keys],
    ...]``, outer maps first, with ``path`` the map keys and list positions
    leading from the top to that map and ``keys`` its keys in ``wanted``'s
    order. Empty when the orders agree everywhere."""
    fixes = []
    _order_walk(got, wanted, [], fixes)
    return fixes


# The types _order_walk descends into.
_CONTAINERS = frozenset((dict, list))


def _order_walk(got, wanted, path, fixes):
    if type(got) is dict and type(wanted) is dict:
        if list(got) != list(wanted):
            fixes.append([list(path), list(wanted)])
        children = ((key, got[key], value) for key, value in wanted.items() if key in got)
    elif type(got) is list and type(wanted) is list:
        children = zip(range(len(wanted)), got, wanted)
    else:
        return
    for step, got_child, wanted_child in children:
        # One object is one order all the way down: apply() shares what did
        # not change, and the process table gives an unchanged process's
        # record again, so most of a table is skipped here.
        if got_child is wanted_child or type(wanted_child) not in _CONTAINERS:
            continue
        # A list of scalars (a socket row) holds no map: no need to walk it.
        if type(wanted_child) is list and _CONTAINERS.isdisjoint(map(type, wanted_child)):
            continue
        path.append(step)
        _order_walk(got_child, wanted_child, path, fixes)
        path.pop()


def with_key_order(doc, fixes):
    """``doc`` with each map named by :func:`key_order_fixes` in the order given.
    Pure: maps and lists along each path are copied, the rest is shared.
    Raises ValueError when a fix does not fit the document."""
    try:
        for path, keys in fixes:
            if type(path) is not list:
                raise TypeError("a key order path is a list")
            doc = _reordered(doc, path, 0, keys)
    except (IndexError, KeyError, TypeError) as exc:
        raise ValueError("key order fix does not apply: %s: %s" % (type(exc).__name__, exc)) from None
    return doc


def _reordered(node, path, depth, keys):
    if depth == len(path):
        if type(node) is not dict or type(keys) is not list:
            raise TypeError("a key order fix names a map and lists its keys")
        out = {key: node[key] for key in keys}
        if len(out) != len(node) or len(keys) != len(node):
            raise KeyError("the keys of a key order fix are not those of the map")
        return out
    step = path[depth]
    if type(node) is dict:
        out = dict(node)
    elif type(node) is list and type(step) is int and 0 <= step < len(node):
        out = list(node)
    else:
        raise TypeError("a key order path steps through maps and lists")
    out[step] = _reordered(node[step], path, depth + 1, keys)
    return out


def document_of(payload):
    """The msgpack map in ``payload``, or None when it is not one (a store then
    keeps that record whole, never as a delta)."""
    try:
        doc = decode_msgpack(payload)
    except (ValueError, RecursionError):
        return None
    return doc if type(doc) is dict else None


def next_prior(prior, doc):
    """``prior`` brought up to date with ``doc``: the newest non-null value of
    each top-level key, the ``prior`` argument of the next :func:`delta`."""
    out = dict(prior)
    if doc is not None:
        for key, value in doc.items():
            if value is not None:
                out[key] = value
    return out
