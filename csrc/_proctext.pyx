# cython: language_level=3
"""Compiled twins of the /proc text parsers in :mod:`hostdiag.parsers.proctext`.

Same names, same signatures, same output: each parser takes the whole file as
``bytes`` (or any object exporting a contiguous byte buffer) and returns
``(result, malformed)`` equal to what the pure twin returns for the same bytes.
The grammar is the one documented in ``proctext``; this module only walks the
buffer with a C pointer, parses numbers as ``uint64_t`` with an overflow check,
and creates Python objects for the output alone.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

# The field names, equal to proctext's (tests/parsers/test_proctext.py checks it).
# They are spelled out rather than imported: importing hostdiag.parsers from here
# would run its loader, which imports this module while it is still initialising.
CPU_FIELDS = (
    "user", "nice", "system", "idle", "iowait",
    "irq", "softirq", "steal", "guest", "guest_nice",
)
STAT_SCALARS = ("ctxt", "btime", "processes", "procs_running", "procs_blocked")
DISK_FIELDS = (
    "reads_completed", "reads_merged", "sectors_read", "read_time_ms",
    "writes_completed", "writes_merged", "sectors_written", "write_time_ms",
    "ios_in_progress", "io_time_ms", "weighted_io_time_ms",
    "discards_completed", "discards_merged", "sectors_discarded", "discard_time_ms",
    "flushes_completed", "flush_time_ms",
)
NETDEV_FIELDS = (
    "rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame",
    "rx_compressed", "rx_multicast",
    "tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls",
    "tx_carrier", "tx_compressed",
)
# (column, name) of /proc/net/softnet_stat; columns 3..7 have always been zero.
SOFTNET_COLUMNS = (
    (0, "processed"), (1, "dropped"), (2, "time_squeeze"), (8, "cpu_collision"),
    (9, "received_rps"), (10, "flow_limit_count"), (11, "backlog_len"),
    (13, "input_qlen"), (14, "process_qlen"),
)


ctypedef object (*parser_fn)(const unsigned char *, Py_ssize_t)

cdef enum:
    # Size of the C arrays that hold one line's numbers; the field tuples must fit.
    MAX_FIELDS = 32
    # A CPU line needs this many columns.
    STAT_MIN_CPU_COLUMNS = 4
    # A diskstats row needs major, minor, name and 11 counters; counters start here.
    DISK_MIN_TOKENS = 14
    DISK_FIRST_FIELD = 3
    # A softnet row needs this many columns; 6.x kernels give the CPU in column 12.
    SOFTNET_MIN_COLUMNS = 9
    SOFTNET_CPU_COLUMN = 12

cdef tuple _CPU_FIELDS = CPU_FIELDS
cdef tuple _DISK_FIELDS = DISK_FIELDS
cdef tuple _NETDEV_FIELDS = NETDEV_FIELDS
cdef tuple _STAT_SCALAR_NAMES = STAT_SCALARS
cdef tuple _STAT_SCALAR_BYTES = tuple(name.encode("ascii") for name in STAT_SCALARS)
cdef tuple _SOFTNET_NAMES = tuple(name for _, name in SOFTNET_COLUMNS)
cdef Py_ssize_t _N_CPU = len(CPU_FIELDS)
cdef Py_ssize_t _N_DISK = len(DISK_FIELDS)
cdef Py_ssize_t _N_NETDEV = len(NETDEV_FIELDS)
cdef Py_ssize_t _N_SOFTNET = len(SOFTNET_COLUMNS)
# The softnet column of each name in _SOFTNET_NAMES, and how many leading
# columns of a row are kept (enough for every such column and the CPU column).
cdef Py_ssize_t _SOFTNET_COLS[MAX_FIELDS]
cdef Py_ssize_t _SOFTNET_KEEP = SOFTNET_CPU_COLUMN + 1


cdef int _init_layout() except -1:
    global _SOFTNET_KEEP
    cdef Py_ssize_t i
    if max(_N_CPU, DISK_FIRST_FIELD + _N_DISK, _N_NETDEV, _N_SOFTNET) > MAX_FIELDS:
        raise ImportError("hostdiag._proctext: a field tuple outgrew MAX_FIELDS")
    for i in range(_N_SOFTNET):
        _SOFTNET_COLS[i] = SOFTNET_COLUMNS[i][0]
        if not 0 <= _SOFTNET_COLS[i] < MAX_FIELDS:
            raise ImportError("hostdiag._proctext: a softnet column outgrew MAX_FIELDS")
        _SOFTNET_KEEP = max(_SOFTNET_KEEP, _SOFTNET_COLS[i] + 1)
    return 0


_init_layout()


include "_numparse.pxi"


include "_namecache.pxi"


cdef inline bint _hex(const unsigned char *s, Py_ssize_t n, uint64_t *out) noexcept nogil:
    """1 to 16 ASCII hex digits."""
    cdef uint64_t value = 0
    cdef unsigned char c
    cdef Py_ssize_t i
    if n < 1 or n > 16:
        return False
    for i in range(n):
        c = s[i]
        if c >= c'0' and c <= c'9':
            value = (value << 4) | (c - c'0')
        elif c >= c'a' and c <= c'f':
            value = (value << 4) | (c - c'a' + 10)
        elif c >= c'A' and c <= c'F':
            value = (value << 4) | (c - c'A' + 10)
        else:
            return False
    out[0] = value
    return True


cdef inline bint _equals(const unsigned char *s, Py_ssize_t n, const char *word,
                         Py_ssize_t word_len) noexcept nogil:
    return n == word_len and memcmp(s, word, n) == 0


cdef inline dict _group(dict result, const unsigned char *prefix, Py_ssize_t prefix_len):
    """The dict of the ``PREFIX:`` group in ``result`` (the colon is dropped), made on first use."""
    cdef str key = _name(prefix, prefix_len - 1)
    cdef dict group = result.get(key)
    if group is None:
        group = {}
        result[key] = group
    return group


cdef object _run(parser_fn parse, object data):
    """Call ``parse`` on the bytes of ``data`` without copying them."""
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        return parse(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return parse(<const unsigned char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


cdef object _parse_stat(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *key
    cdef const unsigned char *tok
    cdef Py_ssize_t key_len, tok_len, count, i
    cdef uint64_t values[MAX_FIELDS]
    cdef uint64_t value
    cdef bint ok
    cdef bytes scalar
    cdef dict times
    cdef Py_ssize_t malformed = 0
    cdef dict cpus = {}
    cdef dict result = {"total": None, "cpus": cpus, "intr": None, "softirq": None}
    for name in _STAT_SCALAR_NAMES:
        result[name] = None
    while p < end:
        eol = _line_end(p, end)
        key_len = _next_token(&p, eol, &key)
        if key_len == 0:
            p = eol + 1
            continue
        if key_len >= 3 and memcmp(key, b"cpu", 3) == 0:
            count = 0
            ok = True
            while True:
                tok_len = _next_token(&p, eol, &tok)
                if tok_len == 0:
                    break
                if not _unsigned(tok, tok_len, &value):
                    ok = False
                    break
                if count < _N_CPU:
                    values[count] = value
                count += 1
            if not ok or count < STAT_MIN_CPU_COLUMNS:
                malformed += 1
            else:
                times = {}
                for i in range(_N_CPU):
                    times[_CPU_FIELDS[i]] = values[i] if i < count else None
                if key_len == 3:
                    result["total"] = times
                else:
                    cpus[_name(key, key_len)] = times
        elif _equals(key, key_len, "intr", 4) or _equals(key, key_len, "softirq", 7):
            # Only the total is kept; the per-source counts after it are not read.
            tok_len = _next_token(&p, eol, &tok)
            if tok_len == 0 or not _unsigned(tok, tok_len, &value):
                malformed += 1
            else:
                result["intr" if key_len == 4 else "softirq"] = value
        else:
            for i in range(len(_STAT_SCALAR_BYTES)):
                scalar = <bytes>_STAT_SCALAR_BYTES[i]
                if _equals(key, key_len, PyBytes_AS_STRING(scalar), PyBytes_GET_SIZE(scalar)):
                    tok_len = _next_token(&p, eol, &tok)
                    if (tok_len == 0 or not _unsigned(tok, tok_len, &value)
                            or _next_token(&p, eol, &tok) != 0):
                        malformed += 1
                    else:
                        result[_STAT_SCALAR_NAMES[i]] = value
                    break
        p = eol + 1
    return result, malformed


cdef object _parse_keyvalue(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *key
    cdef const unsigned char *tok
    cdef const unsigned char *unit
    cdef Py_ssize_t key_len, tok_len, unit_len
    cdef uint64_t value
    cdef Py_ssize_t malformed = 0
    cdef dict result = {}
    while p < end:
        eol = _line_end(p, end)
        key_len = _next_token(&p, eol, &key)
        if key_len == 0:
            p = eol + 1
            continue
        if key[key_len - 1] == c':':
            key_len -= 1
        tok_len = _next_token(&p, eol, &tok)
        unit_len = _next_token(&p, eol, &unit)
        if (key_len == 0 or tok_len == 0 or not _unsigned(tok, tok_len, &value)
                or (unit_len != 0 and (not _equals(unit, unit_len, "kB", 2)
                                       or _next_token(&p, eol, &tok) != 0))):
            malformed += 1
        elif unit_len == 0:
            result[_name(key, key_len)] = value
        elif value < 18014398509481984ULL:
            # Below 2**54 the value in bytes still fits in uint64_t.
            result[_name(key, key_len)] = value * 1024
        else:
            result[_name(key, key_len)] = (<object>value) * 1024
        p = eol + 1
    return result, malformed


cdef object _parse_twoline(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *prefix
    # The pending header line: its prefix, where its names start, where it ends.
    cdef const unsigned char *header_prefix = NULL
    cdef const unsigned char *header_names = NULL
    cdef const unsigned char *header_end = NULL
    cdef Py_ssize_t header_prefix_len = 0
    cdef bint has_header = False
    cdef const unsigned char *hq
    cdef const unsigned char *vq
    cdef const unsigned char *name
    cdef const unsigned char *tok
    cdef Py_ssize_t prefix_len, name_len, tok_len
    cdef uint64_t magnitude
    cdef bint negative, ok
    cdef dict group
    cdef Py_ssize_t malformed = 0
    cdef dict result = {}
    while p < end:
        eol = _line_end(p, end)
        prefix_len = _next_token(&p, eol, &prefix)
        if prefix_len == 0:
            p = eol + 1
            continue
        if prefix_len < 2 or prefix[prefix_len - 1] != c':':
            if has_header:
                malformed += 1
                has_header = False
            malformed += 1
        elif not has_header or not _equals(prefix, prefix_len, <const char *>header_prefix,
                                           header_prefix_len):
            if has_header:
                malformed += 1
            has_header = True
            header_prefix = prefix
            header_prefix_len = prefix_len
            header_names = p
            header_end = eol
        else:
            has_header = False
            # The pair is walked twice: checked first (as many values as names,
            # each a signed number), so that a bad pair creates no objects.
            hq = header_names
            vq = p
            while True:
                name_len = _next_token(&hq, header_end, &name)
                tok_len = _next_token(&vq, eol, &tok)
                if name_len == 0 or tok_len == 0:
                    ok = name_len == tok_len
                    break
                if not _signed(tok, tok_len, &negative, &magnitude):
                    ok = False
                    break
            if not ok:
                malformed += 1
            else:
                group = _group(result, prefix, prefix_len)
                hq = header_names
                vq = p
                while True:
                    name_len = _next_token(&hq, header_end, &name)
                    if name_len == 0:
                        break
                    tok_len = _next_token(&vq, eol, &tok)
                    _signed(tok, tok_len, &negative, &magnitude)
                    group[_name(name, name_len)] = _signed_object(negative, magnitude)
        p = eol + 1
    if has_header:
        malformed += 1
    return result, malformed


cdef object _parse_diskstats(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *tok
    cdef const unsigned char *name = NULL
    cdef Py_ssize_t tok_len, name_len = 0, count, i
    cdef Py_ssize_t max_tokens = DISK_FIRST_FIELD + _N_DISK
    cdef uint64_t values[MAX_FIELDS]
    cdef bint ok
    cdef dict row
    cdef Py_ssize_t malformed = 0
    cdef list result = []
    while p < end:
        eol = _line_end(p, end)
        count = 0
        ok = True
        # Tokens past the last field are neither read nor checked.
        while count < max_tokens:
            tok_len = _next_token(&p, eol, &tok)
            if tok_len == 0:
                break
            if count == 2:
                name = tok
                name_len = tok_len
            elif not _unsigned(tok, tok_len, &values[count]):
                ok = False
                break
            count += 1
        if count == 0 and ok:
            p = eol + 1
            continue
        if not ok or count < DISK_MIN_TOKENS:
            malformed += 1
        else:
            row = {"major": values[0], "minor": values[1], "name": _name(name, name_len)}
            for i in range(_N_DISK):
                row[_DISK_FIELDS[i]] = (values[DISK_FIRST_FIELD + i]
                                        if DISK_FIRST_FIELD + i < count else None)
            result.append(row)
        p = eol + 1
    return result, malformed


cdef object _parse_netdev(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *colon
    cdef const unsigned char *name
    cdef const unsigned char *name_end
    cdef const unsigned char *tok
    cdef Py_ssize_t tok_len, count, i
    cdef uint64_t values[MAX_FIELDS]
    cdef bint ok
    cdef dict row
    cdef Py_ssize_t malformed = 0
    cdef list result = []
    while p < end:
        eol = _line_end(p, end)
        name = p
        while name < eol and _is_space(name[0]):
            name += 1
        if name == eol:
            p = eol + 1
            continue
        # The name runs to the last colon, so names holding colons survive.
        colon = eol
        while colon > name and (colon - 1)[0] != c':':
            colon -= 1
        if colon == name:
            if memchr(name, c'|', eol - name) == NULL:
                malformed += 1
            p = eol + 1
            continue
        name_end = colon - 1
        while name_end > name and _is_space((name_end - 1)[0]):
            name_end -= 1
        p = colon
        count = 0
        ok = True
        while count < _N_NETDEV:
            tok_len = _next_token(&p, eol, &tok)
            if tok_len == 0 or not _unsigned(tok, tok_len, &values[count]):
                ok = False
                break
            count += 1
        if not ok or name_end == name:
            malformed += 1
        else:
            row = {"name": _name(name, name_end - name)}
            for i in range(_N_NETDEV):
                row[_NETDEV_FIELDS[i]] = values[i]
            result.append(row)
        p = eol + 1
    return result, malformed


cdef object _parse_softnet(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *tok
    cdef Py_ssize_t tok_len, count, i, column
    cdef uint64_t values[MAX_FIELDS]
    cdef uint64_t value
    cdef bint ok
    cdef dict row
    cdef Py_ssize_t malformed = 0
    cdef list result = []
    while p < end:
        eol = _line_end(p, end)
        count = 0
        ok = True
        # Every column must be hex, also those past the last one kept.
        while True:
            tok_len = _next_token(&p, eol, &tok)
            if tok_len == 0:
                break
            if not _hex(tok, tok_len, &value):
                ok = False
                break
            if count < _SOFTNET_KEEP:
                values[count] = value
            count += 1
        if count == 0 and ok:
            p = eol + 1
            continue
        if not ok or count < SOFTNET_MIN_COLUMNS:
            malformed += 1
        else:
            row = {"cpu": values[SOFTNET_CPU_COLUMN] if count > SOFTNET_CPU_COLUMN
                   else len(result)}
            for i in range(_N_SOFTNET):
                column = _SOFTNET_COLS[i]
                row[_SOFTNET_NAMES[i]] = values[column] if column < count else None
            result.append(row)
        p = eol + 1
    return result, malformed


def parse_stat(data):
    """/proc/stat: CPU times in USER_HZ ticks and the kernel's event counters."""
    return _run(_parse_stat, data)


