"""Table and live-file tests of the /proc text parsers, run over both twins.

The ``impl`` fixture gives the compiled ``hostdiag._proctext`` and the pure
``hostdiag.parsers.proctext`` (see tests/twinsupport.py).
"""

import pytest

from twinsupport import twin_fixture

from hostdiag.sources.hostroot import HostRoot, SourceError
from hostdiag.parsers.proctext import (
    CPU_FIELDS,
    DISK_FIELDS,
    NETDEV_FIELDS,
    SOFTNET_COLUMNS,
    STAT_SCALARS,
)

U64_MAX = 2**64 - 1

impl = twin_fixture("proctext")


def read_live(*parts):
    try:
        return HostRoot().read_proc(*parts)
    except SourceError as exc:
        pytest.skip("this host has no %s: %s" % ("/".join(parts), exc))


def cpu(*ticks):
    return dict(zip(CPU_FIELDS, ticks + (None,) * (len(CPU_FIELDS) - len(ticks))))


def stat_result(**fields):
    result = {"total": None, "cpus": {}, "intr": None, "softirq": None}
    result.update(dict.fromkeys(STAT_SCALARS))
    result.update(fields)
    return result


def disk(major, minor, name, *counters):
    row = {"major": major, "minor": minor, "name": name}
    row.update(zip(DISK_FIELDS, counters + (None,) * (len(DISK_FIELDS) - len(counters))))
    return row


def netdev(name, *counters):
    row = {"name": name}
    row.update(zip(NETDEV_FIELDS, counters))
    return row


def softnet(cpu_number, *columns):
    row = {"cpu": cpu_number}
    for column, field in SOFTNET_COLUMNS:
        row[field] = columns[column] if column < len(columns) else None
    return row


def hexline(*columns):
    return " ".join("%08x" % c for c in columns).encode()


SIXTEEN = " ".join(str(i) for i in range(1, 17)).encode()


# ---------------------------------------------------------------- /proc/stat

STAT_SAMPLE = (
    b"cpu  2854 0 1564 31239 487 0 68 571 0 0\n"
    b"cpu0 983 0 591 16526 36 0 9 280 0 0\n"
    b"cpu1 1870 0 972 14712 451 0 59 291 0 0\n"
    b"intr 114004 0 0 0 13 0\n"
    b"ctxt 252611\n"
    b"btime 1764142456\n"
    b"processes 1437\n"
    b"procs_running 2\n"
    b"procs_blocked 0\n"
    b"softirq 52839 0 17054 1 0 0 0 4 0 0 35780\n"
)


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", stat_result(), 0, id="empty"),
    pytest.param(b"\n \n\t\r\v\f\n", stat_result(), 0, id="blank-lines"),
    pytest.param(STAT_SAMPLE, stat_result(
        total=cpu(2854, 0, 1564, 31239, 487, 0, 68, 571, 0, 0),
        cpus={"cpu0": cpu(983, 0, 591, 16526, 36, 0, 9, 280, 0, 0),
              "cpu1": cpu(1870, 0, 972, 14712, 451, 0, 59, 291, 0, 0)},
        intr=114004, softirq=52839, ctxt=252611, btime=1764142456, processes=1437,
        procs_running=2, procs_blocked=0), 0, id="current-kernel"),
    pytest.param(b"cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n",
                 stat_result(total=cpu(1, 2, 3, 4, 5, 6, 7, 8),
                             cpus={"cpu0": cpu(1, 2, 3, 4, 5, 6, 7, 8)}), 0,
                 id="old-kernel-without-guest"),
    pytest.param(b"cpu 1 2 3 4\n", stat_result(total=cpu(1, 2, 3, 4)), 0, id="four-columns"),
    pytest.param(b"cpu 1 2 3\ncpu0\nintr\nctxt\nbtime \n", stat_result(), 5, id="truncated"),
    pytest.param(b"cpu 1 2 3 4 5 6 7 8 9 10\nctxt 25", stat_result(
        total=cpu(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), ctxt=25), 0, id="no-final-newline"),
    pytest.param(b"cpu 1 2 x 4\ncpu0 1 2 3 4 0x5\nctxt abc\nbtime -5\nintr 1.5 0\nprocesses +3\n",
                 stat_result(), 6, id="non-numeric"),
    pytest.param(b"cpu 1 2 3 4 5 6 7 8 9 10 11 12\nintr 5 1 2 x\nctxt 1 2\n",
                 stat_result(total=cpu(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), intr=5), 1,
                 id="extra-columns"),
    pytest.param(b"page 1 2\nswap 3 4\nfoo\n", stat_result(), 0, id="unknown-keys-ignored"),
    pytest.param(b"ctxt 18446744073709551615\nbtime 18446744073709551616\n"
                 b"processes 000000000000000000042\nprocs_running 00000000000000000042\n",
                 stat_result(ctxt=U64_MAX, procs_running=42), 2, id="u64-limits"),
    pytest.param(b"ctxt\t7\r\nbtime\v8\f\n\r\n", stat_result(ctxt=7, btime=8), 0,
                 id="whitespace-variants"),
    pytest.param(b"cpu\xff 1 2 3 4\nctxt\x00 5\nbtime 5\x00\n",
                 stat_result(cpus={"cpu\ufffd": cpu(1, 2, 3, 4)}), 1, id="non-ascii-and-nul"),
    pytest.param(b"cpu0 1 2 3 4\ncpu0 5 6 7 8\n", stat_result(cpus={"cpu0": cpu(5, 6, 7, 8)}), 0,
                 id="repeated-cpu-last-wins"),
])
def test_stat_table(impl, data, expected, malformed):
    assert impl.parse_stat(data) == (expected, malformed)


