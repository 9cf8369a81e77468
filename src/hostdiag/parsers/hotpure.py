"""Pure-Python twins of the hot-path parsers compiled from ``csrc/_hotparsers.pyx``.

Every file parser takes the whole file as ``bytes`` and returns ``(result,
malformed)`` where ``malformed`` counts the lines that were skipped because they
did not follow the file's grammar. The rtnetlink parsers (``parse_link``,
``parse_address``, ``parse_route``, ``parse_neighbour``) take one reply
message's body instead and return its row, False or None (see their section
below); ``parse_replies`` walks one received dump datagram and decodes its
messages with them. Parsers do no I/O.

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

import socket
import struct

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


# ---------------------------------------------------------------- rtnetlink
#
# One parser per rtnetlink dump reply. Each takes a buffer (bytes or
# bytearray; the compiled twin takes any contiguous buffer) and the message
# body's bounds, ``data[pos:end]`` after the nlmsghdr, and
# returns a row, False for a message of no interest (a family other than
# inet/inet6), or None for a malformed message: too short for its fixed
# header, an attribute whose length is below 4 or overruns the message, or a
# required field missing. ``end`` past the buffer is cut to it and a negative
# ``pos`` is malformed, so no input reads outside the buffer or raises.
# Integers are in host byte order, as the kernel sends them.

# rtnl_link_stats64 in kernel order (linux/if_link.h). rtnl_link_stats (the
# 32-bit IFLA_STATS) has the same order and stops before rx_otherhost_dropped.
# Older kernels send shorter structs: only the counters present are returned.
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
# IF_OPER_* (RFC 2863), spelled as /sys/class/net/*/operstate spells them.
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
# NUD_* bits (linux/neighbour.h); a dumped entry holds exactly one of them.
NUD_STATES = (
    (0x01, "incomplete"), (0x02, "reachable"), (0x04, "stale"), (0x08, "delay"),
    (0x10, "probe"), (0x20, "failed"), (0x40, "noarp"), (0x80, "permanent"),
)
# rtm_table / RTA_TABLE ids that iproute2 names (/etc/iproute2/rt_tables).
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
# rtm_scope / ifa_scope values that iproute2 names.
SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
# AF_INET and AF_INET6 (the same on every Linux architecture).
FAMILIES = {2: "inet", 10: "inet6"}

_NUD_NAMES = dict(NUD_STATES)
_NUD_NAMES[0] = "none"
_ADDRESS_BYTES = {2: 4, 10: 16}
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_STATS = 1, 3, 4, 7
_IFLA_MASTER, _IFLA_OPERSTATE, _IFLA_LINKINFO, _IFLA_STATS64 = 10, 16, 18, 23
_IFLA_CARRIER, _IFLA_CARRIER_CHANGES = 33, 35
_IFLA_INFO_KIND = 1
_LINK_ATTRS = frozenset((
    _IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_STATS, _IFLA_MASTER, _IFLA_OPERSTATE,
    _IFLA_LINKINFO, _IFLA_STATS64, _IFLA_CARRIER, _IFLA_CARRIER_CHANGES,
))
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_ADDR_ATTRS = frozenset((_IFA_ADDRESS, _IFA_LOCAL))
_RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_MULTIPATH, _RTA_TABLE, _RTA_VIA = 4, 5, 6, 9, 15, 18
_ROUTE_ATTRS = frozenset((_RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_MULTIPATH, _RTA_TABLE, _RTA_VIA))
_NEXTHOP_ATTRS = frozenset((_RTA_GATEWAY, _RTA_VIA))
_RTN_UNICAST = 1
_RT_TABLE_COMPAT = 252  # rtm_table of a route whose table id only RTA_TABLE holds
_NLA_TYPE_MASK = 0x3FFF  # drops NLA_F_NESTED and NLA_F_NET_BYTEORDER

_IFINFOMSG = struct.Struct("=BxHiII")      # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")        # family, ifindex, state, flags, type
_RTNEXTHOP = struct.Struct("=HBBi")        # len, flags, hops, ifindex
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")


def _body(data, pos, end, header):
    """``end`` cut to the buffer, or None when the body cannot hold ``header`` bytes."""
    end = min(end, len(data))
    if pos < 0 or end - pos < header:
        return None
    return end


def _attrs(data, pos, end, wanted, _header=_NLA.unpack_from):
    """The payloads of the ``wanted`` attribute types in ``data[pos:end]`` (the
    last one of a type wins), and whether the chain was cut short by an
    attribute that overruns it. Fewer than 4 bytes left over end the chain."""
    found = {}
    last = end - 4
    # The loop runs once per attribute of every message (about 40 per link),
    # so it holds its names in locals.
    while pos <= last:
        length, kind = _header(data, pos)
        if length < 4 or pos + length > end:
            return found, True
        if kind & _NLA_TYPE_MASK in wanted:
            found[kind & _NLA_TYPE_MASK] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return found, False


def _u32(payload):
    return _U32.unpack_from(payload)[0] if len(payload) >= 4 else None


def _asciiz(payload):
    return _name(payload.split(b"\0", 1)[0])


def _counters(payload, width):
    """rtnl_link_stats(64) as {name: value}, for the whole fields present."""
    count = min(len(payload) // width, len(LINK_STATS))
    if count == 0:
        return None
    values = memoryview(payload[:count * width]).cast("Q" if width == 8 else "I")
    return dict(zip(LINK_STATS, values))


def _inet(family, payload):
    size = _ADDRESS_BYTES.get(family)
    if size is None or len(payload) != size:
        return None
    return socket.inet_ntop(family, payload)


def parse_link(data, pos, end):
    """One RTM_NEWLINK body as {"name", "index", "kind", "operstate", "mtu"
    (bytes), "address", "carrier" (0/1), "carrier_changes", "master" (index),
    "stats": {LINK_STATS name: packets or bytes}}; None when malformed (no
    name, or an attribute overruns the message). A field the kernel did not
    send is None; a counter it did not send is absent from "stats"."""
    end = _body(data, pos, end, _IFINFOMSG.size)
    if end is None:
        return None
    _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(data, pos)
    found, cut = _attrs(data, pos + _IFINFOMSG.size, end, _LINK_ATTRS)
    name = found.get(_IFLA_IFNAME)
    if cut or not name:
        return None
    kind = None
    linkinfo = found.get(_IFLA_LINKINFO)
    if linkinfo:
        info, _ = _attrs(linkinfo, 0, len(linkinfo), (_IFLA_INFO_KIND,))
        if _IFLA_INFO_KIND in info:
            kind = _asciiz(info[_IFLA_INFO_KIND])
    operstate = found.get(_IFLA_OPERSTATE)
    operstate = operstate[0] if operstate else None
    carrier = found.get(_IFLA_CARRIER)
    address = found.get(_IFLA_ADDRESS)
    stats = None
    if _IFLA_STATS64 in found:
        stats = _counters(found[_IFLA_STATS64], 8)
    elif _IFLA_STATS in found:
        stats = _counters(found[_IFLA_STATS], 4)
    return {
        "name": _asciiz(name),
        "index": index,
        "kind": kind,
        "operstate": OPERSTATES[operstate] if operstate is not None and operstate < len(OPERSTATES) else None,
        "mtu": _u32(found.get(_IFLA_MTU, b"")),
        "address": address.hex(":") if address else None,
        "carrier": carrier[0] if carrier else None,
        "carrier_changes": _u32(found.get(_IFLA_CARRIER_CHANGES, b"")),
        "master": _u32(found.get(_IFLA_MASTER, b"")),
        "stats": stats if stats is not None else {},
    }


def parse_address(data, pos, end):
    """One RTM_NEWADDR body as {"ifindex", "ifname": None, "family"
    ("inet"/"inet6"), "address", "prefixlen", "scope"}; False for a family
    other than inet/inet6; None when malformed (no address of the family's
    size, or an attribute overruns the message)."""
    end = _body(data, pos, end, _IFADDRMSG.size)
    if end is None:
        return None
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(data, pos)
    if family not in FAMILIES:
        return False
    found, cut = _attrs(data, pos + _IFADDRMSG.size, end, _ADDR_ATTRS)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
    # point-to-point link and equal to IFA_LOCAL elsewhere (iproute2 shows local).
    raw = found.get(_IFA_LOCAL, found.get(_IFA_ADDRESS))
    address = _inet(family, raw) if raw is not None else None
    if cut or address is None:
        return None
    return {
        "ifindex": index,
        "ifname": None,
        "family": FAMILIES[family],
        "address": address,
        "prefixlen": prefixlen,
        "scope": SCOPE_NAMES.get(scope, str(scope)),
    }


def _gateway(family, found):
    """The next hop's address from RTA_GATEWAY or RTA_VIA (an IPv4 route via
    an IPv6 next hop), or None for a directly connected route."""
    if _RTA_GATEWAY in found:
        return _inet(family, found[_RTA_GATEWAY])
    via = found.get(_RTA_VIA)
    if via is not None and len(via) >= 2:
        return _inet(_U16.unpack_from(via)[0], via[2:])
    return None


def _nexthops(family, payload):
    """(gateway, ifindex) for each rtnexthop of an RTA_MULTIPATH, or None when
    the nexthop list overruns the attribute."""
    hops = []
    pos, end = 0, len(payload)
    while pos + _RTNEXTHOP.size <= end:
        length, _flags, _hops, ifindex = _RTNEXTHOP.unpack_from(payload, pos)
        if length < _RTNEXTHOP.size or pos + length > end:
            return None
        found, cut = _attrs(payload, pos + _RTNEXTHOP.size, pos + length, _NEXTHOP_ATTRS)
        if cut:
            return None
        hops.append((_gateway(family, found), ifindex))
        pos += (length + 3) & ~3
    return hops


def parse_route(data, pos, end):
    """One RTM_NEWROUTE body as {"family", "table", "default": None, or one
    {"family", "gateway", "ifindex", "ifname": None, "table", "metric"} per
    next hop of a unicast default route}; False for a family other than
    inet/inet6; None when malformed. A metric the kernel leaves out is 0."""
    end = _body(data, pos, end, _RTMSG.size)
    if end is None:
        return None
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(data, pos)
    if family not in FAMILIES:
        return False
    is_default = dst_len == 0 and rtype == _RTN_UNICAST
    if not is_default and table != _RT_TABLE_COMPAT:
        # Most routes need only the header: a full table is counted without
        # walking its attributes.
        return {"family": FAMILIES[family], "table": TABLE_NAMES.get(table, str(table)), "default": None}
    found, cut = _attrs(data, pos + _RTMSG.size, end, _ROUTE_ATTRS)
    if cut:
        return None
    table_id = _u32(found.get(_RTA_TABLE, b""))
    table = table_id if table_id is not None else table
    route = {"family": FAMILIES[family], "table": TABLE_NAMES.get(table, str(table)), "default": None}
    if is_default:
        if _RTA_MULTIPATH in found:
            hops = _nexthops(family, found[_RTA_MULTIPATH])
            if hops is None:
                return None
        else:
            oif = _u32(found.get(_RTA_OIF, b""))
            hops = [(_gateway(family, found), oif)]
        # The kernel leaves RTA_PRIORITY out when the metric is 0.
        metric = _u32(found.get(_RTA_PRIORITY, b""))
        route["default"] = [
            {"family": route["family"], "gateway": gateway, "ifindex": ifindex,
             "ifname": None, "table": route["table"], "metric": metric or 0}
            for gateway, ifindex in hops
        ]
    return route


def parse_neighbour(data, pos, end):
    """One RTM_NEWNEIGH body as its NUD state name ("0x%02x" for a state of
    no name); False for a family other than inet/inet6; None when malformed."""
    end = _body(data, pos, end, _NDMSG.size)
    if end is None:
        return None
    family, _ifindex, state, _flags, _type = _NDMSG.unpack_from(data, pos)
    if family not in FAMILIES:
        return False
    return _NUD_NAMES.get(state) or "0x%02x" % state


# ---------------------------------------------------------------- one dump datagram

# Message types (linux/netlink.h, linux/rtnetlink.h) and the flag a dump sets
# when its table changed while it was being dumped.
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP_INTR = 0x10
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH = 16, 20, 24, 28
_NLMSGHDR = struct.Struct("=IHHI")         # len, type, flags, seq (pid not read)
_S32 = struct.Struct("=i")
_REPLY_PARSERS = {RTM_NEWLINK: parse_link, RTM_NEWADDR: parse_address,
                  RTM_NEWROUTE: parse_route, RTM_NEWNEIGH: parse_neighbour}


def parse_replies(data, size, seq, reply_type, rows):
    """The messages of one received dump datagram, ``data[:size]``.

    Each message of sequence number ``seq`` and type ``reply_type``
    (RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE or RTM_NEWNEIGH) is decoded by
    that type's parser and its row appended to ``rows``; a message of no
    interest (False) is skipped, a malformed one (None) counted. Messages of
    another sequence number are skipped. The walk stops at NLMSG_DONE or
    NLMSG_ERROR of ``seq``, or at a header whose length is shorter than a
    header. Returns ``(malformed, interrupted, status, bad_length)``:
    ``interrupted`` is true when a message of ``seq`` carried NLM_F_DUMP_INTR;
    ``status`` is None when the datagram did not end the dump, else the
    NLMSG_DONE/NLMSG_ERROR status (0, or a negative errno; -EIO for an error
    too short to hold one, 0 for such a NLMSG_DONE); ``bad_length`` is None,
    or the length of the header that stopped the walk.
    """
    parse_one = _REPLY_PARSERS.get(reply_type)
    if parse_one is None:
        raise ValueError("not a dump reply type: %r" % (reply_type,))
    size = min(size, len(data))
    header = _NLMSGHDR.unpack_from
    malformed = 0
    interrupted = False
    pos = 0
    while pos + 16 <= size:
        length, mtype, flags, mseq = header(data, pos)
        if length < 16:
            return malformed, interrupted, None, length
        end = pos + length if pos + length < size else size
        if mseq == seq:
            if mtype == reply_type:
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                row = parse_one(data, pos + 16, end)
                if row is None:
                    malformed += 1
                elif row is not False:
                    rows.append(row)
            elif mtype == NLMSG_DONE or mtype == NLMSG_ERROR:
                if end - pos >= 20:
                    status = _S32.unpack_from(data, pos + 16)[0]
                else:
                    status = -5 if mtype == NLMSG_ERROR else 0  # -EIO
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                return malformed, interrupted, status, None
        pos += (length + 3) & ~3
    return malformed, interrupted, None, None
