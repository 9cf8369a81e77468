"""Table tests of the rtnetlink message parsers and the dump walk, run over both twins.

The ``impl`` fixture gives the compiled ``hostdiag._rtnetlink`` and the pure
``hostdiag.parsers.rtnetlink`` (see tests/twinsupport.py).
"""

import struct

import pytest

from twinsupport import twin_fixture

from hostdiag.parsers import rtnetlink

impl = twin_fixture("rtnetlink")


def nla(kind, payload):
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def ifinfomsg(index, *attrs):
    return struct.pack("=BxHiII", 0, 1, index, 0x1043, 0) + b"".join(attrs)


def ifaddrmsg(family, prefixlen, scope, index, *attrs):
    return struct.pack("=BBBBI", family, prefixlen, 0, scope, index) + b"".join(attrs)


def rtmsg(family, dst_len, table, rtype, *attrs):
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 3, 0, rtype, 0) + b"".join(attrs)


def ndmsg(family, state):
    return struct.pack("=BxxxiHBB", family, 2, state, 0, 1)


def rtnexthop(ifindex, *attrs):
    chain = b"".join(attrs)
    return struct.pack("=HBBi", 8 + len(chain), 0, 0, ifindex) + chain


def u32(value):
    return struct.pack("=I", value)


def stats64(count):
    return struct.pack("=%dQ" % count, *range(1, count + 1))


def link_row(**fields):
    row = {"name": "eth0", "index": 2, "kind": None, "operstate": None, "mtu": None,
           "address": None, "carrier": None, "carrier_changes": None, "master": None,
           "stats": {}}
    row.update(fields)
    return row


IFLA_NAME = nla(3, b"eth0\0")
FULL_LINK = ifinfomsg(
    2, nla(1, bytes.fromhex("02fc00000001")), IFLA_NAME, nla(4, u32(1500)), nla(10, u32(5)),
    nla(16, b"\x06"), nla(0x8000 | 18, nla(2, b"x") + nla(1, b"veth\0")), nla(23, stats64(25)),
    nla(33, b"\x01"), nla(35, u32(3)), nla(26, bytes(300)))
ALL_STATS = dict(zip(rtnetlink.LINK_STATS, range(1, 26)))


@pytest.mark.parametrize("body, expected", [
    pytest.param(FULL_LINK, link_row(
        kind="veth", operstate="up", mtu=1500, address="02:fc:00:00:00:01", carrier=1,
        carrier_changes=3, master=5, stats=ALL_STATS), id="every-field"),
    pytest.param(ifinfomsg(2, IFLA_NAME), link_row(), id="name-only"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(23, stats64(24))),
                 link_row(stats=dict(list(ALL_STATS.items())[:24])), id="stats64-of-5.18"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(23, stats64(30))), link_row(stats=ALL_STATS),
                 id="stats64-longer-than-known"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(7, struct.pack("=3I", 7, 8, 9)) + b"\0\0"),
                 link_row(stats={"rx_packets": 7, "tx_packets": 8, "rx_bytes": 9}),
                 id="32-bit-stats"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(23, bytes(7)), nla(7, u32(1))), link_row(),
                 id="stats64-too-short-wins-over-stats"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(16, b"\x09"), nla(4, b"\x05\xdc"), nla(18, b"")),
                 link_row(), id="odd-operstate-short-mtu-empty-linkinfo"),
    pytest.param(ifinfomsg(2, IFLA_NAME, nla(18, nla(1, b"bond") + struct.pack("=HH", 99, 2))),
                 link_row(kind="bond"), id="cut-linkinfo-keeps-kind"),
    pytest.param(ifinfomsg(-1, nla(3, b"n\xe9t")), link_row(name="n\ufffdt", index=-1),
                 id="name-without-nul-invalid-utf8"),
    pytest.param(ifinfomsg(2, IFLA_NAME) + b"\x01\x02\x03", link_row(), id="three-trailing-bytes"),
    pytest.param(ifinfomsg(2), None, id="no-name"),
    pytest.param(ifinfomsg(2, nla(3, b"")), None, id="empty-name"),
    pytest.param(ifinfomsg(2, IFLA_NAME, struct.pack("=HH", 200, 4) + b"\0" * 8), None,
                 id="attribute-overruns"),
    pytest.param(ifinfomsg(2, IFLA_NAME, struct.pack("=HH", 3, 4)), None, id="attribute-below-4"),
    pytest.param(ifinfomsg(2)[:15], None, id="short-header"),
    pytest.param(b"", None, id="empty"),
])
def test_link_table(impl, body, expected):
    assert impl.parse_link(body, 0, len(body)) == expected
    padded = b"\xff" * 16 + body + b"\xee" * 9
    assert impl.parse_link(padded, 16, 16 + len(body)) == expected


