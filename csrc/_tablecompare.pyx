# cython: language_level=3
"""The compiled twin of ``hostdiag.encode.tablecompare``: the comparisons that
``hostdiag.encode.delta`` makes of every element of a table (a thousand
process records, several thousand socket rows) every time it is sampled.
Same names and results as the pure twin (tests/test_delta_twins.py)."""

from cpython.dict cimport PyDict_Next, PyDict_GetItem, PyDict_Size
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject


cdef extern from "Python.h":
    # Non-zero with RecursionError set past the interpreter's limit, where the
    # pure twin's own recursion would raise it.
    int Py_EnterRecursiveCall(const char *where)
    void Py_LeaveRecursiveCall()
    # NULL without an exception when the key is missing; an unhashable key
    # raises, as dict.get does in the pure twin.
    PyObject *PyDict_GetItemWithError(object mapping, object key) except? NULL


cdef bint _same(object a, object b) except -1:
    cdef Py_ssize_t pos = 0, i, n
    cdef PyObject *key
    cdef PyObject *value
    cdef PyObject *other
    cdef bint result
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is dict:
        if PyDict_Size(a) != PyDict_Size(b):
            return False
        if Py_EnterRecursiveCall(" comparing snapshot maps"):
            return -1
        try:
            while PyDict_Next(a, &pos, &key, &value):
                other = PyDict_GetItem(b, <object>key)
                if other is NULL or not _same(<object>value, <object>other):
                    return False
            return True
        finally:
            Py_LeaveRecursiveCall()
    if ta is list:
        n = PyList_GET_SIZE(a)
        if n != PyList_GET_SIZE(b):
            return False
        if Py_EnterRecursiveCall(" comparing snapshot lists"):
            return -1
        try:
            for i in range(n):
                if not _same(<object>PyList_GET_ITEM(a, i), <object>PyList_GET_ITEM(b, i)):
                    return False
            return True
        finally:
            Py_LeaveRecursiveCall()
    return bool(a == b)


def same(a, b):
    """Equal and of the same types all the way down (1 == 1.0 == True are not
    the same): True or False. Maps compare as maps (key order aside), lists
    element by element; anything else by ``==`` (so NaN is not the same as
    itself). Nesting deeper than the interpreter's recursion limit raises
    RecursionError."""
    return _same(a, b)


def different_positions(old, new):
    """The positions ``i < min(len(old), len(new))`` whose elements are not
    :func:`same`, ascending; both are lists."""
    if type(old) is not list or type(new) is not list:
        raise TypeError("different_positions() compares two lists")
    cdef Py_ssize_t i, n = min(PyList_GET_SIZE(old), PyList_GET_SIZE(new))
    cdef list out = []
    for i in range(n):
        if not _same(<object>PyList_GET_ITEM(old, i), <object>PyList_GET_ITEM(new, i)):
            out.append(i)
    return out


def keyed_items(list old, list new, dict old_index, list new_idents, value_change):
    """The items and changes of the "m" form of a list delta (encode/delta.py).

    ``new_idents[pos]`` is the identity of ``new[pos]``, ``old_index`` maps an
    identity to its position in ``old``. An element whose identity ``old``
    has and that is the same there, or that changes by a nested delta
    (``value_change(old element, new element)`` gives ``("c", delta)``), is
    taken from ``old``: consecutive old positions make a run, ``[start,
    stop]``, or a lone position; any other element is ``{"v": element}``.
    Returns ``(items, changes)``, changes as ``[new position, delta, ...]``."""
    cdef list items = []
    cdef list changes = []
    cdef Py_ssize_t pos, base_pos, run_start = -1, run_stop = -1
    cdef Py_ssize_t count = PyList_GET_SIZE(new_idents)
    cdef PyObject *found
    cdef bint keep
    if PyList_GET_SIZE(new) < count:
        raise IndexError("more identities than elements")
    for pos in range(count):
        found = PyDict_GetItemWithError(old_index, <object>PyList_GET_ITEM(new_idents, pos))
        element = <object>PyList_GET_ITEM(new, pos)
        keep = False
        if found is not NULL:
            base_pos = <object>found
            if not 0 <= base_pos < PyList_GET_SIZE(old):
                raise IndexError("old position %d outside the old list" % base_pos)
            a = <object>PyList_GET_ITEM(old, base_pos)
            if _same(a, element):
                keep = True
            else:
                op, value = value_change(a, element)
                if op == "c":
                    keep = True
                    changes.append(pos)
                    changes.append(value)
        if keep:
            if run_start >= 0 and base_pos == run_stop:
                run_stop += 1
            else:
                _close_run(items, run_start, run_stop)
                run_start, run_stop = base_pos, base_pos + 1
        else:
            _close_run(items, run_start, run_stop)
            run_start = run_stop = -1
            items.append({"v": element})
    _close_run(items, run_start, run_stop)
    return items, changes


cdef _close_run(list items, Py_ssize_t start, Py_ssize_t stop):
    if start < 0 or stop <= start:
        return
    if stop - start == 1:
        items.append(start)
    else:
        items.append([start, stop])
