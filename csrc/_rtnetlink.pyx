# cython: language_level=3
"""Compiled twins of the rtnetlink parsers in :mod:`hostdiag.parsers.rtnetlink`.

Same names, same signatures, same output as the pure twin: one message body
(link, address, route, neighbour) to plain data, and the walk over one received
dump datagram. Every read is bounded by the buffer; a malformed message gives
None, never an exception.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcpy, memset

# rtnetlink's names, equal to the pure twin's (see there). Spelled out rather than
# imported, for the reason given in _proctext.pyx.
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
    str PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)


include "_namecache.pxi"


# ---------------------------------------------------------------- rtnetlink
#
# The message layouts and the rules of a malformed message are rtnetlink's. An
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
    # IFA_LOCAL first: see rtnetlink.parse_address.
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
    into ``rows``: ``(malformed, interrupted, status, bad_length)`` (see rtnetlink)."""
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

