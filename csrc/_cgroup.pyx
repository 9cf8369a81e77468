# cython: language_level=3
"""Compiled twin of :mod:`hostdiag.parsers.cgroup`'s ``read_dir`` and ``parse_file``.

Same names, same signatures, same results (tests/test_cgroup_twins.py feeds
both the same bytes and the same directories). ``read_dir`` opens a cgroup
directory once and reads its files with ``openat``/``read``/``close`` into one
buffer reused for every file, then parses them in place: no Python object per
file but the parsed values. It pays: benchmarks/test_bench_cgroups.py.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EFBIG, EINTR, ENOENT, ENOTDIR, errno
from libc.stdlib cimport realloc
from libc.string cimport memchr, memcmp, strerror
from posix.fcntl cimport AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_RDONLY, openat
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close, read

from hostdiag.parsers.pressure import parse_pressure

VALUE, KEYED, CPU_MAX, IO_STAT, BLKIO, PRESSURE = range(6)
UNLIMITED = "max"

cdef enum:
    K_VALUE = 0
    K_KEYED = 1
    K_CPU_MAX = 2
    K_IO_STAT = 3
    K_BLKIO = 4
    K_PRESSURE = 5

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, object overflow_exception) except? -1.0

# As in the pure twin: a v1 limit at or above 2**62 is "no limit".
_V1_UNLIMITED_FLOOR = 1 << 62
# The first buffer holds any cgroup file but io.stat on a host with hundreds
# of devices; it grows (up to the caller's cap) when a file fills it.
cdef Py_ssize_t _FIRST_SIZE = 64 * 1024
cdef char *_buf = NULL
cdef Py_ssize_t _buf_size = 0

_IO_KEYS = (b"rbytes", b"wbytes", b"rios", b"wios", b"dbytes", b"dios")


cdef inline bint _space(char c) noexcept nogil:
    # bytes.split() and bytes.strip(): ASCII whitespace only.
    return c == 32 or (c >= 9 and c <= 13)


cdef inline bint _digits(const char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n <= 0:
        return False
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef object _int(const char *p, Py_ssize_t n):
    """The int of ``n`` ASCII digits (n <= 20; past 18 Python does it)."""
    cdef unsigned long long value = 0
    cdef Py_ssize_t i
    if n > 18:
        return int(PyBytes_FromStringAndSize(p, n))
    for i in range(n):
        value = value * 10 + <unsigned long long>(p[i] - 48)
    return value


cdef inline Py_ssize_t _token(const char *p, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t *length) noexcept nogil:
    """The next whitespace-separated token at or after pos[0]: its start, or -1."""
    cdef Py_ssize_t i = pos[0], start
    while i < n and _space(p[i]):
        i += 1
    if i >= n:
        pos[0] = n
        return -1
    start = i
    while i < n and not _space(p[i]):
        i += 1
    length[0] = i - start
    pos[0] = i
    return start


cdef tuple _parse_value(const char *p, Py_ssize_t n):
    cdef Py_ssize_t start = 0, end = n, length
    while start < end and _space(p[start]):
        start += 1
    while end > start and _space(p[end - 1]):
        end -= 1
    length = end - start
    if (length == 3 and memcmp(p + start, b"max", 3) == 0) or (length == 2 and memcmp(p + start, b"-1", 2) == 0):
        return UNLIMITED, 0
    if length <= 20 and _digits(p + start, length):
        value = _int(p + start, length)
        if value >= _V1_UNLIMITED_FLOOR:
            return UNLIMITED, 0
        return value, 0
    return None, 1


cdef inline bint _key_char(char c) noexcept nogil:
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 95 or c == 46


cdef tuple _parse_keyed(const char *p, Py_ssize_t n, tuple keys):
    cdef Py_ssize_t nkeys = len(keys)
    cdef list found = [None] * nkeys
    cdef Py_ssize_t pos = 0, end, space, i, j, klen, vlen, lines = 0, matched = 0
    cdef const char *nl
    cdef const char *line
    cdef bint good
    while pos < n:
        nl = <const char *>memchr(p + pos, 10, n - pos)
        end = (nl - p) if nl != NULL else n
        lines += 1
        line = p + pos
        # key (1-64 of [A-Za-z0-9_.]), one space, value (1-20 digits)
        space = -1
        for i in range(end - pos):
            if line[i] == 32:
                space = i
                break
        good = space >= 1 and space <= 64
        if good:
            for i in range(space):
                if not _key_char(line[i]):
                    good = False
                    break
        if good:
            vlen = end - pos - space - 1
            good = vlen >= 1 and vlen <= 20 and _digits(line + space + 1, vlen)
        if good:
            matched += 1
            for j in range(nkeys):
                key = <bytes>keys[j]
                klen = PyBytes_GET_SIZE(key)
                if klen == space and memcmp(PyBytes_AS_STRING(key), line, space) == 0:
                    found[j] = _int(line + space + 1, vlen)
        pos = end + 1
    return tuple(found), lines - matched


cdef tuple _parse_cpu_max(const char *p, Py_ssize_t n):
    cdef Py_ssize_t pos = 0, qlen = 0, plen = 0, xlen = 0
    cdef Py_ssize_t q = _token(p, n, &pos, &qlen)
    cdef Py_ssize_t r = _token(p, n, &pos, &plen) if q >= 0 else -1
    if q < 0 or r < 0 or _token(p, n, &pos, &xlen) >= 0:
        return None, 1
    if qlen == 3 and memcmp(p + q, b"max", 3) == 0:
        quota = UNLIMITED
    elif qlen <= 20 and _digits(p + q, qlen):
        quota = _int(p + q, qlen)
    else:
        return None, 1
    if not (plen <= 20 and _digits(p + r, plen)):
        return None, 1
    return (quota, _int(p + r, plen)), 0


cdef object _device(const char *p, Py_ssize_t n):
    """"MAJ:MIN" as str when both are digits, else None."""
    cdef const char *colon = <const char *>memchr(p, 58, n)
    cdef Py_ssize_t at
    if colon == NULL:
        return None
    at = colon - p
    if not _digits(p, at) or not _digits(colon + 1, n - at - 1):
        return None
    return PyBytes_FromStringAndSize(p, n).decode("ascii")


cdef tuple _parse_io_stat(const char *p, Py_ssize_t n):
    cdef dict devices = {}
    cdef Py_ssize_t malformed = 0, pos = 0, end, lpos, start, length, eq, j, taken
    cdef const char *nl
    cdef const char *tok
    cdef list counters
    while pos <= n:
        nl = <const char *>memchr(p + pos, 10, n - pos) if pos < n else NULL
        end = (nl - p) if nl != NULL else n
        lpos = pos
        start = _token(p, end, &lpos, &length)
        pos = end + 1
        if start < 0:
            continue
        device = _device(p + start, length)
        if device is None:
            malformed += 1
            continue
        counters = [None] * 6
        taken = 0
        while True:
            start = _token(p, end, &lpos, &length)
            if start < 0:
                break
            tok = p + start
            eq = -1
            for j in range(length):
                if tok[j] == 61:
                    eq = j
                    break
            if eq < 0 or length - eq - 1 > 20 or not _digits(tok + eq + 1, length - eq - 1):
                continue
            for j in range(6):
                key = <bytes>_IO_KEYS[j]
                if PyBytes_GET_SIZE(key) == eq and memcmp(PyBytes_AS_STRING(key), tok, eq) == 0:
                    counters[j] = _int(tok + eq + 1, length - eq - 1)
                    taken += 1
                    break
        if not taken:
            malformed += 1
            continue
        devices[device] = tuple(counters)
    return devices, malformed


cdef tuple _parse_blkio(const char *p, Py_ssize_t n):
    cdef dict devices = {}
    cdef Py_ssize_t malformed = 0, pos = 0, end, lpos, count, op
    cdef Py_ssize_t starts[3]
    cdef Py_ssize_t lengths[3]
    cdef Py_ssize_t start, length
    cdef const char *nl
    cdef const char *name
    cdef list counters
    while pos <= n:
        nl = <const char *>memchr(p + pos, 10, n - pos) if pos < n else NULL
        end = (nl - p) if nl != NULL else n
        lpos = pos
        pos = end + 1
        count = 0
        while True:
            start = _token(p, end, &lpos, &length)
            if start < 0:
                break
            if count < 3:
                starts[count] = start
                lengths[count] = length
            count += 1
        if count == 0:
            continue
        if (count == 2 and lengths[0] == 5 and memcmp(p + starts[0], b"Total", 5) == 0
                and _digits(p + starts[1], lengths[1])):
            continue
        if count != 3 or lengths[2] > 20 or not _digits(p + starts[2], lengths[2]):
            malformed += 1
            continue
        device = _device(p + starts[0], lengths[0])
        if device is None:
            malformed += 1
            continue
        name = p + starts[1]
        length = lengths[1]
        if length == 4 and memcmp(name, b"Read", 4) == 0:
            op = 0
        elif length == 5 and memcmp(name, b"Write", 5) == 0:
            op = 1
        elif length == 7 and memcmp(name, b"Discard", 7) == 0:
            op = 2
        else:
            if not ((length == 4 and memcmp(name, b"Sync", 4) == 0)
                    or (length == 5 and memcmp(name, b"Async", 5) == 0)
                    or (length == 5 and memcmp(name, b"Total", 5) == 0)):
                malformed += 1
            continue
        counters = devices.get(device)
        if counters is None:
            counters = [None, None, None]
            devices[device] = counters
        counters[op] = _int(p + starts[2], lengths[2])
    return {device: tuple(counters) for device, counters in devices.items()}, malformed


cdef Py_ssize_t _psi_average(const char *p, Py_ssize_t n, Py_ssize_t pos, const char *key, Py_ssize_t klen):
    """The end of ``key`` followed by \d{1,9}\.\d\d at ``pos``, or -1."""
    cdef Py_ssize_t start, digits = 0
    if pos + klen > n or memcmp(p + pos, key, klen) != 0:
        return -1
    pos += klen
    start = pos
    while pos < n and p[pos] >= 48 and p[pos] <= 57:
        pos += 1
        digits += 1
    if digits < 1 or digits > 9 or pos + 3 > n or p[pos] != 46:
        return -1
    if not _digits(p + pos + 1, 2):
        return -1
    return pos + 3


cdef dict _psi_line(const char *p, Py_ssize_t n, Py_ssize_t *at, const char *kind):
    """One line exactly as kernel/sched/psi.c prints it, starting at at[0]:
    its values (at[0] moves past the newline), or None."""
    cdef Py_ssize_t pos = at[0], a10, a60, a300, t, tlen = 0
    cdef char *end
    if pos + 4 > n or memcmp(p + pos, kind, 4) != 0:
        return None
    a10 = pos + 4
    pos = _psi_average(p, n, a10, b" avg10=", 7)
    if pos < 0:
        return None
    a60 = pos
    pos = _psi_average(p, n, a60, b" avg60=", 7)
    if pos < 0:
        return None
    a300 = pos
    pos = _psi_average(p, n, a300, b" avg300=", 8)
    if pos < 0 or pos + 7 > n or memcmp(p + pos, b" total=", 7) != 0:
        return None
    t = pos + 7
    pos = t
    while pos < n and p[pos] >= 48 and p[pos] <= 57:
        pos += 1
        tlen += 1
    if tlen < 1 or tlen > 20 or pos >= n or p[pos] != 10:
        return None
    at[0] = pos + 1
    # Each average is followed by a space, where the conversion stops (the
    # buffer has no terminating NUL); it is Python's own float().
    return {"avg10": PyOS_string_to_double(p + a10 + 7, &end, None),
            "avg60": PyOS_string_to_double(p + a60 + 7, &end, None),
            "avg300": PyOS_string_to_double(p + a300 + 8, &end, None),
            "total_us": _int(p + t, tlen)}


cdef tuple _parse_pressure(const char *p, Py_ssize_t n):
    """The canonical file (what every sample reads) is matched here; anything
    else goes to the shared Python parser, so both twins agree on odd input."""
    cdef Py_ssize_t at = 0
    some = _psi_line(p, n, &at, b"some")
    if some is not None:
        if at == n:
            return {"some": some, "full": None}, 0
        full = _psi_line(p, n, &at, b"full")
        if full is not None and at == n:
            return {"some": some, "full": full}, 0
    return parse_pressure(PyBytes_FromStringAndSize(p, n))


cdef tuple _parse(int kind, object keys, const char *p, Py_ssize_t n):
    if kind == K_VALUE:
        return _parse_value(p, n)
    if kind == K_KEYED:
        return _parse_keyed(p, n, <tuple>keys)
    if kind == K_CPU_MAX:
        return _parse_cpu_max(p, n)
    if kind == K_IO_STAT:
        return _parse_io_stat(p, n)
    if kind == K_BLKIO:
        return _parse_blkio(p, n)
    if kind == K_PRESSURE:
        return _parse_pressure(p, n)
    raise ValueError("unknown cgroup file kind %r" % kind)


def parse_file(kind, keys, bytes data):
    """Parse ``data`` as a file of ``kind``: (value, malformed)."""
    return _parse(kind, keys, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef Py_ssize_t _read_at(int dirfd, const char *name, Py_ssize_t cap, int *err):
    """Read ``name`` under ``dirfd`` into the shared buffer: its size, or -1
    with ``err`` set (EFBIG past ``cap``)."""
    global _buf, _buf_size
    cdef Py_ssize_t total = 0, n, grown
    cdef char *bigger
    cdef int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        err[0] = errno
        return -1
    while True:
        if total == _buf_size:
            if total > cap:
                close(fd)
                err[0] = EFBIG
                return -1
            grown = _buf_size * 2 if _buf_size else _FIRST_SIZE
            bigger = <char *>realloc(_buf, grown)
            if bigger == NULL:
                close(fd)
                raise MemoryError()
            _buf = bigger
            _buf_size = grown
        n = read(fd, _buf + total, _buf_size - total)
        if n < 0:
            if errno == EINTR:
                continue
            err[0] = errno
            close(fd)
            return -1
        if n == 0:
            break
        total += n
    close(fd)
    if total > cap:
        err[0] = EFBIG
        return -1
    return total


def read_dir(bytes directory, tuple specs, Py_ssize_t cap):
    """Read and parse the files ``specs`` of one cgroup ``directory``: None when
    it is gone, else (nlink, inode, values, malformed, errors); see the pure twin."""
    cdef int dirfd = openat(AT_FDCWD, directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    cdef int err = 0
    cdef struct_stat st
    cdef Py_ssize_t index, size
    cdef list values = [], malformed = [], errors = []
    if dirfd < 0:
        err = errno
        if err == ENOENT or err == ENOTDIR:
            return None
        raise OSError(err, strerror(err).decode("utf-8", "replace"), directory)
    try:
        if fstat(dirfd, &st) != 0:
            err = errno
            raise OSError(err, strerror(err).decode("utf-8", "replace"), directory)
        for index in range(len(specs)):
            spec = <tuple>specs[index]
            size = _read_at(dirfd, <bytes>spec[0], cap, &err)
            if size < 0:
                errors.append((index, err))
                values.append(None)
                continue
            value, bad = _parse(spec[1], spec[2], _buf, size)
            if bad:
                malformed.append((index, bad))
            values.append(value)
    finally:
        close(dirfd)
    return st.st_nlink, st.st_ino, values, malformed, errors
