"""/proc/net/{tcp,tcp6,udp,udp6,unix}: table tests of parsers/procnet.py, the
sockets fallback when sock_diag cannot be used."""

import pytest

from hostdiag.parsers import procnet


TCP = (b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       b"   0: 0100007F:0277 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1063 1 0000000000000000 100 0 0 10 0\n"
       b"   1: 0100007F:A7C4 0200007F:01BB 01 00000010:00000020 02:000000A0 00000000  1000        0 81234 2 0000000000000000 20 4 30 10 -1\n"
       b"   2: 0100007F:A7C4 0200007F 01 00000010:00000020 02:000000A0 00000000  1000 0 1\n"
       b"   3: 0100007F:XYZW 0200007F:01BB 01 00000010:00000020 02:000000A0 00000000  1000 0 1\n"
       b"   4: 0100007F:A7C4\n"
       b"\n")
TCP6 = (b"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        b"   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0\n"
        b"   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:C350 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n")
UDP = (b"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
       b"  123: 0100007F:0035 00000000:0000 07 00000000:00000340 00:00000000 00000000   101        0 777 2 0000000000000000 5\n"
       b"  124: 0100007F:0036 00000000:0000 07 00000000:00000340 00:00000000 00000000   101        0 778 2 0000000000000000 x\n")
UNIX = (b"Num       RefCount Protocol Flags    Type St Inode Path\n"
        b"0000000000000000: 00000002 00000000 00010000 0001 01 1234 /run/x.sock\n"
        b"0000000000000000: 00000003 00000000 00000000 0001 03 1235\n"
        b"0000000000000000: 00000002 00000000 00000000 0002 01 1236 @abstract\n"
        b"0000000000000000: 00000002 00000000 00000000 0005 03 1237\n"
        b"0000000000000000: 00000002 00000000 0000zz00 0005 03 1238\n"
        b"short line\n")


def test_proc_net_tcp():
    rows, malformed = procnet.parse_net_inet(TCP)
    assert malformed == 3
    assert rows[0] == ("inet", "LISTEN", "127.0.0.1", 631, "0.0.0.0", 0, 3, None, 0, 1063,
                       None, None, None, None)
    assert rows[1] == ("inet", "ESTABLISHED", "127.0.0.1", 42948, "127.0.0.2", 443, 32, 16, 1000,
                       81234, None, None, None, None)


def test_proc_net_tcp6_and_udp():
    rows, malformed = procnet.parse_net_inet(TCP6)
    assert malformed == 0
    assert rows[0][:6] == ("inet6", "LISTEN", "::1", 8080, "::", 0)
    assert rows[1][:6] == ("inet6", "TIME_WAIT", "::ffff:127.0.0.1", 8080, "::ffff:127.0.0.2", 50000)
    rows, malformed = procnet.parse_net_inet(UDP)
    assert malformed == 1 and rows == [("inet", "CLOSE", "127.0.0.1", 53, "0.0.0.0", 0, 832, 0,
                                        101, 777, None, None, None, 5)]


@pytest.mark.parametrize("data, ports, malformed", [
    (b"", [], 0), (b"\n\n", [], 0), (b"header only\n", [], 0), (b"\xff" * 100, [], 0),
    (TCP[:200], [631], 0),                 # the first row, cut after its inode
    (TCP[:150], [], 1),                    # the first row, cut before its inode
    (b"h\n" + b"0: " * 5000, [], 1),
])
def test_proc_net_odd_input(data, ports, malformed):
    rows, bad = procnet.parse_net_inet(data)
    assert ([row[3] for row in rows], bad) == (ports, malformed)


def test_proc_net_unix():
    counts, malformed = procnet.parse_net_unix(UNIX)
    assert malformed == 2
    assert counts == {("stream", "LISTEN"): 1, ("stream", "ESTABLISHED"): 1,
                      ("dgram", "UNCONN"): 1, ("seqpacket", "ESTABLISHED"): 1}
