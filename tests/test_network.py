"""The network source against real kernel objects: a namespace and a veth pair
made for the test, traffic sent across them, and what netlink and procfs then
report. Plus the procfs fallback over built and recorded trees, and the
sockstat parser's table."""

import json
import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

from hostdiag.sources.hostroot import HostRoot, SourceError
from hostdiag.parsers import parse_address, parse_link, parse_neighbour, parse_route, parse_sockstat
from hostdiag.parsers.rtnetlink import LINK_STATS
from hostdiag.sources.net_dev import NETDEV_STATS
from hostdiag.sources.network import NetworkSource
from hostdiag.sources.rtnetlink import Netlink
from hostdiag.sources.problems import Problems

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
ECHOES = 20
PAYLOAD = 100
# Ethernet (14) + IPv4 (20) + UDP (8) headers around each datagram.
FRAME_BYTES = 14 + 20 + 8 + PAYLOAD
# Stands in for a neighbour that is never sent anything (TEST-NET-2).
STATIC_NEIGHBOUR = "198.51.100.7"
# A second next hop, declared on-link, that no packet is ever routed to.
ONLINK_GATEWAY = "198.51.100.9"

ECHO_SERVER = """
import socket, sys
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(10)
sock.bind((address, port))
print("ready", flush=True)
for _ in range(count):
    data, peer = sock.recvfrom(65535)
    sock.sendto(data, peer)
"""


def ip(*args):
    return subprocess.run(("ip",) + args, check=True, capture_output=True, text=True).stdout


def wait_until(predicate, what, deadline=5.0):
    """Polls a condition the kernel reaches asynchronously (linkwatch sets
    operstate from a workqueue); fails loudly at the deadline."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.01)


def by_name(links, name):
    matches = [link for link in links if link["name"] == name]
    assert len(matches) == 1, (name, [link["name"] for link in links])
    return matches[0]


class Pair:
    """The namespace and veth pair of one test module."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.ns = "hd-test-" + tag
        self.host = "hdv" + tag
        self.peer = "hdp" + tag
        self.mac = "02:68:64:%s:%s:%s" % (tag[0:2], tag[2:4], tag[4:6])
        subnet, block = random.randrange(256), random.randrange(64) * 4
        self.host_addr = "10.213.%d.%d" % (subnet, block + 1)
        self.peer_addr = "10.213.%d.%d" % (subnet, block + 2)
        self.mtu = 1400