def test_stat_very_long_lines(impl):
    data = (b"intr 7" + b" 0" * 100000 + b"\n"
            + b"cpu " + b"1 " * 10000 + b"\n"
            + b"cpu1 " + b"1 " * 10000 + b"x\n"
            + b"page" + b" 9" * 50000 + b"\n")
    assert impl.parse_stat(data) == (stat_result(intr=7, total=cpu(*(1,) * 10)), 1)


def test_stat_live(impl):
    data = read_live("stat")
    result, malformed = impl.parse_stat(data)
    assert malformed == 0
    columns = len(data.split(b"\n", 1)[0].split()) - 1
    assert result["total"] is not None
    assert result["cpus"] and all(name.startswith("cpu") for name in result["cpus"])
    for times in [result["total"], *result["cpus"].values()]:
        assert list(times) == list(CPU_FIELDS)
        assert all(isinstance(times[f], int) for f in CPU_FIELDS[:columns])
        assert all(times[f] is None for f in CPU_FIELDS[columns:])
    for key in ("intr", "softirq") + STAT_SCALARS:
        assert isinstance(result[key], int), key
    assert result["processes"] >= 1


# ------------------------------------------------ meminfo, vmstat, snmp6


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", {}, 0, id="empty"),
    pytest.param(b"\n\t\n \r\n", {}, 0, id="blank-lines"),
    pytest.param(b"MemTotal:       24684096 kB\nHugePages_Total:       0\n"
                 b"Hugepagesize:    2048 kB\n",
                 {"MemTotal": 24684096 * 1024, "HugePages_Total": 0, "Hugepagesize": 2048 * 1024},
                 0, id="meminfo"),
    pytest.param(b"nr_free_pages 1039831\npgfault 52\n", {"nr_free_pages": 1039831, "pgfault": 52},
                 0, id="vmstat"),
    pytest.param(b"Ip6InReceives                   \t1\nIcmp6InMsgs\t0\n",
                 {"Ip6InReceives": 1, "Icmp6InMsgs": 0}, 0, id="snmp6-tabs"),
    pytest.param(b"MemTotal:\nMemFree: 12 k\nCached:", {}, 3, id="truncated"),
    pytest.param(b"MemTotal: 12", {"MemTotal": 12}, 0, id="truncated-before-unit"),
    pytest.param(b"MemTotal: abc kB\nx -1\ny 1.0\nz 0x10\n", {}, 4, id="non-numeric"),
    pytest.param(b"a 1 kB extra\nb 1 2\nc 1 KB\nd 5 kB\n", {"d": 5120}, 3, id="extra-columns"),
    pytest.param(b": 5\na:: 6\nb:c 7\n", {"a:": 6, "b:c": 7}, 1, id="colons-in-key"),
    pytest.param(b"a 18446744073709551615 kB\nb 18446744073709551615\nc 18446744073709551616\n"
                 b"d 123456789012345678901\n",
                 {"a": U64_MAX * 1024, "b": U64_MAX}, 2, id="u64-limits"),
    pytest.param(b"a\t1\r\nb\v2\fkB\r\n", {"a": 1, "b": 2048}, 0, id="whitespace-variants"),
    pytest.param(b"\xc3\xa9t\xe9 1\nn\x00ul 2\n", {"\xe9t\ufffd": 1, "n\x00ul": 2}, 0,
                 id="non-ascii-and-nul"),
    pytest.param(b"a 1\nb 2\na 3\n", {"a": 3, "b": 2}, 0, id="repeated-key-last-wins"),
])
def test_keyvalue_table(impl, data, expected, malformed):
    assert impl.parse_keyvalue(data) == (expected, malformed)


