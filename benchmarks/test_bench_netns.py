"""Network namespaces: what one visited namespace costs the sampler (CPU) and
the history (bytes), measured on this machine (see benchmarks/README.md,
"Network namespaces").

Two sets of ``NAMESPACES`` namespaces:

* with a process inside each (``unshare -n``) holding ``SOCKETS_EACH``
  loopback TCP connections and a listener: counters read through
  /proc/PID/net, sockets over a sock_diag socket opened inside;
* named ones (``ip netns add``) without a process or a socket: counters read
  from a thread that entered each, and no TCP dump (sockstat shows none).

Other namespaces of the host (other tests', /run/netns names) are visited
too and counted in the figures per namespace.

For each set, :class:`~hostdiag.sources.netns.NetnsTable` is timed (CPU,
``time.process_time``, median of ``ROUNDS``) against the same table with
``max_netns`` 2 over the same host (the discovery and two namespaces), so the
difference divided by the extra namespaces is the cost of one. Then the
msgpack size of the section, and of the delta between two consecutive
sections of quiet namespaces (encode/delta.py, as a table record carries it).

Run: ``python -m pytest benchmarks/test_bench_netns.py -q -s`` as root.
"""

import os
import statistics
import subprocess
import sys
import time
import uuid

import pytest

from hostdiag.encode.delta import delta
from hostdiag.encode.wire import encode_msgpack
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.netns import NetnsTable
from hostdiag.sources.problems import Problems

NAMESPACES = int(os.environ.get("HOSTDIAG_BENCH_NAMESPACES", "16"))
SOCKETS_EACH = 10
ROUNDS = 15

# Inside a namespace: lo up, a listener and SOCKETS_EACH connections to it,
# held until stdin closes.
HOLDER = r"""
import socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server(("127.0.0.1", 0))
pairs = [(socket.create_connection(server.getsockname()), server.accept()[0]) for _ in range(%d)]
print("ready", flush=True)
sys.stdin.read()
""" % SOCKETS_EACH

if os.geteuid() != 0:
    pytest.skip("namespaces need root", allow_module_level=True)


@pytest.fixture(scope="module")
def with_processes():
    """NAMESPACES processes, each alone in a new namespace with its sockets."""
    holders = []
    try:
        for _ in range(NAMESPACES):
            holders.append(subprocess.Popen(["unshare", "-n", sys.executable, "-c", HOLDER],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for holder in holders:
            assert holder.stdout.readline().strip() == "ready"
        yield holders
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


@pytest.fixture
def named():
    """NAMESPACES namespaces with a name and no process (their loopback up, no socket)."""
    names = []
    try:
        for _ in range(NAMESPACES):
            name = "hd-bench-" + uuid.uuid4().hex[:8]
            subprocess.run(["ip", "netns", "add", name], check=True)
            names.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _processes(pids):
    return {"processes": [{"pid": pid, "kernel_thread": False, "cgroup": "/bench"} for pid in pids]}


def _cpu_ms(table, processes):
    """Median CPU ms of one collect, and the last section."""
    times = []
    section = None
    for _ in range(ROUNDS):
        started = time.process_time()
        section = table.collect(Problems(), processes)
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), section


def _measure(label, processes, expect):
    root = HostRoot()
    with NetnsTable(root, max_netns=4096) as full, NetnsTable(root, max_netns=2) as two:
        full_ms, section = _cpu_ms(full, processes)
        two_ms, _ = _cpu_ms(two, processes)
        _, later = _cpu_ms(full, processes)
    visited = [ns for ns in section["namespaces"] if not ns["host"]]
    assert expect(visited), [(ns["name"], ns["pids"]) for ns in visited]
    per_ns = (full_ms - two_ms) / max(1, len(visited) - 2)
    size = len(encode_msgpack(section))
    change = len(encode_msgpack(delta({"netns": section}, {"netns": later})))
    print("\n%s: %d namespaces visited (%d found); collect %.2f ms CPU, with max_netns 2 %.2f ms: "
          "%.2f ms per namespace; section %d B msgpack (%d B per namespace); delta of a quiet next "
          "section %d B" % (label, len(visited), section["total"], full_ms, two_ms, per_ns, size,
                            size // max(1, len(visited)), change))
    return per_ns, size, change


def test_namespaces_with_a_process_inside(with_processes):
    holders = with_processes
    pids = {h.pid for h in holders}
    per_ns, size, change = _measure(
        "with a process", _processes(sorted(pids)),
        lambda visited: len([ns for ns in visited if set(ns["pids"]) & pids]) == NAMESPACES
        and all(ns["sockets"]["tcp_total"] == 2 * SOCKETS_EACH + 1 for ns in visited if set(ns["pids"]) & pids))
    assert size < 2048 * (NAMESPACES + 8)


def test_named_namespaces_without_a_process(named):
    names = named
    _measure("named, no process", _processes([]),
             lambda visited: set(names) <= {ns["name"] for ns in visited})