@pytest.fixture(scope="module")
def pair():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("creating namespaces and veth pairs needs root and iproute2")
    p = Pair()
    opened = []
    try:
        ip("netns", "add", p.ns)
        ip("link", "add", p.host, "mtu", str(p.mtu), "address", p.mac,
           "type", "veth", "peer", "name", p.peer, "mtu", str(p.mtu))
        ip("link", "set", p.peer, "netns", p.ns)
        # No IPv6 on either side: its autoconfiguration traffic (DAD, MLD,
        # router solicitations) would make counters and counts move on their own.
        if os.path.exists("/proc/sys/net/ipv6"):
            with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % p.host, "w") as f:
                f.write("1")
            ip("netns", "exec", p.ns, "sysctl", "-q", "-w",
               "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        ip("addr", "add", p.host_addr + "/30", "dev", p.host)
        ip("-n", p.ns, "addr", "add", p.peer_addr + "/30", "dev", p.peer)
        ip("link", "set", p.host, "up")
        ip("-n", p.ns, "link", "set", p.peer, "up")
        ip("-n", p.ns, "route", "add", "default", "via", p.host_addr)
        # A table id past 255 lives only in RTA_TABLE; a multipath default.
        ip("-n", p.ns, "route", "add", "10.216.0.0/24", "via", p.host_addr, "table", "1000")
        ip("-n", p.ns, "route", "add", "default", "table", "1001", "metric", "7",
           "nexthop", "via", p.host_addr, "dev", p.peer,
           "nexthop", "via", ONLINK_GATEWAY, "dev", p.peer, "onlink")
        ip("-n", p.ns, "neigh", "add", STATIC_NEIGHBOUR, "lladdr", "02:00:00:00:00:07",
           "dev", p.peer, "nud", "permanent")

        p.netlink = Netlink()
        opened.append(p.netlink)
        p.ns_netlink = Netlink(netns=p.ns)
        opened.append(p.ns_netlink)
        wait_until(lambda: by_name(p.netlink.links(), p.host)["operstate"] == "up", "host end up")
        wait_until(lambda: by_name(p.ns_netlink.links(), p.peer)["operstate"] == "up", "peer end up")
        p.before = by_name(p.netlink.links(), p.host)
        exchange_echoes(p)
        yield p
    finally:
        for netlink in opened:
            netlink.close()
        # Deleting the namespace destroys the peer and with it the pair.
        subprocess.run(["ip", "netns", "del", p.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", p.host], capture_output=True)


def exchange_echoes(p):
    """Sends ECHOES datagrams from the host end to an echo server in the
    namespace and waits for every echo."""
    port = 40000 + random.randrange(20000)
    server = subprocess.Popen(
        ["ip", "netns", "exec", p.ns, sys.executable, "-c", ECHO_SERVER,
         p.peer_addr, str(port), str(ECHOES)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.bind((p.host_addr, 0))
            for i in range(ECHOES):
                payload = bytes([i]) * PAYLOAD
                sock.sendto(payload, (p.peer_addr, port))
                assert sock.recv(65535) == payload
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def ip_json(*args):
    return json.loads(ip("-j", *args) or "[]")


# --- netlink against the real pair ------------------------------------------------


def test_links_show_the_host_end_and_its_traffic(pair):
    link = by_name(pair.netlink.links(), pair.host)
    assert link["index"] == socket.if_nametoindex(pair.host)
    assert link["kind"] == "veth"
    assert link["mtu"] == pair.mtu
    assert link["address"] == pair.mac
    assert link["operstate"] == "up"
    assert link["carrier"] == 1
    assert link["master"] is None
    assert isinstance(link["carrier_changes"], int)
    # Every counter of rtnl_link_stats64 up to rx_nohandler (kernel 4.6);
    # rx_otherhost_dropped came with 5.19.
    assert set(LINK_STATS[:24]) <= set(link["stats"]) <= set(LINK_STATS)
    before, after = pair.before["stats"], link["stats"]
    assert after["tx_packets"] - before["tx_packets"] >= ECHOES
    assert after["rx_packets"] - before["rx_packets"] >= ECHOES
    assert after["tx_bytes"] - before["tx_bytes"] >= ECHOES * FRAME_BYTES
    assert after["rx_bytes"] - before["rx_bytes"] >= ECHOES * FRAME_BYTES
    assert after["rx_errors"] == after["tx_errors"] == 0


def test_links_agree_with_iproute2(pair):
    shown = ip_json("-s", "link", "show", "dev", pair.host)[0]
    link = by_name(pair.netlink.links(), pair.host)
    assert (link["index"], link["mtu"], link["address"]) == (shown["ifindex"], shown["mtu"], shown["address"])
    assert link["operstate"] == shown["operstate"].lower()
    # IPv6 is off on the pair, so nothing moves its counters between the reads.
    for direction in ("rx", "tx"):
        for counter in ("packets", "bytes"):
            assert link["stats"]["%s_%s" % (direction, counter)] == shown["stats64"][direction][counter]
    peer = by_name(pair.ns_netlink.links(), pair.peer)
    assert peer["kind"] == "veth"
    assert peer["address"] == ip_json("-n", pair.ns, "link", "show", "dev", pair.peer)[0]["address"]


def test_addresses_show_both_ends(pair):
    index = socket.if_nametoindex(pair.host)
    assert {"ifindex": index, "ifname": pair.host, "family": "inet", "address": pair.host_addr,
            "prefixlen": 30, "scope": "global"} in pair.netlink.addresses()
    peer = by_name(pair.ns_netlink.links(), pair.peer)
    on_peer = [row for row in pair.ns_netlink.addresses() if row["ifname"] == pair.peer]
    assert on_peer == [{"ifindex": peer["index"], "ifname": pair.peer, "family": "inet",
                        "address": pair.peer_addr, "prefixlen": 30, "scope": "global"}]


def test_neighbours_count_the_entries(pair):
    inside = pair.ns_netlink.neighbours()
    shown = ip_json("-n", pair.ns, "-4", "neigh", "show", "nud", "all")
    shown += ip_json("-n", pair.ns, "-6", "neigh", "show", "nud", "all")
    assert inside["total"] == len(shown)
    assert inside["by_state"]["permanent"] == 1
    # The echoes made the namespace resolve the host end.
    resolved = sum(inside["by_state"][s] for s in ("reachable", "stale", "delay", "probe"))
    assert resolved >= 1
    assert sum(inside["by_state"].values()) == inside["total"]
    host = pair.netlink.neighbours()
    assert host["total"] >= 1
    assert sum(host["by_state"].values()) == host["total"]


def test_routes_count_the_tables_and_find_the_default(pair):
    inside = pair.ns_netlink.routes()
    peer = by_name(pair.ns_netlink.links(), pair.peer)
    hop = {"family": "inet", "ifindex": peer["index"], "ifname": pair.peer}
    assert sorted(inside["default"], key=lambda d: (d["table"], d["gateway"])) == [
        dict(hop, gateway=pair.host_addr, table="1001", metric=7),
        dict(hop, gateway=ONLINK_GATEWAY, table="1001", metric=7),
        dict(hop, gateway=pair.host_addr, table="main", metric=0),
    ]
    assert inside["tables"]["main"] == 2  # the connected /30 and the default
    assert inside["tables"]["1000"] == inside["tables"]["1001"] == 1
    shown = ip_json("-n", pair.ns, "-4", "route", "show", "table", "all")
    shown += ip_json("-n", pair.ns, "-6", "route", "show", "table", "all")
    assert inside["total"] == len(shown) == sum(inside["tables"].values())
    host = pair.netlink.routes()
    assert host["tables"]["main"] >= 1
    assert host["total"] == sum(host["tables"].values())


def test_raw_parsing_agrees_with_pyroute2_decoder(pair):
    """The per-request parsers read the same values pyroute2's full decoder
    does, compared inside the quiet namespace."""
    from pyroute2 import IPRoute

    with IPRoute(netns=pair.ns, groups=0) as ipr:
        reference = ipr.get_links()
        ours = pair.ns_netlink.links()
        ref_addrs = ipr.get_addr()
        ref_routes = [r for r in ipr.route("dump", family=0) if r["family"] in (2, 10)]
        ref_neigh = [n for n in ipr.get_neighbours() if n["family"] in (2, 10)]
    assert len(ours) == len(reference)
    for msg in reference:
        link = by_name(ours, msg.get("IFLA_IFNAME"))
        assert link["index"] == msg["index"]
        assert link["mtu"] == msg.get("IFLA_MTU")
        assert link["operstate"] == msg.get("IFLA_OPERSTATE").lower()
        assert link["address"] == msg.get("IFLA_ADDRESS")
        assert link["carrier"] == msg.get("IFLA_CARRIER")
        assert link["carrier_changes"] == msg.get("IFLA_CARRIER_CHANGES")
        assert link["master"] == msg.get("IFLA_MASTER")
        assert link["kind"] == msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
        for name, value in dict(msg.get("IFLA_STATS64")).items():
            assert link["stats"][name] == value, name
    addrs = pair.ns_netlink.addresses()
    assert sorted(a["address"] for a in addrs) == sorted(
        m.get("IFA_LOCAL") or m.get("IFA_ADDRESS") for m in ref_addrs)
    assert pair.ns_netlink.routes()["total"] == len(ref_routes)
    assert pair.ns_netlink.neighbours()["total"] == len(ref_neigh)


# --- the raw message parsers over real kernel messages ---------------------------

# (request type, family header bytes, parser) of each dump; the NEW* replies
# are the request type - 2.
DUMPS = {
    "link": (18, 16, parse_link),
    "address": (22, 8, parse_address),
    "route": (26, 12, parse_route),
    "neighbour": (30, 12, parse_neighbour),
}


def kernel_messages(request_type, header_bytes):
    """The raw reply messages of one rtnetlink dump of the host namespace
    (which holds the pair's host end), read with a plain socket, no pyroute2."""
    messages = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.bind((0, 0))
        sock.send(struct.pack("=IHHII", 16 + header_bytes, request_type, 0x301, 1, 0)
                  + bytes(header_bytes))
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, offset)
                if mtype == 3:  # NLMSG_DONE
                    return messages
                assert mtype == request_type - 2 and length >= 16
                messages.append(data[offset:offset + length])
                offset += (length + 3) & ~3


@pytest.mark.parametrize("dump", sorted(DUMPS))
def test_raw_parsers_survive_every_truncation_and_bad_length(pair, dump):
    request_type, header_bytes, parse = DUMPS[dump]
    messages = kernel_messages(request_type, header_bytes)
    assert messages
    for message in messages:
        assert parse(message, 16, len(message)) is not None
        for end in range(16, len(message)):
            result = parse(message, 16, end)
            assert result is None or result is False or isinstance(result, (dict, str))
        # An attribute whose length runs past the message, or is below 4.
        # Routes other than default ones and neighbours are read from their
        # fixed header alone, so only links and addresses must notice.
        first_attr = 16 + header_bytes
        if len(message) >= first_attr + 4:
            for bad in (0, 3, 0xFFFF):
                broken = bytearray(message)
                struct.pack_into("=H", broken, first_attr, bad)
                result = parse(bytes(broken), 16, len(broken))
                if dump in ("link", "address"):
                    assert result is None or result is False
                else:
                    assert result is None or result is False or isinstance(result, (dict, str))


def test_link_stats_of_an_older_kernel_are_cut_to_what_it_sent(pair):
    """A kernel before 5.19 sends 24 counters, one before 4.6 sends 23: only
    those are returned, none is made up as 0."""
    message = next(m for m in kernel_messages(18, 16) if parse_link(m, 16, len(m))["name"] == pair.host)
    pos, found = 32, None
    while pos + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, pos)
        if kind & 0x3FFF == 23:  # IFLA_STATS64
            found = pos
            break
        pos += (length + 3) & ~3
    assert found is not None
    length = struct.unpack_from("=H", message, found)[0]
    for counters in (23, 24):
        cut = bytearray(message[:found + 4 + counters * 8] + message[found + length:])
        struct.pack_into("=H", cut, found, 4 + counters * 8)
        struct.pack_into("=I", cut, 0, len(cut))
        stats = parse_link(bytes(cut), 16, len(cut))["stats"]
        assert list(stats) == list(LINK_STATS[:counters])


# --- NetworkSource over the live host --------------------------------------------


def test_collect_network_over_netlink(pair):
    problems = Problems()
    section = NetworkSource(HostRoot()).collect(problems, pair.netlink)
    assert section["link_source"] == "netlink"
    assert by_name(section["links"], pair.host)["kind"] == "veth"
    assert any(row["address"] == pair.host_addr for row in section["addresses"])
    assert section["routes"]["total"] >= 1 and section["neighbours"]["total"] >= 1
    assert "Tcp" in section["snmp"] and "TcpExt" in section["netstat"]
    assert section["sockstat"]["sockets"]["used"] >= 1
    assert len(section["softnet"]) >= 1
    assert not [e for e in problems.all() if e["path"].startswith("netlink")]


def test_procfs_fallback_gives_the_netlink_links(pair):
    before = {link["name"] for link in pair.netlink.links()}
    problems = Problems()
    section = NetworkSource(HostRoot()).collect(problems, None)
    after = {link["name"] for link in pair.netlink.links()}
    assert section["link_source"] == "procfs"
    names = {link["name"] for link in section["links"]}
    # Other links may come and go on the host while this runs.
    assert before & after <= names <= before | after
    assert pair.host in names
    fallback = by_name(section["links"], pair.host)
    live = by_name(pair.netlink.links(), pair.host)
    for field in ("index", "operstate", "mtu", "address", "carrier_changes"):
        assert fallback[field] == live[field], field
    assert fallback["kind"] is None
    assert set(fallback["stats"]) == set(NETDEV_STATS.values())
    for name in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
        assert fallback["stats"][name] == live["stats"][name], name
    assert section["addresses"] is None and section["routes"] is None and section["neighbours"] is None
    unavailable = [e for e in problems.all() if e["path"] == "netlink"]
    assert len(unavailable) == 1 and unavailable[0]["kind"] == "unavailable"


def test_failing_netlink_is_recorded_and_links_fall_back():
    netlink = Netlink()
    netlink.close()
    problems = Problems()
    section = NetworkSource(HostRoot()).collect(problems, netlink)
    assert section["link_source"] == "procfs"
    assert by_name(section["links"], "lo")["mtu"] is not None
    assert section["addresses"] is None and section["routes"] is None and section["neighbours"] is None
    failed = {e["path"]: e["kind"] for e in problems.all() if e["path"].startswith("netlink:")}
    assert failed == {"netlink:RTM_GETLINK": "unavailable", "netlink:RTM_GETADDR": "unavailable",
                      "netlink:RTM_GETROUTE": "unavailable", "netlink:RTM_GETNEIGH": "unavailable"}


def test_netlink_into_a_missing_namespace_fails_without_creating_it():
    name = "hd-test-absent-" + secrets.token_hex(3)
    with pytest.raises(SourceError) as failure:
        Netlink(netns=name)
    assert failure.value.kind == "missing"
    assert failure.value.path == "netlink:NETLINK_ROUTE"
    assert not os.path.exists(os.path.join("/var/run/netns", name))


# --- the procfs fallback over built and recorded trees -----------------------------

NETDEV = b"""\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
my dev: 1000 10 1 2 3 4 5 6 2000 20 7 8 9 10 11 12
eth0:1:    1    2 0 0 0 0 0 0    3    4 0 0 0 0 0 0
 a:b:c: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0
gone: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
truncated0: 1 2 3
"""


def build_tree(tmp_path, sysfs):
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "dev").write_bytes(NETDEV)
    if sysfs:
        for name, attrs in sysfs.items():
            directory = tmp_path / "sys" / "class" / "net" / name
            directory.mkdir(parents=True)
            for attr, text in attrs.items():
                (directory / attr).write_text(text)
    return HostRoot(proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"),
                    rootfs=str(tmp_path))


def test_fallback_keeps_odd_names_and_reads_sysfs(tmp_path):
    root = build_tree(tmp_path, {
        "my dev": {"ifindex": "7\n", "operstate": "up\n", "mtu": "9000\n",
                   "address": "02:00:00:00:00:01\n", "carrier_changes": "3\n"},
        "eth0:1": {"ifindex": "8\n", "address": "\n"},
        "a:b:c": {"mtu": "abc\n"},
    })
    problems = Problems()
    with Netlink() as netlink:  # a live socket is ignored for a recorded tree
        section = NetworkSource(root).collect(problems, netlink)
    assert section["link_source"] == "procfs"
    assert [link["name"] for link in section["links"]] == ["my dev", "eth0:1", "a:b:c", "gone"]
    odd = section["links"][0]
    assert odd == {
        "name": "my dev", "index": 7, "kind": None, "operstate": "up", "mtu": 9000,
        "address": "02:00:00:00:00:01", "carrier": None, "carrier_changes": 3, "master": None,
        "stats": {"rx_bytes": 1000, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2,
                  "rx_fifo_errors": 3, "rx_frame_errors": 4, "rx_compressed": 5, "multicast": 6,
                  "tx_bytes": 2000, "tx_packets": 20, "tx_errors": 7, "tx_dropped": 8,
                  "tx_fifo_errors": 9, "collisions": 10, "tx_carrier_errors": 11, "tx_compressed": 12},
    }
    alias = section["links"][1]
    assert (alias["index"], alias["address"], alias["mtu"], alias["operstate"]) == (8, None, None, None)
    assert section["links"][2]["mtu"] is None
    assert section["links"][3]["index"] is None
    entries = problems.all()
    by_path = {e["path"]: e for e in entries}
    assert by_path[root.sys("class", "net", "a:b:c", "mtu")]["kind"] == "malformed"
    assert by_path[root.proc("net", "dev")] == {
        "source": "network", "path": root.proc("net", "dev"), "kind": "malformed",
        "message": "1 malformed line(s) skipped", "count": 1}
    assert by_path["netlink"]["kind"] == "unavailable"
    assert "not this root" in by_path["netlink"]["message"]
    for name in ("snmp", "netstat", "snmp6", "sockstat", "sockstat6", "softnet"):
        assert section[name] is None
        assert by_path[root.proc("net", name if name != "softnet" else "softnet_stat")]["kind"] == "missing"
    assert section["addresses"] is None and section["routes"] is None and section["neighbours"] is None
    assert section["conntrack"] is None
    assert by_path[root.proc("sys", "net", "netfilter", "nf_conntrack_count")]["kind"] == "missing"
    assert root.proc("sys", "net", "netfilter", "nf_conntrack_max") not in by_path
    # Absent per-link attributes are not errors.
    assert not [e for e in entries if "eth0:1" in e["path"] or "gone" in e["path"]]


def test_fallback_without_class_net_records_it(tmp_path):
    root = build_tree(tmp_path, None)
    problems = Problems()
    section = NetworkSource(root).collect(problems, None)
    assert [link["name"] for link in section["links"]] == ["my dev", "eth0:1", "a:b:c", "gone"]
    assert all(link["mtu"] is None and link["index"] is None for link in section["links"])
    class_net = [e for e in problems.all() if e["path"] == root.sys("class", "net")]
    assert len(class_net) == 1 and class_net[0]["kind"] == "missing"


@pytest.mark.parametrize("tree", ["debian12-6.18", "container-odd-lines", "linux-2.6.18-old",
                                  "linux-4.19-noipv6", "empty-files"])
def test_recorded_trees(tree):
    base = os.path.join(FIXTURES, tree)
    if not os.path.isdir(base):
        pytest.skip("fixture tree %s not recorded" % tree)
    root = HostRoot(proc_root=os.path.join(base, "proc"), sys_root=os.path.join(base, "sys"), rootfs=base)
    problems = Problems()
    section = NetworkSource(root).collect(problems, None)
    paths = {e["path"]: e["kind"] for e in problems.all()}
    assert section["link_source"] == "procfs"
    if tree == "empty-files":
        assert section["links"] == [] and section["sockstat"] == {} and section["conntrack"] is None
        return
    names = [link["name"] for link in section["links"]]
    assert "lo" in names and "eth0" in names
    assert by_name(section["links"], "lo")["mtu"] == 65536
    assert section["sockstat"]["TCP"] == {"inuse": 1, "orphan": 0, "tw": 0, "alloc": 1, "mem": 176}
    assert "used" in section["sockstat"]["sockets"]
    assert root.proc("net", "sockstat") not in paths
    if tree in ("linux-2.6.18-old", "linux-4.19-noipv6"):
        assert section["snmp6"] is None and paths[root.proc("net", "snmp6")] == "missing"
        assert section["sockstat6"] is None
    else:
        assert "TCP6" in section["sockstat6"] and section["snmp6"]["Ip6InReceives"] == 1
    if tree == "linux-2.6.18-old":
        assert section["conntrack"] is None
    else:
        assert set(section["conntrack"]) == {"count", "max"} and section["conntrack"]["max"] > 0
    if tree == "container-odd-lines":
        assert {"my dev", "eth0:1", "veth:x:y"} <= set(names)
        assert paths[root.proc("net", "dev")] == "malformed"


# --- the sockstat parser -------------------------------------------------------------

SOCKSTAT = b"""sockets: used 9
TCP: inuse 1 orphan 0 tw 2 alloc 1 mem 176
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""


@pytest.mark.parametrize("data, expected, malformed", [
    (b"", {}, 0),
    (b"\n  \n", {}, 0),
    (SOCKSTAT, {"sockets": {"used": 9},
                "TCP": {"inuse": 1, "orphan": 0, "tw": 2, "alloc": 1, "mem": 176},
                "UDP": {"inuse": 0, "mem": 0}, "UDPLITE": {"inuse": 0}, "RAW": {"inuse": 0},
                "FRAG": {"inuse": 0, "memory": 0}}, 0),
    (b"TCP6: inuse 2\r\nFRAG6: inuse 0 memory 0",
     {"TCP6": {"inuse": 2}, "FRAG6": {"inuse": 0, "memory": 0}}, 0),
    (b"TCP: inuse 1 orphan", {}, 1),                       # truncated pair
    (b"TCP: inuse", {}, 1),
    (b"TCP:", {}, 1),                                      # prefix only
    (b"TCP: inuse x\nUDP: inuse 3", {"UDP": {"inuse": 3}}, 1),  # non-numeric
    (b"TCP: inuse 1 2", {}, 1),                            # extra column
    (b"TCP inuse 1", {}, 1),                               # no colon
    (b": inuse 1", {}, 1),
    (b"TCP: inuse -1", {"TCP": {"inuse": -1}}, 0),
    (b"TCP: inuse -", {}, 1),
    (b"TCP: inuse 9223372036854775808", {}, 1),            # past int64
    (b"TCP: inuse 9223372036854775807", {"TCP": {"inuse": 9223372036854775807}}, 0),
    (b"TCP: inuse 1\nTCP: tw 2", {"TCP": {"inuse": 1, "tw": 2}}, 0),
    (b"T\xffP: inuse 1", {"T\ufffdP": {"inuse": 1}}, 0),
    (b"X: " + b" ".join(b"k%d %d" % (i, i) for i in range(5000)),
     {"X": {"k%d" % i: i for i in range(5000)}}, 0),       # a very long line
])
def test_parse_sockstat_table(data, expected, malformed):
    assert parse_sockstat(data) == (expected, malformed)


def test_parse_sockstat_live_files():
    root = HostRoot()
    result, malformed = parse_sockstat(root.read_proc("net", "sockstat"))
    assert malformed == 0 and result["sockets"]["used"] >= 1 and "inuse" in result["TCP"]
    if os.path.exists(root.proc("net", "sockstat6")):
        result, malformed = parse_sockstat(root.read_proc("net", "sockstat6"))
        assert malformed == 0 and "inuse" in result["TCP6"]
