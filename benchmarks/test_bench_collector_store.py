"""How many bytes the collector's SQLite store costs per host, beside the agent's spool
(see benchmarks/README.md, "Collector store (issue 13)").

One run of the real `diag agent` as test_bench_compactness.py runs it (1 s interval, a
spool in a temporary directory, a subscriber reading every frame) with 1,000 extra
sleeping processes and the process and socket tables every 5 samples. The records the
subscriber received are then stored, as the collector stores them (the snapshot's msgpack
bytes: apps/collector_pull.py), in a CollectorStore of their own, and read back: every
record must give the snapshot the agent served.

Bytes per host per day, both from one keyframe cycle (60 records) times 1,440:

* spool: the segment files' record sizes (header included), as test_bench_compactness.py;
* store, records: the stored (compressed) bytes of the records, as retention counts them;
* store, file: the growth of the database file over an empty store with the host in it,
  after a checkpoint (SQLite's rows, index entries and page slack included), per record.

``HOSTDIAG_BENCH_BASELINE_STORE=/path/to/an/older/store/sqlite.py`` also stores the same
records with that module's CollectorStore (one that imports the standard library only, as
the dictionary store before issue 13 did) and prints its figures beside ours.

Run: ``python -m pytest benchmarks/test_bench_collector_store.py -q -s``.
"""

import importlib.util
import os
import shutil
import sys
import tempfile

from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store import sqlite as store_module
from hostdiag.store.history import DEFAULT_KEYFRAME_EVERY

sys.path.insert(0, os.path.dirname(__file__))
from procload import ProcessLoad  # noqa: E402
from test_bench_compactness import (  # noqa: E402
    DAY_S, EXTRA_PROCESSES, INTERVAL_S, TABLE_EVERY, TABLE_SAMPLES, per_day, run_agent, show,
)

GOAL_RATIO = 1.2  # the store's bytes per day over the spool's, at most


def _file_bytes(store):
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(store.path)


def store_records(module, frames):
    """{"records_day", "file_day", "stored"}: the bytes per day of ``frames``
    stored with ``module``'s CollectorStore, after checking each reads back."""
    workdir = tempfile.mkdtemp(prefix="hd-bench-store-", dir="/tmp")
    try:
        with module.CollectorStore(workdir) as store:
            store.begin()
            store.set_host("bench")
            store.commit()
            empty = _file_bytes(store)
            store.begin()
            for frame in frames:
                assert store.add_record("bench", "agent", frame.boot_id, frame.seq, frame.wall_ns,
                                        encode_msgpack(frame.snapshot))
            store.commit()
            cycle = frames[:DEFAULT_KEYFRAME_EVERY]
            stored = [row[0] for row in store.db.execute(
                "SELECT stored_bytes FROM records ORDER BY seq LIMIT ?", (len(cycle),))]
            grown = _file_bytes(store) - empty
            read = {r.seq: decode_msgpack(r.payload) for r in store.range("bench", frames[0].boot_id)}
            assert sorted(read) == [f.seq for f in frames]
            for frame in frames:
                assert read[frame.seq] == frame.snapshot, frame.seq
            extra = 0
            if store.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'dictionaries'").fetchone():
                extra = store.db.execute("SELECT COALESCE(SUM(length(data)), 0) FROM dictionaries").fetchone()[0]
        per_record = DAY_S / INTERVAL_S / len(cycle)
        return {"records_day": (sum(stored) + extra * len(cycle) / len(frames)) * per_record,
                "file_day": grown / len(frames) * DAY_S / INTERVAL_S, "stored": stored}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def record_means(stored, table_seqs):
    """(first record's bytes, mean of the later table records, mean of the other later ones)."""
    tables = [size for seq, size in enumerate(stored, 1) if seq > 1 and seq in table_seqs]
    others = [size for seq, size in enumerate(stored, 1) if seq > 1 and seq not in table_seqs]
    return stored[0], sum(tables) / max(1, len(tables)), sum(others) / max(1, len(others))


def _baseline_module():
    path = os.environ.get("HOSTDIAG_BENCH_BASELINE_STORE")
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("baseline_collector_store", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_store_bytes_per_day_beside_the_spool():
    samples = max(TABLE_SAMPLES, 2 * TABLE_EVERY + 1)
    with ProcessLoad(EXTRA_PROCESSES):
        run = run_agent(samples, table_every=TABLE_EVERY)
    frames = run.frames
    spool_day = per_day(run.stored)
    ours = store_records(store_module, frames)
    table_seqs = {f.seq for f in frames if f.snapshot.get("processes") is not None}
    rows = [
        ("samples (1 s apart), tables every %d; processes in the last table" % TABLE_EVERY,
         "%d; %d" % (len(frames), len(frames[max(table_seqs) - 1].snapshot["processes"]["processes"]))),
        ("spool per host per day, MB", "%.1f" % (spool_day / 1e6)),
        ("store per host per day, records / file, MB",
         "%.1f / %.1f" % (ours["records_day"] / 1e6, ours["file_day"] / 1e6)),
        ("store record bytes: first (keyframe); table records, mean; others, mean",
         "%d; %d; %d" % record_means(ours["stored"], table_seqs)),
        ("store / spool, records; file", "%.2f; %.2f" % (ours["records_day"] / spool_day,
                                                           ours["file_day"] / spool_day)),
    ]
    baseline = _baseline_module()
    if baseline is not None:
        old = store_records(baseline, frames)
        rows.append(("baseline store per host per day, records / file, MB",
                     "%.1f / %.1f" % (old["records_day"] / 1e6, old["file_day"] / 1e6)))
        rows.append(("baseline store record bytes: first; table records, mean; others, mean",
                     "%d; %d; %d" % record_means(old["stored"], table_seqs)))
    show(rows)
    if len(frames) >= DEFAULT_KEYFRAME_EVERY:
        assert ours["file_day"] <= GOAL_RATIO * spool_day