def test_keyvalue_very_long_lines(impl):
    data = b"k" * 100000 + b": 1 kB\nv " + b"9" * 10000 + b"\nw 1" + b" 2" * 50000 + b"\n"
    assert impl.parse_keyvalue(data) == ({"k" * 100000: 1024}, 2)


@pytest.mark.parametrize("parts", [("meminfo",), ("vmstat",), ("net", "snmp6")])
def test_keyvalue_live(impl, parts):
    data = read_live(*parts)
    result, malformed = impl.parse_keyvalue(data)
    assert malformed == 0
    assert len(result) == len([line for line in data.split(b"\n") if line.strip()])
    assert all(type(value) is int for value in result.values())
    if parts == ("meminfo",):
        assert result["MemTotal"] > 0 and result["MemTotal"] % 1024 == 0
        assert result["MemTotal"] >= result["MemFree"]


# ------------------------------------------- /proc/net/snmp, /proc/net/netstat

SNMP_SAMPLE = (
    b"Ip: Forwarding DefaultTTL InReceives\n"
    b"Ip: 2 64 926\n"
    b"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens\n"
    b"Tcp: 1 200 120000 -1 16\n"
    b"IcmpMsg: InType3\n"
    b"IcmpMsg: 1\n"
)


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", {}, 0, id="empty"),
    pytest.param(b"\n \n\t\n", {}, 0, id="blank-lines"),
    pytest.param(SNMP_SAMPLE, {
        "Ip": {"Forwarding": 2, "DefaultTTL": 64, "InReceives": 926},
        "Tcp": {"RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1,
                "ActiveOpens": 16},
        "IcmpMsg": {"InType3": 1},
    }, 0, id="snmp"),
    pytest.param(b"Tcp: A B\n", {}, 1, id="header-without-values"),
    pytest.param(b"Tcp: A B\nTcp: 1\n", {}, 1, id="fewer-values"),
    pytest.param(b"Tcp: A B\nTcp: 1 2 3\n", {}, 1, id="extra-values"),
    pytest.param(b"Tcp: A B\nUdp: 1 2\n", {}, 2, id="mismatched-prefix"),
    pytest.param(b"Tcp: A B\nUdp: C\nUdp: 3\n", {"Udp": {"C": 3}}, 1,
                 id="mismatched-prefix-starts-new-pair"),
    pytest.param(b"Tcp: A B\nTcp: 1 x\nUdp: A\nUdp: 1.5\nIp: A\nIp: 0x1\n", {}, 3,
                 id="non-numeric"),
    pytest.param(b"garbage\n", {}, 1, id="no-prefix"),
    pytest.param(b"Tcp: A\ngarbage\nTcp: 1\n", {}, 3, id="no-prefix-drops-pending-header"),
    pytest.param(b": A\n:\nTcp A\n", {}, 3, id="bare-colon-prefix"),
    pytest.param(b"X: a b c d\nX: -18446744073709551615 18446744073709551615 -0 0007\n",
                 {"X": {"a": -U64_MAX, "b": U64_MAX, "c": 0, "d": 7}}, 0, id="u64-limits"),
    pytest.param(b"X: a\nX: -18446744073709551616\nY: a\nY: --1\nZ: a\nZ: -\n", {}, 3,
                 id="bad-signs"),
    pytest.param(b"X: a\nX: 1\nX: b\nX: 2\n", {"X": {"a": 1, "b": 2}}, 0, id="group-repeated"),
    pytest.param(b"X: a a\nX: 1 2\n", {"X": {"a": 2}}, 0, id="name-repeated"),
    pytest.param(b"X:\nX:\n", {"X": {}}, 0, id="empty-pair"),
    pytest.param(b"X:\ta\r\n\vX: \f5\r\n", {"X": {"a": 5}}, 0, id="whitespace-variants"),
    pytest.param(b"\xff: \xc3\xa9 n\x00\n\xff: 1 2\n", {"\ufffd": {"\xe9": 1, "n\x00": 2}}, 0,
                 id="non-ascii-and-nul"),
])
def test_twoline_table(impl, data, expected, malformed):
    assert impl.parse_twoline(data) == (expected, malformed)


