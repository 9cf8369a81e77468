# cython: language_level=3
"""The compiled twin of ``hostdiag.encode.deltapure``: the comparisons that
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


def count_different(old, new):
    """How many positions ``i < min(len(old), len(new))`` hold elements that
    are not :func:`same`; both are lists."""
    if type(old) is not list or type(new) is not list:
        raise TypeError("count_different() compares two lists")
    cdef Py_ssize_t i, n = min(PyList_GET_SIZE(old), PyList_GET_SIZE(new))
    cdef Py_ssize_t count = 0
    for i in range(n):
        if not _same(<object>PyList_GET_ITEM(old, i), <object>PyList_GET_ITEM(new, i)):
            count += 1
    return count
