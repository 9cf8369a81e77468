"""Does serving make the sampler miss ticks? A real `diag agent` process,
measured while clients load it (issue 8, item 6).

For each interval the agent starts on a spool already holding a backlog of
records of this boot, then for each load:

* ``idle``: nobody connected, the same length of time as the catch-up;
* ``catch-up``: one client subscribes from seq 1 and reads the whole backlog as
  fast as it can, up to the live records;
* ``N x latest``: N clients, each on its own connection, asking ``latest`` in a
  loop for ``--seconds``.

Reported per run: the samples taken, the ticks the agent skipped
(``missed_ticks``) and the samples over their budget (``overruns``), from the
agent's own self-report, and the largest hole between two consecutive
samples' wall times. Usage:

    PYTHONPATH=src python benchmarks/sampling_load.py --intervals 0.25 1 --backlog 6000 --clients 200

The backlog is made of one real snapshot of this host with every int in it
moved on per record (what the spool stores is deltas of these, as with a real
agent; each record changes more than a real one does). Needs root only to read every process's files; no network.
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from agentproc import AgentProcess, wait_for  # noqa: E402

from hostdiag.encode.wire import encode_msgpack  # noqa: E402
from hostdiag.sampler.system import SystemCollector  # noqa: E402
from hostdiag.sources.hostroot import HostRoot  # noqa: E402
from hostdiag.store import History  # noqa: E402
from hostdiag.transport.client import AgentClient, Gone  # noqa: E402

SECOND = 1_000_000_000


def fill_spool(spool_dir, records):
    """``records`` records of this host's boot, ending now, one per second."""
    root = HostRoot()
    boot_id = root.read_proc("sys", "kernel", "random", "boot_id").decode().strip()
    collector = SystemCollector(root)
    try:
        snapshot = collector.collect().to_dict()
    finally:
        collector.close()
    wall = time.time_ns() - records * SECOND
    with History(spool_dir, boot_id=boot_id, spool_fsync_interval_s=None) as history:
        for seq in range(records):
            wall += SECOND
            _advance(snapshot, seq)
            snapshot["meta"]["wall_ns"] = wall
            history.append(wall, encode_msgpack(snapshot))


def _advance(node, seq):
    """Every int of the snapshot moved on, as on a busy host (every counter of
    every CPU, disk and link changes each second): a heavier delta than most."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            node[key] = value + (seq + len(str(key))) % 5
        elif isinstance(value, (dict, list)):
            _advance(value, seq)


def counters(agent):
    with agent.client(timeout=60) as client:
        info = client.info()
    report = info.get("agent") or {}
    return {"seq": info.get("newest_seq"), "missed": report.get("missed_ticks", 0),
            "overruns": report.get("overruns", 0), "samples": report.get("samples", 0)}


def largest_hole_s(agent, from_seq, to_seq):
    with agent.client(timeout=60) as client:
        walls = [r.wall_ns for r in client.range(from_seq=from_seq, to_seq=to_seq, page=1000)]
    return max((b - a for a, b in zip(walls, walls[1:])), default=0) / SECOND


def catch_up(agent):
    """One client reads the whole kept history from seq 1 up to the live records."""
    with AgentClient.connect(agent.address, timeout=60) as client:
        target = client.info()["newest_seq"]
        for item in client.subscribe(from_seq=1, idle_timeout=60):
            if not isinstance(item, Gone) and item.seq >= target:
                return


def latest_clients(agent, count, seconds):
    """``count`` clients asking ``latest`` in a loop for ``seconds``."""
    stop = time.monotonic() + seconds
    errors = []

    def one():
        try:
            with AgentClient.connect(agent.address, timeout=60) as client:
                while time.monotonic() < stop:
                    client.latest()
        except Exception as exc:  # noqa: BLE001 - reported with the results
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def measure(agent, label, load):
    before = counters(agent)
    started = time.monotonic()
    errors = load() or []
    seconds = time.monotonic() - started
    after = counters(agent)
    return {"load": label, "seconds": seconds, "samples": after["samples"] - before["samples"],
            "missed": after["missed"] - before["missed"], "overruns": after["overruns"] - before["overruns"],
            "hole_s": largest_hole_s(agent, before["seq"], after["seq"]), "errors": len(errors)}


def run_interval(interval, backlog, clients, seconds, table_every):
    directory = tempfile.mkdtemp(prefix="hd-bench-", dir="/tmp")
    try:
        spool_dir = os.path.join(directory, "spool")
        fill_spool(spool_dir, backlog)
        agent = AgentProcess(directory, agent={"interval": interval, "budget": interval,
                                                            "table_every": table_every},
                             spool={"dir": spool_dir}, server={"max_clients": clients + 16, "read_timeout": 60})
        agent.start()
        try:
            agent.wait_ready(deadline_s=120).close()
            start_seq = counters(agent)["seq"]
            wait_for(lambda: counters(agent)["seq"] >= start_seq + 3, "the agent to sample", deadline_s=60)
            rows = [measure(agent, "catch-up of %d records" % backlog, lambda: catch_up(agent))]
            rows.append(measure(agent, "idle", lambda: time.sleep(rows[0]["seconds"])))
            rows.append(measure(agent, "%d x latest" % clients, lambda: latest_clients(agent, clients, seconds)))
            rows.append(measure(agent, "idle", lambda: time.sleep(seconds)))
        finally:
            agent.stop()
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--backlog", type=int, default=6000, help="records in the spool at start")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latest load")
    parser.add_argument("--table-every", type=int, default=3600,
                        help="agent.table_every (default: no process and socket tables)")
    args = parser.parse_args(argv)
    print("| interval | load | seconds | samples | missed ticks | overruns | largest hole (s) | client errors |")
    print("|---|---|---|---|---|---|---|---|")
    for interval in args.intervals:
        for row in run_interval(interval, args.backlog, args.clients, args.seconds, args.table_every):
            print("| %g s | %s | %.1f | %d | %d | %d | %.2f | %d |" % (
                interval, row["load"], row["seconds"], row["samples"], row["missed"], row["overruns"],
                row["hole_s"], row["errors"]), flush=True)


if __name__ == "__main__":
    main()