def test_twoline_very_long_lines(impl):
    names = [b"N%d" % i for i in range(5000)]
    data = b"Big: " + b" ".join(names) + b"\nBig: " + b" ".join(b"%d" % i for i in range(5000))
    data += b"\nBad: " + b" x" * 50000 + b"\nBad:" + b" 1" * 49999 + b"\n"
    result, malformed = impl.parse_twoline(data)
    assert malformed == 1
    assert result == {"Big": {"N%d" % i: i for i in range(5000)}}


def test_twoline_live_snmp(impl):
    result, malformed = impl.parse_twoline(read_live("net", "snmp"))
    assert malformed == 0
    assert result["Tcp"]["MaxConn"] == -1
    assert result["Ip"]["DefaultTTL"] > 0


def test_twoline_live_netstat(impl):
    data = read_live("net", "netstat")
    result, malformed = impl.parse_twoline(data)
    assert malformed == 0
    assert "TcpExt" in result and "IpExt" in result
    assert sum(len(group) for group in result.values()) == sum(
        len(line.split()) - 1 for line in data.split(b"\n")[::2] if line)


# ------------------------------------------------------------ /proc/diskstats

DISK20 = (b" 254       0 vda 31334 7642 1670946 10837 4441 7388 482784 3357 0 6500 14460 3308 68"
          b" 74424 236 608 29")
VDA = (31334, 7642, 1670946, 10837, 4441, 7388, 482784, 3357, 0, 6500, 14460, 3308, 68, 74424, 236,
       608, 29)


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", [], 0, id="empty"),
    pytest.param(b"\n  \n", [], 0, id="blank-lines"),
    pytest.param(DISK20 + b"\n   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                 [disk(254, 0, "vda", *VDA), disk(7, 0, "loop0", *(0,) * 17)], 0,
                 id="20-columns"),
    pytest.param(b"   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n",
                 [disk(8, 0, "sda", *range(1, 16))], 0, id="18-columns"),
    pytest.param(b"   8       1 sda1 1 2 3 4 5 6 7 8 9 10 11\n",
                 [disk(8, 1, "sda1", *range(1, 12))], 0, id="14-columns"),
    pytest.param(b"   8       1 sda1 1 2 3 4 5 6 7 8 9 10\n8 1\n8\n", [], 3, id="truncated"),
    pytest.param(b"x 0 sda 1 2 3 4 5 6 7 8 9 10 11\n8 -1 sda 1 2 3 4 5 6 7 8 9 10 11\n"
                 b"8 0 sda 1 2 3 4 5 6 7 8 9 10 1.1\n", [], 3, id="non-numeric"),
    pytest.param(DISK20 + b" 99 x junk\n", [disk(254, 0, "vda", *VDA)], 0, id="extra-columns"),
    pytest.param(b"8 0 sda 18446744073709551615 2 3 4 5 6 7 8 9 10 11\n"
                 b"8 0 sdb 18446744073709551616 2 3 4 5 6 7 8 9 10 11\n",
                 [disk(8, 0, "sda", U64_MAX, *range(2, 12))], 1, id="u64-limits"),
    pytest.param(b"8\t0\rsda\v1\f2 3 4 5 6 7 8 9 10 11\r\n",
                 [disk(8, 0, "sda", *range(1, 12))], 0, id="whitespace-variants"),
    pytest.param(b"8 0 d\xffsk\x00 1 2 3 4 5 6 7 8 9 10 11\n",
                 [disk(8, 0, "d\ufffdsk\x00", *range(1, 12))], 0, id="non-ascii-and-nul"),
])
def test_diskstats_table(impl, data, expected, malformed):
    assert impl.parse_diskstats(data) == (expected, malformed)


