"""The compiled /proc text parsers and their pure-Python twins agree on the same bytes.

Fed with every recorded fixture file, the live files of this host, each cut of
those files, edits of them, and generated input (random bytes and lines built from /proc-like
tokens), both twins must return equal results of the same types in the same
order. A missing extension fails here unless HOSTDIAG_PURE is set.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinsupport import compiled_fixture

from hostdiag.sources.hostroot import MISSING, HostRoot, SourceError
from hostdiag.parsers import proctext

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")

compiled = compiled_fixture("proctext")

# Which parser reads a file, by the file's base name in a recorded /proc tree.
PARSER_OF = {
    "stat": "parse_stat",
    "meminfo": "parse_keyvalue",
    "vmstat": "parse_keyvalue",
    "snmp6": "parse_keyvalue",
    "snmp": "parse_twoline",
    "netstat": "parse_twoline",
    "diskstats": "parse_diskstats",
    "dev": "parse_netdev",
    "softnet_stat": "parse_softnet",
    "sockstat": "parse_sockstat",
    "sockstat6": "parse_sockstat",
}
LIVE_FILES = (
    ("stat",), ("meminfo",), ("vmstat",), ("net", "snmp"), ("net", "netstat"),
    ("net", "snmp6"), ("diskstats",), ("net", "dev"), ("net", "softnet_stat"),
    ("net", "sockstat"), ("net", "sockstat6"),
)
PARSERS = (
    "parse_stat", "parse_keyvalue", "parse_twoline",
    "parse_diskstats", "parse_netdev", "parse_softnet", "parse_sockstat",
)
CONSTANTS = ("CPU_FIELDS", "DISK_FIELDS", "NETDEV_FIELDS", "SOFTNET_COLUMNS", "STAT_SCALARS")

GENERATED = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_twins_agree(compiled, name, data):
    expected = getattr(proctext, name)(data)
    got = getattr(compiled, name)(data)
    assert got == expected, (name, data[:300])
    # repr also tells int from bool and float, and shows the key order.
    assert repr(got) == repr(expected), (name, data[:300])


def fixture_files():
    found = []
    for directory, _, names in os.walk(FIXTURES):
        for name in names:
            path = os.path.join(directory, name)
            if name in PARSER_OF and os.path.isfile(path):
                found.append(path)
    return sorted(found)


def read_live(parts):
    try:
        return HostRoot().read_proc(*parts)
    except SourceError as exc:
        pytest.skip("this host has no %s: %s" % ("/".join(parts), exc))


@pytest.fixture(scope="module")
def live_files():
    """The live files this host has, by path parts."""
    found = {}
    for parts in LIVE_FILES:
        try:
            found[parts] = HostRoot().read_proc(*parts)
        except SourceError as exc:
            if exc.kind != MISSING:
                raise
    return found


def test_same_names_and_constants(compiled):
    for name in PARSERS + CONSTANTS:
        assert hasattr(compiled, name), name
    for name in CONSTANTS:
        assert getattr(compiled, name) == getattr(proctext, name), name


SOURCES = [pytest.param("fixture", path, id=os.path.relpath(path, FIXTURES))
           for path in fixture_files()]
SOURCES += [pytest.param("live", parts, id="live:" + "/".join(parts)) for parts in LIVE_FILES]


@pytest.mark.parametrize("kind, where", SOURCES)
def test_recorded_and_live_files(compiled, kind, where):
    if kind == "fixture":
        with open(where, "rb") as f:
            data = f.read()
    else:
        data = read_live(where)
    for name in PARSERS:
        assert_twins_agree(compiled, name, data)


@pytest.mark.parametrize("parts", LIVE_FILES, ids="/".join)
def test_live_files_cut_at_every_byte(compiled, parts):
    data = read_live(parts)
    name = PARSER_OF[parts[-1]]
    for cut in range(len(data) + 1):
        assert_twins_agree(compiled, name, data[:cut])


def test_any_buffer_is_read_like_bytes(compiled):
    data = read_live(("stat",)) + b"\n" + read_live(("net", "softnet_stat"))
    data += b"\n" + read_live(("net", "sockstat"))
    for name in PARSERS:
        parse = getattr(compiled, name)
        assert parse(memoryview(b"")) == getattr(proctext, name)(b"")
        assert parse(memoryview(data)) == parse(bytearray(data)) == parse(data)
    with pytest.raises(TypeError):
        compiled.parse_stat("cpu 1 2 3 4")


# ------------------------------------------------------------ generated input
#
# Structured documents are built from one drawn byte string read as a stream of
# small integers (zeros once it runs out): one draw per example keeps hundreds
# of multi-line examples fast, and hypothesis still shrinks a failure by
# shrinking the bytes.

SEPARATORS = [b" ", b"  ", b"\t", b"\r", b"\v", b"\f", b" \t ", b"\r\v"]
LINE_STARTS = [b"", b"", b" ", b"   ", b"\t", b"\f"]
LINE_ENDS = [b"", b"", b" ", b"\r", b"\t"]
U64_EDGES = [0, 1, 255, 256, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 1,
             10**19 - 1, 10**19, 10**20 - 1, 10**20, 10**21]
WORDS = [
    b"cpu", b"cpu0", b"cpu12", b"intr", b"softirq", b"ctxt", b"btime", b"processes",
    b"procs_running", b"procs_blocked", b"page", b"kB", b"KB", b"MemTotal:", b"nr_free_pages",
    b"Tcp:", b"Udp:", b"TcpExt:", b"Ip:", b"MaxConn", b":", b"::", b"|", b"-", b"--1", b"+1",
    b"lo:", b"eth0:", b"my dev:1:", b"face |bytes", b"Inter-|", b"sda", b"0x1f", b"1.5",
    b"\x00", b"\xff", b"\xc3\xa9", b"n\xe9t:", b"-0", b"0000000g",
    b"sockets:", b"TCP6:", b"FRAG:", b"inuse", b"mem", b"memory", b"tw",
]
STAT_KEYS = [b"cpu", b"cpu0", b"cpu1", b"cpu\xff", b"intr", b"softirq", b"ctxt", b"btime",
             b"processes", b"procs_running", b"procs_blocked", b"page"]
SNMP_PREFIXES = [b"Ip:", b"Tcp:", b"Udp:", b"X:", b"\xff:", b":", b"Tcp", b"IcmpMsg:"]
NETDEV_COLONS = [b":", b": ", b" : ", b"::", b":1:"]
SPACE_BYTES = frozenset(b" \t\n\r\v\f")


class Entropy:
    """Small integers read from drawn bytes; zeros once the bytes run out."""

    def __init__(self, raw):
        self.raw = raw
        self.pos = 0

    def bits(self, nbytes):
        chunk = self.raw[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return int.from_bytes(chunk, "little")

    def below(self, n):
        return self.bits(1 if n <= 256 else 3) % n

    def choice(self, options):
        return options[self.below(len(options))]


def decimal(e):
    """Mostly a valid number; now and then a uint64 edge, 19 to 21 digits, or zero padded."""
    form, n = e.below(32), e.bits(8)
    if form == 0:
        return b"%d" % U64_EDGES[n % len(U64_EDGES)]
    if form == 1:
        return b"%d" % (10**18 + n % (10**21 - 10**18))
    if form == 2:
        return b"0" * (1 + n % 3) + b"%d" % (n >> (n & 63))
    return b"%d" % (n >> (n & 63))


def signed(e):
    return b"-" + decimal(e) if e.below(3) == 0 else decimal(e)


def hexadecimal(e):
    """Mostly 1 to 16 digits of either case or zero padded to 8; now and then 17."""
    form, n = e.below(16), e.bits(8)
    if form == 0:
        return b"%017x" % n
    if form == 1:
        return b"%X" % n
    if form == 2:
        return b"%08x" % (n & 0xFFFFFFFF)
    return b"%x" % (n >> (n & 63))


def name(e):
    raw = bytes(e.bits(1) for _ in range(e.below(13)))
    return bytes(b for b in raw if b not in SPACE_BYTES)


def any_token(e):
    return e.choice([decimal, signed, hexadecimal, name, lambda e: e.choice(WORDS)])(e)


def line(e, head, cell, min_cells, max_cells):
    """Head tokens then cells; now and then a stray token, mixed white space, a tear."""
    tokens = head + [cell(e) for _ in range(min_cells + e.below(max_cells - min_cells + 1))]
    if tokens and e.below(8) == 0:
        tokens[e.below(len(tokens))] = any_token(e)
    separator = e.choice(SEPARATORS)
    if len(tokens) > 1 and e.below(2):
        at = 1 + e.below(len(tokens) - 1)
        text = separator.join(tokens[:at]) + e.choice(SEPARATORS) + separator.join(tokens[at:])
    else:
        text = separator.join(tokens)
    text = e.choice(LINE_STARTS) + text + e.choice(LINE_ENDS)
    if e.below(8) == 0:
        text = text[:e.below(len(text) + 1)]
    return text


def stat_lines(e):
    return [line(e, [e.choice(STAT_KEYS)], decimal, 0, 13)]


def keyvalue_lines(e):
    key = name(e) + e.choice([b"", b":", b":", b"::"])
    return [line(e, [key, decimal(e)], unit, 0, 2)]


def unit(e):
    return e.choice([b"kB", b"kB", b"KB", b"1"])


def twoline_lines(e):
    prefix = e.choice(SNMP_PREFIXES)
    names = [name(e) or e.choice(WORDS) for _ in range(e.below(10))]
    header = line(e, [prefix] + names, signed, 0, 0)
    if e.below(4) == 0:
        return [header]
    value_prefix = prefix if e.below(6) else e.choice(SNMP_PREFIXES)
    count = len(names) if e.below(5) else e.below(12)
    return [header, line(e, [value_prefix], signed, count, count)]


def diskstats_lines(e):
    return [line(e, [decimal(e), decimal(e), name(e) or b"sda"], decimal, 8, 20)]


def netdev_lines(e):
    if e.below(8) == 0:
        return [b"Inter-|   Receive    |  Transmit", b" face |bytes    packets|bytes"]
    return [line(e, [name(e) + e.choice(NETDEV_COLONS)], decimal, 12, 19)]


def softnet_lines(e):
    return [line(e, [], hexadecimal, 7, 17)]


def sockstat_lines(e):
    prefix = e.choice([b"sockets:", b"TCP:", b"TCP6:", b"FRAG:", b"TCP", b":", name(e) + b":"])
    pairs = []
    for _ in range(e.below(6)):
        value = signed(e) if e.below(4) else e.choice([b"9223372036854775807",
                                                      b"9223372036854775808", b"-", b"1x"])
        pairs += [e.choice([b"inuse", b"mem", b"tw", b"orphan"]) if e.below(2) else name(e), value]
    if pairs and e.below(8) == 0:
        pairs.pop()
    return [line(e, [prefix] + pairs, signed, 0, 0)]


def token_lines(e):
    return [line(e, [], any_token, 0, 20)]


KINDS = {
    "stat": stat_lines, "keyvalue": keyvalue_lines, "twoline": twoline_lines,
    "diskstats": diskstats_lines, "netdev": netdev_lines, "softnet": softnet_lines,
    "sockstat": sockstat_lines, "tokens": token_lines,
}


def document(kind, raw):
    """Lines of one kind, with now and then a line of another kind."""
    e = Entropy(raw)
    lines = []
    for _ in range(e.below(9)):
        lines += (KINDS[kind] if e.below(8) else e.choice(list(KINDS.values())))(e)
    return b"\n".join(lines) + e.choice([b"", b"\n", b"\n\n"])


def everything(data, compiled):
    for parser in PARSERS:
        assert_twins_agree(compiled, parser, data)


@GENERATED
@given(data=st.binary(max_size=600))
def test_random_bytes(compiled, data):
    everything(data, compiled)


@GENERATED
@given(kind=st.sampled_from(sorted(KINDS)), raw=st.binary(min_size=16, max_size=4096))
def test_structured_lines(compiled, kind, raw):
    everything(document(kind, raw), compiled)


@GENERATED
@given(which=st.integers(0, len(LIVE_FILES) - 1), cut=st.integers(0, 1 << 16),
       raw=st.binary(max_size=64), drop=st.integers(0, 8))
def test_live_files_edited(compiled, live_files, which, cut, raw, drop):
    data = live_files.get(LIVE_FILES[which], b"")
    cut %= len(data) + 1
    e = Entropy(raw)
    insert = e.choice([any_token, lambda e: e.choice(SEPARATORS), name])(e)
    everything(data[:cut] + insert + data[cut + drop:], compiled)
