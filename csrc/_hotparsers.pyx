# cython: language_level=3
"""Compiled twins of the hot-path parsers in :mod:`hostdiag.parsers.hotpure`.

Same names, same signatures, same output: each parser takes the whole file as
``bytes`` (or any object exporting a contiguous byte buffer) and returns
``(result, malformed)`` equal to what the pure twin returns for the same bytes.
The grammar is the one documented in ``hotpure``; this module only walks the
buffer with a C pointer, parses numbers as ``uint64_t`` with an overflow check,
and creates Python objects for the output alone.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

# The field names, equal to hotpure's (tests/test_twins.py checks it). They are
# spelled out rather than imported: importing hostdiag.parsers from here would
# run its loader, which imports this module while it is still initialising.
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


# rtnetlink's names, as in hotpure (see there).
LINK_STATS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes",
    "rx_errors", "tx_errors", "rx_dropped", "tx_dropped",
    "multicast", "collisions",
    "rx_length_errors", "rx_over_errors", "rx_crc_errors", "rx_frame_errors",
    "rx_fifo_errors", "rx_missed_errors",
    "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_window_errors",
    "rx_compressed", "tx_compressed", "rx_nohandler", "rx_otherhost_dropped",
)
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
NUD_STATES = (
    (0x01, "incomplete"), (0x02, "reachable"), (0x04, "stale"), (0x08, "delay"),
    (0x10, "probe"), (0x20, "failed"), (0x40, "noarp"), (0x80, "permanent"),
)
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
FAMILIES = {2: "inet", 10: "inet6"}


cdef extern from "Python.h":
    str PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    str PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)


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
    # Decoded names kept between calls: slots (a power of two), slots probed
    # for one name, and the longest name kept.
    NAME_CACHE_SLOTS = 4096
    NAME_CACHE_PROBES = 8
    NAME_CACHE_MAX_LEN = 64

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
        raise ImportError("hostdiag._hotparsers: a field tuple outgrew MAX_FIELDS")
    for i in range(_N_SOFTNET):
        _SOFTNET_COLS[i] = SOFTNET_COLUMNS[i][0]
        if not 0 <= _SOFTNET_COLS[i] < MAX_FIELDS:
            raise ImportError("hostdiag._hotparsers: a softnet column outgrew MAX_FIELDS")
        _SOFTNET_KEEP = max(_SOFTNET_KEEP, _SOFTNET_COLS[i] + 1)
    return 0


_init_layout()


include "_numparse.pxi"


cdef inline bint _signed(const unsigned char *s, Py_ssize_t n, bint *negative,
                         uint64_t *out) noexcept nogil:
    """An unsigned number with an optional leading '-': sign and magnitude."""
    negative[0] = n > 0 and s[0] == c'-'
    if negative[0]:
        return _unsigned(s + 1, n - 1, out)
    return _unsigned(s, n, out)


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


# ---------------------------------------------------------------- rtnetlink
#
# The message layouts and the rules of a malformed message are hotpure's. An
# attribute chain is walked once; the payload of each wanted type (the last
# one of a type wins) is kept as an offset and a length (-1: absent) in arrays
# indexed by type. Every read is bounded by ``end``, itself cut to the buffer.

ctypedef object (*body_fn)(const unsigned char *, Py_ssize_t, Py_ssize_t)

cdef enum:
    ATTR_SLOTS = 64            # attribute types recorded; every wanted one is below
    NLA_TYPE_MASK = 0x3FFF
    AF_INET_ = 2
    AF_INET6_ = 10
    IFINFOMSG_LEN = 16
    IFADDRMSG_LEN = 8
    RTMSG_LEN = 12
    NDMSG_LEN = 12
    RTNEXTHOP_LEN = 8
    IFLA_ADDRESS = 1
    IFLA_IFNAME = 3
    IFLA_MTU = 4
    IFLA_STATS = 7
    IFLA_MASTER = 10
    IFLA_OPERSTATE = 16
    IFLA_LINKINFO = 18
    IFLA_STATS64 = 23
    IFLA_CARRIER = 33
    IFLA_CARRIER_CHANGES = 35
    IFLA_INFO_KIND = 1
    IFA_ADDRESS = 1
    IFA_LOCAL = 2
    RTA_OIF = 4
    RTA_GATEWAY = 5
    RTA_PRIORITY = 6
    RTA_MULTIPATH = 9
    RTA_TABLE = 15
    RTA_VIA = 18
    RTN_UNICAST = 1
    RT_TABLE_COMPAT = 252

cdef uint64_t _LINK_WANTED = (
    (1ULL << IFLA_ADDRESS) | (1ULL << IFLA_IFNAME) | (1ULL << IFLA_MTU) | (1ULL << IFLA_STATS)
    | (1ULL << IFLA_MASTER) | (1ULL << IFLA_OPERSTATE) | (1ULL << IFLA_LINKINFO)
    | (1ULL << IFLA_STATS64) | (1ULL << IFLA_CARRIER) | (1ULL << IFLA_CARRIER_CHANGES))
cdef uint64_t _ADDR_WANTED = (1ULL << IFA_ADDRESS) | (1ULL << IFA_LOCAL)
cdef uint64_t _ROUTE_WANTED = (
    (1ULL << RTA_OIF) | (1ULL << RTA_GATEWAY) | (1ULL << RTA_PRIORITY) | (1ULL << RTA_MULTIPATH)
    | (1ULL << RTA_TABLE) | (1ULL << RTA_VIA))
cdef uint64_t _NEXTHOP_WANTED = (1ULL << RTA_GATEWAY) | (1ULL << RTA_VIA)

cdef tuple _LINK_STATS = LINK_STATS
cdef Py_ssize_t _N_LINK_STATS = len(LINK_STATS)
cdef tuple _OPERSTATES = OPERSTATES
cdef dict _NUD_NAMES = dict(NUD_STATES)
_NUD_NAMES[0] = "none"
cdef dict _TABLE_NAMES = TABLE_NAMES
# The names of the one-byte rtm_table and ifa_scope values, by value.
cdef tuple _TABLE_BY_BYTE = tuple(TABLE_NAMES.get(i, str(i)) for i in range(256))
cdef tuple _SCOPE_BY_BYTE = tuple(SCOPE_NAMES.get(i, str(i)) for i in range(256))
cdef str _INET = FAMILIES[AF_INET_]
cdef str _INET6 = FAMILIES[AF_INET6_]


cdef inline bint _attrs(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, uint64_t wanted,
                        Py_ssize_t *off, Py_ssize_t *alen) noexcept nogil:
    """Record the wanted payloads of the chain in ``buf[pos:end]`` (``alen``
    must hold -1 for each type beforehand); True when an attribute is shorter
    than its header or overruns ``end``."""
    cdef uint16_t length, kind
    while pos <= end - 4:
        memcpy(&length, buf + pos, 2)
        memcpy(&kind, buf + pos + 2, 2)
        if length < 4 or pos + length > end:
            return True
        kind &= NLA_TYPE_MASK
        if kind < ATTR_SLOTS and (wanted >> kind) & 1:
            off[kind] = pos + 4
            alen[kind] = length - 4
        pos += (length + 3) & ~3
    return False


cdef inline object _u32_at(const unsigned char *buf, Py_ssize_t off, Py_ssize_t alen):
    """The first 4 payload bytes as an unsigned int, None when absent or shorter."""
    cdef uint32_t value
    if alen < 4:
        return None
    memcpy(&value, buf + off, 4)
    return value


cdef inline str _asciiz(const unsigned char *s, Py_ssize_t n):
    cdef const unsigned char *nul = <const unsigned char *>memchr(s, 0, n)
    return _name(s, n if nul == NULL else nul - s)


cdef str _hex_colons(const unsigned char *s, Py_ssize_t n):
    """bytes.hex(":") of ``n`` > 0 bytes."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 3 * n - 1)
    cdef char *w = PyBytes_AS_STRING(out)
    cdef const char *digits = b"0123456789abcdef"
    cdef Py_ssize_t i
    for i in range(n):
        if i:
            w[0] = c':'
            w += 1
        w[0] = digits[s[i] >> 4]
        w[1] = digits[s[i] & 15]
        w += 2
    return PyUnicode_DecodeASCII(PyBytes_AS_STRING(out), 3 * n - 1, NULL)