def test_diskstats_very_long_lines(impl):
    data = DISK20 + b" junk" * 50000 + b"\n" + b"8 0 " + b"n" * 100000 + b" 1" * 11 + b"\n"
    assert impl.parse_diskstats(data) == (
        [disk(254, 0, "vda", *VDA), disk(8, 0, "n" * 100000, *(1,) * 11)], 0)


def test_diskstats_live(impl):
    data = read_live("diskstats")
    rows, malformed = impl.parse_diskstats(data)
    assert malformed == 0
    lines = [line.split() for line in data.split(b"\n") if line.strip()]
    assert len(rows) == len(lines)
    for row, tokens in zip(rows, lines):
        given = len(tokens) - 3
        assert row["name"] == tokens[2].decode()
        assert all(isinstance(row[f], int) for f in DISK_FIELDS[:given])
        assert all(row[f] is None for f in DISK_FIELDS[given:])


# ------------------------------------------------------------- /proc/net/dev

NETDEV_HEADER = (
    b"Inter-|   Receive                                                |  Transmit\n"
    b" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs"
    b" drop fifo colls carrier compressed\n"
)


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", [], 0, id="empty"),
    pytest.param(b"\n \t\n", [], 0, id="blank-lines"),
    pytest.param(NETDEV_HEADER, [], 0, id="headers-only"),
    pytest.param(NETDEV_HEADER
                 + b"    lo:    3245      30    0    0    0     0          0         0     3245"
                   b"      30    0    0    0     0       0          0\n"
                 + b"  eth0: 33715000     898    0    0    0     0          0         0    50968"
                   b"     532    0    0    0     0       0          0\n",
                 [netdev("lo", 3245, 30, 0, 0, 0, 0, 0, 0, 3245, 30, 0, 0, 0, 0, 0, 0),
                  netdev("eth0", 33715000, 898, 0, 0, 0, 0, 0, 0, 50968, 532, 0, 0, 0, 0, 0, 0)],
                 0, id="current-kernel"),
    pytest.param(b"  my dev:1: " + SIXTEEN, [netdev("my dev:1", *range(1, 17))], 0,
                 id="name-with-space-and-colon"),
    pytest.param(b"eth0:" + SIXTEEN, [netdev("eth0", *range(1, 17))], 0, id="no-space-after-colon"),
    pytest.param(b"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\neth1:\neth2", [], 3, id="truncated"),
    pytest.param(b"  : " + SIXTEEN + b"\n" + b":" + SIXTEEN, [], 2, id="empty-name"),
    pytest.param(b"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\neth1: -1 2 3 4 5 6 7 8 9 10 11 12"
                 b" 13 14 15 16\n", [], 2, id="non-numeric"),
    pytest.param(b"eth0: " + SIXTEEN + b" 17 junk\n", [netdev("eth0", *range(1, 17))], 0,
                 id="extra-columns"),
    pytest.param(b"no colon here\n| pipes but no colon\n", [], 1, id="no-colon"),
    pytest.param(b"a: 18446744073709551615" + b" 0" * 15
                 + b"\nb: 18446744073709551616" + b" 0" * 15,
                 [netdev("a", U64_MAX, *(0,) * 15)], 1, id="u64-limits"),
    pytest.param(b"\t\va b\f:\r" + SIXTEEN.replace(b" ", b"\t") + b"\r\n",
                 [netdev("a b", *range(1, 17))], 0, id="whitespace-variants"),
    pytest.param(b"\xffn\x00: " + SIXTEEN, [netdev("\ufffdn\x00", *range(1, 17))], 0,
                 id="non-ascii-and-nul"),
    pytest.param(b"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16: 1" + b"\n", [], 1,
                 id="colon-among-numbers"),
])
def test_netdev_table(impl, data, expected, malformed):
    assert impl.parse_netdev(data) == (expected, malformed)


