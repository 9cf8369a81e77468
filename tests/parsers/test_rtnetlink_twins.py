"""The compiled rtnetlink parsers and their pure-Python twins agree on the same bytes.

Recorded and live NETLINK_ROUTE dumps: every message, every cut of it, edited
and garbage messages, bounds outside the buffer, and the walk over whole dump
datagrams. A missing extension fails here unless HOSTDIAG_PURE is set.
"""

import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinsupport import compiled_fixture

from hostdiag.parsers import rtnetlink

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
NETLINK_PARSERS = ("parse_link", "parse_address", "parse_route", "parse_neighbour")
CONSTANTS = ("LINK_STATS", "OPERSTATES", "NUD_STATES", "TABLE_NAMES", "SCOPE_NAMES", "FAMILIES")

compiled = compiled_fixture("rtnetlink")


def test_same_names_and_constants(compiled):
    for name in NETLINK_PARSERS + ("parse_replies",) + CONSTANTS:
        assert hasattr(compiled, name), name
    for name in CONSTANTS:
        assert getattr(compiled, name) == getattr(rtnetlink, name), name


# ------------------------------------------------------------ rtnetlink messages

NETLINK_FIXTURES = os.path.join(FIXTURES, "netlink")
# dump name: (request type, bytes of the family header, parser)
NETLINK_DUMPS = {
    "link": (18, 16, "parse_link"),
    "address": (22, 8, "parse_address"),
    "route": (26, 12, "parse_route"),
    "neighbour": (30, 12, "parse_neighbour"),
}
NETLINK_GENERATED = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
_NLMSG_DONE = 3


def message_bounds(data):
    """(start, end) of each message of a recorded dump, NLMSG_DONE excluded."""
    bounds = []
    pos = 0
    while pos + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, pos)
        if mtype == _NLMSG_DONE or length < 16:
            break
        bounds.append((pos, min(pos + length, len(data))))
        pos += (length + 3) & ~3
    return bounds


def live_dump(request_type, header_bytes):
    """One dump of this host's namespace as recv returned it (no pyroute2)."""
    chunks = []
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError as exc:
        pytest.skip("no NETLINK_ROUTE socket here: %s" % exc)
    with sock:
        sock.bind((0, 0))
        sock.send(struct.pack("=IHHII", 16 + header_bytes, request_type, 0x301, 1, 0)
                  + bytes(header_bytes))
        while True:
            data = sock.recv(1 << 16)
            chunks.append(data)
            if not data or has_done(data):
                return b"".join(chunks)


def has_done(data):
    """Whether a datagram holds NLMSG_DONE (the dump's last one)."""
    pos = 0
    while pos + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, pos)
        if mtype == _NLMSG_DONE:
            return True
        if length < 16:
            return False
        pos += (length + 3) & ~3
    return False


