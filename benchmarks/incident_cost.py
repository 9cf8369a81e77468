"""What incident tracking adds to each of the agent's samples (docs/incidents.md, "Cost").

By hand::

    PYTHONPATH=src python benchmarks/incident_cost.py [--samples 30]

Takes real samples of this host (without, then with the process and socket
tables), stores each in a memory history as the agent does, and times
separately what the agent runs per sample for incidents: the rates and the
findings (shared with /metrics) and the recorder's own part (signals,
timeline, tracker) while no incident is open. Prints medians and maxima in ms.
"""

import argparse
import statistics
import time

from hostdiag.apps.config import load_config
from hostdiag.apps.incident_recorder import IncidentRecorder
from hostdiag.derive.rates import derive_rates
from hostdiag.encode.wire import encode_msgpack
from hostdiag.findings import evaluate
from hostdiag.sampler import Sampler
from hostdiag.sources.hostroot import HostRoot
from hostdiag.store import History, Record

# Seconds between two samples: enough for rates, short enough to be quick.
GAP_S = 0.05


def measure(tables, samples):
    """([rates + findings seconds], [recorder seconds], processes in the last
    sample or None) over ``samples`` samples."""
    config = load_config(None, {}, {"spool.enabled": False})
    history = History(None)
    recorder = IncidentRecorder(config, history, lambda: {"hostname": "bench"})
    judge, observe = [], []
    with Sampler(HostRoot(), tables=tables) as sampler:
        previous = sampler.sample()
        for _ in range(samples):
            time.sleep(GAP_S)
            current = sampler.sample()
            snapshot = current.to_dict()
            payload = encode_msgpack(snapshot)
            wall_ns = snapshot["meta"]["wall_ns"]
            seq = history.append(wall_ns, payload, snapshot)
            started = time.perf_counter()
            found = evaluate(current, derive_rates(previous, current), previous)
            judged = time.perf_counter()
            recorder.observe(Record(history.boot_id, seq, wall_ns, payload), snapshot, found)
            judge.append(judged - started)
            observe.append(time.perf_counter() - judged)
            previous = current
    processes = len(current.processes["processes"]) if current.processes else None
    return judge, observe, processes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    for tables in (False, True):
        judge, observe, processes = measure(tables, args.samples)
        print("tables=%-5s rates+findings median %.2f ms max %.2f ms; recorder median %.3f ms max %.3f ms%s" % (
            tables, 1e3 * statistics.median(judge), 1e3 * max(judge), 1e3 * statistics.median(observe),
            1e3 * max(observe), "" if processes is None else " (%d processes)" % processes))


if __name__ == "__main__":
    main()
