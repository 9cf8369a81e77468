"""The running agent's own cost under load, beside its floor and atop (issue 14).

    cd /work/wt-e && PYTHONPATH=src python -m pytest benchmarks/test_bench_agent_cost.py -q -s

Load: 1,000 extra sleeping processes (``procload.ProcessLoad``) and 2,000
established loopback connections (``connload.ConnLoad``, 4,000 TCP sockets),
held for the whole module.

Each variant runs ``diag agent`` as a real process (``agentcost.AgentUnderTest``)
at ``BENCH_COST_INTERVAL`` seconds (default 0.5), leaves out its first 12
samples (start-up, the first table scan), then measures
``BENCH_COST_SAMPLES`` (default 60) samples counted by the agent itself:

* ``system only``: tables never (``agent.table_every = 3600``);
* ``defaults``: tables every 5th sample;
* ``defaults + 1 subscriber``: the same, with one client subscribed (the
  agent encodes a delta frame per sample for it);
* ``tables every sample``: ``agent.table_every = 1``;

and ``atop -w FILE 1`` (when installed) for the same number of its 1 s
samples. CPU is utime + stime of /proc/PID/stat over the window (all threads),
with schedstat's run time as the finer clock; per sample, and so "% of a core
at a 1 s interval" is CPU seconds per sample x 100. The floor of each variant
is the raw reads its samples cannot avoid, measured in this process in the
same run (``agentcost.SampleFloor``): the system snapshot's files, fs calls
and rtnetlink dumps every sample, plus every /proc/PID stat + status + io and
the sock_diag dumps on table samples.

``BENCH_COST_REPEAT`` (default 1) repeats the agent variants in rotation;
``BENCH_COST_JSON`` names a file for the figures. Nothing here asserts a time.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agentcost  # noqa: E402
from connload import ConnLoad  # noqa: E402
from procload import ProcessLoad  # noqa: E402

EXTRA_PROCESSES = 1000
CONNECTIONS = 2000
SAMPLES = int(os.environ.get("BENCH_COST_SAMPLES", "60"))
INTERVAL_S = float(os.environ.get("BENCH_COST_INTERVAL", "0.5"))
REPEAT = int(os.environ.get("BENCH_COST_REPEAT", "1"))
FLOOR_ROUNDS = 20
DAY_S = 86400
# (label, agent.table_every or None for never, subscribed)
VARIANTS = (
    ("system only", None, False),
    ("defaults (tables every 5th)", 5, False),
    ("defaults + 1 subscriber", 5, True),
    ("tables every sample", 1, False),
)


@pytest.fixture(scope="module")
def load():
    with ProcessLoad(EXTRA_PROCESSES) as processes, ConnLoad(CONNECTIONS, per_child=1000) as conns:
        yield processes, conns


def _mb(value):
    return "-" if value is None else "%.1f" % (value / 1e6)


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = ["  ".join("%-*s" % (w, h) for w, h in zip(widths, header))]
    out.append("-" * len(out[0]))
    out.extend("  ".join("%-*s" % (w, str(c)) for w, c in zip(widths, row)) for row in rows)
    return "\n".join(out)


def test_agent_cost(load, capsys):
    floor_probe = agentcost.SampleFloor()
    try:
        floor_probe.measure(2)
        floor = floor_probe.measure(FLOOR_ROUNDS)
    finally:
        floor_probe.close()
    runs = {}
    for _ in range(REPEAT):
        for label, table_every, subscribe in VARIANTS:
            runs.setdefault(label, []).append(agentcost.measure_agent(
                INTERVAL_S, table_every or 3600, SAMPLES, subscribe=subscribe))
    atop = agentcost.measure_atop(SAMPLES)

    rows = []
    for label, table_every, _ in VARIANTS:
        base = agentcost.floor_per_sample(floor, table_every)
        for run in runs[label]:
            rows.append((
                label, run["samples"],
                "%.2f" % (run["cpu_s_per_sample"] * 1e3), "%.2f" % (run["run_s_per_sample"] * 1e3),
                "%.2f" % (run["cpu_s_per_sample"] * 100), "%.2f" % (base * 1e3),
                "%.1f" % (run["run_s_per_sample"] / base),
                "%.1f" % (run["run_s_per_sample"] / atop["run_s_per_sample"]) if atop else "-",
                _mb(run["vm_hwm_bytes"]), _mb(run["vm_rss_bytes"]),
                "%d" % run["spool_bytes_per_sample"], _mb(run["spool_bytes_per_sample"] * DAY_S),
                "%s/%s" % (run["overruns"], run["missed_ticks"]),
                "%d-%d" % tuple(run["host_pids"]),
            ))
    if atop:
        rows.append((
            "atop -w FILE 1", "%.0f" % atop["samples"],
            "%.2f" % (atop["cpu_s_per_sample"] * 1e3), "%.2f" % (atop["run_s_per_sample"] * 1e3),
            "%.2f" % (atop["cpu_s_per_sample"] * 100), "-", "-", "1.0",
            _mb(atop["vm_hwm_bytes"]), _mb(atop["vm_rss_bytes"]),
            "%d" % atop["spool_bytes_per_sample"], _mb(atop["spool_bytes_per_sample"] * DAY_S), "-", "-"))
    header = ("variant", "samples", "CPU ms/sample (ticks)", "CPU ms/sample (schedstat)",
              "% core at 1 s", "floor ms/sample", "÷ floor", "÷ atop", "VmHWM MB", "VmRSS MB",
              "spool B/sample", "spool MB/day at 1 s", "overruns/missed", "host pids")
    with capsys.disabled():
        print("\n%d extra processes, %d loopback connections; agent interval %.2f s, %d samples a run"
              % (EXTRA_PROCESSES, CONNECTIONS, INTERVAL_S, SAMPLES))
        print("floor per sample (CPU ms, median of %d rounds): system %.2f, tables %.2f"
              % (FLOOR_ROUNDS, floor["system"] * 1e3, floor["tables"] * 1e3))
        print(_table(rows, header))
        if atop is None:
            print("atop: not installed (apt-get install -y atop)")
    path = os.environ.get("BENCH_COST_JSON")
    if path:
        with open(path, "w") as f:
            json.dump({"floor": floor, "runs": runs, "atop": atop, "interval_s": INTERVAL_S,
                       "samples": SAMPLES}, f, indent=1)