def test_netdev_very_long_lines(impl):
    data = b"n" * 100000 + b": " + SIXTEEN + b" 0" * 50000 + b"\n" + b"x" * 100000 + b"\n"
    assert impl.parse_netdev(data) == ([netdev("n" * 100000, *range(1, 17))], 1)


def test_netdev_live(impl):
    data = read_live("net", "dev")
    rows, malformed = impl.parse_netdev(data)
    assert malformed == 0
    assert len(rows) == data.count(b"\n") - 2
    assert "lo" in [row["name"] for row in rows]
    assert all(isinstance(row[f], int) for row in rows for f in NETDEV_FIELDS)


# ---------------------------------------------------- /proc/net/softnet_stat


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", [], 0, id="empty"),
    pytest.param(b"\n \n", [], 0, id="blank-lines"),
    pytest.param(hexline(13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) + b"\n"
                 + hexline(915, 1, 2, 0, 0, 0, 0, 0, 3, 4, 5, 6, 3, 7, 8) + b"\n",
                 [softnet(0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                  softnet(3, 915, 1, 2, 0, 0, 0, 0, 0, 3, 4, 5, 6, 3, 7, 8)],
                 0, id="15-columns-cpu-column"),
    pytest.param(hexline(*range(1, 14)), [softnet(13, *range(1, 14))], 0, id="13-columns"),
    pytest.param(hexline(*range(1, 12)) + b"\n" + hexline(*range(1, 12)),
                 [softnet(0, *range(1, 12)), softnet(1, *range(1, 12))], 0, id="11-columns"),
    pytest.param(hexline(*range(1, 11)), [softnet(0, *range(1, 11))], 0, id="10-columns"),
    pytest.param(hexline(*range(1, 10)), [softnet(0, *range(1, 10))], 0, id="9-columns"),
    pytest.param(hexline(*range(1, 9)) + b"\n" + hexline(*range(1, 10)),
                 [softnet(0, *range(1, 10))], 1, id="truncated-row-not-counted-as-cpu"),
    pytest.param(b"0000000g 0 0 0 0 0 0 0 0\n0x10 0 0 0 0 0 0 0 0\n-1 0 0 0 0 0 0 0 0\n"
                 b"00000000000000001 0 0 0 0 0 0 0 0\n", [], 4, id="non-hex"),
    pytest.param(hexline(*range(1, 17)), [softnet(13, *range(1, 17))], 0, id="extra-columns"),
    pytest.param(hexline(*range(1, 16)) + b" zz", [], 1, id="extra-column-not-hex"),
    pytest.param(b"ffffffffffffffff FfFf aBc 0 0 0 0 0 0\n",
                 [softnet(0, U64_MAX, 0xFFFF, 0xABC, 0, 0, 0, 0, 0, 0)], 0, id="hex-limits"),
    pytest.param(b"1\t2\r3\v4\f5 6 7 8 9\r\n", [softnet(0, *range(1, 10))], 0,
                 id="whitespace-variants"),
    pytest.param(b"1 2 3 4 5 6 7 8 9\xff\n1 2 3 4 5 6 7 8 9\x00\n", [], 2, id="non-ascii-and-nul"),
])
def test_softnet_table(impl, data, expected, malformed):
    assert impl.parse_softnet(data) == (expected, malformed)


def test_softnet_very_long_lines(impl):
    data = hexline(*range(1, 16)) + b" 0" * 50000 + b"\n" + b"0 " * 50000 + b"x\n"
    assert impl.parse_softnet(data) == ([softnet(13, *range(1, 16))], 1)


def test_softnet_live(impl):
    data = read_live("net", "softnet_stat")
    rows, malformed = impl.parse_softnet(data)
    assert malformed == 0
    assert len(rows) == data.count(b"\n")
    columns = len(data.split(b"\n", 1)[0].split())
    if columns > 12:
        assert [row["cpu"] for row in rows] == sorted({row["cpu"] for row in rows})
    else:
        assert [row["cpu"] for row in rows] == list(range(len(rows)))
    for row in rows:
        assert all((row[f] is None) == (c >= columns) for c, f in SOFTNET_COLUMNS)


# ---------------------------------------------------------------- /proc/net/sockstat

SOCKSTAT_SAMPLE = (
    b"sockets: used 9\n"
    b"TCP: inuse 1 orphan 0 tw 2 alloc 1 mem 176\n"
    b"UDP: inuse 0 mem 0\n"
    b"FRAG: inuse 0 memory 0\n"
)


