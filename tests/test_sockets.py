"""The sockets source on real sockets of this host, its /proc fallback, and the
socket rates.

Every socket here is the test's own, made on loopback in a known state and
found again by its ports: a listener, an established pair that moved data, a
time-wait socket, a listener overflowing its backlog, UDP sockets with unread
and dropped datagrams. Retransmits come from a connection the test makes
lossy: a TCP receiver in a network namespace of the test's own, behind a veth
pair, whose socket carries a classic BPF filter that drops a share of the
segments (the kernel runs a socket filter in tcp_v4_rcv before the segment
reaches the socket, so the sender must retransmit).
"""

import os
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest

from hostdiag.derive.socket_rates import (
    connection_key,
    listeners_overflowing,
    socket_rates,
    top_connections,
)
from hostdiag.sources.hostroot import HostRoot
from hostdiag.parsers import parse_twoline, procnet
from hostdiag.parsers.sockdiag import ROW_FIELDS
from hostdiag.sources.problems import Problems
from hostdiag.sources.proc_pid_fd import map_pids
from hostdiag.sources.sock_diag import SocketTable

COL = {name: i for i, name in enumerate(ROW_FIELDS)}
DEADLINE_S = 10.0
LINGER_RESET = struct.pack("ii", 1, 0)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (sock_diag of every socket, network namespaces)")


@pytest.fixture
def table():
    with SocketTable(HostRoot()) as t:
        yield t


def collect(table):
    problems = Problems()
    section = table.collect(problems)
    assert section is not None, problems.all()
    return section, problems


def rows_of(section, port):
    """The TCP rows with ``port`` at either end."""
    return [dict(zip(ROW_FIELDS, r)) for r in section["tcp_table"]["rows"]
            if port in (r[COL["local_port"]], r[COL["remote_port"]])]


def wait_for(check, what, timeout=DEADLINE_S):
    """Poll ``check`` until it returns a true value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.02)


def close_reset(*socks):
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.close()


@pytest.fixture
def pair():
    """A listener and an established connection on 127.0.0.1 after 256 KiB went client → server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.sendall(b"x" * 262144)
    got = 0
    while got < 262144:
        got += len(server.recv(65536))
    yield listener, client, server
    close_reset(client, server)
    listener.close()


# ---------------------------------------------------------------- netlink, real sockets

def test_listen_and_established(table, pair):
    need_root()
    listener, client, server = pair
    port = listener.getsockname()[1]
    section, problems = collect(table)
    assert section["source"] == "netlink" and problems.all() == []
    rows = rows_of(section, port)
    listen = [r for r in rows if r["state"] == "LISTEN"]
    assert len(listen) == 1 and listen[0]["wqueue"] == 16, "wqueue of a listener is its backlog"
    established = [r for r in rows if r["state"] == "ESTABLISHED"]
    assert len(established) == 2
    mine = [r for r in established if r["local_port"] == client.getsockname()[1]][0]
    assert mine["rtt"] > 0 and mine["bytes_acked"] >= 262144
    assert section["tcp_states"]["ESTABLISHED"] >= 2 and section["tcp_states"]["LISTEN"] >= 1
    assert section["tcp_total"] == len(section["tcp_table"]["rows"]) + section["tcp_table"]["dropped"]
    assert any(entry["local_port"] == port and entry["backlog_max"] == 16
               for entry in section["listeners"])
    # The full decode of this socket, on demand.
    (detail,) = table.sockets([mine["inode"]], problems)
    info = detail["tcp_info"]
    assert info["rtt"] > 0 and info["cwnd"] > 0 and info["bytes_acked"] >= 262144
    assert info["min_rtt"] > 0 and info["rto"] > 0 and info["snd_mss"] > 0
    assert detail["cong"] and detail["skmem"]["sndbuf"] > 0
    assert detail["local_port"] == client.getsockname()[1] and detail["remote_port"] == port


def test_shown_sockets_are_decoded_in_full(pair):
    need_root()
    listener, client, server = pair
    port = listener.getsockname()[1]
    # Leave 100 KiB unread: the server's rqueue ranks it among the shown sockets.
    client.sendall(b"y" * 102400)

    def unread():
        section = collect(table)[0]
        rows = [r for r in rows_of(section, port)
                if r["local_port"] == port and r["rqueue"] >= 102400]
        return (section, rows[0]) if rows else None

    with SocketTable(HostRoot(), detail_per_rank=100000) as table:
        section, row = wait_for(unread, "the unread bytes")
    shown = {s["inode"]: s for s in section["tcp"]}
    assert shown[row["inode"]]["tcp_info"]["bytes_received"] >= 262144 + 102400
    assert shown[row["inode"]]["rqueue"] == row["rqueue"]


