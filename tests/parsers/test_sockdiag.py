"""The twin suite of the sock_diag readers: the compiled ``hostdiag._sockdiag``
and the pure ``hostdiag.parsers.sockdiag``.

Every table test runs over both implementations; the compiled one fails (it is
not skipped) when the extension is missing, unless HOSTDIAG_PURE is set. Then
the same bytes go to both and must give equal results: the replies recorded
from a real kernel under tests/fixtures/sockdiag (see its capture.py), a short
tcp_info made from them, truncated and garbled dumps, and generated garbage,
truncations and mutations.
"""

import socket
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinsupport import compiled_twin, twin_fixture

from hostdiag.parsers import sockdiag

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sockdiag"
HYPOTHESIS = settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
READERS = ("parse_inet", "scan_inet", "count_unix")
INFO = {name: (offset, size, shift, width)
        for name, offset, size, shift, width in sockdiag.TCP_INFO_FIELDS}


impl = twin_fixture("sockdiag")


def compiled():
    return compiled_twin("sockdiag")


def fixture(name):
    return (FIXTURES / name).read_bytes()


# ---------------------------------------------------------------- message builders

def nlmsg(kind, payload, length=None, flags=2):
    """One netlink message, padded to 4 bytes; ``length`` overrides nlmsg_len."""
    size = 16 + len(payload) if length is None else length
    data = struct.pack("<IHHII", size, kind, flags, 7, 0) + payload
    return data + b"\0" * (-len(data) % 4)


def rtattr(kind, payload, length=None):
    size = 4 + len(payload) if length is None else length
    data = struct.pack("<HH", size, kind) + payload
    return data + b"\0" * (-len(data) % 4)