def recorded_dump(name):
    with open(os.path.join(NETLINK_FIXTURES, name + ".bin"), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def netlink_messages():
    """Every message body of the recorded and live dumps: {dump: [message bytes]}."""
    found = {}
    for name, (request_type, header_bytes, _parser) in NETLINK_DUMPS.items():
        messages = []
        for data in (recorded_dump(name), live_dump(request_type, header_bytes)):
            messages += [data[start:end] for start, end in message_bounds(data)]
        found[name] = messages
    return found


def assert_netlink_twins_agree(compiled, name, data, pos, end):
    expected = getattr(rtnetlink, name)(data, pos, end)
    got = getattr(compiled, name)(data, pos, end)
    assert got == expected, (name, pos, end, bytes(data[:300]))
    assert repr(got) == repr(expected), (name, pos, end, bytes(data[:300]))
    return got


def every_netlink_parser(compiled, data, pos, end):
    for name in NETLINK_PARSERS:
        assert_netlink_twins_agree(compiled, name, data, pos, end)


@pytest.mark.parametrize("dump", sorted(NETLINK_DUMPS))
@pytest.mark.parametrize("source", ["recorded", "live"])
def test_netlink_dumps_cut_at_every_byte(compiled, dump, source):
    """Each message whole (a row: never None), then its body cut at every
    byte, read in place inside the whole dump and as a bytes of its own."""
    request_type, header_bytes, parser = NETLINK_DUMPS[dump]
    data = recorded_dump(dump) if source == "recorded" else live_dump(request_type, header_bytes)
    bounds = message_bounds(data)
    assert bounds
    for start, stop in bounds:
        row = assert_netlink_twins_agree(compiled, parser, data, start + 16, stop)
        assert row is not None
        message = data[start:stop]
        for cut in range(16, len(message) + 1):
            assert_netlink_twins_agree(compiled, parser, data, start + 16, start + cut)
            assert_netlink_twins_agree(compiled, parser, message[:cut], 16, cut)
        # Read as the other dumps' messages, too: garbage for their parsers.
        every_netlink_parser(compiled, message, 16, len(message))


def test_netlink_bounds_outside_the_buffer(compiled):
    message = recorded_dump("link")[slice(*message_bounds(recorded_dump("link"))[0])]
    for pos, end in ((-1, len(message)), (-16, 16), (16, len(message) + 100), (16, 1 << 40),
                     (len(message), len(message) + 8), (1 << 40, 1 << 41), (20, 10), (0, 0)):
        every_netlink_parser(compiled, message, pos, end)
    for buffer in (bytearray(message), memoryview(message)):
        for name in NETLINK_PARSERS:
            assert (getattr(compiled, name)(buffer, 16, len(message))
                    == getattr(rtnetlink, name)(bytes(message), 16, len(message)))


@NETLINK_GENERATED
@given(dump=st.sampled_from(sorted(NETLINK_DUMPS)), which=st.integers(0, 1 << 16),
       edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)),
                      max_size=4),
       cut=st.integers(0, 1 << 16), bytearray_buffer=st.booleans())
def test_netlink_messages_edited(compiled, netlink_messages, dump, which, edits, cut,
                                 bytearray_buffer):
    """A real message with a few bytes overwritten (lengths, types, families,
    attribute headers alike), then cut: same answer from both twins."""
    messages = netlink_messages[dump]
    message = bytearray(messages[which % len(messages)])
    for at, raw in edits:
        at %= len(message)
        message[at:at + len(raw)] = raw
    message = message[:16 + cut % (len(message) - 15)]
    data = message if bytearray_buffer else bytes(message)
    every_netlink_parser(compiled, data, 16, len(data))


def attribute(kind, payload):
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


@NETLINK_GENERATED
@given(header=st.binary(min_size=0, max_size=20),
       attrs=st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=40)), max_size=8),
       family=st.sampled_from([0, 2, 10, 7]), tail=st.binary(max_size=8),
       pos=st.integers(-4, 40), slack=st.integers(-8, 8))
def test_netlink_generated_messages(compiled, header, attrs, family, tail, pos, slack):
    """Headers and attribute chains built from scratch (any type, any payload
    size: addresses and counters of wrong sizes, nested chains that do not
    parse), random bytes after them, and bounds off by a few bytes."""
    body = bytes([family]) + header + b"".join(attribute(k, v) for k, v in attrs) + tail
    every_netlink_parser(compiled, body, 0, len(body))
    every_netlink_parser(compiled, body, pos, len(body) + slack)


@NETLINK_GENERATED
@given(data=st.binary(max_size=400), pos=st.integers(-2, 64), end=st.integers(-2, 512))
def test_netlink_random_bytes(compiled, data, pos, end):
    every_netlink_parser(compiled, data, pos, end)


# ------------------------------------------------------------ rtnetlink datagrams

# dump name -> the reply type its messages carry
REPLY_TYPES = {"link": 16, "address": 20, "route": 24, "neighbour": 28}


def dump_sequence(data):
    """The sequence number of a dump's first message (every reply carries it)."""
    return struct.unpack_from("=I", data, 8)[0] if len(data) >= 16 else 0


