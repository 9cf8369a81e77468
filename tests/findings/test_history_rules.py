"""The rule over history: a process whose RSS grew steadily over the window
is leaking; one jump, too few samples, a window under two minutes (a
compiler growing fast for some seconds) or another boot is not. Edited
snapshots first (every edge of the rule), then a real agent's history read by
`diag`."""

import copy
import json
import shutil
import signal
import subprocess
import sys
import tempfile

from agentproc import AgentProcess, wait_for
from findingedits import proc, table
from hostdiag.findings import evaluate
from hostdiag.apps.diag import agent_history
from hostdiag.findings.processes import rule_process_rss_leak

MIB = 1 << 20
NS = 1_000_000_000


def _history(pair, rss_mib, every_s=30):
    """Snapshots ``every_s`` apart with process 400's RSS at each value of
    ``rss_mib`` (MiB); the last one is "now". Process 401 stays flat."""
    _, cur = pair
    snapshots = []
    for i, value in enumerate(rss_mib):
        snapshot = copy.deepcopy(cur)
        snapshot.meta.mono_ns = cur.meta.mono_ns + i * every_s * NS
        table([], [proc(400, rss_bytes=int(value * MIB)), proc(401, rss_bytes=50 * MIB)])(snapshot, snapshot)
        snapshots.append(snapshot)
    return snapshots[:-1], snapshots[-1]


def _leak(pair, rss_mib, **kw):
    history, now = _history(pair, rss_mib, **kw)
    return list(rule_process_rss_leak(now, history))


def test_steady_growth_is_a_leak(pair):
    found = _leak(pair, [100, 106, 112, 119, 124, 130])
    assert [f["id"] for f in found] == ["process_rss_leak"]
    culprit = found[0]["culprits"][0]
    assert culprit["pid"] == 400 and abs(culprit["rss_leak_bytes_per_s"] - 0.2 * MIB) < 0.01 * MIB
    assert culprit["fit_r2"] > 0.99
    assert found[0]["evidence"]["window_s"] == 150 and found[0]["evidence"]["samples"] == 6
    assert found[0]["title"].endswith("p400[400] leaks 12.1 MiB/min")
    assert found[0]["threshold"].endswith("of >= 5 samples over >= 120 s")


def test_fast_growth_over_a_short_window_is_not_a_leak(pair):
    """A compiler: 50 MiB/s, steadily, for 10 s, then it exits; the same
    growth held for two minutes is a leak."""
    compiling = [100 + 100 * i for i in range(6)]
    assert _leak(pair, compiling, every_s=2) == []
    assert _leak(pair, compiling, every_s=23.9) == []    # 119.5 s
    assert [f["id"] for f in _leak(pair, compiling, every_s=24)] == ["process_rss_leak"]   # 120 s


def test_slow_jumpy_short_or_shrinking_growth_is_not(pair):
    assert _leak(pair, [100, 100.1, 100.2, 100.3, 100.4, 100.5], every_s=10) == []   # 10 KiB/s: under 64
    assert _leak(pair, [100, 100, 100, 200, 200, 200], every_s=10) == []              # one jump
    assert _leak(pair, [100, 100, 100, 100, 100, 300], every_s=10) == []
    assert _leak(pair, [100, 110, 120, 130], every_s=10) == []                         # 4 samples
    assert _leak(pair, [130, 124, 119, 112, 106, 100]) == []                           # shrinking
    # A sawtooth that ends higher: grows in only 3 of 6 intervals.
    assert _leak(pair, [100, 140, 110, 150, 120, 160, 130]) == []


def test_other_boots_and_reused_pids_do_not_count(pair):
    history, now = _history(pair, [100, 106, 112, 119, 124, 130])
    for snapshot in history[:3]:
        snapshot.meta.boot_id = "an-earlier-boot"
    assert list(rule_process_rss_leak(now, history)) == []
    history, now = _history(pair, [100, 106, 112, 119, 124, 130])
    for snapshot in history:
        snapshot.processes["processes"][0]["start_time"] = 7          # another process with that pid
    assert list(rule_process_rss_leak(now, history)) == []


def test_damaged_history_is_skipped(pair):
    history, now = _history(pair, [100, 106, 112, 119, 124, 130])
    plain = [s.to_dict() for s in history]
    odd = [None, {}, {"meta": None}, {"meta": {"mono_ns": "x"}}, {"meta": {"mono_ns": 1, "boot_id": now.meta.boot_id},
                                                                    "processes": {"processes": [None, {"pid": "1"}]}}]
    found = list(rule_process_rss_leak(now, odd + plain))
    assert [c["pid"] for c in found[0]["culprits"]] == [400]
    assert evaluate(now, history=odd) == evaluate(now)


# Grows 256 KiB every 20 ms (about 12 MiB/s) until its stdin closes, at most 30 s.
LEAKER = ("import sys, threading, time\n"
          "done = threading.Event()\n"
          "threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()\n"
          "held = []\n"
          "while not done.is_set() and len(held) < 1500:\n"
          "    held.append(b'x' * (1 << 18)); time.sleep(0.02)\n"
          "done.wait()\n")


def test_diag_reads_the_agents_history_and_a_few_seconds_of_growth_is_no_leak():
    """The agent's history of a process growing 12 MiB/s for some seconds:
    `diag` reads it (the leaker in at least six samples) and does not name a
    leak over that short a window (a compiler's build step looks the same)."""
    workdir = tempfile.mkdtemp(prefix="hdl-", dir="/tmp")
    agent = AgentProcess(workdir, agent={"table_every": 1, "interval": 0.5, "budget": 0.5})
    leaker = None
    try:
        agent.start().wait_ready().close()
        # Started once the agent samples, so that it grows through every sample.
        leaker = subprocess.Popen([sys.executable, "-c", LEAKER], stdin=subprocess.PIPE)

        def samples_with_leaker():
            with agent.client() as client:
                records = list(client.range(from_seq=1))
            return sum(1 for r in records for p in (r.snapshot.get("processes") or {}).get("processes") or ()
                       if p["pid"] == leaker.pid) >= 6

        wait_for(samples_with_leaker, "six samples of the leaker")
        done = subprocess.run([sys.executable, "-m", "hostdiag", "--interval", "0", "--format", "json",
                               "--agent", agent.address], capture_output=True, timeout=60, check=True)
        with agent.client() as client:
            newest = client.latest()
        read = agent_history(agent.address, newest.boot_id, newest.wall_ns)
    finally:
        if leaker is not None:
            leaker.stdin.close()
            leaker.wait(timeout=60)
        agent.stop(signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    # What diag read of the agent: the leaker growing over some seconds.
    points = [(s["meta"]["mono_ns"] / NS, p["rss_bytes"]) for s in read for p in s["processes"]["processes"]
              if p["pid"] == leaker.pid]
    assert len(points) >= 6 and points[-1][1] > points[0][1] and points[-1][0] - points[0][0] < 120, points
    found = json.loads(done.stdout)["findings"]
    named = [c["pid"] for f in found if f["id"] == "process_rss_leak" for c in f["culprits"]]
    assert leaker.pid not in named, found


def test_no_agent_no_history():
    from hostdiag.apps.diag import agent_history

    assert agent_history("unix:/nonexistent/hostdiag.sock", "boot", 0) == []
    assert agent_history("tcp:no-port", "boot", 0) == []