def inet_msg(family=socket.AF_INET, state=1, sport=40000, dport=443, src="127.0.0.1",
             dst="127.0.0.2", rqueue=0, wqueue=0, uid=1000, inode=4242, attrs=b""):
    af = family if family in (socket.AF_INET, socket.AF_INET6) else socket.AF_INET
    raw_src = socket.inet_pton(af, src).ljust(16, b"\0")
    raw_dst = socket.inet_pton(af, dst).ljust(16, b"\0")
    body = struct.pack("<BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
    body += raw_src + raw_dst + struct.pack("<IQ", 0, 0)
    body += struct.pack("<IIIII", 0, rqueue, wqueue, uid, inode)
    assert len(body) == 72
    return nlmsg(20, body + attrs)


def tcp_info(length=248, **values):
    """A tcp_info of ``length`` bytes with the named fields set (the rest 0)."""
    buf = bytearray(max(length, 248))
    for name, value in values.items():
        offset, size, shift, width = INFO[name]
        if width:
            old = int.from_bytes(buf[offset:offset + size], "little")
            value = old | (value << shift)
        buf[offset:offset + size] = value.to_bytes(size, "little")
    return bytes(buf[:length])


def done(status=0):
    return nlmsg(3, struct.pack("<i", status))


def error(errno_value):
    return nlmsg(2, struct.pack("<i", -errno_value) + b"\0" * 16)


def skmem(*values):
    return struct.pack("<%dI" % len(values), *values)


# ---------------------------------------------------------------- framing

@pytest.mark.parametrize("reader", READERS)
def test_empty_input(impl, reader):
    assert getattr(impl, reader)(b"") == (([] if reader != "count_unix" else {}), 0, None)


def test_done_and_error_end_the_dump(impl):
    sock = inet_msg()
    assert impl.parse_inet(sock + done())[1:] == (0, 0)
    assert impl.parse_inet(sock + error(22))[1:] == (0, -22)
    # A failed dump puts its error in the DONE payload.
    assert impl.parse_inet(sock + done(-4))[1:] == (0, -4)
    # A DONE without payload (old kernels) is a clean end too.
    assert impl.parse_inet(nlmsg(3, b""))[1:] == (0, 0)
    # Whatever follows the terminator is not read.
    sockets, malformed, end = impl.parse_inet(sock + done() + inet_msg(inode=7) + b"\xff" * 9)
    assert [s["inode"] for s in sockets] == [4242] and malformed == 0 and end == 0


def test_error_too_short_for_its_errno(impl):
    assert impl.parse_inet(nlmsg(2, b"\x01\x02"))[1:] == (1, None)


@pytest.mark.parametrize("data, malformed", [
    (b"\x10\x00", 1),                                    # shorter than a header
    (nlmsg(20, b"", length=8), 1),                       # nlmsg_len below the header
    (nlmsg(20, b"\0" * 72, length=4096), 1),             # nlmsg_len past the buffer
    (nlmsg(20, b"\0" * 40), 1),                          # shorter than inet_diag_msg
    (nlmsg(99, b"\0" * 72), 1),                          # not a SOCK_DIAG_BY_FAMILY reply
    (inet_msg(family=1), 1),                             # not AF_INET / AF_INET6
    (inet_msg(attrs=rtattr(2, b"\0" * 8, length=200)), 1),  # attribute past its message
    (inet_msg(attrs=rtattr(2, b"", length=2)), 1),       # attribute shorter than its header
])
def test_malformed_messages_are_counted(impl, data, malformed):
    sockets, bad, end = impl.parse_inet(data)
    assert bad == malformed and end is None
    assert impl.scan_inet(data)[1] == malformed


def test_stray_bytes_after_the_last_attribute(impl):
    msg = bytearray(inet_msg(attrs=rtattr(4, b"bbr\0") + b"\0\0\0\0"))
    struct.pack_into("<I", msg, 0, len(msg) - 2)
    assert impl.parse_inet(bytes(msg)) == ([], 1, None)


def test_noop_is_skipped_and_a_bad_message_does_not_hide_the_next(impl):
    data = nlmsg(1, b"") + nlmsg(20, b"\0" * 8) + inet_msg(inode=9) + done()
    sockets, malformed, end = impl.parse_inet(data)
    assert [s["inode"] for s in sockets] == [9] and malformed == 1 and end == 0


def test_unaligned_buffer(impl):
    data = b"x" + inet_msg(attrs=rtattr(2, tcp_info(rtt=1234))) + done()
    view = memoryview(data)[1:]
    sockets, malformed, end = impl.parse_inet(view)
    assert sockets[0]["tcp_info"]["rtt"] == 1234 and (malformed, end) == (0, 0)


# ---------------------------------------------------------------- the socket dict

def test_socket_fields(impl):
    attrs = (rtattr(4, b"cubic\0") + rtattr(7, skmem(1, 2, 3, 4, 5, 6, 7, 8, 9))
             + rtattr(2, tcp_info(rtt=2500, rttvar=300, cwnd=10)))
    data = inet_msg(state=1, sport=40000, dport=443, src="10.0.0.1", dst="10.0.0.2",
                    rqueue=5, wqueue=7, uid=1000, inode=81234, attrs=attrs)
    (sock,), malformed, end = impl.parse_inet(data)
    assert (malformed, end) == (0, None)
    assert list(sock) == list(sockdiag.SOCKET_KEYS)
    assert {k: sock[k] for k in sockdiag.SOCKET_KEYS[:11]} == {
        "family": "inet", "state": "ESTABLISHED", "local": "10.0.0.1", "local_port": 40000,
        "remote": "10.0.0.2", "remote_port": 443, "rqueue": 5, "wqueue": 7, "uid": 1000,
        "inode": 81234, "cong": "cubic",
    }
    assert sock["skmem"] == dict(zip(sockdiag.SKMEM_FIELDS, range(1, 10)))
    assert sock["tcp_info"]["rtt"] == 2500 and sock["tcp_info"]["rttvar"] == 300


def test_ipv6_and_mapped_addresses(impl):
    data = inet_msg(family=socket.AF_INET6, src="::ffff:127.0.0.1", dst="2001:db8::1") \
        + inet_msg(family=socket.AF_INET6, src="::", dst="fe80::1:2")
    sockets, _, _ = impl.parse_inet(data)
    assert [(s["family"], s["local"], s["remote"]) for s in sockets] == [
        ("inet6", "::ffff:127.0.0.1", "2001:db8::1"), ("inet6", "::", "fe80::1:2")]


@pytest.mark.parametrize("state, name", [(1, "ESTABLISHED"), (6, "TIME_WAIT"), (10, "LISTEN"),
                                         (12, "NEW_SYN_RECV"), (13, "BOUND_INACTIVE"),
                                         (14, "STATE_14"), (255, "STATE_255")])
def test_state_names(impl, state, name):
    assert impl.parse_inet(inet_msg(state=state))[0][0]["state"] == name


def test_no_attributes_gives_none(impl):
    (sock,), _, _ = impl.parse_inet(inet_msg(state=6, inode=0))
    assert sock["cong"] is None and sock["skmem"] is None and sock["tcp_info"] is None


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 72, 104, 105, 160, 168, 232, 240, 247, 248, 280])
def test_tcp_info_is_length_aware(impl, length):
    values = {name: ((1 if spec[3] == 1 else 3) if spec[3] else 100 + i)
              for i, (name, spec) in enumerate(INFO.items())}
    data = inet_msg(attrs=rtattr(2, tcp_info(length, **values)))
    info = impl.parse_inet(data)[0][0]["tcp_info"]
    assert list(info) == list(INFO)
    for name, (offset, size, _shift, _width) in INFO.items():
        expected = values[name] if offset + size <= length else None
        assert info[name] == expected, name


