"""The fast paths of one evaluation give exactly what the straightforward
computation gives, on a real pair of samples of this host with the tables.

* ``process_rates`` skips the arithmetic for a record that is the previous
  record object itself (the process table returns it for a process whose stat
  did not move): the same rates as for an equal copy of the record.
* ``socket_rates`` skips it for a connection whose counters did not move: the
  same rates as the per-row formula written out here.
* ``evaluate`` shares the per-process lists and rankings among its rules
  (``shared_measures``): the same findings as each rule run on its own, and
  ``top_culprits`` the same as a ranking written out here.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

from hostdiag.derive.process_rates import process_key, process_rates
from hostdiag.derive.rates import derive_rates
from hostdiag.derive.socket_rates import connection_key, socket_rates
from hostdiag.findings import RULES, evaluate
from hostdiag.findings.culprits import shared_measures, top_culprits
from hostdiag.findings.ranking import rank
from hostdiag.findings.values import num
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot

BURNER = "while True: pass"
# Clock ticks of CPU the burner spends between the two samples, and how long
# to wait for them at most.
BURN_TICKS = 5
DEADLINE_S = 30.0
MEASURES = ("cpu_pct", "io_bytes_per_s", "majflt_per_s", "rss_bytes")


def _ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture(scope="module")
def pair():
    """(previous, current) samples with the tables, a CPU burner running
    between them and an idle loopback connection open across both."""
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        with Sampler(HostRoot(), tables=True) as sampler:
            previous = sampler.sample()
            start = _ticks(burner.pid)
            deadline = time.monotonic() + DEADLINE_S
            while _ticks(burner.pid) < start + BURN_TICKS:
                assert time.monotonic() < deadline, "the burner got no CPU"
                time.sleep(0.01)
            current = sampler.sample()
    finally:
        burner.kill()
        burner.wait()
        for sock in (server, client, listener):
            sock.close()
    return previous, current, burner.pid


def test_rates_of_a_record_unchanged_are_those_of_an_equal_copy(pair):
    previous, current, _ = pair
    before = {id(r) for r in previous.processes["processes"]}
    same = [r for r in current.processes["processes"] if id(r) in before]
    assert same, "the process table returned no previous record: nothing to compare"
    copied = {"processes": [dict(r) for r in current.processes["processes"]]}
    dt_s = (current.meta.mono_ns - previous.meta.mono_ns) / 1e9
    ticks = os.sysconf("SC_CLK_TCK")
    fast = process_rates(previous.processes, current.processes, dt_s, ticks)
    straight = process_rates(previous.processes, copied, dt_s, ticks)
    # repr: 0.0 and 0, or None and 0.0, would compare equal otherwise.
    assert repr(fast) == repr(straight)
    assert all(fast[process_key(r)]["cpu_pct"] == 0.0 for r in same)


def test_shared_rankings_are_the_straightforward_ones(pair):
    previous, current, burner = pair
    rates = derive_rates(previous, current)
    per = rates["processes"]
    assert per[process_key(next(r for r in current.processes["processes"] if r["pid"] == burner))]["cpu_pct"] > 0
    for measure in MEASURES:
        expected = []
        for record in current.processes["processes"]:
            r = per.get(process_key(record)) or {}
            value = {"cpu_pct": r.get("cpu_pct"), "majflt_per_s": r.get("majflt_per_s"),
                     "rss_bytes": record.get("rss_bytes"),
                     "io_bytes_per_s": None if r.get("read_bytes_per_s") is None and r.get("write_bytes_per_s") is None
                     else (r.get("read_bytes_per_s") or 0) + (r.get("write_bytes_per_s") or 0)}[measure]
            if num(value) is not None and value > 0:
                expected.append((-value, record["pid"]))
        expected = [pid for _, pid in sorted(expected)[:3]]
        cgroup = next(r for r in current.processes["processes"] if r["pid"] == burner).get("cgroup")
        with shared_measures():
            shared = [top_culprits(current, rates, measure), top_culprits(current, rates, measure, cgroup=cgroup),
                      top_culprits(current, rates, measure)]
        alone = [top_culprits(current, rates, measure), top_culprits(current, rates, measure, cgroup=cgroup)]
        assert [c["pid"] for c in shared[0]] == expected
        assert shared == alone + alone[:1]
    cpu = [c["pid"] for c in top_culprits(current, rates, "cpu_pct", n=len(per))]
    assert burner in cpu


def test_evaluate_shared_gives_each_rule_alone(pair):
    previous, current, _ = pair
    rates = derive_rates(previous, current)
    alone = rank([f for rule in RULES for f in rule(current, rates, previous)])
    assert evaluate(current, rates, previous) == alone


def _rate(before, after, dt_s):
    if type(before) is not int or type(after) is not int or after < before:
        return None
    return (after - before) / dt_s


def test_socket_rates_of_idle_connections_are_the_formula(pair):
    previous, current, _ = pair
    dt_s = (current.meta.mono_ns - previous.meta.mono_ns) / 1e9
    fast = socket_rates(previous.sockets, current.sockets, dt_s)

    def rows(section):
        table = section["tcp_table"]
        return [dict(zip(table["fields"], row)) for row in table["rows"]]

    before = {connection_key(row): row for row in rows(previous.sockets)}
    straight = {}
    for row in rows(current.sockets):
        old = before.get(connection_key(row))
        straight[connection_key(row)] = {
            "retrans_per_s": None if old is None else _rate(old["total_retrans"], row["total_retrans"], dt_s),
            "bytes_acked_per_s": None if old is None else _rate(old["bytes_acked"], row["bytes_acked"], dt_s)}
    assert repr(fast) == repr(straight)
    assert any(r == {"retrans_per_s": 0.0, "bytes_acked_per_s": 0.0} for r in fast.values())
