"""The pure-Python twin of ``hostdiag._delta`` (csrc/_delta.pyx): the
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


def count_different(old, new):
    """How many positions ``i < min(len(old), len(new))`` hold elements that
    are not :func:`same`; both are lists."""
    if type(old) is not list or type(new) is not list:
        raise TypeError("count_different() compares two lists")
    count = 0
    for x, y in zip(old, new):
        if not same(x, y):
            count += 1
    return count