def test_tcp_info_layout_of_kernel_6(impl):
    """Offsets of include/uapi/linux/tcp.h in kernel 6.x, field by field."""
    expected = {
        "state": 0, "ca_state": 1, "retransmits": 2, "probes": 3, "backoff": 4, "options": 5,
        "snd_wscale": 6, "rcv_wscale": 6, "rto": 8, "ato": 12, "snd_mss": 16, "rcv_mss": 20,
        "unacked": 24, "sacked": 28, "lost": 32, "retrans": 36, "last_data_sent": 44,
        "last_data_recv": 52, "last_ack_recv": 56, "pmtu": 60, "rcv_ssthresh": 64,
        "rtt": 68, "rttvar": 72, "ssthresh": 76, "cwnd": 80, "advmss": 84,
        "reordering": 88, "rcv_rtt": 92, "rcv_space": 96, "total_retrans": 100,
        "pacing_rate": 104, "max_pacing_rate": 112, "bytes_acked": 120,
        "bytes_received": 128, "segs_out": 136, "segs_in": 140, "notsent_bytes": 144,
        "min_rtt": 148, "data_segs_in": 152, "data_segs_out": 156, "delivery_rate": 160,
        "busy_time": 168, "rwnd_limited": 176, "sndbuf_limited": 184, "delivered": 192,
        "delivered_ce": 196, "bytes_sent": 200, "bytes_retrans": 208, "dsack_dups": 216,
        "reord_seen": 220, "rcv_ooopack": 224, "snd_wnd": 228, "rcv_wnd": 232,
        "rehash": 236, "total_rto": 240, "total_rto_recoveries": 242, "total_rto_time": 244,
    }
    for name, offset in expected.items():
        assert INFO[name][0] == offset, name
    assert INFO["pacing_rate"][1] == 8 and INFO["total_rto"][1] == 2
    # The wscale nibbles and a u64 at its offset, through the parser.
    raw = bytearray(248)
    raw[6] = 0x7A
    raw[120:128] = (2 ** 40 + 5).to_bytes(8, "little")
    info = impl.parse_inet(inet_msg(attrs=rtattr(2, bytes(raw))))[0][0]["tcp_info"]
    assert (info["snd_wscale"], info["rcv_wscale"], info["bytes_acked"]) == (0xA, 0x7, 2 ** 40 + 5)


@pytest.mark.parametrize("payload, name", [
    (b"bbr\0", "bbr"), (b"cubic", "cubic"), (b"reno\0\0\0\0", "reno"), (b"", ""),
    (b"\xff\xfe\0", "\ufffd\ufffd"), (b"x" * 40, "x" * 40), (b"dctcp\0junk", "dctcp"),
])
def test_congestion_control_name(impl, payload, name):
    assert impl.parse_inet(inet_msg(attrs=rtattr(4, payload)))[0][0]["cong"] == name


