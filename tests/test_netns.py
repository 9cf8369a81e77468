"""Network namespaces on real ones: made by the tests (``ip netns add
hd-nx-*``, ``unshare -n``), with real loss, full accept queues and dropped
datagrams inside one of them, seen by a sampler whose own namespace (its
"host") stays quiet. Every namespace, process and cgroup made is removed in
a finally block."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from hostdiag.derive.netns_rates import netns_rates
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.netns import NetnsTable, empty_dumps, inside
from hostdiag.sources.problems import Problems

from cgroupscenes import DEADLINE_S, made_cgroup
from cgroupscenes import write as _write

if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "unshare", "nsenter")):
    pytest.skip("making network namespaces needs root, iproute2, unshare and nsenter", allow_module_level=True)

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CONTAINER_ID = "5eed" + uuid.uuid4().hex + uuid.uuid4().hex[:28]

# Runs inside the lossy namespace, after a line on stdin: a TCP transfer over
# loopback whose receiver drops a fifth of its segments (a classic BPF filter
# on the socket), a listener with a backlog of 0 and eight connects to it, and
# datagrams sent to a socket with a tiny receive buffer that never reads. It
# waits for its own namespace's counters to show each fault, prints "done" and
# keeps its sockets until stdin closes.
WORKLOAD = r"""
import ctypes, socket, struct, sys, threading, time
sys.stdin.readline()
deadline = time.monotonic() + %(deadline)d

def counter(name, group, key):
    lines = open("/proc/self/net/" + name).read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith(group + ":"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:])))[key]

def wait(check, what):
    while not check():
        if time.monotonic() > deadline:
            sys.exit("no " + what)
        time.sleep(0.01)

SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF
prog = [(0x20, 0, 0, SKF_AD_RANDOM), (0x35, 0, 1, 0x33333333), (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in prog))
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(code))
server = socket.create_server(("127.0.0.1", 0))
sender = socket.create_connection(server.getsockname())
conn, _ = server.accept()
conn.setsockopt(socket.SOL_SOCKET, 26, fprog)      # SO_ATTACH_FILTER
threading.Thread(target=lambda: [None for _ in iter(lambda: conn.recv(1 << 16), b"")], daemon=True).start()
before = counter("snmp", "Tcp", "RetransSegs")
sent = 0
while sent < (4 << 20) or counter("snmp", "Tcp", "RetransSegs") - before < 30:
    sender.sendall(b"r" * 65536)
    sent += 65536
    wait(lambda: True, "")

small = socket.socket()
small.bind(("127.0.0.1", 0))
small.listen(0)
before = counter("netstat", "TcpExt", "ListenOverflows")
clients = []
for _ in range(8):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(small.getsockname())
    clients.append(c)
wait(lambda: counter("netstat", "TcpExt", "ListenOverflows") > before, "listen overflow")

rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
before = counter("snmp", "Udp", "RcvbufErrors")
for _ in range(200):
    tx.sendto(b"u" * 1000, rx.getsockname())
wait(lambda: counter("snmp", "Udp", "RcvbufErrors") > before, "UDP drop")
print("done", flush=True)
sys.stdin.read()
"""

# Runs in the sampler's own namespace (its "host"): a sample, a line on
# stdin, a second sample; prints the rates, findings and namespaces as JSON.
SAMPLER = r"""
import json, sys
from hostdiag.derive import derive_rates
from hostdiag.findings import evaluate
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
with Sampler(HostRoot(), max_netns=int(sys.argv[1])) as sampler:
    first = sampler.sample()
    print("sampled", flush=True)
    sys.stdin.readline()
    second = sampler.sample()
rates = derive_rates(first, second)
print(json.dumps({"findings": evaluate(second, rates, first), "network": rates["network"],
                  "netns": rates["netns"], "namespaces": second.netns["namespaces"],
                  "workloads": second.cgroups["workloads"] if second.cgroups else {}}))