def test_time_wait(table):
    need_root()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client_port = client.getsockname()[1]
    client.close()                     # the active closer ends in TIME_WAIT
    assert server.recv(1) == b""
    server.close()
    listener.close()

    def time_wait():
        rows = rows_of(collect(table)[0], client_port)
        return [r for r in rows if r["state"] == "TIME_WAIT" and r["local_port"] == client_port]

    (row,) = wait_for(time_wait, "the TIME_WAIT socket")
    assert row["inode"] == 0 and row["rtt"] is None


def listen_overflows():
    root = HostRoot()
    netstat, _ = parse_twoline(root.read_proc("net", "netstat"))
    return netstat["TcpExt"]["ListenOverflows"]


def test_listener_overflowing_its_backlog(table):
    need_root()
    before = listen_overflows()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    waiting = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            waiting.append(s)

        def full():
            section = collect(table)[0]
            rows = [r for r in rows_of(section, port) if r["state"] == "LISTEN"]
            return section if rows and rows[0]["rqueue"] >= rows[0]["wqueue"] else None

        section = wait_for(full, "a full accept queue")
        (row,) = [r for r in rows_of(section, port) if r["state"] == "LISTEN"]
        assert row["wqueue"] == 1 and row["rqueue"] >= 1
        overflowing = listeners_overflowing(section)
        assert [e["local_port"] for e in overflowing if e["local_port"] == port] == [port]
        wait_for(lambda: listen_overflows() > before, "TcpExt ListenOverflows to grow")
    finally:
        close_reset(*waiting)
        listener.close()


def test_udp_queue_and_drops(table):
    need_root()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)   # the kernel's minimum
    quiet.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(3):
            sender.sendto(b"d" * 100, receiver.getsockname())
        for _ in range(200):
            sender.sendto(b"q" * 1000, quiet.getsockname())
        section, problems = collect(table)
        udp = {e["local_port"]: e for e in section["udp"]}
        mine = udp[receiver.getsockname()[1]]
        assert mine["state"] == "UNCONN" and mine["rqueue"] >= 300 and mine["drops"] == 0
        assert udp[quiet.getsockname()[1]]["drops"] > 0
        # The same kernel counters through /proc/net/udp.
        procfs, _ = procnet.parse_net_inet(HostRoot().read_proc("net", "udp"))
        by_port = {r[COL["local_port"]]: r for r in procfs}
        assert by_port[receiver.getsockname()[1]][COL["rqueue"]] == mine["rqueue"]
        assert by_port[quiet.getsockname()[1]][COL["drops"]] == udp[quiet.getsockname()[1]]["drops"]
        # Read everything: the queue is empty again.
        for _ in range(3):
            receiver.recv(200)
        udp = {e["local_port"]: e for e in collect(table)[0]["udp"]}
        assert udp[receiver.getsockname()[1]]["rqueue"] == 0
    finally:
        for s in (receiver, quiet, sender):
            s.close()


def test_unix_counts(table):
    need_root()
    a, b = socket.socketpair()
    try:
        unix = collect(table)[0]["unix"]
        assert unix["total"] >= 2 and unix["by_type"]["stream"] >= 2
        assert unix["by_state"]["ESTABLISHED"] >= 2
        assert unix["total"] == sum(unix["by_state"].values()) == sum(unix["by_type"].values())
    finally:
        a.close()
        b.close()


def test_map_pids_finds_our_own_socket(table, pair):
    need_root()
    listener, client, server = pair
    section, _ = collect(table)
    rows = rows_of(section, listener.getsockname()[1])
    mine = [r["inode"] for r in rows if r["local_port"] == client.getsockname()[1]]
    problems = Problems()
    holders = map_pids(HostRoot(), mine + [0, 4294967295], problems)
    assert holders[mine[0]] == [{"pid": os.getpid(), "comm": open("/proc/self/comm").read().strip()}]
    assert 4294967295 not in holders and 0 not in holders


def test_map_pids_of_nothing():
    assert map_pids(HostRoot(), [], Problems()) == {}


# ---------------------------------------------------------------- the /proc fallback

@pytest.fixture
def linked_root(tmp_path):
    """A root whose proc is this host's /proc seen through a symlink: not live."""
    (tmp_path / "proc").symlink_to("/proc")
    return HostRoot(proc_root=str(tmp_path / "proc"))