@pytest.mark.parametrize("count", [0, 1, 4, 8, 9, 10])
def test_skmeminfo_is_length_aware(impl, count):
    mem = impl.parse_inet(inet_msg(attrs=rtattr(7, skmem(*range(11, 11 + count)))))[0][0]["skmem"]
    assert list(mem) == list(sockdiag.SKMEM_FIELDS)
    assert list(mem.values()) == [11 + i if i < count else None for i in range(9)]


def test_the_last_attribute_of_a_type_wins(impl):
    attrs = rtattr(4, b"reno\0") + rtattr(4, b"bbr\0")
    assert impl.parse_inet(inet_msg(attrs=attrs))[0][0]["cong"] == "bbr"


def test_unknown_attributes_are_skipped(impl):
    attrs = rtattr(5, b"\x10") + rtattr(21, b"\0" * 8) + rtattr(4, b"bbr\0") + rtattr(300, b"")
    sockets, malformed, _ = impl.parse_inet(inet_msg(attrs=attrs))
    assert sockets[0]["cong"] == "bbr" and malformed == 0


def test_inode_filter(impl):
    data = b"".join(inet_msg(inode=i) for i in (5, 6, 7, 8)) + nlmsg(20, b"\0" * 8) + done()
    sockets, malformed, end = impl.parse_inet(data, {6, 8, 99, -1, 2 ** 40, "x"})
    assert [s["inode"] for s in sockets] == [6, 8] and (malformed, end) == (1, 0)
    assert impl.parse_inet(data, ())[0] == []
    assert impl.parse_inet(data, [5])[0][0]["inode"] == 5


# ---------------------------------------------------------------- rows, unix counts, ranking

def test_rows_match_the_socket_dicts(impl):
    attrs = rtattr(7, skmem(0, 0, 0, 0, 0, 0, 0, 0, 17)) + rtattr(
        2, tcp_info(rtt=900, total_retrans=3, bytes_acked=2 ** 33))
    data = inet_msg(attrs=attrs) + inet_msg(state=6, inode=0) + done()
    rows, malformed, end = impl.scan_inet(data)
    assert (malformed, end) == (0, 0)
    assert rows[0] == ("inet", "ESTABLISHED", "127.0.0.1", 40000, "127.0.0.2", 443, 0, 0, 1000,
                       4242, 900, 3, 2 ** 33, 17)
    assert rows[1][10:] == (None, None, None, None)
    assert len(sockdiag.ROW_FIELDS) == len(rows[0])


def test_scan_counts_states(impl):
    data = inet_msg(state=1) * 3 + inet_msg(state=10) + inet_msg(state=99) + nlmsg(20, b"") + done()
    states = {"ESTABLISHED": 5}
    rows, malformed, end = impl.scan_inet(data, states)
    assert (len(rows), malformed, end) == (5, 1, 0)
    assert states == {"ESTABLISHED": 8, "LISTEN": 1, "STATE_99": 1}
    with pytest.raises(TypeError):
        impl.scan_inet(data, [])


def test_rows_of_a_short_tcp_info(impl):
    rows, _, _ = impl.scan_inet(inet_msg(attrs=rtattr(2, tcp_info(104, rtt=5, total_retrans=2))))
    assert rows[0][10:13] == (5, 2, None)


def unix_msg(kind, state, family=socket.AF_UNIX):
    return nlmsg(20, struct.pack("<BBBBIQ", family, kind, state, 0, 77, 0))


def test_count_unix(impl):
    data = (unix_msg(1, 10) + unix_msg(1, 1) * 3 + unix_msg(2, 7) + unix_msg(200, 200)
            + unix_msg(1, 1, family=2) + nlmsg(20, b"\0" * 4) + done())
    counts, malformed, end = impl.count_unix(data)
    assert counts == {(1, 10): 1, (1, 1): 3, (2, 7): 1, (200, 200): 1}
    assert (malformed, end) == (2, 0)


