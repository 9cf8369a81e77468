"""Where one system snapshot's time goes: cProfile over N ``collect()`` calls.

Usage (from the repository root, after ``pip install .``)::

    python benchmarks/profile_collect.py                 # netlink included, 200 calls
    python benchmarks/profile_collect.py --no-netlink --calls 500 --top 30

Prints the unprofiled CPU and wall time per call; then, profiled with a CPU-time
clock (``time.process_time``): the time of each source function of collect()
(cumulative, under the profiler, so inflated evenly for Python code), then the
top entries by own time and by cumulative time. cProfile's overhead falls on Python calls,
not on system calls, so compare the shares, not the absolute figures, with the
pytest-benchmark run.
"""

import argparse
import cProfile
import io
import os
import pstats
import time

from hostdiag import parsers
from hostdiag.sampler.system import SystemCollector
from hostdiag.sources.hostroot import HostRoot

# The source modules whose ``*Source.collect`` methods collect() calls.
SOURCES = ("stat_loadavg_uptime", "meminfo_vmstat_swaps", "pressure", "diskstats", "mountinfo",
           "network", "proc_sys")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-netlink", action="store_true")
    args = parser.parse_args()

    with SystemCollector(HostRoot(), use_netlink=not args.no_netlink) as collector:
        for _ in range(5):
            collector.collect()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for _ in range(args.calls):
            collector.collect()
        cpu = (time.process_time() - start_cpu) / args.calls
        wall = (time.perf_counter() - start_wall) / args.calls

        # CPU time, not wall: on a shared machine wall time is mostly waiting for a CPU.
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for _ in range(args.calls):
            collector.collect()
        profile.disable()

    print("parsers: %s; netlink: %s; %d calls" % (parsers.implementation(), not args.no_netlink, args.calls))
    print("unprofiled: %.1f µs CPU, %.1f µs wall per collect()\n" % (cpu * 1e6, wall * 1e6))

    stats = pstats.Stats(profile)
    total = stats.total_tt / args.calls
    print("per source function (profiled cumulative µs per collect(), share of %.1f µs):" % (total * 1e6))
    for (filename, _line, name), row in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):
        module = os.path.splitext(os.path.basename(filename))[0]
        if name == "collect" and module in SOURCES and "/hostdiag/sources/" in filename:
            cumulative = row[3] / args.calls
            print("  %-22s %9.1f  %5.1f%%" % (module, cumulative * 1e6, 100 * cumulative / total))
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(args.top)
        print("\ntop %d by %s (times are totals over %d calls):" % (args.top, order, args.calls))
        print(out.getvalue().split("\n", 6)[-1].rstrip())


if __name__ == "__main__":
    main()