@pytest.mark.parametrize("body, expected", [
    pytest.param(ifaddrmsg(2, 24, 0, 4, nla(1, bytes([10, 0, 0, 2])), nla(2, bytes([192, 0, 2, 2]))),
                 {"ifindex": 4, "ifname": None, "family": "inet", "address": "192.0.2.2",
                  "prefixlen": 24, "scope": "global"}, id="local-wins-over-peer"),
    pytest.param(ifaddrmsg(10, 128, 254, 1, nla(1, bytes(15) + b"\x01"), nla(8, u32(0x80))),
                 {"ifindex": 1, "ifname": None, "family": "inet6", "address": "::1",
                  "prefixlen": 128, "scope": "host"}, id="inet6-address-only"),
    pytest.param(ifaddrmsg(2, 8, 77, 1, nla(2, bytes([127, 0, 0, 1]))),
                 {"ifindex": 1, "ifname": None, "family": "inet", "address": "127.0.0.1",
                  "prefixlen": 8, "scope": "77"}, id="unnamed-scope"),
    pytest.param(ifaddrmsg(17, 0, 0, 1, nla(1, bytes(6))), False, id="other-family"),
    pytest.param(ifaddrmsg(2, 24, 0, 4, nla(2, bytes(16))), None, id="address-of-wrong-size"),
    pytest.param(ifaddrmsg(10, 64, 0, 4, nla(2, bytes(16)), struct.pack("=HH", 9, 1)), None,
                 id="attribute-overruns"),
    pytest.param(ifaddrmsg(2, 24, 0, 4), None, id="no-address"),
    pytest.param(ifaddrmsg(2, 24, 0, 4)[:7], None, id="short-header"),
])
def test_address_table(impl, body, expected):
    assert impl.parse_address(body, 0, len(body)) == expected
    padded = b"\xff" * 16 + body + b"\x08\x00\x02\x00" * 3
    assert impl.parse_address(padded, 16, 16 + len(body)) == expected


def default_hop(family, gateway, ifindex, table="main", metric=0):
    return {"family": family, "gateway": gateway, "ifindex": ifindex, "ifname": None,
            "table": table, "metric": metric}


V4_GATEWAY = nla(5, bytes([192, 0, 2, 1]))
V6_VIA = nla(18, struct.pack("=H", 10) + bytes.fromhex("fd000000000000000000000000000001"))