ROWS = [
    ("inet", "ESTABLISHED", "a", 1, "b", 2, 0, 10, 0, 1, 50, 3, 0, None),
    ("inet", "LISTEN", "a", 1, "b", 2, 99, 128, 0, 2, 0, 0, 0, 0),
    ("inet", "ESTABLISHED", "a", 1, "b", 2, 5, 10, 0, 3, 50, 0, 0, 0),
    ("inet", "TIME_WAIT", "a", 1, "b", 2, 0, 0, 0, 0, None, None, None, None),
    ["inet", "ESTABLISHED", "a", 1, "b", 2, 7, 0, 0, 4, 70, 2 ** 64 - 1, 0, 0],
    ("short",),
    "not a row",
    ("inet", "ESTABLISHED", "a", 1, "b", 2, 0, 0, 0, 5, 2 ** 64, -1, True, 1.5),
]


@pytest.mark.parametrize("column, n, exclude, inodes", [
    (10, 2, None, [4, 1]),          # rtt: 70, then the first of the two 50s
    (10, 5, None, [4, 1, 3]),
    (11, 5, None, [4, 1]),          # zero, None, negative and too large are left out
    (6, 5, None, [2, 4, 3]),
    (6, 5, "LISTEN", [4, 3]),
    (7, 1, "LISTEN", [1]),
    (12, 3, None, []),
    (13, 3, None, []),
    (10, 0, None, []),
])
def test_top_rows(impl, column, n, exclude, inodes):
    (ranked,) = impl.top_rows(ROWS, [column], n, exclude)
    assert [r[9] for r in ranked] == inodes


def test_top_rows_ranks_every_column_in_one_call(impl):
    ranked = impl.top_rows(iter(ROWS), (10, 6, 11, 99), 2, "LISTEN")
    assert [[r[9] for r in column] for column in ranked] == [[4, 1], [4, 3], [4, 1], []]
    assert impl.top_rows(ROWS, (), 3) == []
    assert impl.top_rows(ROWS, (6, 7), 0) == [[], []]


def test_top_rows_columns_must_be_valid(impl):
    with pytest.raises(ValueError):
        impl.top_rows(ROWS, [-1], 3)
    with pytest.raises(ValueError):
        impl.top_rows(ROWS, range(17), 3)


# ---------------------------------------------------------------- recorded replies

def test_fixture_tcp4(impl):
    sockets, malformed, end = impl.parse_inet(fixture("tcp4.bin"))
    assert (malformed, end) == (0, 0)
    states = [s["state"] for s in sockets]
    assert states.count("LISTEN") == 2 and "TIME_WAIT" in states and "ESTABLISHED" in states
    full = [s for s in sockets if s["state"] == "LISTEN" and s["wqueue"] == 1]
    assert full and full[0]["rqueue"] >= 1, "the listen(1) socket shows its full accept queue"
    established = [s for s in sockets if s["state"] == "ESTABLISHED"]
    assert all(s["tcp_info"]["rtt"] > 0 and s["cong"] and s["skmem"] for s in established)
    assert max(s["tcp_info"]["bytes_acked"] for s in established) >= 65536
    assert all(s["tcp_info"] is None and s["inode"] == 0 for s in sockets
               if s["state"] == "TIME_WAIT")


def test_fixture_tcp6_and_udp(impl):
    sockets, malformed, end = impl.parse_inet(fixture("tcp6.bin"))
    assert (malformed, end) == (0, 0) and {s["local"] for s in sockets} == {"::1"}
    udp, malformed, end = impl.parse_inet(fixture("udp4.bin"))
    assert (malformed, end) == (0, 0)
    assert max(s["rqueue"] for s in udp) >= 300 and all(s["tcp_info"] is None for s in udp)


def test_fixture_short_tcp_info(impl):
    full, _, _ = impl.parse_inet(fixture("tcp4.bin"))
    short, malformed, end = impl.parse_inet(fixture("short_info.bin"))
    assert (malformed, end) == (0, 0) and len(short) == len(full)
    for a, b in zip(full, short):
        if a["tcp_info"] is None:
            assert b["tcp_info"] is None
            continue
        for name, (offset, size, _shift, _width) in INFO.items():
            if offset + size <= 104:
                assert b["tcp_info"][name] == a["tcp_info"][name], name
            else:
                assert b["tcp_info"][name] is None, name
        assert b["cong"] == a["cong"] and b["skmem"] == a["skmem"]


