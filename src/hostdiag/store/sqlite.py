"""The collector's store: raw snapshots of many hosts in one SQLite database.

One file, ``<store dir>/collector.sqlite3``, in WAL mode: one writer (the
collector) and any number of readers (``diag show``, ``diff``, ``history``,
``collector --status``) at the same time, each reader seeing whole
transactions only. docs/collector.md says why SQLite and not segment files.

A record is keyed by (host, agent_id, boot_id, seq) and unique on it: a
record received twice is stored once (``add_records`` counts the duplicate).
``wall_ns`` is indexed per host for "the record at or before TIME".

Payloads are stored as the agent's history stores them (store/history.py):
every :data:`KEYFRAME_EVERY` records of a boot, and whenever the record
before it is not the one this writer stored last (a collector restart, a gap
the agent reported, a record that arrives out of order), a *keyframe*: the
msgpack bytes zlib-compressed alone. Between keyframes a *delta frame*: the
change from the record before it (encode/delta.py), zlib-compressed. So a
delta frame's chain is consecutive seqs of one boot back to a keyframe, with
no missing record in it: a chain is never built across a gap. Before a delta
frame is stored it is applied to its base and encoded again; a record it
would not give back byte for byte is stored as a keyframe (unless it is the
very delta the record was built from, on this chain's tip: ``add_record``'s
``change``). Each record
carries the CRC-32 of its uncompressed payload, checked on every read: a
damaged record, or one whose chain is, is skipped and counted, never
returned wrong.

Each record's findings (store/findings_rows.py), the record's own when it
carries them (the agent judged them), else evaluated as it is stored against
the records before it (findings/stream.py), are rows of the
``findings`` table, so that ``diag fleet`` answers from this store too
(store/fleet_sqlite.py); they go with their records at retention.

Retention (per host): :attr:`max_host_bytes` bounds the stored bytes of a
host's stored records, :attr:`max_host_age_s` their age measured against
that host's newest record (a host that died keeps its last days for the
post-mortem). Whole chains go, oldest first (a keyframe and its delta
frames), so that no record outlives its keyframe; a pass that trims for
size trims to :data:`TRIM_TO` of the limit so that it does not run at every
insert.

Units: bytes, nanoseconds since the epoch (wall_ns), seconds (ages).
"""

import fcntl
import json
import os
import sqlite3
import time
import urllib.parse
import zlib
from collections import namedtuple

from hostdiag.encode.delta import (
    apply, delta, document_of, key_order_fixes, next_prior, prior_keys, with_key_order,
)
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.findings.stream import TABLES_LOOKBACK, FindingsStream
from hostdiag.store.findings_rows import finding_rows

DB_NAME = "collector.sqlite3"
LOCK_NAME = "lock"
SCHEMA_VERSION = 2

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_MAX_HOST_BYTES = 1 * GiB
DEFAULT_MAX_HOST_AGE_S = 30 * 86400.0
TRIM_TO = 0.98

KEYFRAME_EVERY = 60  # as the agent's history (store/history.py DEFAULT_KEYFRAME_EVERY)
COMPRESS_LEVEL = 6
MAX_PAYLOAD_BYTES = 64 * MiB
# Incident bundles kept per host; the oldest (by start) are deleted beyond it.
MAX_INCIDENTS_PER_HOST = 1000

CODEC_ZLIB = 1        # a keyframe: the payload, zlib-compressed
CODEC_ZLIB_DELTA = 3  # a delta frame on record seq - 1 of the same boot, zlib-compressed

# What building or applying a delta raises on a document it cannot handle
# (mixed key types, nesting deeper than the interpreter allows).
_DELTA_ERRORS = (ValueError, TypeError, KeyError, IndexError, RecursionError)
_BUSY_TIMEOUT_MS = 10000
_DELETE_STEP = 500