@pytest.mark.parametrize("body, expected", [
    pytest.param(rtmsg(2, 24, 254, 1, b"\xff" * 9), {"family": "inet", "table": "main", "default": None},
                 id="plain-route-header-only"),
    pytest.param(rtmsg(10, 128, 255, 2), {"family": "inet6", "table": "local", "default": None},
                 id="local-route"),
    pytest.param(rtmsg(2, 0, 254, 1, V4_GATEWAY, nla(4, u32(4)), nla(6, u32(100))),
                 {"family": "inet", "table": "main",
                  "default": [default_hop("inet", "192.0.2.1", 4, metric=100)]}, id="default"),
    pytest.param(rtmsg(2, 0, 254, 1), {"family": "inet", "table": "main",
                                       "default": [default_hop("inet", None, None)]},
                 id="default-without-attributes"),
    pytest.param(rtmsg(2, 0, 252, 1, nla(15, u32(1000)), V6_VIA, nla(4, u32(3))),
                 {"family": "inet", "table": "1000",
                  "default": [default_hop("inet", "fd00::1", 3, table="1000")]},
                 id="table-in-attribute-via-inet6"),
    pytest.param(rtmsg(2, 24, 252, 1, nla(15, u32(253))),
                 {"family": "inet", "table": "default", "default": None}, id="compat-table"),
    pytest.param(rtmsg(2, 0, 254, 1, nla(9, rtnexthop(3, V4_GATEWAY) + rtnexthop(4, V6_VIA)
                                         + rtnexthop(5) + b"\x01\x02")),
                 {"family": "inet", "table": "main",
                  "default": [default_hop("inet", "192.0.2.1", 3),
                              default_hop("inet", "fd00::1", 4), default_hop("inet", None, 5)]},
                 id="multipath"),
    pytest.param(rtmsg(2, 0, 254, 1, nla(9, struct.pack("=HBBi", 40, 0, 0, 3))), None,
                 id="multipath-hop-overruns"),
    pytest.param(rtmsg(2, 0, 254, 1, nla(9, rtnexthop(3, struct.pack("=HH", 12, 5)))), None,
                 id="multipath-hop-attribute-overruns"),
    pytest.param(rtmsg(2, 0, 254, 1, nla(5, bytes(3)), nla(4, b"\x01")),
                 {"family": "inet", "table": "main", "default": [default_hop("inet", None, None)]},
                 id="gateway-and-oif-of-wrong-size"),
    pytest.param(rtmsg(2, 0, 254, 1, struct.pack("=HH", 2, 5)), None, id="attribute-below-4"),
    pytest.param(rtmsg(7, 0, 254, 1), False, id="other-family"),
    pytest.param(rtmsg(2, 0, 254, 1)[:11], None, id="short-header"),
])
def test_route_table(impl, body, expected):
    assert impl.parse_route(body, 0, len(body)) == expected
    padded = b"\xff" * 16 + body + b"\x44" * 7
    assert impl.parse_route(padded, 16, 16 + len(body)) == expected


@pytest.mark.parametrize("body, expected", [
    pytest.param(ndmsg(2, 0x02), "reachable", id="reachable"),
    pytest.param(ndmsg(10, 0x40), "noarp", id="inet6-noarp"),
    pytest.param(ndmsg(2, 0), "none", id="none"),
    pytest.param(ndmsg(2, 0x03), "0x03", id="two-bits"),
    pytest.param(ndmsg(2, 0x100), "0x100", id="unknown-bit"),
    pytest.param(ndmsg(7, 0x02), False, id="other-family"),
    pytest.param(ndmsg(2, 0x02)[:11], None, id="short-header"),
])
def test_neighbour_table(impl, body, expected):
    assert impl.parse_neighbour(body, 0, len(body)) == expected
    assert impl.parse_neighbour(b"\0" * 4 + body, 4, 4 + len(body)) == expected


NETLINK_PARSERS = ("parse_link", "parse_address", "parse_route", "parse_neighbour")


@pytest.mark.parametrize("name", NETLINK_PARSERS)
def test_netlink_bounds_are_guarded(impl, name):
    """Bounds past the buffer are cut to it; a negative start is malformed."""
    parse = getattr(impl, name)
    whole = {"parse_link": FULL_LINK, "parse_address": ifaddrmsg(2, 8, 0, 1, nla(2, bytes(4))),
             "parse_route": rtmsg(2, 0, 254, 1, V4_GATEWAY),
             "parse_neighbour": ndmsg(2, 2)}[name]
    assert parse(whole, 0, len(whole) + 1000) == parse(whole, 0, len(whole)) is not None
    assert parse(bytearray(whole), 0, len(whole)) == parse(whole, 0, len(whole))
    for pos, end in ((-1, len(whole)), (len(whole), len(whole) + 16), (5, 2), (1 << 40, 1 << 41)):
        assert parse(whole, pos, end) is None


def nlmsg(mtype, seq, body, flags=0x2):
    """One netlink message (header + body), padded to 4 bytes."""
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body + bytes(-len(body) % 4)


LINK_MSG = nlmsg(16, 7, FULL_LINK)
LINK_ROW = link_row(kind="veth", operstate="up", mtu=1500, address="02:fc:00:00:00:01", carrier=1,
                    carrier_changes=3, master=5, stats=ALL_STATS)
ADDR_MSG = nlmsg(20, 7, ifaddrmsg(2, 8, 254, 1, nla(2, bytes([127, 0, 0, 1]))))
ADDR_ROW = {"ifindex": 1, "ifname": None, "family": "inet", "address": "127.0.0.1",
            "prefixlen": 8, "scope": "host"}