def test_fixture_truncated_and_garbled(impl):
    sockets, malformed, end = impl.parse_inet(fixture("truncated.bin"))
    assert (len(sockets), malformed, end) == (1, 1, None)
    sockets, malformed, end = impl.parse_inet(fixture("garbled.bin"))
    assert (len(sockets), malformed, end) == (1, 2, None)


def test_fixture_error_and_unix(impl):
    assert impl.parse_inet(fixture("error.bin")) == ([], 0, -22)
    counts, malformed, end = impl.count_unix(fixture("unix.bin"))
    assert (malformed, end) == (0, 0) and sum(counts.values()) >= 2


# ---------------------------------------------------------------- the twins agree

FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.bin"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_twins_agree_on_fixtures(name):
    data = fixture(name)
    c = compiled()
    for reader in READERS:
        assert getattr(c, reader)(data) == getattr(sockdiag, reader)(data), reader
    inodes = {s["inode"] for s in sockdiag.parse_inet(data)[0][::2]}
    assert c.parse_inet(data, inodes) == sockdiag.parse_inet(data, inodes)
    rows = sockdiag.scan_inet(data)[0]
    columns = range(len(sockdiag.ROW_FIELDS))
    assert c.top_rows(rows, columns, 3, "LISTEN") == sockdiag.top_rows(rows, columns, 3, "LISTEN")


def _agree(data, inodes=None):
    c = compiled()
    for reader in READERS:
        assert getattr(c, reader)(data) == getattr(sockdiag, reader)(data), reader
    counted_c, counted_pure = {}, {}
    assert c.scan_inet(data, counted_c) == sockdiag.scan_inet(data, counted_pure)
    assert counted_c == counted_pure
    if inodes is not None:
        assert c.parse_inet(data, inodes) == sockdiag.parse_inet(data, inodes)


@HYPOTHESIS
@given(st.binary(max_size=2048))
def test_twins_agree_on_garbage(data):
    _agree(data, {0, 4242})


_SEED = fixture("tcp4.bin") + fixture("udp4.bin") + fixture("short_info.bin")


@HYPOTHESIS
@given(st.integers(0, len(_SEED)), st.integers(0, len(_SEED)),
       st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), max_size=8))
def test_twins_agree_on_mutated_replies(start, stop, flips):
    data = bytearray(_SEED)
    for pos, value in flips:
        data[pos] = value
    data = bytes(data[min(start, stop):max(start, stop)])
    inodes = {s["inode"] for s in sockdiag.parse_inet(_SEED)[0]}
    _agree(data, inodes)


_ATTR = st.builds(rtattr, st.sampled_from([2, 4, 7, 8, 1]), st.binary(max_size=300))


@HYPOTHESIS
@given(st.lists(st.builds(
    lambda state, rq, attrs: inet_msg(state=state, rqueue=rq, attrs=b"".join(attrs)),
    st.integers(0, 255), st.integers(0, 2 ** 32 - 1), st.lists(_ATTR, max_size=4)), max_size=6),
    st.integers(0, 3000))
def test_twins_agree_on_generated_messages(messages, cut):
    data = b"".join(messages)
    _agree(data, {4242})
    _agree(data[:cut], {4242})
    rows = sockdiag.scan_inet(data)[0]
    assert compiled().top_rows(rows, (6, 10, 11, 12), 2) == \
        sockdiag.top_rows(rows, (6, 10, 11, 12), 2)


_CELL = st.one_of(st.none(), st.integers(-5, 2 ** 65), st.sampled_from(["LISTEN", "x"]),
                  st.booleans(), st.floats(allow_nan=False))


@HYPOTHESIS
@given(st.lists(st.one_of(st.tuples(*[_CELL] * 14), st.lists(_CELL, max_size=16), st.none()),
                max_size=40),
       st.lists(st.integers(0, 15), max_size=5), st.integers(0, 6),
       st.sampled_from([None, "LISTEN"]))
def test_twins_agree_on_ranking(rows, columns, n, exclude):
    assert compiled().top_rows(rows, columns, n, exclude) == \
        sockdiag.top_rows(rows, columns, n, exclude)