def parse_keyvalue(data):
    """The ``key value [kB]`` family: /proc/meminfo, /proc/vmstat, /proc/net/snmp6; kB in bytes."""
    return _run(_parse_keyvalue, data)


def parse_twoline(data):
    """The header/value line pairs of /proc/net/snmp and /proc/net/netstat."""
    return _run(_parse_twoline, data)


def parse_diskstats(data):
    """/proc/diskstats with 14, 18 or 20 columns; missing fields are None."""
    return _run(_parse_diskstats, data)


def parse_netdev(data):
    """/proc/net/dev: one row per interface, the name is everything before the last colon."""
    return _run(_parse_netdev, data)


def parse_softnet(data):
    """/proc/net/softnet_stat: one row per online CPU, hex columns."""
    return _run(_parse_softnet, data)


# ---------------------------------------------------------------- sockstat

cdef inline bint _sockstat_value(const unsigned char *s, Py_ssize_t n, bint *negative,
                                 uint64_t *out) noexcept nogil:
    """A signed decimal of at most 19 digits whose magnitude is below 2**63."""
    negative[0] = n > 0 and s[0] == c'-'
    if negative[0]:
        s += 1
        n -= 1
    if n > 19 or not _unsigned(s, n, out):
        return False
    return out[0] < 9223372036854775808ULL


