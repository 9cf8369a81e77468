"""/proc text files to plain data: the pure-Python twins of ``csrc/_proctext.pyx``.

/proc/stat, /proc/meminfo-like ``key: value`` files, the two-line tables of
/proc/net/snmp and netstat, /proc/diskstats, /proc/net/dev, softnet_stat and
sockstat. Every parser takes the whole file as ``bytes`` and returns ``(result,
malformed)`` where ``malformed`` counts the lines that were skipped because they
did not follow the file's grammar. Parsers do no I/O.

The grammar both implementations share, so that they agree on any input:

* lines are split on ``\\n``; a line that is empty or only white space is skipped
  and is not malformed;
* tokens are split on ASCII white space (space, \\t, \\n, \\r, \\v, \\f);
* an unsigned number is 1 to 20 ASCII digits whose value is below 2**64;
  a signed number is an unsigned number with an optional leading ``-``;
  a hex number is 1 to 16 ASCII hex digits;
* names are decoded as UTF-8 with invalid bytes replaced (U+FFFD);
* a field the kernel did not give is ``None``, never 0.
"""

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

_U64_LIMIT = 1 << 64
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _unsigned(tok):
    """The value of an unsigned decimal token, or None when it is not one."""
    if 0 < len(tok) <= 20 and tok.isdigit():
        value = int(tok)
        if value < _U64_LIMIT:
            return value
    return None


def _signed(tok):
    if tok[:1] == b"-":
        value = _unsigned(tok[1:])
        return None if value is None else -value
    return _unsigned(tok)


def _hex(tok):
    if 0 < len(tok) <= 16 and not tok.translate(None, _HEX_DIGITS):
        return int(tok, 16)
    return None


def _name(raw):
    return raw.decode("utf-8", "replace")


def parse_stat(data):
    """/proc/stat: CPU times in USER_HZ ticks and the kernel's event counters.

    Returns ``{"total": {field: ticks}, "cpus": {"cpu0": {...}}, "intr": n,
    "softirq": n, "ctxt": n, "btime": seconds, "processes": forks,
    "procs_running": n, "procs_blocked": n}``. A CPU line needs at least four
    columns; columns the kernel does not give (guest on old kernels) are None.
    """
    result = {"total": None, "cpus": {}, "intr": None, "softirq": None}
    for key in STAT_SCALARS:
        result[key] = None
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0]
        if key.startswith(b"cpu"):
            values = [_unsigned(t) for t in tokens[1:]]
            if len(values) < 4 or None in values:
                malformed += 1
                continue
            times = {}
            for i, field in enumerate(CPU_FIELDS):
                times[field] = values[i] if i < len(values) else None
            if key == b"cpu":
                result["total"] = times
            else:
                result["cpus"][_name(key)] = times
        elif key == b"intr" or key == b"softirq":
            value = _unsigned(tokens[1]) if len(tokens) > 1 else None
            if value is None:
                malformed += 1
                continue
            result[_name(key)] = value
        elif key in (b"ctxt", b"btime", b"processes", b"procs_running", b"procs_blocked"):
            value = _unsigned(tokens[1]) if len(tokens) == 2 else None
            if value is None:
                malformed += 1
                continue
            result[_name(key)] = value
    return result, malformed


def parse_keyvalue(data):
    """The ``key value [kB]`` family: /proc/meminfo, /proc/vmstat, /proc/net/snmp6.

    Returns ``{key: value}``; a value with a ``kB`` unit is returned in bytes.
    A trailing colon on the key is dropped.
    """
    result = {}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0]
        if key[-1:] == b":":
            key = key[:-1]
        value = _unsigned(tokens[1]) if len(tokens) in (2, 3) else None
        if value is None or not key or (len(tokens) == 3 and tokens[2] != b"kB"):
            malformed += 1
            continue
        if len(tokens) == 3:
            value *= 1024
        result[_name(key)] = value
    return result, malformed


def parse_twoline(data):
    """The header/value line pairs of /proc/net/snmp and /proc/net/netstat.

    Returns ``{"Tcp": {"RtoAlgorithm": 1, ...}, ...}``. Values may be negative
    (Tcp MaxConn is -1). A pair whose lines disagree in prefix or length, or
    whose values are not numbers, is one malformed entry; so is a header
    without values.
    """
    result = {}
    malformed = 0
    header = None
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        prefix = tokens[0]
        if prefix[-1:] != b":" or len(prefix) < 2:
            if header is not None:
                malformed += 1
                header = None
            malformed += 1
            continue
        if header is None:
            header = tokens
            continue
        if prefix != header[0]:
            malformed += 1
            header = tokens
            continue
        names = header
        header = None
        if len(tokens) != len(names):
            malformed += 1
            continue
        values = [_signed(t) for t in tokens[1:]]
        if None in values:
            malformed += 1
            continue
        group = result.setdefault(_name(prefix[:-1]), {})
        for name, value in zip(names[1:], values):
            group[_name(name)] = value
    if header is not None:
        malformed += 1
    return result, malformed


