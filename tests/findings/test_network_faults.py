"""Network faults on a veth pair this module makes (the host end here, the
peer in a namespace of its own); the FIRST finding names the cause.

* packet loss: a classic BPF filter on the sink's socket in the namespace
  drops a fifth of the TCP segments a connection from the host sends; the
  connection that retransmits is named, with the process that holds it (no
  netem or nftables needed);
* softnet drops: net.core.netdev_max_backlog set tiny (restored after), the
  peer steering what it receives to CPU 1 (RPS) and a flood of datagrams
  from CPU 0, faster than CPU 1 drains its backlog; the CPU that drops and
  the limit are named.

Judged with the rules of faultscenes.RULES_UNDER_TEST (the neighbours on
this shared machine load its CPUs meanwhile).
"""

import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from hostdiag.derive import derive_rates
from hostdiag.findings import evaluate, socket_inodes_named
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from cgroupscenes import DEADLINE_S
from faultscenes import RULES_UNDER_TEST, poll

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("namespaces and veth pairs need root and iproute2", allow_module_level=True)

# A sink in the namespace: accepts one connection, attaches a classic BPF
# filter that drops about a fifth of its segments (a random u32 below 20 % of
# the range: SKF_AD_RANDOM), prints "filtered" and reads to the end.
SINK = r"""
import ctypes, socket, struct, sys
SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF
prog = [(0x20, 0, 0, SKF_AD_RANDOM), (0x35, 0, 1, 0x33333333), (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)]
code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.setsockopt(socket.SOL_SOCKET, 26, fprog)   # SO_ATTACH_FILTER
print("filtered", flush=True)
while c.recv(1 << 16):
    pass
"""
BACKLOG_SYSCTL = "/proc/sys/net/core/netdev_max_backlog"


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True)


class Veth:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.ns, self.host, self.peer = "hd-test-" + tag, "hdv" + tag, "hdp" + tag
        subnet, block = random.randrange(256), random.randrange(64) * 4
        self.host_addr = "10.214.%d.%d" % (subnet, block + 1)
        self.peer_addr = "10.214.%d.%d" % (subnet, block + 2)


@pytest.fixture(scope="module")
def veth():
    pair = Veth()
    try:
        ip("netns", "add", pair.ns)
        ip("link", "add", pair.host, "type", "veth", "peer", "name", pair.peer)
        ip("link", "set", pair.peer, "netns", pair.ns)
        ip("addr", "add", pair.host_addr + "/30", "dev", pair.host)
        ip("-n", pair.ns, "addr", "add", pair.peer_addr + "/30", "dev", pair.peer)
        ip("link", "set", pair.host, "up")
        ip("-n", pair.ns, "link", "set", pair.peer, "up")
        ip("-n", pair.ns, "link", "set", "lo", "up")
        yield pair
    finally:
        subprocess.run(["ip", "netns", "del", pair.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", pair.host], capture_output=True)


def test_packet_loss_names_the_connection_that_retransmits(veth):
    sink = subprocess.Popen(["ip", "netns", "exec", veth.ns, sys.executable, "-c", SINK, veth.peer_addr],
                            stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    try:
        port = int(sink.stdout.readline())
        sender = socket.create_connection((veth.peer_addr, port), timeout=DEADLINE_S)
        sender.settimeout(0.1)
        # From "filtered" on, a fifth of the segments to the sink are lost.
        assert sink.stdout.readline().strip() == "filtered"

        def send():
            chunk = b"x" * 4096
            while not stop.is_set():
                try:
                    sender.send(chunk)
                except socket.timeout:
                    continue

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        # Pairs of samples a second apart until one pair sees the retransmits
        # (under load, the connection may sit in a retransmit backoff for a while).
        with Sampler(HostRoot()) as sampler:
            current = sampler.sample()
            deadline = time.monotonic() + DEADLINE_S
            while True:
                previous = current
                time.sleep(1.0)
                current = sampler.sample()
                rates = derive_rates(previous, current)
                sampler.add_socket_owners(current, socket_inodes_named(current, rates))
                found = evaluate(current, rates, previous, rules=RULES_UNDER_TEST)
                if (found and found[0]["id"] == "tcp_conn_retrans") or time.monotonic() > deadline:
                    break
        stop.set()
        thread.join(timeout=DEADLINE_S)
        sender.close()
    finally:
        stop.set()
        sink.kill()
        sink.wait()
    assert found, "no finding over the last pair of samples"
    first = found[0]
    assert first["id"] == "tcp_conn_retrans", found
    culprit = first["culprits"][0]
    assert culprit["remote"] == "%s:%d" % (veth.peer_addr, port)
    assert culprit["retrans_per_s"] > 5
    assert os.getpid() in [p["pid"] for p in culprit["processes"]]


def _softnet_dropped():
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


# Floods the peer with small datagrams from CPU 0 until its stdin closes.
FLOOD = ("import os, socket, sys, threading\n"
         "os.sched_setaffinity(0, {0})\n"
         "done = threading.Event()\n"
         "threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()\n"
         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "while not done.is_set():\n"
         "    for _ in range(1000):\n"
         "        s.sendto(b'x' * 200, (sys.argv[1], 9))\n")


def test_softnet_drops_name_the_cpu_and_the_backlog_limit(veth):
    if len(os.sched_getaffinity(0)) < 2 or 1 not in os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    with open(BACKLOG_SYSCTL) as f:
        saved = f.read().strip()
    # The peer steers what it receives to CPU 1's backlog (RPS), filled from CPU 0.
    subprocess.run(["ip", "netns", "exec", veth.ns, "sh", "-c",
                    "echo 2 > /sys/class/net/%s/queues/rx-0/rps_cpus" % veth.peer], check=True)
    flood = None
    try:
        with open(BACKLOG_SYSCTL, "w") as f:
            f.write("8")
        with Sampler(HostRoot(), tables=False) as sampler:
            previous = sampler.sample()
            before = _softnet_dropped()
            flood = subprocess.Popen([sys.executable, "-c", FLOOD, veth.peer_addr], stdin=subprocess.PIPE)
            poll(lambda: _softnet_dropped() > before, "softnet drops")
            current = sampler.sample()
    finally:
        with open(BACKLOG_SYSCTL, "w") as f:
            f.write(saved)
        if flood is not None:
            flood.stdin.close()
            flood.wait(timeout=DEADLINE_S)
    found = evaluate(current, derive_rates(previous, current), previous, rules=RULES_UNDER_TEST)
    first = found[0]
    assert first["id"] == "softnet", found
    assert (first["subject"], first["evidence"]["cpu"]) == ("cpu1", 1)
    assert first["evidence"]["netdev_max_backlog"] == 8 and first["evidence"]["dropped_per_s"] > 0
    assert "net.core.netdev_max_backlog 8" in first["title"]
