# The decoded-name cache shared by the compiled text and rtnetlink parsers:
# textually included (``include "_namecache.pxi"``), so each module holds its own
# table and nothing is called across modules. Not built on its own.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcmp


cdef extern from "Python.h":
    str PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)


cdef enum:
    # Decoded names kept between calls: slots (a power of two), slots probed
    # for one name, and the longest name kept.
    NAME_CACHE_SLOTS = 4096
    NAME_CACHE_PROBES = 8
    NAME_CACHE_MAX_LEN = 64


# The same names come back on every read of a file (meminfo keys, netstat
# headers, interface names), so each decoded name is kept between calls in a
# hash table keyed by its raw bytes: a hit costs an FNV-1a hash and a memcmp
# instead of a decode, an allocation and a SipHash of a new str. The files of
# one system snapshot hold about 650 distinct names; the table has room for
# several times that, so they stay in it. A name hashes to a slot and may sit
# in any of the NAME_CACHE_PROBES slots after it; when all of those hold other
# names, the name's own slot is overwritten, so the table never grows.
cdef uint32_t _cached_hash[NAME_CACHE_SLOTS]
cdef list _cached_raw = [None] * NAME_CACHE_SLOTS
cdef list _cached_names = [None] * NAME_CACHE_SLOTS


cdef inline str _name(const unsigned char *s, Py_ssize_t n):
    """The bytes decoded as UTF-8, invalid bytes replaced by U+FFFD."""
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i, slot, probe, free_slot = -1
    cdef object raw
    cdef str name
    if n > NAME_CACHE_MAX_LEN:
        return PyUnicode_DecodeUTF8(<const char *>s, n, "replace")
    for i in range(n):
        h = (h ^ s[i]) * 16777619u
    for probe in range(NAME_CACHE_PROBES):
        slot = (h + probe) & (NAME_CACHE_SLOTS - 1)
        raw = _cached_raw[slot]
        if raw is None:
            free_slot = slot
            break
        if (_cached_hash[slot] == h and PyBytes_GET_SIZE(raw) == n
                and memcmp(PyBytes_AS_STRING(raw), s, n) == 0):
            return <str>_cached_names[slot]
    if free_slot < 0:
        free_slot = h & (NAME_CACHE_SLOTS - 1)
    name = PyUnicode_DecodeUTF8(<const char *>s, n, "replace")
    _cached_hash[free_slot] = h
    _cached_raw[free_slot] = PyBytes_FromStringAndSize(<const char *>s, n)
    _cached_names[free_slot] = name
    return name