def test_procfs_fallback_sees_the_same_sockets(table, pair, linked_root):
    need_root()
    listener, client, server = pair
    port = listener.getsockname()[1]

    def endpoints(section):
        return {(r["local"], r["local_port"], r["remote"], r["remote_port"], r["state"])
                for r in rows_of(section, port)}

    netlink, _ = collect(table)
    problems = Problems()
    with SocketTable(linked_root) as fallback:
        procfs = fallback.collect(problems)
    assert procfs["source"] == "procfs" and problems.all() == []
    assert endpoints(procfs) == endpoints(netlink)
    assert len(endpoints(netlink)) == 3
    listen = [e for e in procfs["listeners"] if e["local_port"] == port]
    assert listen[0]["backlog_max"] is None, "/proc gives no backlog limit"
    assert procfs["unix"]["total"] >= 1
    assert set(procfs) == set(netlink)


def test_netlink_off_uses_procfs(pair):
    with SocketTable(HostRoot(), netlink=False) as t:
        section = t.collect(Problems())
    assert section["source"] == "procfs" and t.sockets([1], Problems()) == []


def test_no_proc_gives_none(tmp_path):
    problems = Problems()
    assert SocketTable(HostRoot(proc_root=str(tmp_path))).collect(problems) is None
    assert {e["kind"] for e in problems.all()} == {"missing"}


# ---------------------------------------------------------------- rates and what to show

def section_of(rows, listeners=(), tcp=()):
    return {"tcp_table": {"fields": list(ROW_FIELDS), "rows": [list(r) for r in rows],
                          "dropped": 0},
            "listeners": list(listeners), "tcp": list(tcp)}


def row(inode, retrans, acked, rtt=100, rq=0, wq=0, state="ESTABLISHED", port=5000):
    return ("inet", state, "10.0.0.1", port, "10.0.0.2", 443, rq, wq, 0, inode, rtt, retrans,
            acked, 0)


def test_socket_rates():
    prev = section_of([row(1, 10, 1000), row(2, 5, 100), row(3, None, None), row(4, 9, 900)])
    cur = section_of([row(1, 30, 5000), row(2, 4, 50), row(3, None, None), row(5, 1, 1),
                      row(4, 9, 900, port=5001)])
    rates = socket_rates(prev, cur, 2.0)
    key = connection_key(dict(zip(ROW_FIELDS, row(1, 0, 0))))
    assert key == "inet 10.0.0.1:5000 10.0.0.2:443 #1"
    assert rates[key] == {"retrans_per_s": 10.0, "bytes_acked_per_s": 2000.0}
    by_inode = {k.rsplit("#", 1)[1]: v for k, v in rates.items()}
    assert by_inode["2"] == {"retrans_per_s": None, "bytes_acked_per_s": None}, "went backwards"
    assert by_inode["3"] == by_inode["5"] == {"retrans_per_s": None, "bytes_acked_per_s": None}
    assert by_inode["4"]["retrans_per_s"] is None, "new port: a new connection"
    assert socket_rates(prev, cur, 0)[key] == {"retrans_per_s": None, "bytes_acked_per_s": None}
    assert socket_rates(None, None, 1.0) == {} and len(socket_rates(None, cur, 1.0)) == 5


def test_ipv6_connection_key():
    conn = {"family": "inet6", "local": "::1", "local_port": 80, "remote": "fe80::1",
            "remote_port": 9, "inode": 3}
    assert connection_key(conn) == "inet6 [::1]:80 [fe80::1]:9 #3"


def test_top_connections():
    prev = section_of([row(1, 0, 0), row(2, 100, 0), row(3, 0, 0)])
    detail = {"inode": 1, "tcp_info": {"cwnd": 10}}
    cur = section_of([row(1, 50, 0, rtt=900), row(2, 101, 0, rtt=80, wq=7000),
                      row(3, 0, 0, rtt=0, rq=10), row(4, 0, 0, rtt=5, rq=99, wq=128, state="LISTEN")],
                     tcp=[detail])
    rates = socket_rates(prev, cur, 1.0)
    top = top_connections(cur, rates, n=2)
    assert [e["inode"] for e in top["retrans"]] == [1, 2], "by rate first: 50/s beats 1/s"
    assert top["retrans"][0]["retrans_per_s"] == 50.0 and top["retrans"][0]["detail"] is detail
    assert [e["inode"] for e in top["rtt"]] == [1, 2]
    assert [e["inode"] for e in top["queue"]] == [2, 3], "listeners are left out"
    assert [e["inode"] for e in top_connections(cur, None, n=5)["retrans"]] == [2, 1]
    assert top_connections(None) == {"retrans": [], "rtt": [], "queue": []}


def test_listeners_overflowing():
    listeners = [{"local_port": 1, "backlog": 2, "backlog_max": 1},
                 {"local_port": 2, "backlog": 1, "backlog_max": 128},
                 {"local_port": 3, "backlog": 0, "backlog_max": 0},
                 {"local_port": 4, "backlog": 5, "backlog_max": None},
                 {"local_port": 5, "backlog": 128, "backlog_max": 128}]
    found = listeners_overflowing({"listeners": listeners})
    assert [e["local_port"] for e in found] == [1, 5]
    assert listeners_overflowing(None) == []


