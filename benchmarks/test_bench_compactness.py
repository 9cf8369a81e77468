"""How many bytes the agent's history and its protocol cost, measured on this
machine with the real agent (see benchmarks/README.md).

Two runs of `diag agent` at the default 1 s interval, each with a spool in a
temporary directory and a subscriber reading every frame:

* system counters only (tables off): bytes per full snapshot frame, per delta
  frame, and per record in the spool, hence bytes per host per day;
* with 1,000 extra sleeping processes and the process and socket tables
  every ``agent.table_every`` (5) samples, as the agent runs by default;
* with 200 extra sleeping processes, each in a cgroup of its own (200
  services), against the same processes left in their cgroup: the cost of
  the cgroups section.

The spool's per-record sizes are read from the segment files themselves
(header included). A day is one keyframe cycle of the history (a keyframe
every 60 records, delta frames between) times 1,440, measured directly: each
run takes 61 samples by default (a minute; $HOSTDIAG_BENCH_SAMPLES and
$HOSTDIAG_BENCH_TABLE_SAMPLES change it). Fewer project the cycle from the
records measured, which underestimates. Other processes started meanwhile
change the table figures: run it on a quiet machine (the process counts are
printed).

After each run the spool is read back with a History: every record must give
the snapshot the subscriber received, and the cost of rebuilding a record is
timed, cold (a new History: its keyframe and every delta frame up to it) and
reading forwards.

Run: ``python -m pytest benchmarks/test_bench_compactness.py -q -s``.
"""

import glob
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

import pytest

from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store import History
from hostdiag.store.history import DEFAULT_KEYFRAME_EVERY
from hostdiag.store.spool import FLAG_DELTA, SEGMENT_HEADER, decode_record
from hostdiag.transport.client import AgentClient, SnapshotRecord
from hostdiag.transport.framing import encode_frame

AGENT_MAIN = "import sys; from hostdiag.apps.agent import main_agent; sys.exit(main_agent(sys.argv[1:]))"
SAMPLES = int(os.environ.get("HOSTDIAG_BENCH_SAMPLES", "61"))
TABLE_SAMPLES = int(os.environ.get("HOSTDIAG_BENCH_TABLE_SAMPLES", "61"))
DAY_S = 86400
INTERVAL_S = 1.0
TABLE_EVERY = 5
EXTRA_PROCESSES = 1000
DELTA_GOAL_BYTES = 2048
DAY_GOAL_BYTES = 200 * 1000 * 1000

Run = namedtuple("Run", "frames stored encoding reads")
Stored = namedtuple("Stored", "seq size keyframe")


