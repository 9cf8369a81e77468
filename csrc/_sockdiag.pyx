# cython: language_level=3
"""Compiled twin of :mod:`hostdiag.parsers.sockdiag`: sock_diag replies to plain data.

Same names, same signatures, same output as the pure twin, whose docstring
holds the grammar (framing, malformed messages, the ``end`` status) and the
layouts. This module walks the buffer with a C pointer, reads every integer
with memcpy (netlink payloads are only 4-byte aligned, and a hostile buffer
not even that), checks every length against what is left before reading, and
creates Python objects for the output alone. The tcp_info and skmeminfo
layouts are imported from the pure twin, so both share one definition.

Repeated values are not rebuilt per socket: address texts, congestion control
names and state names come from small caches of the str objects already made.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_SetItem
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.list cimport PyList_Append, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport (
    PyLong_CheckExact,
    PyLong_FromUnsignedLong,
    PyLong_FromUnsignedLongLong,
)
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memchr, memcmp, memcpy, memset

from hostdiag.parsers.sockdiag import (
    INODE_OFFSET,
    ROW_FIELDS,
    ROW_STATE,
    SKMEM_FIELDS,
    SOCKET_KEYS,
    TCP_INFO_FIELDS,
    TCP_STATES,
)


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object o)
    dict _PyDict_NewPresized(Py_ssize_t minused)
    str PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    str PyUnicode_FromString(const char *s)
    # Errors are checked by hand (the caller skips the value and clears them).
    unsigned long long _as_u64 "PyLong_AsUnsignedLongLong" (object o)

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)


cdef enum:
    NLMSG_HDRLEN = 16
    NLMSG_NOOP = 1
    NLMSG_ERROR = 2
    NLMSG_DONE = 3
    SOCK_DIAG_BY_FAMILY = 20
    INET_DIAG_MSG_LEN = 72
    UNIX_DIAG_MSG_LEN = 16
    RTA_HDRLEN = 4
    INET_DIAG_INFO = 2
    INET_DIAG_CONG = 4
    INET_DIAG_SKMEMINFO = 7
    C_AF_UNIX = 1
    C_AF_INET = 2
    C_AF_INET6 = 10
    # Room for the layout tables imported from the pure twin.
    MAX_INFO_FIELDS = 96
    MAX_SKMEM_FIELDS = 16
    # Address cache: direct-mapped slots (a power of two).
    ADDR_SLOTS = 1024
    # Congestion control names kept (a handful exist on any host) and longest kept.
    CONG_SLOTS = 8
    CONG_MAX_LEN = 32
    # Columns top_rows ranks in one pass.
    MAX_RANK_COLUMNS = 16
    # (type, state) pairs of unix sockets counted in a C array; the rest in a dict.
    UNIX_DIM = 16
    INET6_ADDRSTRLEN = 46


# The tcp_info layout as C arrays, from TCP_INFO_FIELDS.
cdef Py_ssize_t _N_INFO = len(TCP_INFO_FIELDS)
cdef uint32_t _INFO_STOP[MAX_INFO_FIELDS]
cdef uint32_t _INFO_OFF[MAX_INFO_FIELDS]
cdef uint8_t _INFO_SIZE[MAX_INFO_FIELDS]
cdef uint8_t _INFO_SHIFT[MAX_INFO_FIELDS]
cdef uint64_t _INFO_MASK[MAX_INFO_FIELDS]
cdef PyObject *_INFO_KEY[MAX_INFO_FIELDS]
cdef tuple _INFO_KEYS = tuple(f[0] for f in TCP_INFO_FIELDS)

cdef Py_ssize_t _N_SKMEM = len(SKMEM_FIELDS)
cdef PyObject *_SKMEM_KEY[MAX_SKMEM_FIELDS]
cdef tuple _SKMEM_KEYS = tuple(SKMEM_FIELDS)

# Offsets of the row's tcp_info and skmeminfo numbers, from the layouts
# (their sizes are checked in _init_layout).
cdef dict _LAYOUT = {f[0]: f[1:] for f in TCP_INFO_FIELDS}
cdef Py_ssize_t _ROW_RTT = _LAYOUT["rtt"][0]
cdef Py_ssize_t _ROW_TOTAL_RETRANS = _LAYOUT["total_retrans"][0]
cdef Py_ssize_t _ROW_BYTES_ACKED = _LAYOUT["bytes_acked"][0]
cdef Py_ssize_t _ROW_DROPS = 4 * SKMEM_FIELDS.index("drops")

cdef Py_ssize_t _INODE_OFFSET = INODE_OFFSET

cdef tuple _STATES = tuple(TCP_STATES)
cdef Py_ssize_t _N_STATES = len(TCP_STATES)
cdef str _INET = "inet"
cdef str _INET6 = "inet6"

cdef str K_FAMILY, K_STATE, K_LOCAL, K_LOCAL_PORT, K_REMOTE, K_REMOTE_PORT
cdef str K_RQUEUE, K_WQUEUE, K_UID, K_INODE, K_CONG, K_SKMEM, K_TCP_INFO
(K_FAMILY, K_STATE, K_LOCAL, K_LOCAL_PORT, K_REMOTE, K_REMOTE_PORT,
 K_RQUEUE, K_WQUEUE, K_UID, K_INODE, K_CONG, K_SKMEM, K_TCP_INFO) = SOCKET_KEYS


cdef int _init_layout() except -1:
    cdef Py_ssize_t i
    if _N_INFO > MAX_INFO_FIELDS or _N_SKMEM > MAX_SKMEM_FIELDS:
        raise ImportError("hostdiag._sockdiag: a layout table outgrew its C array")
    if len(SOCKET_KEYS) != 13 or len(ROW_FIELDS) != 14 or ROW_STATE != 1:
        raise ImportError("hostdiag._sockdiag: SOCKET_KEYS or ROW_FIELDS changed shape")
    if (_LAYOUT["rtt"][1] != 4 or _LAYOUT["total_retrans"][1] != 4
            or _LAYOUT["bytes_acked"][1] != 8):
        raise ImportError("hostdiag._sockdiag: a row field of tcp_info changed size")
    for i in range(_N_INFO):
        name, offset, size, shift, width = TCP_INFO_FIELDS[i]
        if size not in (1, 2, 4, 8) or not 0 <= offset <= 65535 or not 0 <= shift + width <= 8 * size:
            raise ImportError("hostdiag._sockdiag: bad tcp_info field %r" % (name,))
        _INFO_OFF[i] = offset
        _INFO_SIZE[i] = size
        _INFO_STOP[i] = offset + size
        _INFO_SHIFT[i] = shift
        _INFO_MASK[i] = ((<uint64_t>1) << width) - 1 if width else 0
        _INFO_KEY[i] = <PyObject *>_INFO_KEYS[i]
    for i in range(_N_SKMEM):
        _SKMEM_KEY[i] = <PyObject *>_SKMEM_KEYS[i]
    return 0


_init_layout()


# Unaligned-safe native-order loads: memcpy compiles to one move.
cdef inline uint16_t _u16(const unsigned char *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v

cdef inline uint32_t _u32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v

cdef inline uint64_t _u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v

cdef inline uint32_t _be16(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]

cdef inline Py_ssize_t _align4(Py_ssize_t n) noexcept nogil:
    return (n + 3) & ~(<Py_ssize_t>3)


# --- caches of str objects ---------------------------------------------------

ctypedef struct AddrSlot:
    int family
    unsigned char raw[16]
    PyObject *text

# C statics start zeroed: every slot empty.
cdef AddrSlot _addr_cache[ADDR_SLOTS]

ctypedef struct CongSlot:
    Py_ssize_t size
    char raw[CONG_MAX_LEN]
    PyObject *text

cdef CongSlot _cong_cache[CONG_SLOTS]
cdef Py_ssize_t _cong_next = 0


cdef inline uint32_t _addr_hash(int family, const unsigned char *raw) noexcept nogil:
    cdef uint32_t h = 2166136261u
    cdef int i
    cdef int size = 4 if family == C_AF_INET else 16
    for i in range(size):
        h = (h ^ raw[i]) * 16777619u
    return h ^ (h >> 15)


# The slot each caller (0: local, 1: remote) looked up last: neighbouring
# sockets share their addresses.
cdef AddrSlot *_addr_last[2]


cdef inline bint _same_address(const unsigned char *a, const unsigned char *b, int size) noexcept nogil:
    if size == 4:
        return _u32(a) == _u32(b)
    return _u64(a) == _u64(b) and _u64(a + 8) == _u64(b + 8)


cdef object _address(int family, const unsigned char *raw, int which):
    """The text of an address (4 or 16 bytes at raw), from the cache when seen before."""
    cdef int size = 4 if family == C_AF_INET else 16
    cdef AddrSlot *slot = _addr_last[which]
    cdef char text[INET6_ADDRSTRLEN]
    if slot != NULL and slot.text != NULL and slot.family == family \
            and _same_address(slot.raw, raw, size):
        return <object>slot.text
    slot = &_addr_cache[_addr_hash(family, raw) & (ADDR_SLOTS - 1)]
    _addr_last[which] = slot
    if slot.text != NULL and slot.family == family and _same_address(slot.raw, raw, size):
        return <object>slot.text
    if inet_ntop(family, raw, text, INET6_ADDRSTRLEN) == NULL:
        raise ValueError("inet_ntop failed")
    result = PyUnicode_FromString(text)
    Py_XDECREF(slot.text)
    Py_INCREF(result)
    slot.text = <PyObject *>result
    slot.family = family
    memcpy(slot.raw, raw, size)
    return result


cdef object _cong(const unsigned char *p, Py_ssize_t size):
    """The congestion control name: the bytes up to the first NUL, as UTF-8."""
    global _cong_next
    cdef const unsigned char *nul = <const unsigned char *>memchr(p, 0, size)
    cdef Py_ssize_t i
    cdef CongSlot *slot
    if nul != NULL:
        size = nul - p
    if size > CONG_MAX_LEN:
        return PyUnicode_DecodeUTF8(<const char *>p, size, "replace")
    for i in range(CONG_SLOTS):
        slot = &_cong_cache[i]
        if slot.text != NULL and slot.size == size and memcmp(slot.raw, p, size) == 0:
            return <object>slot.text
    result = PyUnicode_DecodeUTF8(<const char *>p, size, "replace")
    slot = &_cong_cache[_cong_next]
    _cong_next = (_cong_next + 1) % CONG_SLOTS
    Py_XDECREF(slot.text)
    Py_INCREF(result)
    slot.text = <PyObject *>result
    slot.size = size
    memcpy(slot.raw, p, size)
    return result


cdef inline object _int(uint64_t number):
    # No cache of our own: CPython keeps 0..256, and for the rest a fresh int
    # from pymalloc's warm pool costs less than a cache line miss on a kept
    # one (a table of ports or rtts is larger than the CPU caches).
    return PyLong_FromUnsignedLongLong(number)


cdef object _state_name(uint8_t number):
    if number < _N_STATES:
        return _STATES[number]
    return "STATE_%d" % number


# --- attributes ----------------------------------------------------------------

cdef dict _tcp_info(const unsigned char *p, Py_ssize_t length):
    cdef dict info = _PyDict_NewPresized(_N_INFO)
    cdef Py_ssize_t i
    cdef uint64_t v
    cdef uint8_t size
    for i in range(_N_INFO):
        if _INFO_STOP[i] > length:
            PyDict_SetItem(info, <object>_INFO_KEY[i], None)
            continue
        size = _INFO_SIZE[i]
        if size == 4:
            v = _u32(p + _INFO_OFF[i])
        elif size == 8:
            v = _u64(p + _INFO_OFF[i])
        elif size == 1:
            v = p[_INFO_OFF[i]]
        else:
            v = _u16(p + _INFO_OFF[i])
        if _INFO_MASK[i]:
            v = (v >> _INFO_SHIFT[i]) & _INFO_MASK[i]
        PyDict_SetItem(info, <object>_INFO_KEY[i], PyLong_FromUnsignedLongLong(v))
    return info


cdef dict _skmem(const unsigned char *p, Py_ssize_t length):
    cdef dict mem = _PyDict_NewPresized(_N_SKMEM)
    cdef Py_ssize_t i
    for i in range(_N_SKMEM):
        if 4 * i + 4 <= length:
            PyDict_SetItem(mem, <object>_SKMEM_KEY[i], PyLong_FromUnsignedLong(_u32(p + 4 * i)))
        else:
            PyDict_SetItem(mem, <object>_SKMEM_KEY[i], None)
    return mem


ctypedef struct Attrs:
    # Payload and size of the last INFO, CONG and SKMEMINFO attribute; NULL when absent.
    const unsigned char *info
    Py_ssize_t info_len
    const unsigned char *cong
    Py_ssize_t cong_len
    const unsigned char *skmem
    Py_ssize_t skmem_len


cdef bint _inet_attrs(const unsigned char *msg, Py_ssize_t size, Attrs *a) noexcept nogil:
    """Check one inet_diag_msg of ``size`` bytes and find its attributes;
    false when it is malformed (see sockdiag._inet_attrs)."""
    cdef Py_ssize_t pos, rta_len, step
    cdef uint16_t rta_type
    cdef const unsigned char *attr
    a.info = a.cong = a.skmem = NULL
    a.info_len = a.cong_len = a.skmem_len = 0
    if size < INET_DIAG_MSG_LEN or (msg[0] != C_AF_INET and msg[0] != C_AF_INET6):
        return False
    pos = INET_DIAG_MSG_LEN
    while size - pos >= RTA_HDRLEN:
        attr = msg + pos
        rta_len = _u16(attr)
        rta_type = _u16(attr + 2)
        if rta_len < RTA_HDRLEN or rta_len > size - pos:
            return False
        if rta_type == INET_DIAG_INFO:
            a.info = attr + RTA_HDRLEN
            a.info_len = rta_len - RTA_HDRLEN
        elif rta_type == INET_DIAG_CONG:
            a.cong = attr + RTA_HDRLEN
            a.cong_len = rta_len - RTA_HDRLEN
        elif rta_type == INET_DIAG_SKMEMINFO:
            a.skmem = attr + RTA_HDRLEN
            a.skmem_len = rta_len - RTA_HDRLEN
        step = _align4(rta_len)
        pos += step if step < size - pos else size - pos
    return pos == size


cdef object _inet_socket(const unsigned char *msg, Py_ssize_t size):
    """One inet_diag_msg of ``size`` bytes and its attributes, or None when malformed."""
    cdef Attrs a
    if not _inet_attrs(msg, size, &a):
        return None
    cdef uint8_t family = msg[0]
    cdef dict sock = _PyDict_NewPresized(13)
    PyDict_SetItem(sock, K_FAMILY, _INET if family == C_AF_INET else _INET6)
    PyDict_SetItem(sock, K_STATE, _state_name(msg[1]))
    PyDict_SetItem(sock, K_LOCAL, _address(family, msg + 8, 0))
    PyDict_SetItem(sock, K_LOCAL_PORT, _int(_be16(msg + 4)))
    PyDict_SetItem(sock, K_REMOTE, _address(family, msg + 24, 1))
    PyDict_SetItem(sock, K_REMOTE_PORT, _int(_be16(msg + 6)))
    PyDict_SetItem(sock, K_RQUEUE, PyLong_FromUnsignedLong(_u32(msg + 56)))
    PyDict_SetItem(sock, K_WQUEUE, PyLong_FromUnsignedLong(_u32(msg + 60)))
    PyDict_SetItem(sock, K_UID, PyLong_FromUnsignedLong(_u32(msg + 64)))
    PyDict_SetItem(sock, K_INODE, PyLong_FromUnsignedLong(_u32(msg + 68)))
    PyDict_SetItem(sock, K_CONG, _cong(a.cong, a.cong_len) if a.cong != NULL else None)
    PyDict_SetItem(sock, K_SKMEM, _skmem(a.skmem, a.skmem_len) if a.skmem != NULL else None)
    PyDict_SetItem(sock, K_TCP_INFO, _tcp_info(a.info, a.info_len) if a.info != NULL else None)
    return sock


cdef inline object _opt_u32(const unsigned char *p, Py_ssize_t length, Py_ssize_t offset):
    if p == NULL or offset + 4 > length:
        return None
    return _int(_u32(p + offset))


cdef inline object _opt_u64(const unsigned char *p, Py_ssize_t length, Py_ssize_t offset):
    if p == NULL or offset + 8 > length:
        return None
    return PyLong_FromUnsignedLongLong(_u64(p + offset))


cdef inline void _put(tuple row, Py_ssize_t i, object value) noexcept:
    Py_INCREF(value)
    PyTuple_SET_ITEM(row, i, value)


cdef object _inet_row(const unsigned char *msg, Py_ssize_t size):
    """One inet_diag_msg as a ROW_FIELDS tuple, or None when malformed."""
    cdef Attrs a
    if not _inet_attrs(msg, size, &a):
        return None
    cdef uint8_t family = msg[0]
    cdef tuple row = PyTuple_New(14)
    _put(row, 0, _INET if family == C_AF_INET else _INET6)
    _put(row, 1, _state_name(msg[1]))
    _put(row, 2, _address(family, msg + 8, 0))
    _put(row, 3, _int(_be16(msg + 4)))
    _put(row, 4, _address(family, msg + 24, 1))
    _put(row, 5, _int(_be16(msg + 6)))
    _put(row, 6, _int(_u32(msg + 56)))
    _put(row, 7, _int(_u32(msg + 60)))
    _put(row, 8, _int(_u32(msg + 64)))
    _put(row, 9, PyLong_FromUnsignedLong(_u32(msg + 68)))
    _put(row, 10, _opt_u32(a.info, a.info_len, _ROW_RTT))
    _put(row, 11, _opt_u32(a.info, a.info_len, _ROW_TOTAL_RETRANS))
    _put(row, 12, _opt_u64(a.info, a.info_len, _ROW_BYTES_ACKED))
    _put(row, 13, _opt_u32(a.skmem, a.skmem_len, _ROW_DROPS))
    # A row holds only str, int and None: the cyclic collector has nothing to
    # find in it, and 100,000 tracked tuples would slow every full collection.
    PyObject_GC_UnTrack(row)
    return row


# --- the message walk ----------------------------------------------------------------

cdef enum:
    WALK_MESSAGE = 0
    WALK_END = 1
    WALK_FAULT = 2

ctypedef struct Walk:
    const unsigned char *buf
    Py_ssize_t n
    Py_ssize_t pos
    # Of the current message: its type, payload start and payload size.
    uint16_t kind
    const unsigned char *payload
    Py_ssize_t size
    # At WALK_END: the status the terminator carries.
    int32_t status


cdef int _next(Walk *w) noexcept nogil:
    """Step to the next message; the grammar of sockdiag._walk."""
    cdef Py_ssize_t left = w.n - w.pos
    cdef const unsigned char *hdr = w.buf + w.pos
    cdef Py_ssize_t length, step
    if left < NLMSG_HDRLEN:
        return WALK_FAULT
    length = _u32(hdr)
    if length < NLMSG_HDRLEN or length > left:
        return WALK_FAULT
    w.kind = _u16(hdr + 4)
    if w.kind == NLMSG_DONE or w.kind == NLMSG_ERROR:
        if length >= NLMSG_HDRLEN + 4:
            w.status = <int32_t>_u32(hdr + NLMSG_HDRLEN)
            return WALK_END
        if w.kind == NLMSG_DONE:
            w.status = 0
            return WALK_END
        return WALK_FAULT
    w.payload = hdr + NLMSG_HDRLEN
    w.size = length - NLMSG_HDRLEN
    step = _align4(length)
    w.pos += step if step < left else left
    return WALK_MESSAGE


cdef int _cmp_u32(const void *a, const void *b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t *>a)[0]
    cdef uint32_t y = (<const uint32_t *>b)[0]
    return (x > y) - (x < y)


cdef bint _has_inode(const uint32_t *sorted_inodes, Py_ssize_t count, uint32_t inode) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_inodes[mid] < inode:
            lo = mid + 1
        else:
            hi = mid
    return lo < count and sorted_inodes[lo] == inode


def parse_inet(data, inodes=None):
    """SOCK_DIAG_BY_FAMILY replies for AF_INET/AF_INET6 to ``(sockets, malformed, end)``;
    see :func:`hostdiag.parsers.sockdiag.parse_inet`."""
    cdef Py_buffer view
    cdef Walk w
    cdef int step
    cdef Py_ssize_t malformed = 0
    cdef list sockets = []
    cdef object end = None
    cdef uint32_t *wanted = NULL
    cdef Py_ssize_t n_wanted = 0
    if inodes is not None:
        # Only inodes a u32 can hold can match; the rest are dropped here.
        kept = [i for i in inodes if type(i) is int and 0 <= i <= 0xFFFFFFFF]
        wanted = <uint32_t *>malloc(max(1, len(kept)) * sizeof(uint32_t))
        if wanted == NULL:
            raise MemoryError()
        for value in kept:
            wanted[n_wanted] = value
            n_wanted += 1
        qsort(wanted, n_wanted, sizeof(uint32_t), _cmp_u32)
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except BaseException:
        free(wanted)
        raise
    try:
        w.buf = <const unsigned char *>view.buf
        w.n = view.len
        w.pos = 0
        while w.pos < w.n:
            step = _next(&w)
            if step == WALK_FAULT:
                malformed += 1
                break
            if step == WALK_END:
                end = w.status
                break
            if w.kind == NLMSG_NOOP:
                continue
            if (wanted != NULL and w.kind == SOCK_DIAG_BY_FAMILY and w.size >= INET_DIAG_MSG_LEN
                    and not _has_inode(wanted, n_wanted, _u32(w.payload + _INODE_OFFSET))):
                continue
            sock = _inet_socket(w.payload, w.size) if w.kind == SOCK_DIAG_BY_FAMILY else None
            if sock is None:
                malformed += 1
            else:
                PyList_Append(sockets, sock)
    finally:
        PyBuffer_Release(&view)
        free(wanted)
    return sockets, malformed, end


def scan_inet(data, states=None):
    """SOCK_DIAG_BY_FAMILY replies for AF_INET/AF_INET6 to ``(rows, malformed, end)``;
    see :func:`hostdiag.parsers.sockdiag.scan_inet`."""
    cdef Py_buffer view
    cdef Walk w
    cdef int step
    cdef Py_ssize_t malformed = 0
    cdef list rows = []
    cdef object end = None
    cdef Py_ssize_t counts[256]
    cdef Py_ssize_t i
    cdef dict tally
    if states is not None:
        if not isinstance(states, dict):
            raise TypeError("states must be a dict")
        memset(counts, 0, sizeof(counts))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        w.buf = <const unsigned char *>view.buf
        w.n = view.len
        w.pos = 0
        while w.pos < w.n:
            step = _next(&w)
            if step == WALK_FAULT:
                malformed += 1
                break
            if step == WALK_END:
                end = w.status
                break
            if w.kind == NLMSG_NOOP:
                continue
            row = _inet_row(w.payload, w.size) if w.kind == SOCK_DIAG_BY_FAMILY else None
            if row is None:
                malformed += 1
            else:
                PyList_Append(rows, row)
                counts[w.payload[1]] += 1
    finally:
        PyBuffer_Release(&view)
    if states is not None:
        tally = states
        for i in range(256):
            if counts[i]:
                name = _state_name(<uint8_t>i)
                tally[name] = tally.get(name, 0) + counts[i]
    return rows, malformed, end


def count_unix(data):
    """SOCK_DIAG_BY_FAMILY replies for AF_UNIX to ``(counts, malformed, end)``;
    see :func:`hostdiag.parsers.sockdiag.count_unix`."""
    cdef Py_buffer view
    cdef Walk w
    cdef int step
    cdef Py_ssize_t malformed = 0
    cdef Py_ssize_t table[UNIX_DIM][UNIX_DIM]
    cdef uint8_t kind, state
    cdef dict counts = {}
    cdef object end = None
    memset(table, 0, sizeof(table))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        w.buf = <const unsigned char *>view.buf
        w.n = view.len
        w.pos = 0
        while w.pos < w.n:
            step = _next(&w)
            if step == WALK_FAULT:
                malformed += 1
                break
            if step == WALK_END:
                end = w.status
                break
            if w.kind == NLMSG_NOOP:
                continue
            if w.kind != SOCK_DIAG_BY_FAMILY or w.size < UNIX_DIAG_MSG_LEN or w.payload[0] != C_AF_UNIX:
                malformed += 1
                continue
            kind = w.payload[1]
            state = w.payload[2]
            if kind < UNIX_DIM and state < UNIX_DIM:
                table[kind][state] += 1
            else:
                key = (kind, state)
                counts[key] = counts.get(key, 0) + 1
    finally:
        PyBuffer_Release(&view)
    for kind in range(UNIX_DIM):
        for state in range(UNIX_DIM):
            if table[kind][state]:
                counts[(kind, state)] = table[kind][state]
    return counts, malformed, end


ctypedef struct Ranked:
    uint64_t value
    Py_ssize_t index


cdef inline bint _below(Ranked a, Ranked b) noexcept nogil:
    """True when a ranks below b: a smaller value, or the same value later in the rows."""
    return a.value < b.value or (a.value == b.value and a.index > b.index)


cdef void _sift_down(Ranked *heap, Py_ssize_t size, Py_ssize_t i) noexcept nogil:
    """Restore the min-heap (lowest rank at the top) below slot i."""
    cdef Py_ssize_t child
    cdef Ranked item = heap[i]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _below(heap[child + 1], heap[child]):
            child += 1
        if not _below(heap[child], item):
            break
        heap[i] = heap[child]
        i = child
    heap[i] = item


cdef void _sift_up(Ranked *heap, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t parent
    cdef Ranked item = heap[i]
    while i > 0:
        parent = (i - 1) >> 1
        if not _below(item, heap[parent]):
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = item


def top_rows(rows, columns, Py_ssize_t n, exclude_state=None):
    """For each column of ``columns``, the at most ``n`` rows with the largest
    value in it, in one pass over the rows; see
    :func:`hostdiag.parsers.sockdiag.top_rows`."""
    cdef list seq
    cdef Py_ssize_t i, k, count, cap, ncols, need_max = ROW_STATE + 1, size
    cdef Py_ssize_t cols[MAX_RANK_COLUMNS]
    cdef Py_ssize_t need[MAX_RANK_COLUMNS]
    cdef Py_ssize_t sizes[MAX_RANK_COLUMNS]
    cdef Ranked item
    cdef Ranked *heaps
    cdef Ranked *heap
    cdef PyObject *cell
    cdef uint64_t value
    cdef Py_ssize_t length
    cdef bint is_tuple
    cdef int excluded
    wanted = list(columns)
    ncols = len(wanted)
    if ncols > MAX_RANK_COLUMNS:
        raise ValueError("at most %d columns" % MAX_RANK_COLUMNS)
    for k in range(ncols):
        cols[k] = wanted[k]
        if cols[k] < 0:
            raise ValueError("column must be >= 0")
        need[k] = (cols[k] if cols[k] > ROW_STATE else ROW_STATE) + 1
        sizes[k] = 0
    if n <= 0 or ncols == 0:
        return [[] for k in range(ncols)]
    seq = rows if type(rows) is list else list(rows)
    count = len(seq)
    cap = n if n < count else max(count, 1)
    heaps = <Ranked *>malloc(ncols * cap * sizeof(Ranked))
    if heaps == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            row = seq[i]
            if type(row) is tuple or isinstance(row, tuple):
                is_tuple = True
                length = PyTuple_GET_SIZE(row)
            elif isinstance(row, list):
                is_tuple = False
                length = PyList_GET_SIZE(row)
            else:
                continue
            # -1: not compared with exclude_state yet.
            excluded = -1
            for k in range(ncols):
                if length < need[k]:
                    continue
                if is_tuple:
                    cell = PyTuple_GET_ITEM(row, cols[k])
                else:
                    cell = PyList_GET_ITEM(row, cols[k])
                if not PyLong_CheckExact(<object>cell):
                    continue
                value = _as_u64(<object>cell)
                if value == <uint64_t>-1 and PyErr_Occurred():
                    PyErr_Clear()
                    continue
                if value == 0:
                    continue
                item.value = value
                item.index = i
                heap = heaps + k * cap
                if sizes[k] == n and not _below(heap[0], item):
                    continue
                if excluded == -1:
                    excluded = 0
                    if exclude_state is not None and row[ROW_STATE] == exclude_state:
                        excluded = 1
                if excluded:
                    break
                if sizes[k] < n:
                    heap[sizes[k]] = item
                    _sift_up(heap, sizes[k])
                    sizes[k] += 1
                else:
                    heap[0] = item
                    _sift_down(heap, sizes[k], 0)
        result = []
        for k in range(ncols):
            heap = heaps + k * cap
            size = sizes[k]
            ranked = [None] * size
            while size > 0:
                item = heap[0]
                size -= 1
                heap[0] = heap[size]
                _sift_down(heap, size, 0)
                ranked[size] = seq[item.index]
            result.append(ranked)
        return result
    finally:
        free(heaps)