cdef object _inet(int family, const unsigned char *s, Py_ssize_t n):
    """socket.inet_ntop of an address of the family's exact size, else None."""
    cdef char text[64]
    if not ((family == AF_INET_ and n == 4) or (family == AF_INET6_ and n == 16)):
        return None
    if inet_ntop(family, s, text, sizeof(text)) == NULL:
        return None
    return PyUnicode_DecodeASCII(text, <Py_ssize_t>len(<bytes>text), NULL)


cdef object _counters(const unsigned char *s, Py_ssize_t n, Py_ssize_t width):
    """rtnl_link_stats(64) as {name: value}, for the whole fields present; None when none is."""
    cdef Py_ssize_t count = min(n // width, _N_LINK_STATS), i
    cdef uint64_t value64
    cdef uint32_t value32
    cdef dict stats
    if count == 0:
        return None
    stats = {}
    for i in range(count):
        if width == 8:
            memcpy(&value64, s + i * 8, 8)
            stats[_LINK_STATS[i]] = value64
        else:
            memcpy(&value32, s + i * 4, 4)
            stats[_LINK_STATS[i]] = value32
    return stats


cdef object _link(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t off[ATTR_SLOTS]
    cdef Py_ssize_t alen[ATTR_SLOTS]
    cdef Py_ssize_t info_off[ATTR_SLOTS]
    cdef Py_ssize_t info_len[ATTR_SLOTS]
    cdef int32_t index
    cdef unsigned char operstate
    cdef object kind = None, stats = None
    if end - pos < IFINFOMSG_LEN:
        return None
    memcpy(&index, buf + pos + 4, 4)
    memset(alen, 0xFF, sizeof(alen))
    if _attrs(buf, pos + IFINFOMSG_LEN, end, _LINK_WANTED, off, alen) or alen[IFLA_IFNAME] <= 0:
        return None
    if alen[IFLA_LINKINFO] > 0:
        memset(info_len, 0xFF, sizeof(info_len))
        _attrs(buf, off[IFLA_LINKINFO], off[IFLA_LINKINFO] + alen[IFLA_LINKINFO],
               1ULL << IFLA_INFO_KIND, info_off, info_len)
        if info_len[IFLA_INFO_KIND] >= 0:
            kind = _asciiz(buf + info_off[IFLA_INFO_KIND], info_len[IFLA_INFO_KIND])
    if alen[IFLA_STATS64] >= 0:
        stats = _counters(buf + off[IFLA_STATS64], alen[IFLA_STATS64], 8)
    elif alen[IFLA_STATS] >= 0:
        stats = _counters(buf + off[IFLA_STATS], alen[IFLA_STATS], 4)
    operstate = buf[off[IFLA_OPERSTATE]] if alen[IFLA_OPERSTATE] > 0 else 255
    return {
        "name": _asciiz(buf + off[IFLA_IFNAME], alen[IFLA_IFNAME]),
        "index": index,
        "kind": kind,
        "operstate": _OPERSTATES[operstate] if operstate < len(_OPERSTATES) else None,
        "mtu": _u32_at(buf, off[IFLA_MTU], alen[IFLA_MTU]),
        "address": (_hex_colons(buf + off[IFLA_ADDRESS], alen[IFLA_ADDRESS])
                    if alen[IFLA_ADDRESS] > 0 else None),
        "carrier": buf[off[IFLA_CARRIER]] if alen[IFLA_CARRIER] > 0 else None,
        "carrier_changes": _u32_at(buf, off[IFLA_CARRIER_CHANGES], alen[IFLA_CARRIER_CHANGES]),
        "master": _u32_at(buf, off[IFLA_MASTER], alen[IFLA_MASTER]),
        "stats": stats if stats is not None else {},
    }


cdef inline object _family_name(unsigned char family):
    if family == AF_INET_:
        return _INET
    if family == AF_INET6_:
        return _INET6
    return None


cdef object _address(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t off[ATTR_SLOTS]
    cdef Py_ssize_t alen[ATTR_SLOTS]
    cdef uint32_t index
    cdef bint cut
    cdef int raw
    cdef object family, address = None
    if end - pos < IFADDRMSG_LEN:
        return None
    family = _family_name(buf[pos])
    if family is None:
        return False
    memcpy(&index, buf + pos + 4, 4)
    memset(alen, 0xFF, sizeof(alen))
    cut = _attrs(buf, pos + IFADDRMSG_LEN, end, _ADDR_WANTED, off, alen)
    # IFA_LOCAL first: see hotpure.parse_address.
    raw = IFA_LOCAL if alen[IFA_LOCAL] >= 0 else IFA_ADDRESS
    if alen[raw] >= 0:
        address = _inet(buf[pos], buf + off[raw], alen[raw])
    if cut or address is None:
        return None
    return {
        "ifindex": index,
        "ifname": None,
        "family": family,
        "address": address,
        "prefixlen": buf[pos + 1],
        "scope": _SCOPE_BY_BYTE[buf[pos + 3]],
    }


cdef object _gateway(int family, const unsigned char *buf, Py_ssize_t *off, Py_ssize_t *alen):
    cdef uint16_t via_family
    if alen[RTA_GATEWAY] >= 0:
        return _inet(family, buf + off[RTA_GATEWAY], alen[RTA_GATEWAY])
    if alen[RTA_VIA] >= 2:
        memcpy(&via_family, buf + off[RTA_VIA], 2)
        return _inet(via_family, buf + off[RTA_VIA] + 2, alen[RTA_VIA] - 2)
    return None


cdef object _nexthops(int family, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t off[ATTR_SLOTS]
    cdef Py_ssize_t alen[ATTR_SLOTS]
    cdef uint16_t length
    cdef int32_t ifindex
    cdef list hops = []
    while pos + RTNEXTHOP_LEN <= end:
        memcpy(&length, buf + pos, 2)
        memcpy(&ifindex, buf + pos + 4, 4)
        if length < RTNEXTHOP_LEN or pos + length > end:
            return None
        memset(alen, 0xFF, sizeof(alen))
        if _attrs(buf, pos + RTNEXTHOP_LEN, pos + length, _NEXTHOP_WANTED, off, alen):
            return None
        hops.append((_gateway(family, buf, off, alen), ifindex))
        pos += (length + 3) & ~3
    return hops


cdef object _route(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t off[ATTR_SLOTS]
    cdef Py_ssize_t alen[ATTR_SLOTS]
    cdef uint32_t table_id
    cdef bint is_default
    cdef object family, table, hops, metric, gateway, ifindex
    cdef dict route
    if end - pos < RTMSG_LEN:
        return None
    family = _family_name(buf[pos])
    if family is None:
        return False
    is_default = buf[pos + 1] == 0 and buf[pos + 7] == RTN_UNICAST
    if not is_default and buf[pos + 4] != RT_TABLE_COMPAT:
        return {"family": family, "table": _TABLE_BY_BYTE[buf[pos + 4]], "default": None}
    memset(alen, 0xFF, sizeof(alen))
    if _attrs(buf, pos + RTMSG_LEN, end, _ROUTE_WANTED, off, alen):
        return None
    if alen[RTA_TABLE] >= 4:
        memcpy(&table_id, buf + off[RTA_TABLE], 4)
        table = _TABLE_NAMES.get(table_id)
        if table is None:
            table = str(table_id)
    else:
        table = _TABLE_BY_BYTE[buf[pos + 4]]
    route = {"family": family, "table": table, "default": None}
    if is_default:
        if alen[RTA_MULTIPATH] >= 0:
            hops = _nexthops(buf[pos], buf, off[RTA_MULTIPATH],
                             off[RTA_MULTIPATH] + alen[RTA_MULTIPATH])
            if hops is None:
                return None
        else:
            hops = [(_gateway(buf[pos], buf, off, alen),
                     _u32_at(buf, off[RTA_OIF], alen[RTA_OIF]))]
        metric = _u32_at(buf, off[RTA_PRIORITY], alen[RTA_PRIORITY])
        if not metric:
            metric = 0
        route["default"] = [
            {"family": family, "gateway": gateway, "ifindex": ifindex,
             "ifname": None, "table": table, "metric": metric}
            for gateway, ifindex in hops
        ]
    return route


cdef object _neighbour(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    cdef uint16_t state
    if end - pos < NDMSG_LEN:
        return None
    if _family_name(buf[pos]) is None:
        return False
    memcpy(&state, buf + pos + 8, 2)
    name = _NUD_NAMES.get(state)
    return name if name is not None else "0x%02x" % state


cdef object _run_body(body_fn parse, object data, Py_ssize_t pos, Py_ssize_t end):
    """Call ``parse`` on ``data``'s bytes with ``end`` cut to them; None for a negative ``pos``."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if pos < 0:
            return None
        if end > view.len:
            end = view.len
        return parse(<const unsigned char *>view.buf, pos, end)
    finally:
        PyBuffer_Release(&view)


def parse_link(data, Py_ssize_t pos, Py_ssize_t end):
    """One RTM_NEWLINK body, ``data[pos:end]``: the link dict, or None when malformed."""
    return _run_body(_link, data, pos, end)


def parse_address(data, Py_ssize_t pos, Py_ssize_t end):
    """One RTM_NEWADDR body: the address dict, False (not inet/inet6), or None (malformed)."""
    return _run_body(_address, data, pos, end)


def parse_route(data, Py_ssize_t pos, Py_ssize_t end):
    """One RTM_NEWROUTE body: {"family", "table", "default"}, False, or None."""
    return _run_body(_route, data, pos, end)


def parse_neighbour(data, Py_ssize_t pos, Py_ssize_t end):
    """One RTM_NEWNEIGH body: its NUD state name, False, or None."""
    return _run_body(_neighbour, data, pos, end)


# ---------------------------------------------------------------- one dump datagram

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP_INTR = 0x10
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH = 16, 20, 24, 28

cdef enum:
    NLMSGHDR_LEN = 16
    NLMSG_ERROR_ = 2
    NLMSG_DONE_ = 3
    NLM_F_DUMP_INTR_ = 0x10
    RTM_NEWLINK_ = 16
    RTM_NEWADDR_ = 20
    RTM_NEWROUTE_ = 24
    RTM_NEWNEIGH_ = 28
    EIO_ = 5


cdef object _walk(const unsigned char *buf, Py_ssize_t size, long long seq, int reply_type,
                  body_fn parse, list rows):
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t end
    cdef uint32_t length, mseq
    cdef uint16_t mtype, flags
    cdef int32_t status
    cdef Py_ssize_t malformed = 0
    cdef bint interrupted = False
    while pos + NLMSGHDR_LEN <= size:
        memcpy(&length, buf + pos, 4)
        memcpy(&mtype, buf + pos + 4, 2)
        memcpy(&flags, buf + pos + 6, 2)
        memcpy(&mseq, buf + pos + 8, 4)
        if length < NLMSGHDR_LEN:
            return malformed, interrupted, None, length
        end = pos + <Py_ssize_t>length
        if end > size:
            end = size
        if mseq == seq:
            if mtype == reply_type:
                if flags & NLM_F_DUMP_INTR_:
                    interrupted = True
                row = parse(buf, pos + NLMSGHDR_LEN, end)
                if row is None:
                    malformed += 1
                elif row is not False:
                    rows.append(row)
            elif mtype == NLMSG_DONE_ or mtype == NLMSG_ERROR_:
                if end - pos >= NLMSGHDR_LEN + 4:
                    memcpy(&status, buf + pos + NLMSGHDR_LEN, 4)
                else:
                    status = -EIO_ if mtype == NLMSG_ERROR_ else 0
                if flags & NLM_F_DUMP_INTR_:
                    interrupted = True
                return malformed, interrupted, status, None
        pos += (<Py_ssize_t>length + 3) & ~3
    return malformed, interrupted, None, None


def parse_replies(data, Py_ssize_t size, long long seq, int reply_type, list rows not None):
    """The messages of one received dump datagram, ``data[:size]``, decoded
    into ``rows``: ``(malformed, interrupted, status, bad_length)`` (see hotpure)."""
    cdef body_fn parse
    cdef Py_buffer view
    if reply_type == RTM_NEWLINK_:
        parse = _link
    elif reply_type == RTM_NEWADDR_:
        parse = _address
    elif reply_type == RTM_NEWROUTE_:
        parse = _route
    elif reply_type == RTM_NEWNEIGH_:
        parse = _neighbour
    else:
        raise ValueError("not a dump reply type: %r" % (reply_type,))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if size > view.len:
            size = view.len
        return _walk(<const unsigned char *>view.buf, size, seq, reply_type, parse, rows)
    finally:
        PyBuffer_Release(&view)