cdef object _parse_sockstat(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *prefix
    cdef const unsigned char *pairs
    cdef const unsigned char *name
    cdef const unsigned char *tok
    cdef Py_ssize_t prefix_len, name_len, tok_len, count
    cdef uint64_t magnitude
    cdef bint negative, ok
    cdef dict group
    cdef Py_ssize_t malformed = 0
    cdef dict result = {}
    while p < end:
        eol = _line_end(p, end)
        prefix_len = _next_token(&p, eol, &prefix)
        if prefix_len == 0:
            p = eol + 1
            continue
        # Checked whole first, so that a bad line creates no objects.
        pairs = p
        count = 0
        ok = True
        while True:
            name_len = _next_token(&p, eol, &name)
            if name_len == 0:
                break
            count += 1
            tok_len = _next_token(&p, eol, &tok)
            if tok_len == 0 or not _sockstat_value(tok, tok_len, &negative, &magnitude):
                ok = False
                break
        if not ok or count == 0 or prefix_len < 2 or prefix[prefix_len - 1] != c':':
            malformed += 1
        else:
            group = _group(result, prefix, prefix_len)
            p = pairs
            while True:
                name_len = _next_token(&p, eol, &name)
                if name_len == 0:
                    break
                tok_len = _next_token(&p, eol, &tok)
                _sockstat_value(tok, tok_len, &negative, &magnitude)
                group[_name(name, name_len)] = _signed_object(negative, magnitude)
        p = eol + 1
    return result, malformed


def parse_sockstat(data):
    """/proc/net/sockstat and /proc/net/sockstat6: ``PREFIX: name value ...`` groups."""
    return _run(_parse_sockstat, data)
