"""The pure-Python twin of ``hostdiag._tablecompare`` (csrc/_tablecompare.pyx): the
comparison :mod:`hostdiag.encode.delta` makes of every element of a table,
sample after sample. Same names, same results; tests/test_delta_twins.py
holds the two to it."""


def same(a, b):
    """Equal and of the same types all the way down (1 == 1.0 == True are not
    the same): True or False. Maps compare as maps (key order aside), lists
    element by element; anything else by ``==`` (so NaN is not the same as
    itself). Nesting deeper than the interpreter's recursion limit raises
    RecursionError."""
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is dict:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            if key not in b or not same(value, b[key]):
                return False
        return True
    if ta is list:
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if not same(x, y):
                return False
        return True
    return a == b


def different_positions(old, new):
    """The positions ``i < min(len(old), len(new))`` whose elements are not
    :func:`same`, ascending; both are lists."""
    if type(old) is not list or type(new) is not list:
        raise TypeError("different_positions() compares two lists")
    return [pos for pos, (x, y) in enumerate(zip(old, new)) if not same(x, y)]


def keyed_items(old, new, old_index, new_idents, value_change):
    """The items and changes of the "m" form of a list delta (encode/delta.py).

    ``new_idents[pos]`` is the identity of ``new[pos]``, ``old_index`` maps an
    identity to its position in ``old``. An element whose identity ``old``
    has and that is the same there, or that changes by a nested delta
    (``value_change(old element, new element)`` gives ``("c", delta)``), is
    taken from ``old``: consecutive old positions make a run, ``[start,
    stop]``, or a lone position; any other element is ``{"v": element}``.
    Returns ``(items, changes)``, changes as ``[new position, delta, ...]``."""
    if len(new) < len(new_idents):
        raise IndexError("more identities than elements")
    items = []
    changes = []
    run_start = run_stop = None
    for pos, ident in enumerate(new_idents):
        base_pos = old_index.get(ident)
        element = new[pos]
        op = None
        if base_pos is not None:
            if not 0 <= base_pos < len(old):
                raise IndexError("old position %d outside the old list" % base_pos)
            a = old[base_pos]
            if not same(a, element):
                op, value = value_change(a, element)
        if base_pos is not None and op in (None, "c"):
            if run_start is not None and base_pos == run_stop:
                run_stop += 1
            else:
                _close_run(items, run_start, run_stop)
                run_start, run_stop = base_pos, base_pos + 1
            if op == "c":
                changes.extend((pos, value))
        else:
            _close_run(items, run_start, run_stop)
            run_start = run_stop = None
            items.append({"v": element})
    _close_run(items, run_start, run_stop)
    return items, changes


def _close_run(items, start, stop):
    if start is None or stop <= start:
        return
    if stop - start == 1:
        items.append(start)
    else:
        items.append([start, stop])