DONE = nlmsg(3, 7, struct.pack("=i", 0))


@pytest.mark.parametrize("data, seq, reply_type, expected, rows", [
    pytest.param(LINK_MSG + LINK_MSG + DONE, 7, 16, (0, False, 0, None), [LINK_ROW, LINK_ROW],
                 id="two-links-and-done"),
    pytest.param(LINK_MSG + LINK_MSG, 7, 16, (0, False, None, None), [LINK_ROW, LINK_ROW],
                 id="no-done-yet"),
    pytest.param(ADDR_MSG + nlmsg(20, 7, ifaddrmsg(17, 0, 0, 1)) + DONE, 7, 20, (0, False, 0, None),
                 [ADDR_ROW], id="other-family-skipped"),
    pytest.param(ADDR_MSG + nlmsg(20, 7, ifaddrmsg(2, 8, 0, 1)) + DONE, 7, 20, (1, False, 0, None),
                 [ADDR_ROW], id="malformed-counted"),
    pytest.param(nlmsg(20, 6, ifaddrmsg(2, 8, 0, 1)) + nlmsg(3, 6, bytes(4), 0) + ADDR_MSG + DONE,
                 7, 20, (0, False, 0, None), [ADDR_ROW], id="older-sequence-skipped"),
    pytest.param(ADDR_MSG + LINK_MSG + DONE, 7, 20, (0, False, 0, None), [ADDR_ROW],
                 id="other-type-skipped"),
    pytest.param(nlmsg(20, 7, ADDR_MSG[16:], 0x12) + DONE, 7, 20, (0, True, 0, None), [ADDR_ROW],
                 id="interrupted-reply"),
    pytest.param(ADDR_MSG + nlmsg(3, 7, struct.pack("=i", 0), 0x12), 7, 20, (0, True, 0, None),
                 [ADDR_ROW], id="interrupted-done"),
    pytest.param(ADDR_MSG + nlmsg(2, 7, struct.pack("=i", -13) + bytes(16)) + ADDR_MSG, 7, 20,
                 (0, False, -13, None), [ADDR_ROW], id="error-stops-the-walk"),
    pytest.param(nlmsg(3, 7, struct.pack("=i", -16)), 7, 28, (0, False, -16, None), [],
                 id="negative-done"),
    pytest.param(nlmsg(2, 7, b"\x01"), 7, 28, (0, False, -5, None), [], id="short-error-is-eio"),
    pytest.param(nlmsg(3, 7, b""), 7, 28, (0, False, 0, None), [], id="short-done-is-zero"),
    pytest.param(ADDR_MSG + struct.pack("=IHHII", 8, 20, 0, 7, 0) + DONE, 7, 20,
                 (0, False, None, 8), [ADDR_ROW], id="header-shorter-than-a-header"),
    pytest.param(ADDR_MSG[:-4], 7, 20, (1, False, None, None), [], id="message-cut-by-size"),
    pytest.param(ADDR_MSG[:15], 7, 20, (0, False, None, None), [], id="partial-header"),
    pytest.param(b"", 7, 24, (0, False, None, None), [], id="empty"),
])
def test_replies_table(impl, data, seq, reply_type, expected, rows):
    got = []
    assert impl.parse_replies(data, len(data), seq, reply_type, got) == expected
    assert got == rows
    # Bytes after size are not read; a size past the buffer is cut to it.
    got = []
    assert impl.parse_replies(bytearray(data + b"\xff" * 40), len(data), seq, reply_type, got) == expected
    assert got == rows
    got = []
    assert impl.parse_replies(data, len(data) + 1000, seq, reply_type, got) == expected
    assert got == rows


def test_replies_append_to_the_rows_given(impl):
    rows = ["kept"]
    impl.parse_replies(ADDR_MSG, len(ADDR_MSG), 7, 20, rows)
    assert rows == ["kept", ADDR_ROW]


@pytest.mark.parametrize("reply_type", [0, 3, 18, 21])
def test_replies_of_an_unknown_type_are_refused(impl, reply_type):
    with pytest.raises(ValueError):
        impl.parse_replies(DONE, len(DONE), 7, reply_type, [])