# ---------------------------------------------------------------- retransmits on a lossy link

# Runs inside the namespace: accept one connection, attach a classic BPF filter
# that drops about a fifth of the segments (a random number below the
# threshold), then read until EOF. Prints the port, then "filtered".
RECEIVER = r"""
import ctypes, socket, struct, sys
SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF
prog = [(0x20, 0, 0, SKF_AD_RANDOM),      # A = random u32
        (0x35, 0, 1, 0x33333333),         # if A >= 20%: accept, else drop
        (0x06, 0, 0, 0xFFFFFFFF),
        (0x06, 0, 0, 0)]
code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
listener = socket.socket()
listener.bind((sys.argv[1], 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.SOL_SOCKET, 26, fprog)   # SO_ATTACH_FILTER
print("filtered", flush=True)
while conn.recv(1 << 16):
    pass
"""


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True)


@pytest.fixture
def lossy_namespace():
    """A namespace ``hd-sk-*`` behind a veth pair with 10.214.x.y/30 addresses;
    everything it made is removed afterwards, whatever happened."""
    need_root()
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = "hd-sk-" + tag, "hdsk%sh" % tag, "hdsk%sn" % tag
    used = run("ip", "-o", "-4", "addr", "show").stdout
    # A /30 of 10.214.0.0/16 no interface of this host uses yet.
    start = int(tag, 16) % (256 * 64)
    for offset in range(256 * 64):
        block = (start + offset) % (256 * 64)
        subnet = "10.214.%d.%d" % (block // 64, (block % 64) * 4)
        host_ip = "10.214.%d.%d" % (block // 64, (block % 64) * 4 + 1)
        ns_ip = "10.214.%d.%d" % (block // 64, (block % 64) * 4 + 2)
        if not any(" %s/" % ip in used for ip in (subnet, host_ip, ns_ip)):
            break
    made = []
    try:
        run("ip", "netns", "add", ns)
        made.append(("netns", ns))
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        made.append(("link", host_if))
        run("ip", "addr", "add", host_ip + "/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", ns_ip + "/30", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, host_ip, ns_ip
    finally:
        for kind, name in reversed(made):
            if kind == "link":
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_retransmits_on_a_lossy_connection(table, lossy_namespace):
    ns, host_ip, ns_ip = lossy_namespace
    child = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", RECEIVER, ns_ip],
                             stdout=subprocess.PIPE, text=True)
    sender = None
    try:
        port = int(child.stdout.readline())
        sender = socket.create_connection((ns_ip, port), timeout=DEADLINE_S)
        assert child.stdout.readline().strip() == "filtered"
        local_port = sender.getsockname()[1]
        chunk = b"r" * 65536
        deadline = time.monotonic() + DEADLINE_S
        sent = 0
        while True:
            sender.sendall(chunk)
            sent += len(chunk)
            if sent < 2 * 1024 * 1024:
                continue
            section, _ = collect(table)
            rows = [r for r in rows_of(section, local_port)
                    if r["local_port"] == local_port and r["remote"] == ns_ip]
            assert len(rows) == 1, rows
            if rows[0]["total_retrans"]:
                break
            assert time.monotonic() < deadline, "no retransmit after %d bytes" % sent
        assert rows[0]["local"] == host_ip and rows[0]["remote_port"] == port
        (detail,) = table.sockets([rows[0]["inode"]], Problems())
        assert detail["tcp_info"]["total_retrans"] >= rows[0]["total_retrans"] > 0
        assert detail["tcp_info"]["bytes_retrans"] > 0
        # Two samples around more lossy traffic: the connection has a retransmit
        # rate, and the ranking lists it.
        def mine(section):
            return [r for r in rows_of(section, local_port) if r["local_port"] == local_port][0]

        later, _ = collect(table)
        before = mine(later)["total_retrans"]
        deadline = time.monotonic() + DEADLINE_S
        while True:
            sender.sendall(chunk * 4)
            newest, _ = collect(table)
            if mine(newest)["total_retrans"] > before:
                break
            assert time.monotonic() < deadline, "no further retransmit"
        rates = socket_rates(later, newest, 1.0)
        top = top_connections(newest, rates, n=1000)
        assert any(e["local_port"] == local_port and e["retrans_per_s"] > 0 for e in top["retrans"])
    finally:
        if sender is not None:
            sender.close()
        child.kill()
        child.wait()
        child.stdout.close()