@pytest.mark.parametrize("data, expected, malformed", [
    pytest.param(b"", {}, 0, id="empty"),
    pytest.param(b"\n \t\n", {}, 0, id="blank-lines"),
    pytest.param(SOCKSTAT_SAMPLE, {
        "sockets": {"used": 9}, "TCP": {"inuse": 1, "orphan": 0, "tw": 2, "alloc": 1, "mem": 176},
        "UDP": {"inuse": 0, "mem": 0}, "FRAG": {"inuse": 0, "memory": 0}}, 0, id="current-kernel"),
    pytest.param(b"TCP6: inuse 2\r\nFRAG6: inuse 0 memory 0",
                 {"TCP6": {"inuse": 2}, "FRAG6": {"inuse": 0, "memory": 0}}, 0, id="sockstat6-crlf"),
    pytest.param(b"TCP: inuse 1 orphan\nTCP: inuse\nTCP:\n", {}, 3, id="truncated"),
    pytest.param(b"TCP: inuse x\nUDP: inuse 3\nRAW: inuse 1.5\nX: a +1",
                 {"UDP": {"inuse": 3}}, 3, id="non-numeric"),
    pytest.param(b"TCP: inuse 1 2\n", {}, 1, id="extra-column"),
    pytest.param(b"TCP inuse 1\n: inuse 1\n", {}, 2, id="no-colon"),
    pytest.param(b"TCP: inuse -1 tw -0\nUDP: inuse -\nRAW: inuse --1",
                 {"TCP": {"inuse": -1, "tw": 0}}, 2, id="signed"),
    pytest.param(b"TCP: inuse 9223372036854775807\nUDP: inuse 9223372036854775808\n"
                 b"RAW: inuse -9223372036854775808\nX: a 00000000000000000001",
                 {"TCP": {"inuse": 9223372036854775807}}, 3, id="int64-edges"),
    pytest.param(b"TCP: inuse 1\nTCP: tw 2 inuse 3", {"TCP": {"inuse": 3, "tw": 2}}, 0,
                 id="prefix-twice-later-wins"),
    pytest.param(b"T\xffP: in\xc3\xa9 1", {"T\ufffdP": {"in\u00e9": 1}}, 0, id="utf8-names"),
])
def test_sockstat_table(impl, data, expected, malformed):
    assert impl.parse_sockstat(data) == (expected, malformed)


def test_sockstat_very_long_lines(impl):
    data = b"X: " + b" ".join(b"k%d %d" % (i, i) for i in range(5000))
    assert impl.parse_sockstat(data) == ({"X": {"k%d" % i: i for i in range(5000)}}, 0)


def test_sockstat_live(impl):
    result, malformed = impl.parse_sockstat(read_live("net", "sockstat"))
    assert malformed == 0 and result["sockets"]["used"] >= 1 and "inuse" in result["TCP"]



# --------------------------------------------------------------- all parsers

PARSERS = ("parse_stat", "parse_keyvalue", "parse_twoline", "parse_diskstats", "parse_netdev",
           "parse_softnet", "parse_sockstat")


@pytest.mark.parametrize("name", PARSERS)
def test_bytearray_is_read_like_bytes(impl, name):
    data = STAT_SAMPLE + SNMP_SAMPLE + DISK20 + b"\neth0: " + SIXTEEN + b"\n" + hexline(*range(9))
    parse = getattr(impl, name)
    assert parse(bytearray(data)) == parse(data)


GARBAGE = b"\x00\xff\xfe garbage: | \x80 1 2 3\n-\n::\n" * 3


@pytest.mark.parametrize("name, expected", [
    # /proc/stat ignores the keys it does not know: nothing is malformed, nothing found.
    ("parse_stat", (stat_result(), 0)),
    ("parse_keyvalue", ({}, 9)), ("parse_twoline", ({}, 9)), ("parse_diskstats", ([], 9)),
    ("parse_netdev", ([], 9)), ("parse_softnet", ([], 9)), ("parse_sockstat", ({}, 9)),
])
def test_garbage_is_counted_never_raised(impl, name, expected):
    assert getattr(impl, name)(GARBAGE) == expected