def run_agent(samples, table_every):
    """Run an agent for ``samples`` records and read its spool back."""
    workdir = tempfile.mkdtemp(prefix="hd-bench-", dir="/tmp")
    config = os.path.join(workdir, "agent.toml")
    sock = os.path.join(workdir, "agent.sock")
    spool = os.path.join(workdir, "spool")
    with open(config, "w") as f:
        f.write('[agent]\ninterval = %r\ntable_every = %d\n[spool]\ndir = "%s"\n[server]\nunix_path = "%s"\n'
                % (INTERVAL_S, table_every, spool, sock))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTDIAG_") or k == "HOSTDIAG_PURE"}
    log = open(os.path.join(workdir, "agent.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-c", AGENT_MAIN, "--config", config, "--foreground"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        client = None
        deadline = time.monotonic() + 60
        while client is None:
            assert proc.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "the agent did not start"
            try:
                client = AgentClient.connect("unix:" + sock, timeout=30)
            except OSError:
                time.sleep(0.1)
        frames = []
        with client:
            for item in client.subscribe(from_seq=1, idle_timeout=60):
                assert isinstance(item, SnapshotRecord)
                frames.append(item)
                if len(frames) == samples:
                    break
        with AgentClient.connect("unix:" + sock, timeout=30) as client:
            encoding = client.info()["encoding"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        return Run(frames, spool_records(spool), encoding, read_back(spool, frames))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def spool_records(spool_dir):
    """[Stored] of every record in the segment files, in order."""
    out = []
    for path in sorted(glob.glob(os.path.join(spool_dir, "seg-*.hds"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = SEGMENT_HEADER.size
        while True:
            found = decode_record(data, pos)
            if found is None:
                break
            record, end = found
            out.append(Stored(record.seq, end - pos, not record.flags & FLAG_DELTA))
            pos = end
    return out


def read_back(spool_dir, frames):
    """Every record of the spool equals the snapshot the subscriber got;
    {"forward_ms": per record, reading all in order; "cold_ms": the worst
    rebuild of one record by a new History (the end of a keyframe cycle)}."""
    boot = frames[0].boot_id
    by_seq = {f.seq: f.snapshot for f in frames}
    with History(spool_dir, boot_id=boot, spool_fsync_interval_s=None) as history:
        started = time.perf_counter()
        records = history.range(boot_id=boot, limit=None)
        forward = (time.perf_counter() - started) / len(records)
    assert [r.seq for r in records] == sorted(by_seq)
    for record in records:
        assert decode_msgpack(record.payload) == by_seq[record.seq], record.seq
    cold = []
    newest = records[-1].seq
    for seq in sorted({min(DEFAULT_KEYFRAME_EVERY, newest), newest}):
        with History(spool_dir, boot_id=boot, spool_fsync_interval_s=None) as history:
            started = time.perf_counter()
            record = history.get(seq, boot)
            cold.append(time.perf_counter() - started)
        assert decode_msgpack(record.payload) == by_seq[seq]
    return {"forward_ms": forward * 1000, "cold_ms": max(cold) * 1000}


def full_frame_bytes(record):
    return len(encode_frame({"type": "snapshot", "boot_id": record.boot_id, "seq": record.seq,
                             "wall_ns": record.wall_ns, "snapshot": record.snapshot}))


def per_day(stored, interval_s=INTERVAL_S, keyframe_every=DEFAULT_KEYFRAME_EVERY):
    """Bytes of spool per day: one keyframe cycle, measured or projected."""
    sizes = [s.size for s in stored]
    if len(sizes) >= keyframe_every:
        cycle = sum(sizes[:keyframe_every])
    else:
        cycle = sizes[0] + (keyframe_every - 1) * statistics.mean(sizes[1:])
    return cycle / keyframe_every * (DAY_S / interval_s)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def show(rows):
    width = max(len(r[0]) for r in rows)
    sys.stdout.write("\n")
    for label, value in rows:
        sys.stdout.write("%-*s  %s\n" % (width, label, value))


def reads_row(run):
    return ("read back: ms per record forwards / worst cold rebuild",
            "%.2f / %.1f" % (run.reads["forward_ms"], run.reads["cold_ms"]))


@pytest.fixture(scope="module")
def system_run():
    return run_agent(SAMPLES, table_every=3600)


def test_system_counters_only(system_run):
    frames, stored = system_run.frames, system_run.stored
    assert [f.seq for f in frames] == list(range(1, SAMPLES + 1))
    full = full_frame_bytes(frames[0])
    deltas = [f.frame_bytes for f in frames[1:] if not f.full]
    keyframes = [s.size for s in stored if s.keyframe]
    between = [s.size for s in stored if not s.keyframe]
    day = per_day(stored)
    full_every = 60  # server.full_every's default
    wire_day = (full + (full_every - 1) * statistics.mean(deltas)) / full_every * DAY_S / INTERVAL_S
    show([
        ("samples (1 s apart)", len(frames)),
        ("full snapshot frame, bytes", full),
        ("delta frame, bytes: median / p95 / max", "%d / %d / %d" % (
            statistics.median(deltas), percentile(deltas, 95), max(deltas))),
        ("spool keyframe record, bytes", ", ".join(str(k) for k in keyframes)),
        ("spool delta record, bytes: mean / max", "%d / %d" % (statistics.mean(between), max(between))),
        ("spool per host per day, MB", "%.1f" % (day / 1e6)),
        ("subscription per host per day, MB", "%.1f" % (wire_day / 1e6)),
        ("history encoding (agent's info)", system_run.encoding),
        reads_row(system_run),
    ])
    # The max can catch a burst of network changes (links made by other tests).
    assert percentile(deltas, 95) <= DELTA_GOAL_BYTES
    assert day < DAY_GOAL_BYTES


def test_with_1000_extra_processes_and_tables():
    sys.path.insert(0, os.path.dirname(__file__))
    from procload import ProcessLoad

    samples = max(TABLE_SAMPLES, 2 * TABLE_EVERY + 1)
    with ProcessLoad(EXTRA_PROCESSES):
        run = run_agent(samples, table_every=TABLE_EVERY)
    frames, stored = run.frames, run.stored
    tables = [f for f in frames if f.snapshot.get("processes") is not None]
    assert len(tables) >= 2
    table_seqs = {f.seq for f in tables}
    processes = [len(f.snapshot["processes"]["processes"]) for f in tables]
    sockets = [(f.snapshot.get("sockets") or {}).get("tcp_total") for f in tables]
    last = tables[-1].snapshot
    section_bytes = {name: len(encode_msgpack(last.get(name))) for name in ("processes", "sockets")}
    table_deltas = [f.frame_bytes for f in tables[1:] if not f.full]
    # The first table record of each keyframe cycle carries its tables whole (a
    # delta frame's tables only refer to tables of the same cycle); the others
    # carry them as a change from the table before.
    first_in_cycle, later = [], []
    cycle_has_table = False
    for s in stored:
        if s.keyframe:
            cycle_has_table = False
        if s.seq in table_seqs:
            (later if cycle_has_table else first_in_cycle).append(s.size)
            cycle_has_table = True
    system_between = [s.size for s in stored if not s.keyframe and s.seq not in table_seqs]
    day = per_day(stored)
    show([
        ("samples (1 s apart), tables every %d" % TABLE_EVERY, len(frames)),
        ("processes in each table", ", ".join(str(n) for n in processes)),
        ("tcp sockets in each table", ", ".join(str(n) for n in sockets)),
        ("last table's sections (msgpack), bytes", ", ".join("%s %d" % kv for kv in section_bytes.items())),
        ("full frame with the process table, bytes", full_frame_bytes(tables[-1])),
        ("delta frame of a table record (from the previous table), bytes",
         ", ".join(str(d) for d in table_deltas)),
        ("spool keyframe record, bytes", ", ".join(str(s.size) for s in stored if s.keyframe)),
        ("spool first table record of a cycle (tables whole), bytes", ", ".join(str(n) for n in first_in_cycle)),
        ("spool later table records (delta frames), bytes: mean / max",
         "%d / %d" % (statistics.mean(later), max(later)) if later else "-"),
        ("spool system records between (delta frames), bytes: mean", "%d" % statistics.mean(system_between)),
        ("spool per host per day, tables every %d s, MB" % TABLE_EVERY, "%.1f" % (day / 1e6)),
        ("history encoding (agent's info)", run.encoding),
        reads_row(run),
    ])
    assert run.encoding["exact_fallbacks"] == 0
    if len(stored) >= DEFAULT_KEYFRAME_EVERY:
        assert day < DAY_GOAL_BYTES


CGROUPS = 200


class CgroupLoad:
    """``count`` cgroups ``/hd-bench-<random>/svc-NNN.service`` in every
    mounted hierarchy, one process of ``load`` in each (all controllers), as
    a host running that many services; removed at exit (the processes must
    be gone first: stop the load before)."""

    def __init__(self, count, pids):
        from hostdiag.sources.cgroups import CgroupTable
        from hostdiag.sources.hostroot import HostRoot
        from hostdiag.sources.problems import Problems

        self.bases = [h.base for h in CgroupTable(HostRoot()).probe(Problems())]
        self.top = "/hd-bench-%s" % os.urandom(5).hex()
        self.count = count
        self.pids = pids
        self.made = []

    def __enter__(self):
        try:
            for base in self.bases:
                os.mkdir(base + self.top)
                self.made.append(base + self.top)
                for i in range(self.count):
                    directory = "%s%s/svc-%03d.service" % (base, self.top, i)
                    os.mkdir(directory)
                    self.made.append(directory)
                    if i < len(self.pids):
                        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                            f.write(str(self.pids[i]))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for directory in reversed(self.made):
            deadline = time.monotonic() + 30
            while True:
                try:
                    os.rmdir(directory)
                    break
                except OSError:
                    # The processes moved in are still exiting.
                    assert time.monotonic() < deadline, directory
                    time.sleep(0.05)
        self.made = []


def _cgroup_run(extra_cgroups):
    sys.path.insert(0, os.path.dirname(__file__))
    from procload import ProcessLoad

    samples = max(TABLE_SAMPLES, 2 * TABLE_EVERY + 1)
    load = ProcessLoad(CGROUPS)
    load.start()
    try:
        with CgroupLoad(CGROUPS if extra_cgroups else 0, load.pids):
            try:
                return run_agent(samples, table_every=TABLE_EVERY)
            finally:
                # The cgroups can be removed once their processes are gone.
                load.stop()
    finally:
        load.stop()


def test_with_200_cgroups_and_tables():
    """The cost of the cgroups section: the agent with 200 more processes in
    200 cgroups of their own, against the same processes in the root cgroup."""
    rows = []
    days = {}
    for extra in (False, True):
        run = _cgroup_run(extra)
        tables = [f for f in run.frames if f.snapshot.get("processes") is not None]
        table_seqs = {f.seq for f in tables}
        last = tables[-1].snapshot
        counts = [len((f.snapshot.get("cgroups") or {}).get("cgroups") or ()) for f in tables]
        later = []
        cycle_has_table = False
        for s in run.stored:
            if s.keyframe:
                cycle_has_table = False
            if s.seq in table_seqs:
                if cycle_has_table:
                    later.append(s.size)
                cycle_has_table = True
        deltas = [f.frame_bytes for f in tables[1:] if not f.full]
        days[extra] = per_day(run.stored)
        label = "200 cgroups" if extra else "no extra cgroups"
        rows += [
            ("%s: cgroups in each table" % label, "%d - %d" % (min(counts), max(counts))),
            ("%s: the cgroups section (msgpack), bytes" % label, len(encode_msgpack(last.get("cgroups")))),
            ("%s: delta frame of a table record, bytes: median / max" % label,
             "%d / %d" % (statistics.median(deltas), max(deltas))),
            ("%s: spool later table records, bytes: mean / max" % label,
             "%d / %d" % (statistics.mean(later), max(later)) if later else "-"),
            ("%s: spool per host per day, MB" % label, "%.1f" % (days[extra] / 1e6)),
        ]
        assert run.encoding["exact_fallbacks"] == 0
    show(rows)
    assert days[True] < DAY_GOAL_BYTES