"""


def _ip(*argv):
    subprocess.run(("ip",) + argv, check=True, capture_output=True)


def _line(proc):
    line = proc.stdout.readline()
    assert line, "the child ended early: %s" % proc.stderr.read()
    return line.strip()


@pytest.fixture
def named_namespaces():
    """Makes ``ip netns add`` namespaces on demand (``make(prefix)`` gives the
    name); deletes them all afterwards."""
    made = []

    def make(prefix):
        name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        _ip("netns", "add", name)
        made.append(name)
        return name
    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _spawn(argv, **kw):
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _stop(*procs):
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.communicate()


def test_loss_overflows_and_drops_inside_a_namespace_are_named_while_the_host_is_flat(named_namespaces):
    lossy, quiet = named_namespaces("hd-nx"), named_namespaces("hd-nh")
    # Loopback at an Ethernet MTU: segments of 1448 bytes, not 64 KiB.
    _ip("-n", lossy, "link", "set", "lo", "mtu", "1500", "up")
    table = CgroupTable(HostRoot())
    table.hierarchies = table.probe(Problems())
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workload = sampler = None
    with made_cgroup(table, ("memory",)) as (path, dirs):
        # A cgroup named as docker's systemd driver names a container's.
        scope = os.path.join(dirs["memory"], "docker-%s.scope" % CONTAINER_ID)
        os.mkdir(scope)
        try:
            workload = _spawn(["ip", "netns", "exec", lossy, sys.executable, "-c",
                               WORKLOAD % {"deadline": DEADLINE_S}])
            _write(os.path.join(scope, "cgroup.procs"), workload.pid)
            # nsenter changes the network namespace only: "ip netns exec" would also
            # mount a new /sys, without the cgroup hierarchies.
            sampler = _spawn(["nsenter", "--net=/run/netns/" + quiet, sys.executable, "-c", SAMPLER, "4096"],
                             env=env)
            assert _line(sampler) == "sampled"
            workload.stdin.write("go\n")
            workload.stdin.flush()
            assert _line(workload) == "done"
            sampler.stdin.write("sample\n")
            sampler.stdin.flush()
            out = json.loads(_line(sampler))
        finally:
            _stop(sampler, workload)
    by_name = {ns["name"]: ns for ns in out["namespaces"] if ns["name"]}
    record = by_name[lossy]
    assert record["pids"] == [workload.pid] and record["cgroup"] == path + "/docker-%s.scope" % CONTAINER_ID
    assert out["workloads"][record["cgroup"]]["short_id"] == CONTAINER_ID[:12]
    assert record["sockets"]["source"] == "netlink" and record["sockets"]["listeners_total"] == 2
    assert record["sockets"]["retransmitting"][0]["total_retrans"] > 0
    assert record["sockets"]["udp_drops"] > 0
    rates = out["netns"][str(record["inode"])]
    assert rates["retrans_segs_per_s"] > 0 and rates["listen_overflows_per_s"] > 0
    assert rates["udp_rcvbuf_errors_per_s"] > 0
    # The sampler's own namespace saw none of it.
    tcp, udp = out["network"]["tcp"], out["network"]["udp"]
    assert (tcp["retrans_segs_per_s"], tcp["listen_overflows_per_s"], udp["in_errors_per_s"]) == (0, 0, 0)
    found = {f["id"]: f for f in out["findings"]}
    assert not {"tcp_retransmits", "tcp_listen_overflow", "udp_errors"} & set(found)
    who = "netns %s (container %s, " % (lossy, CONTAINER_ID[:12])
    for rule_id in ("netns_tcp_retransmits", "netns_listen_overflow", "netns_udp_errors"):
        assert found[rule_id]["subject"] == "netns " + lossy
        assert who in found[rule_id]["title"] and "[%d])" % workload.pid in found[rule_id]["title"], found[rule_id]
    assert found["netns_tcp_retransmits"]["culprits"][0]["kind"] == "connection"


def _unshared(count):
    """``count`` processes, each alone in a new network namespace."""
    procs = []
    for _ in range(count):
        procs.append(subprocess.Popen(["unshare", "-n", sys.executable, "-c", "import sys; sys.stdin.read()"],
                                      stdin=subprocess.PIPE))
    return procs


def _namespace_of(pid):
    return os.stat("/proc/%d/ns/net" % pid).st_ino


def _wait_unshared(procs):
    """The namespace inodes of ``procs`` once each has left ours."""
    mine = _namespace_of(os.getpid())
    deadline = time.monotonic() + DEADLINE_S
    while any(_namespace_of(p.pid) == mine for p in procs):
        assert time.monotonic() < deadline, "unshare did not move into a new namespace"
        time.sleep(0.01)
    return [_namespace_of(p.pid) for p in procs]


def test_more_namespaces_than_the_limit_are_visited_in_turn(tmp_path):
    procs = _unshared(5)
    try:
        inodes = _wait_unshared(procs)
        processes = {"processes": [{"pid": p.pid, "kernel_thread": False, "cgroup": "/hd-test"} for p in procs]}
        # A root whose /run/netns is empty: the namespaces of other tests and
        # helpers stay out, and the reads go through the processes (not live).
        root = HostRoot(rootfs=str(tmp_path))
        sections = []
        with NetnsTable(root, max_netns=2) as table:
            for _ in range(6):
                problems = Problems()
                sections.append(table.collect(problems, processes))
                assert problems.all() == []
    finally:
        _stop(*procs)
    visited = [[ns["inode"] for ns in section["namespaces"] if not ns["host"]] for section in sections]
    assert all(len(v) == 2 for v in visited) and sections[0]["total"] == 5
    assert set().union(*map(set, visited)) == set(inodes)
    for before, after in zip(sections, sections[1:]):
        # Consecutive windows share a namespace, which therefore has rates.
        assert len(netns_rates(before, after, 1.0)) == 1
    record = sections[0]["namespaces"][1]
    assert record["snmp"]["Tcp"]["RetransSegs"] == 0 and record["sockets"]["source"] == "procfs"
    assert record["cgroup"] == "/hd-test" and record["processes"] == 1


def test_a_named_namespace_without_processes_is_read_from_inside(named_namespaces):
    name = named_namespaces("hd-nx")
    path = "/run/netns/" + name
    inode = os.stat(path).st_ino
    # A listener made inside the namespace by a thread that entered it: no
    # process lives there, the socket does.
    listener = inside(path, inode, lambda: socket.create_server(("127.0.0.1", 0)))
    table = NetnsTable(HostRoot(), max_netns=4096)
    try:
        problems = Problems()
        section = table.collect(problems, {"processes": []})
        (record,) = [ns for ns in section["namespaces"] if ns["inode"] == inode]
        assert record["name"] == name and record["pids"] == [] and record["cgroup"] is None
        assert record["snmp"]["Tcp"]["CurrEstab"] == 0 and record["netstat"]["TcpExt"]["ListenOverflows"] == 0
        sockets = record["sockets"]
        assert sockets["source"] == "netlink" and sockets["listeners_total"] == 1
        assert sockets["listeners"][0]["local_port"] == listener.getsockname()[1]
        assert inode in table.open_sockets
        assert not [e for e in problems.all() if str(inode) in e["path"] + e["message"]]
        listener.close()
        subprocess.run(["ip", "netns", "delete", name], check=True)
        # Gone from /run/netns: its socket is closed.
        table.collect(Problems(), {"processes": []})
        assert inode not in table.open_sockets
    finally:
        listener.close()
        table.close()


def test_limit_below_two_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        NetnsTable(HostRoot(), max_netns=1)


@pytest.mark.parametrize("sockstat, sockstat6, skipped", [
    ({"TCP": {"inuse": 0, "tw": 0}}, {"TCP6": {"inuse": 0}}, {"tcp4", "tcp4-listen", "tcp6", "tcp6-listen"}),
    ({"TCP": {"inuse": 2, "tw": 0}}, {"TCP6": {"inuse": 0}}, {"tcp6", "tcp6-listen"}),
    ({"TCP": {"inuse": 0, "tw": 1}}, {"TCP6": {"inuse": 0}}, set()),      # time-wait sockets of either family
    ({"TCP": {"inuse": 0, "tw": 0}}, None, {"tcp4", "tcp4-listen"}),      # no IPv6: its dumps fail on their own
    ({"TCP": {"inuse": 0}}, {"TCP6": {"inuse": 0}}, set()),               # a count missing: nothing skipped
    (None, None, set()),
])
def test_dumps_left_out_by_the_sockstat_counts(sockstat, sockstat6, skipped):
    assert empty_dumps(sockstat, sockstat6) == skipped


def test_a_namespace_without_tcp_sockets_costs_no_tcp_dump(named_namespaces):
    name = named_namespaces("hd-nx")
    inode = os.stat("/run/netns/" + name).st_ino
    with NetnsTable(HostRoot(), max_netns=4096) as table:
        section = table.collect(Problems(), {"processes": []})
        (record,) = [ns for ns in section["namespaces"] if ns["inode"] == inode]
        assert record["sockets"]["tcp_total"] == 0 and record["sockets"]["source"] == "netlink"
        assert table._sockets[inode].skip == {"tcp4", "tcp4-listen", "tcp6", "tcp6-listen"}
