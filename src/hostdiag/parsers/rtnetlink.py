"""rtnetlink dump replies to plain data: the pure-Python twins of ``csrc/_rtnetlink.pyx``.

``parse_link``, ``parse_address``, ``parse_route`` and ``parse_neighbour`` take
one reply message's body and return its row, False or None (see below);
``parse_replies`` walks one received dump datagram and decodes its messages
with them. Parsers do no I/O. Names are decoded as UTF-8 with invalid bytes
replaced (U+FFFD); a field the kernel did not give is ``None``, never 0.
"""

import socket
import struct


def _name(raw):
    return raw.decode("utf-8", "replace")


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