StoredRecord = namedtuple("StoredRecord", "host agent_id boot_id seq wall_ns payload")
StoredRecord.__doc__ = """A record read back: ``payload`` is the uncompressed msgpack bytes."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    host_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,          -- the agent's name in collector.agents
    address TEXT,
    hostname TEXT,                      -- from the agent's info, when it said
    stored_bytes INTEGER NOT NULL DEFAULT 0,  -- of its records, for retention
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS boots (
    boot_key INTEGER PRIMARY KEY,
    host_id INTEGER NOT NULL REFERENCES hosts(host_id),
    agent_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    UNIQUE (host_id, agent_id, boot_id)
);
CREATE TABLE IF NOT EXISTS records (
    boot_key INTEGER NOT NULL REFERENCES boots(boot_key),
    seq INTEGER NOT NULL,
    host_id INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,
    codec INTEGER NOT NULL,             -- CODEC_ZLIB: a keyframe; CODEC_ZLIB_DELTA: on seq - 1
    crc32 INTEGER NOT NULL,             -- of the uncompressed payload
    raw_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (boot_key, seq)
);
CREATE INDEX IF NOT EXISTS records_by_time ON records (host_id, wall_ns);
CREATE INDEX IF NOT EXISTS keyframes_by_time ON records (host_id, wall_ns) WHERE codec = 1;
CREATE TABLE IF NOT EXISTS gaps (
    boot_key INTEGER NOT NULL REFERENCES boots(boot_key),
    from_seq INTEGER NOT NULL,
    to_seq INTEGER,                     -- NULL: the rest of that boot
    host_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    noted_ns INTEGER NOT NULL,
    PRIMARY KEY (boot_key, from_seq)
);
CREATE TABLE IF NOT EXISTS findings (
    boot_key INTEGER NOT NULL REFERENCES boots(boot_key),
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL,                 -- its place in the record's findings, crit first
    host_id INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,           -- the record's
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,             -- crit or warn
    cause TEXT,                         -- the rule a symptom is folded under; NULL for a finding of its own
    subject TEXT,
    title TEXT NOT NULL,
    threshold TEXT NOT NULL,
    evidence TEXT NOT NULL,             -- JSON {name: number}
    culprit_kind TEXT,
    culprit_pid INTEGER,
    culprit_comm TEXT,
    culprit_workload TEXT,
    PRIMARY KEY (boot_key, seq, n)
);
CREATE INDEX IF NOT EXISTS findings_by_time ON findings (wall_ns);
CREATE INDEX IF NOT EXISTS findings_by_host ON findings (host_id, wall_ns);
CREATE TABLE IF NOT EXISTS incidents (
    host_id INTEGER NOT NULL REFERENCES hosts(host_id),
    id TEXT NOT NULL,                   -- the agent's incident id
    start_ns INTEGER,
    end_ns INTEGER,                     -- NULL while the incident is open
    title TEXT,
    severity TEXT,
    summary TEXT NOT NULL,              -- JSON: the bundle's header (store/incidents.py)
    bundle BLOB NOT NULL,               -- the bundle's bytes, as the agent keeps them
    stored_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id, id)
);
CREATE TABLE IF NOT EXISTS status (
    host_id INTEGER PRIMARY KEY REFERENCES hosts(host_id),
    updated_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL                -- JSON: see service.AgentStatus
);
"""


# Columns added to a table after its first release: (table, column, type).
_ADDED_COLUMNS = (("findings", "cause", "TEXT"),)


class StoreError(Exception):
    """The store cannot be opened or used; ``str()`` is one line."""


class StoreLocked(StoreError):
    """Another collector writes this store."""


def database_path(directory):
    return os.path.join(os.fspath(directory), DB_NAME)


def _readonly_uri(path):
    return "file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(path))