def assert_walks_agree(compiled, data, size, seq, reply_type):
    """Both twins' parse_replies on the same datagram: same answer, same rows."""
    expected_rows, got_rows = [], []
    expected = rtnetlink.parse_replies(bytes(data), size, seq, reply_type, expected_rows)
    got = compiled.parse_replies(data, size, seq, reply_type, got_rows)
    assert got == expected, (size, seq, reply_type, bytes(data[:300]))
    assert repr(got) == repr(expected)
    assert got_rows == expected_rows, (size, seq, reply_type)
    assert repr(got_rows) == repr(expected_rows)
    return got, got_rows


@pytest.mark.parametrize("dump", sorted(NETLINK_DUMPS))
@pytest.mark.parametrize("source", ["recorded", "live"])
def test_dump_walk_cut_at_every_byte(compiled, dump, source):
    """A whole dump (its datagrams back to back) walked by each reply type,
    with its own and another sequence number, then cut at every byte."""
    request_type, header_bytes, _parser = NETLINK_DUMPS[dump]
    data = recorded_dump(dump) if source == "recorded" else live_dump(request_type, header_bytes)
    seq = dump_sequence(data)
    for reply_type in REPLY_TYPES.values():
        for which in (seq, seq + 1):
            assert_walks_agree(compiled, data, len(data), which, reply_type)
    (malformed, _intr, status, bad_length), rows = assert_walks_agree(
        compiled, data, len(data), seq, REPLY_TYPES[dump])
    assert (malformed, status, bad_length) == (0, 0, None)
    assert len(rows) <= len(message_bounds(data))
    for size in range(len(data) + 1):
        assert_walks_agree(compiled, data, size, seq, REPLY_TYPES[dump])
    assert_walks_agree(compiled, bytearray(data), len(data), seq, REPLY_TYPES[dump])


@NETLINK_GENERATED
@given(dump=st.sampled_from(sorted(NETLINK_DUMPS)),
       edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)),
                      max_size=4),
       cut=st.integers(0, 1 << 16), other_seq=st.booleans(),
       reply_type=st.sampled_from(sorted(REPLY_TYPES.values())))
def test_dump_walk_edited(compiled, dump, edits, cut, other_seq, reply_type):
    """A recorded dump with a few bytes overwritten (message lengths, types,
    flags and sequence numbers alike), then cut."""
    data = bytearray(recorded_dump(dump))
    seq = dump_sequence(data) + (1 if other_seq else 0)
    for at, raw in edits:
        at %= len(data)
        data[at:at + len(raw)] = raw
    assert_walks_agree(compiled, data, cut % (len(data) + 1), seq, reply_type)


def netlink_message(mtype, flags, seq, body):
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body + bytes(-len(body) % 4)


@NETLINK_GENERATED
@given(messages=st.lists(st.tuples(st.sampled_from([2, 3, 16, 20, 24, 28, 99]),
                                   st.sampled_from([0, 2, 0x10, 0x12]), st.sampled_from([1, 2]),
                                   st.binary(max_size=48)), max_size=6),
       reply_type=st.sampled_from(sorted(REPLY_TYPES.values())), slack=st.integers(-20, 20),
       tail=st.binary(max_size=20))
def test_dump_walk_generated(compiled, messages, reply_type, slack, tail):
    """Datagrams built from scratch: replies, NLMSG_DONE and NLMSG_ERROR of
    any status or too short for one, other types and sequence numbers,
    random bodies, trailing bytes and a size off by a few bytes."""
    data = b"".join(netlink_message(*m) for m in messages) + tail
    assert_walks_agree(compiled, data, len(data), 1, reply_type)
    assert_walks_agree(compiled, data, max(0, len(data) + slack), 1, reply_type)


@NETLINK_GENERATED
@given(data=st.binary(max_size=400), size=st.integers(-2, 512), seq=st.integers(0, 3),
       reply_type=st.sampled_from(sorted(REPLY_TYPES.values())))
def test_dump_walk_random_bytes(compiled, data, size, seq, reply_type):
    assert_walks_agree(compiled, data, size, seq, reply_type)