def parse_diskstats(data):
    """/proc/diskstats with 14, 18 or 20 columns.

    Returns a list of ``{"major", "minor", "name", <DISK_FIELDS>}``; the
    discard fields (18 columns) and flush fields (20 columns) are None where
    the kernel does not give them. Times are milliseconds, sectors are 512 bytes.
    """
    result = []
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 14:
            malformed += 1
            continue
        major = _unsigned(tokens[0])
        minor = _unsigned(tokens[1])
        values = [_unsigned(t) for t in tokens[3:3 + len(DISK_FIELDS)]]
        if major is None or minor is None or None in values:
            malformed += 1
            continue
        row = {"major": major, "minor": minor, "name": _name(tokens[2])}
        for i, field in enumerate(DISK_FIELDS):
            row[field] = values[i] if i < len(values) else None
        result.append(row)
    return result, malformed


def parse_netdev(data):
    """/proc/net/dev. Returns a list of ``{"name", <NETDEV_FIELDS>}``.

    The name is everything before the last colon, stripped, so names with
    spaces or colons (allowed by old kernels) survive. The two header lines
    (they hold ``|``) are skipped without counting.
    """
    result = []
    malformed = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        colon = line.rfind(b":")
        if colon < 0:
            if b"|" not in line:
                malformed += 1
            continue
        name = line[:colon].strip()
        tokens = line[colon + 1:].split()
        values = [_unsigned(t) for t in tokens[:len(NETDEV_FIELDS)]]
        if not name or len(tokens) < len(NETDEV_FIELDS) or None in values:
            malformed += 1
            continue
        row = {"name": _name(name)}
        for field, value in zip(NETDEV_FIELDS, values):
            row[field] = value
        result.append(row)
    return result, malformed


def parse_softnet(data):
    """/proc/net/softnet_stat: one row per online CPU, hex columns.

    Returns a list of ``{"cpu", "processed", "dropped", "time_squeeze",
    "cpu_collision", "received_rps", "flow_limit_count", "backlog_len",
    "input_qlen", "process_qlen"}``. ``cpu`` is the kernel's column 12 where
    given (6.x), otherwise the row's position, which is wrong when a CPU is
    offline on such an old kernel. A row needs at least 9 columns.
    """
    result = []
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        values = [_hex(t) for t in tokens]
        if len(values) < 9 or None in values:
            malformed += 1
            continue
        row = {"cpu": values[12] if len(values) > 12 else len(result)}
        for column, field in SOFTNET_COLUMNS:
            row[field] = values[column] if column < len(values) else None
        result.append(row)
    return result, malformed


# ---------------------------------------------------------------- sockstat

_I64_LIMIT = 1 << 63


def _sockstat_value(tok):
    """A signed decimal of at most 19 digits whose magnitude is below 2**63, or None."""
    negative = tok[:1] == b"-"
    digits = tok[1:] if negative else tok
    if not 0 < len(digits) <= 19 or not digits.isdigit():
        return None
    value = int(digits)
    if value >= _I64_LIMIT:
        return None
    return -value if negative else value


def parse_sockstat(data):
    """/proc/net/sockstat and /proc/net/sockstat6: socket counts per protocol.

    One ``PREFIX: name value name value ...`` group per line; returns
    ``({"sockets": {"used": 9}, "TCP": {"inuse": 1, ...}, ...}, malformed)``.
    Units are the kernel's: ``mem`` of TCP, UDP and UDPLITE is in pages,
    ``memory`` of FRAG in bytes, every other value a count of sockets. Values
    are signed (the kernel prints them with ``%d``) and below 2**63 in magnitude.

    A line is malformed, and skipped whole, when its prefix lacks the colon,
    it has no pairs or an odd token count, or a value is not a number. A
    prefix seen twice keeps the values of both lines, the later one winning.
    """
    result = {}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        prefix = tokens[0]
        pairs = tokens[1:]
        if len(prefix) < 2 or prefix[-1:] != b":" or not pairs or len(pairs) % 2:
            malformed += 1
            continue
        values = [_sockstat_value(tok) for tok in pairs[1::2]]
        if None in values:
            malformed += 1
            continue
        group = result.setdefault(_name(prefix[:-1]), {})
        for key, value in zip(pairs[0::2], values):
            group[_name(key)] = value
    return result, malformed