class CollectorStore:
    """The store in ``directory``. ``readonly``: for readers, no lock, no writes.
    ``findings``: evaluate and keep each record's findings.

    A writer holds ``<directory>/lock`` (flock) for its lifetime: one
    collector per store. Not thread-safe: one connection used by one thread
    at a time; other threads open stores of their own (readers) on the same
    directory.
    """

    def __init__(self, directory, readonly=False, max_host_bytes=DEFAULT_MAX_HOST_BYTES,
                 max_host_age_s=DEFAULT_MAX_HOST_AGE_S, clock=time.time_ns, findings=True):
        self.directory = os.fspath(directory)
        self.path = database_path(self.directory)
        self.readonly = readonly
        self.max_host_bytes = int(max_host_bytes)
        self.max_host_age_s = float(max_host_age_s)
        self._clock = clock
        self._lock_fd = None
        self._tips = {}  # boot_key -> _Tip of the record this writer stored last in that boot
        self._cursor = None  # _Tip of the record the last read rebuilt (the next one's base)
        self._host_ids = {}
        self._boot_keys = {}
        self._findings = FindingsStream() if findings else None
        self.corrupt_skipped = 0
        if readonly:
            if not os.path.exists(self.path):
                raise StoreError("no collector store in %s (no %s)" % (self.directory, DB_NAME))
            try:
                self.db = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=_BUSY_TIMEOUT_MS / 1000)
                self.db.execute("PRAGMA query_only = 1")
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise StoreError("cannot read the collector store %s: %s" % (self.path, exc)) from None
            if version != SCHEMA_VERSION:
                self.db.close()
                raise StoreError(_version_error(self.path, version))
            return
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the collector store %s: %s"
                             % (self.directory, exc.strerror or exc)) from None
        self._acquire_lock()
        try:
            if not os.path.exists(self.path):
                self._create_new()
            # One thread at a time, not necessarily the one that opened it (the
            # collector opens the store, then hands it to its writer thread).
            self.db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                      check_same_thread=False)
            self._create()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError("cannot open the collector store %s: %s" % (self.path, exc)) from None
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------

    def _acquire_lock(self):
        path = os.path.join(self.directory, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StoreError("cannot open %s: %s" % (path, exc.strerror or exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked("another collector is writing the store %s" % self.directory) from None
        self._lock_fd = fd

    def _create_new(self):
        """Make the database under a temporary name and rename it into place,
        so that a reader never finds a half-made store."""
        tmp = self.path + ".new"
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(tmp + suffix)
            except FileNotFoundError:
                pass
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            self.db = db
            self._create()
        finally:
            self.db = None
            db.close()
        os.replace(tmp, self.path)

    def _create(self):
        db = self.db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(_version_error(self.path, version))
        # auto_vacuum must be chosen before the first table exists.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError("%s: WAL journal mode unavailable (got %s)" % (self.path, mode))
        # NORMAL in WAL: a crash of the process loses nothing committed; a power
        # loss may lose the last transactions, which the agents still hold and
        # the collector fetches again on start.
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript("BEGIN;" + _SCHEMA + "PRAGMA user_version = %d; COMMIT;" % SCHEMA_VERSION)
        # A column added to a table after a store was made with it.
        for table, column, kind in _ADDED_COLUMNS:
            if column not in {row[1] for row in db.execute("PRAGMA table_info(%s)" % table)}:
                db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, kind))

    def close(self):
        db = getattr(self, "db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
            self.db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- identity -------------------------------------------------------------

    def host_id(self, name, create=False, address=None):
        """The id of host ``name`` (None when unknown and not ``create``)."""
        found = self._host_ids.get(name)
        if found is not None:
            return found
        row = self.db.execute("SELECT host_id FROM hosts WHERE name = ?", (name,)).fetchone()
        if row is None:
            if not create:
                return None
            cursor = self.db.execute("INSERT INTO hosts (name, address, created_ns) VALUES (?, ?, ?)",
                                     (name, address, self._clock()))
            row = (cursor.lastrowid,)
        self._host_ids[name] = row[0]
        return row[0]

    def set_host(self, name, address=None, hostname=None):
        """Note a host's address and hostname (creating the host)."""
        host = self.host_id(name, create=True, address=address)
        self.db.execute("UPDATE hosts SET address = COALESCE(?, address), hostname = COALESCE(?, hostname) "
                        "WHERE host_id = ?", (address, hostname, host))
        return host

    def _boot_key(self, host, agent_id, boot_id, create=True):
        key = (host, agent_id, boot_id)
        found = self._boot_keys.get(key)
        if found is not None:
            return found
        row = self.db.execute("SELECT boot_key FROM boots WHERE host_id = ? AND agent_id = ? AND boot_id = ?",
                              key).fetchone()
        if row is None:
            if not create:
                return None
            row = (self.db.execute("INSERT INTO boots (host_id, agent_id, boot_id) VALUES (?, ?, ?)",
                                   key).lastrowid,)
        self._boot_keys[key] = row[0]
        return row[0]

    def resolve_host(self, wanted):
        """The host name for ``wanted``: a name, a hostname or an agent id
        (raises StoreError naming the choices when none or several match)."""
        rows = self.db.execute(
            "SELECT DISTINCT h.name FROM hosts h LEFT JOIN boots b ON b.host_id = h.host_id "
            "WHERE h.name = ? OR h.hostname = ? OR b.agent_id = ?", (wanted, wanted, wanted)).fetchall()
        names = sorted({r[0] for r in rows})
        exact = [n for n in names if n == wanted]
        if exact:
            return exact[0]
        if len(names) == 1:
            return names[0]
        known = [h["name"] for h in self.hosts()]
        if not names:
            raise StoreError("no host %r in the store %s (it has: %s)"
                             % (wanted, self.directory, ", ".join(known) or "none"))
        raise StoreError("%r matches several hosts: %s" % (wanted, ", ".join(names)))

    # -- writing --------------------------------------------------------------

    def begin(self):
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self):
        self.db.execute("COMMIT")

    def rollback(self):
        if self.db is not None and self.db.in_transaction:
            self.db.execute("ROLLBACK")
            # The chain tips may name rows that were rolled back.
            self._tips.clear()
            self._host_ids.clear()
            self._boot_keys.clear()
            if self._findings is not None:
                self._findings.clear()

    def add_record(self, host_name, agent_id, boot_id, seq, wall_ns, payload, doc=None, change=None):
        """Store one record (``payload``: msgpack bytes) inside the caller's
        transaction; True when stored, False when it was already there.

        ``doc``: the map ``payload`` was encoded from, when the caller has it
        (the collector's puller does): kept as the next delta frame's base
        instead of decoding ``payload`` again (the largest cost of a table
        record). As for History.append: it holds only what msgpack decodes to,
        and nobody changes it afterwards. A delta frame is still checked
        against ``payload`` byte for byte, and a keyframe's ``doc`` is
        checked by encoding it (cheaper than decoding), so that a ``doc``
        that does not match costs a keyframe, never a wrong record or a
        wrong base for the next one.

        ``change``: how ``doc`` was built (a store.history.StoredChange: ``doc``
        is ``apply(change.change, change.base, change.prior)``, as a
        subscription builds a record from a delta frame). When its base is the
        very document this store's chain ends with (record ``seq - 1``) and its
        prior values are the chain's, it is stored as the delta frame as is:
        computing it again and checking it (the largest cost of a record
        that is not decoded) is skipped. The CRC-32 of ``payload`` is still
        checked on every read."""
        payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("a payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD_BYTES))
        host = self.host_id(host_name, create=True)
        boot_key = self._boot_key(host, agent_id, boot_id)
        exists = self.db.execute("SELECT 1 FROM records WHERE boot_key = ? AND seq = ?", (boot_key, seq)).fetchone()
        if exists is not None:
            return False
        given = type(doc) is dict
        if not given:
            doc = document_of(payload)
        tip = self._tips.get(boot_key)
        stored = None
        if (tip is not None and tip.seq == seq - 1 and tip.doc is not None and doc is not None
                and tip.chain_length < KEYFRAME_EVERY):
            stored = _reused_frame(tip, change) if given else None
            if stored is None:
                stored = _delta_frame(tip, doc, payload)
        if stored is None:
            if given and encode_msgpack(doc) != payload:
                doc = document_of(payload)  # a chain's base must be what its keyframe holds
            codec, stored, chain_length, prior = CODEC_ZLIB, zlib.compress(payload, COMPRESS_LEVEL), 1, {}
        else:
            codec, chain_length, prior = CODEC_ZLIB_DELTA, tip.chain_length + 1, tip.prior
        if tip is None or seq > tip.seq:  # a late record does not end the newest chain
            self._tips[boot_key] = _Tip(boot_key, seq, doc, next_prior(prior, doc), chain_length)
        self.db.execute(
            "INSERT INTO records (boot_key, seq, host_id, wall_ns, codec, crc32, raw_bytes, stored_bytes, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (boot_key, seq, host, wall_ns, codec, zlib.crc32(payload), len(payload), len(stored), stored))
        self.db.execute("UPDATE hosts SET stored_bytes = stored_bytes + ? WHERE host_id = ?", (len(stored), host))
        if doc is not None and self._findings is not None:
            self._add_findings(host_name, agent_id, boot_id, seq, wall_ns, doc, host, boot_key)
        return True

    def _add_findings(self, host_name, agent_id, boot_id, seq, wall_ns, doc, host, boot_key):
        evaluated = self._findings.evaluate(host_name, agent_id, boot_id, seq, doc,
                                            lambda boot, before: self._bases(host_name, agent_id, boot, before))
        if evaluated is None:
            return
        self.db.executemany(
            "INSERT OR REPLACE INTO findings (boot_key, seq, n, host_id, wall_ns, rule, severity, cause, subject, "
            "title, threshold, evidence, culprit_kind, culprit_pid, culprit_comm, culprit_workload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(boot_key, seq, r["n"], host, wall_ns, r["rule"], r["severity"], r["cause"], r["subject"], r["title"],
              r["threshold"], json.dumps(r["evidence"], sort_keys=True), r["culprit_kind"], r["culprit_pid"],
              r["culprit_comm"], r["culprit_workload"])
             for r in finding_rows(evaluated.findings, evaluated.snapshot)])

    def _bases(self, host_name, agent_id, boot_id, seq):
        """The documents FindingsStream asks for when it lacks a base: record
        seq - 1, and (seq, document) of the newest record with tables within
        TABLES_LOOKBACK seqs before ``seq``."""
        previous = tables = None
        for record in self.range(host_name, boot_id, max(1, seq - TABLES_LOOKBACK), seq - 1, agent_id):
            doc = document_of(record.payload)
            if doc is None:
                continue
            if record.seq == seq - 1:
                previous = doc
            if doc.get("processes") is not None or doc.get("sockets") is not None:
                tables = (record.seq, doc)
        return previous, tables

    def add_gap(self, host_name, agent_id, boot_id, from_seq, to_seq, reason):
        """Note that the agent no longer has ``from_seq..to_seq`` (inclusive;
        ``to_seq`` None: the rest of that boot). A gap noted again is merged."""
        host = self.host_id(host_name, create=True)
        boot_key = self._boot_key(host, agent_id, boot_id)
        self.db.execute(
            "INSERT INTO gaps (boot_key, from_seq, to_seq, host_id, reason, noted_ns) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (boot_key, from_seq) DO UPDATE SET "
            "to_seq = CASE WHEN excluded.to_seq IS NULL OR gaps.to_seq IS NULL THEN NULL "
            "ELSE MAX(gaps.to_seq, excluded.to_seq) END, reason = excluded.reason, noted_ns = excluded.noted_ns",
            (boot_key, from_seq, to_seq, host, reason, self._clock()))

    def add_incident(self, host_name, summary, bundle):
        """Store (or replace) an incident's bundle; ``summary`` is its header."""
        host = self.host_id(host_name, create=True)
        self.db.execute(
            "INSERT OR REPLACE INTO incidents (host_id, id, start_ns, end_ns, title, severity, summary, bundle, "
            "stored_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (host, summary["id"], summary.get("start_ns"), summary.get("end_ns"), summary.get("title"),
             summary.get("severity"), json.dumps(summary, sort_keys=True), bundle, self._clock()))
        self.db.execute(
            "DELETE FROM incidents WHERE host_id = ? AND id NOT IN (SELECT id FROM incidents WHERE host_id = ? "
            "ORDER BY start_ns DESC LIMIT ?)", (host, host, MAX_INCIDENTS_PER_HOST))

    def incidents(self, host_name=None):
        """The incident summaries (each with ``host``), newest start first; of one host when named."""
        sql = ("SELECT hosts.name, incidents.summary FROM incidents JOIN hosts USING (host_id)%s "
               "ORDER BY incidents.start_ns DESC" % (" WHERE hosts.name = ?" if host_name else ""))
        try:
            rows = self.db.execute(sql, (host_name,) if host_name else ()).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store no collector of this version has written yet
                return []
            raise
        return [dict(json.loads(summary), host=name) for name, summary in rows]

    def incident_bundle(self, host_name, incident_id):
        """[(host, the bundle's bytes)] of the incident ``incident_id`` (of one host when named)."""
        sql = ("SELECT hosts.name, incidents.bundle FROM incidents JOIN hosts USING (host_id) "
               "WHERE incidents.id = ?%s" % (" AND hosts.name = ?" if host_name else ""))
        try:
            rows = self.db.execute(sql, (incident_id, host_name) if host_name else (incident_id,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [(name, bytes(bundle)) for name, bundle in rows]

    def write_status(self, host_name, state, detail):
        host = self.host_id(host_name, create=True)
        self.db.execute(
            "INSERT INTO status (host_id, updated_ns, state, detail) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (host_id) DO UPDATE SET updated_ns = excluded.updated_ns, state = excluded.state, "
            "detail = excluded.detail",
            (host, self._clock(), state, json.dumps(detail, sort_keys=True, default=str)))

    def enforce_retention(self, host_name):
        """Delete a host's oldest records beyond the age and size limits (inside
        the caller's transaction); the number of records deleted."""
        host = self.host_id(host_name)
        if host is None:
            return 0
        deleted = 0
        newest = self.db.execute("SELECT MAX(wall_ns) FROM records WHERE host_id = ?", (host,)).fetchone()[0]
        if newest is not None:
            cutoff = newest - int(self.max_host_age_s * 1e9)
            while True:
                chain = self._oldest_chain(host)
                if chain is None or max(r[2] for r in chain) >= cutoff:
                    break
                deleted += self._delete(host, chain)
        stored = self._stored_bytes(host)
        if stored > self.max_host_bytes:
            target = int(self.max_host_bytes * TRIM_TO)
            while stored > target:
                chain = self._oldest_chain(host)
                if chain is None:
                    break
                deleted += self._delete(host, chain)
                stored = self._stored_bytes(host)
        if deleted:
            # A record's findings go with it.
            self.db.execute(
                "DELETE FROM findings WHERE host_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM records r WHERE r.boot_key = findings.boot_key AND r.seq = findings.seq)", (host,))
            # Gaps before what is kept are history of history: aged out too.
            self.db.execute(
                "DELETE FROM gaps WHERE host_id = ? AND (to_seq IS NOT NULL AND to_seq < "
                "COALESCE((SELECT MIN(seq) FROM records r WHERE r.boot_key = gaps.boot_key), to_seq + 1))",
                (host,))
            self.db.execute(
                "DELETE FROM gaps WHERE host_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM records r WHERE r.boot_key = gaps.boot_key)", (host,))
        return deleted

    def _stored_bytes(self, host):
        return self.db.execute("SELECT stored_bytes FROM hosts WHERE host_id = ?", (host,)).fetchone()[0]

    def _oldest_chain(self, host):
        """[(rowid, stored_bytes, wall_ns)] of a host's oldest chain: its oldest
        keyframe and the delta frames that follow it; None when it has none."""
        head = self.db.execute(
            "SELECT boot_key, seq FROM records WHERE host_id = ? AND codec = ? ORDER BY wall_ns, seq LIMIT 1",
            (host, CODEC_ZLIB)).fetchone()
        if head is None:
            return None
        boot_key, seq = head
        following = self.db.execute(
            "SELECT MIN(seq) FROM records WHERE boot_key = ? AND seq > ? AND codec = ?",
            (boot_key, seq, CODEC_ZLIB)).fetchone()[0]
        sql = "SELECT rowid, stored_bytes, wall_ns FROM records WHERE boot_key = ? AND seq >= ?"
        params = [boot_key, seq]
        if following is not None:
            sql += " AND seq < ?"
            params.append(following)
        return self.db.execute(sql, params).fetchall()

    def _delete(self, host, rows):
        freed = sum(r[1] for r in rows)
        self.db.executemany("DELETE FROM records WHERE rowid = ?", [(r[0],) for r in rows])
        # A tip whose record went can no longer be a base: the next record is a keyframe.
        self._tips.clear()
        self.db.execute("UPDATE hosts SET stored_bytes = MAX(0, stored_bytes - ?) WHERE host_id = ?", (freed, host))
        return len(rows)

    # -- reading --------------------------------------------------------------

    def _entry(self, boot_key, seq):
        return self.db.execute("SELECT codec, crc32, payload FROM records WHERE boot_key = ? AND seq = ?",
                               (boot_key, seq)).fetchone()

    def _state(self, boot_key, seq):
        """The _Tip of record ``seq`` of a boot, rebuilt from the last record
        read or from its keyframe (at most KEYFRAME_EVERY - 1 delta frames);
        None when a record of its chain is missing or bad."""
        chain = []
        state = None
        while True:
            cursor = self._cursor
            if cursor is not None and cursor.boot_key == boot_key and cursor.seq == seq:
                state = cursor
                break
            entry = self._entry(boot_key, seq)
            if entry is None or len(chain) >= KEYFRAME_EVERY:
                return None
            chain.append((seq,) + tuple(entry))
            if entry[0] != CODEC_ZLIB_DELTA:
                break
            seq -= 1
        for seq, codec, crc, stored in reversed(chain):
            state = _step(boot_key, seq, state, codec, crc, stored)[0]
            if state is None:
                return None
        return state

    def _decode(self, boot_key, seq, codec, crc, stored):
        """The payload of a record (its chain rebuilt as needed), or None."""
        base = self._state(boot_key, seq - 1) if codec == CODEC_ZLIB_DELTA else None
        state, payload = _step(boot_key, seq, base, codec, crc, stored)
        if state is None:
            return None
        self._cursor = state
        return payload

    _RECORD_COLUMNS = ("h.name, b.agent_id, b.boot_id, r.boot_key, r.seq, r.wall_ns, r.codec, r.crc32, r.payload "
                       "FROM records r JOIN boots b ON b.boot_key = r.boot_key JOIN hosts h ON h.host_id = r.host_id ")

    def _records(self, sql, params):
        for name, agent_id, boot_id, boot_key, seq, wall_ns, codec, crc, stored in self.db.execute(
                "SELECT " + self._RECORD_COLUMNS + sql, params):
            payload = self._decode(boot_key, seq, codec, crc, stored)
            if payload is None:
                self.corrupt_skipped += 1
                continue
            yield StoredRecord(name, agent_id, boot_id, seq, wall_ns, payload)

    def get(self, host_name, boot_id, seq, agent_id=None):
        """Record ``seq`` of ``boot_id`` of a host, or None."""
        sql = "WHERE h.name = ? AND b.boot_id = ? AND r.seq = ?"
        params = [host_name, boot_id, seq]
        if agent_id is not None:
            sql += " AND b.agent_id = ?"
            params.append(agent_id)
        return next(self._records(sql + " ORDER BY b.boot_key DESC LIMIT 1", params), None)

    def at_or_before(self, host_name, wall_ns, boot_id=None, before_seq=None):
        """The newest readable record of a host with wall_ns <= ``wall_ns``
        (within ``boot_id``, and below ``before_seq``, when given), or None."""
        sql = "WHERE h.name = ? AND r.wall_ns <= ?"
        params = [host_name, wall_ns]
        if boot_id is not None:
            sql += " AND b.boot_id = ?"
            params.append(boot_id)
        if before_seq is not None:
            sql += " AND r.seq < ?"
            params.append(before_seq)
        return next(self._records(sql + " ORDER BY r.wall_ns DESC, r.seq DESC LIMIT 8", params), None)

    def range(self, host_name, boot_id, from_seq=None, to_seq=None, agent_id=None):
        """Readable records of one boot of a host, seq ascending."""
        sql = "WHERE h.name = ? AND b.boot_id = ?"
        params = [host_name, boot_id]
        if agent_id is not None:
            sql += " AND b.agent_id = ?"
            params.append(agent_id)
        if from_seq is not None:
            sql += " AND r.seq >= ?"
            params.append(from_seq)
        if to_seq is not None:
            sql += " AND r.seq <= ?"
            params.append(to_seq)
        return self._records(sql + " ORDER BY r.seq", params)

    def seqs(self, host_name, boot_id, agent_id=None):
        """Every seq kept for one boot of a host, ascending (no payloads read)."""
        sql = ("SELECT r.seq FROM records r JOIN boots b ON b.boot_key = r.boot_key "
               "JOIN hosts h ON h.host_id = r.host_id WHERE h.name = ? AND b.boot_id = ?")
        params = [host_name, boot_id]
        if agent_id is not None:
            sql += " AND b.agent_id = ?"
            params.append(agent_id)
        return [row[0] for row in self.db.execute(sql + " ORDER BY r.seq", params)]

    def hosts(self):
        """[{"name", "address", "hostname", "stored_bytes", "records"}], by name."""
        rows = self.db.execute(
            "SELECT h.name, h.address, h.hostname, h.stored_bytes, "
            "(SELECT COUNT(*) FROM records r WHERE r.host_id = h.host_id) FROM hosts h ORDER BY h.name").fetchall()
        return [{"name": r[0], "address": r[1], "hostname": r[2], "stored_bytes": r[3], "records": r[4]}
                for r in rows]

    def boots(self, host_name):
        """What is kept per boot of a host, oldest first: [{"agent_id",
        "boot_id", "first_seq", "last_seq", "first_wall_ns", "last_wall_ns",
        "records", "raw_bytes", "stored_bytes"}]."""
        rows = self.db.execute(
            "SELECT b.agent_id, b.boot_id, MIN(r.seq), MAX(r.seq), MIN(r.wall_ns), MAX(r.wall_ns), COUNT(*), "
            "SUM(r.raw_bytes), SUM(r.stored_bytes) FROM records r JOIN boots b ON b.boot_key = r.boot_key "
            "JOIN hosts h ON h.host_id = r.host_id WHERE h.name = ? GROUP BY r.boot_key ORDER BY MIN(r.wall_ns)",
            (host_name,)).fetchall()
        keys = ("agent_id", "boot_id", "first_seq", "last_seq", "first_wall_ns", "last_wall_ns", "records",
                "raw_bytes", "stored_bytes")
        return [dict(zip(keys, row)) for row in rows]

    def newest(self, host_name, agent_id=None):
        """{boot_id: newest seq} of a host (of one agent), and the newest
        record's (boot_id, seq, wall_ns) or None."""
        sql = ("SELECT b.boot_id, MAX(r.seq), MAX(r.wall_ns) FROM records r JOIN boots b ON b.boot_key = r.boot_key "
               "JOIN hosts h ON h.host_id = r.host_id WHERE h.name = ?")
        params = [host_name]
        if agent_id is not None:
            sql += " AND b.agent_id = ?"
            params.append(agent_id)
        rows = self.db.execute(sql + " GROUP BY r.boot_key", params).fetchall()
        per_boot = {boot: seq for boot, seq, _ in rows}
        last = None
        for boot, seq, wall in rows:
            if last is None or wall > last[2]:
                last = (boot, seq, wall)
        return per_boot, last

    def resume_points(self, host_name, agent_id):
        """Where a collector resumes one agent: ``(accounted, closed, last)``.

        ``accounted`` is {boot_id: the highest seq of that boot the store
        accounts for, kept or noted gone}; ``closed`` the boots noted gone to
        their end; ``last`` the newest record's (boot_id, seq, wall_ns) or None.
        """
        accounted, last = self.newest(host_name, agent_id)
        closed = set()
        for boot_id, from_seq, to_seq in self.db.execute(
                "SELECT b.boot_id, g.from_seq, g.to_seq FROM gaps g JOIN boots b ON b.boot_key = g.boot_key "
                "JOIN hosts h ON h.host_id = g.host_id WHERE h.name = ? AND b.agent_id = ?",
                (host_name, agent_id)):
            if to_seq is None:
                closed.add(boot_id)
                to_seq = from_seq - 1
            if to_seq > accounted.get(boot_id, 0):
                accounted[boot_id] = to_seq
        return accounted, closed, last

    def gaps(self, host_name):
        """Missing seq ranges of a host's kept history, oldest first:
        [{"agent_id", "boot_id", "from_seq", "to_seq", "reason", "noted_ns"}].

        The ranges the agent said were gone, and any hole between kept records
        that no such note explains (reason "missing"; never expected). Records
        before a boot's oldest kept one are not listed unless the agent said so.
        """
        host = self.host_id(host_name)
        if host is None:
            return []
        noted = self.db.execute(
            "SELECT b.agent_id, b.boot_id, g.from_seq, g.to_seq, g.reason, g.noted_ns, g.boot_key FROM gaps g "
            "JOIN boots b ON b.boot_key = g.boot_key WHERE g.host_id = ? ORDER BY g.noted_ns, g.from_seq",
            (host,)).fetchall()
        holes = self.db.execute(
            "SELECT b.agent_id, b.boot_id, prev + 1, seq - 1, w.boot_key FROM ("
            " SELECT boot_key, seq, LAG(seq) OVER (PARTITION BY boot_key ORDER BY seq) AS prev"
            " FROM records WHERE host_id = ?) w JOIN boots b ON b.boot_key = w.boot_key "
            "WHERE w.seq > w.prev + 1", (host,)).fetchall()
        out = [{"agent_id": a, "boot_id": b, "from_seq": f, "to_seq": t, "reason": reason, "noted_ns": n,
                "_key": key} for a, b, f, t, reason, n, key in noted]
        for agent_id, boot_id, start, end, key in holes:
            covered = [g for g in out if g["_key"] == key and g["from_seq"] <= start
                       and (g["to_seq"] is None or g["to_seq"] >= end)]
            if not covered:
                out.append({"agent_id": agent_id, "boot_id": boot_id, "from_seq": start, "to_seq": end,
                            "reason": "missing", "noted_ns": None, "_key": key})
        for gap in out:
            del gap["_key"]
        return out

    def status(self):
        """[{"name", "state", "updated_ns", **detail}] of every host with a status row."""
        rows = self.db.execute(
            "SELECT h.name, s.state, s.updated_ns, s.detail FROM status s JOIN hosts h ON h.host_id = s.host_id "
            "ORDER BY h.name").fetchall()
        out = []
        for name, state, updated, detail in rows:
            try:
                extra = json.loads(detail)
            except ValueError:
                extra = {}
            out.append(dict(extra, name=name, state=state, updated_ns=updated))
        return out

    def stats(self):
        """Size of the database files in bytes, and records kept."""
        size = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                size += os.stat(self.path + suffix).st_size
            except FileNotFoundError:
                pass
        records = self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return {"file_bytes": size, "records": records, "corrupt_skipped": self.corrupt_skipped}


_Tip = namedtuple("_Tip", "boot_key seq doc prior chain_length")
_Tip.__doc__ = """A record decoded, as the base of the delta frame after it: ``doc`` its
document (None when the payload is not a msgpack map: then it is a base for
nothing), ``prior`` the newest non-null value of each top-level key in its
chain (what a delta's ``"p"`` member refers to), ``chain_length`` the records
from its keyframe to it, both counted."""


def _version_error(path, version):
    if version == 1:
        return ("%s was written by an older collector (records against shared dictionaries, schema 1); "
                "this build reads schema %d: move the store directory aside and start afresh" % (path, SCHEMA_VERSION))
    return "%s has schema version %s; this build reads %d" % (path, version, SCHEMA_VERSION)


def _delta_frame(tip, doc, payload):
    """The compressed delta frame turning ``tip`` into ``doc``, or None when it
    would not give back ``payload`` byte for byte."""
    try:
        change = delta(tip.doc, doc, tip.prior)
        rebuilt = apply(change, tip.doc, tip.prior)
        frame = {"d": change}
        if encode_msgpack(rebuilt) != payload:
            fixes = key_order_fixes(rebuilt, doc)
            if not fixes or encode_msgpack(with_key_order(rebuilt, fixes)) != payload:
                return None
            frame["o"] = fixes
        return zlib.compress(encode_msgpack(frame), COMPRESS_LEVEL)
    except _DELTA_ERRORS:
        return None


def _reused_frame(tip, change):
    """The compressed delta frame of ``change`` (a StoredChange) when it applies
    to ``tip`` exactly as it was built: the same base document (the object),
    the next seq, and for each prior key the value the chain holds (the
    object); else None."""
    if change is None or change.base is not tip.doc or change.base_seq != tip.seq:
        return None
    try:
        for key in prior_keys(change.change):
            if tip.prior.get(key) is not change.prior.get(key) or key not in change.prior:
                return None
    except TypeError:
        return None
    return zlib.compress(encode_msgpack({"d": change.change}), COMPRESS_LEVEL)


def _inflate(stored):
    try:
        unpacker = zlib.decompressobj()
        out = unpacker.decompress(stored, MAX_PAYLOAD_BYTES)
    except zlib.error:
        return None
    if not unpacker.eof or unpacker.unconsumed_tail:
        return None
    return out


def _step(boot_key, seq, base, codec, crc, stored):
    """(_Tip, payload) of record ``seq`` decoded on ``base`` (the _Tip of seq - 1,
    for a delta frame); (None, None) when it cannot be decoded or its payload
    does not match its CRC-32."""
    data = _inflate(stored)
    if data is None:
        return None, None
    if codec == CODEC_ZLIB:
        payload = data
        doc = document_of(payload)
        prior = {}
    elif codec == CODEC_ZLIB_DELTA:
        if base is None or base.doc is None or base.seq != seq - 1 or base.boot_key != boot_key:
            return None, None
        try:
            frame = decode_msgpack(data)
            doc = apply(frame["d"], base.doc, base.prior)
            if "o" in frame:
                doc = with_key_order(doc, frame["o"])
            payload = encode_msgpack(doc)
        except _DELTA_ERRORS:
            return None, None
        if type(doc) is not dict:
            return None, None
        prior = base.prior
    else:
        return None, None
    if zlib.crc32(payload) != crc:
        return None, None
    return _Tip(boot_key, seq, doc, next_prior(prior, doc), 0), payload
