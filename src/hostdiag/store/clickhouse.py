"""The fleet store: many collectors' records in one ClickHouse database, over its HTTP interface.

``clickhouse://HOST:PORT/DB`` names it (PORT: the server's ``http_port``,
8123 by default). No client library: the HTTP interface is plain POSTs
(http.client), and the Python clients checked (clickhouse-driver, which
speaks the native TCP protocol; clickhouse-connect, which needs a server of
22.x or later) either add a protocol of their own or do not support Debian 12's
server, 18.16.

Tables (each ``PARTITION BY toYYYYMMDD(time)``, so that retention drops
whole days: ``ALTER TABLE ... DROP PARTITION``):

``records``   the raw sample: the snapshot's msgpack bytes in a String
              column, with (host, agent_id, boot_id, seq), its time and the
              CRC-32 of the bytes; ``diag show`` rebuilds any moment from it.
``samples``   one row per record: key system counters as columns (CPU ticks,
              context switches, load, memory, network and disk totals) and
              rates per second computed from the record before it (NULL when
              that record is not the previous seq of the same boot).
``processes`` and ``sockets`` carry rates too: ``cpu_pct``, ``io_bytes_per_s``
of a process and ``retrans_per_s`` of a connection, against the newest
earlier record with tables (findings/stream.py), the numbers the findings use.
``processes`` one row per process of a record that carries the process table.
``sockets``   one row per TCP socket of a record that carries the socket table.
``findings``  one row per finding of a record (store/findings_rows.py): rule,
              severity, cause (the rule a symptom is folded under, else
              NULL), subject, title, threshold, the evidence as two
              parallel arrays (names, values: 18.16 has no Map), the first
              culprit's pid, comm and workload.
``gaps``, ``hosts``, ``status`` as in the SQLite store (store/sqlite.py).
``incidents`` one row per incident bundle (store/incidents.py) a collector
              pulled: host, id, start, end (NULL while open), title,
              severity, the summary (JSON) and the bundle's bytes; a bundle
              pulled again replaces the row (ReplacingMergeTree on stored_ns).
              Partitioned by the month of the incident's start
              (``toYYYYMM(time)``, ``time`` the start), which no later
              version of the bundle changes, so its versions meet in one
              partition; retention drops a month once all of it is older
              than max_host_age_s (an incident is kept that long, and at
              most a month more).

A batch (``begin`` ... ``commit``) is sent at ``commit``: the derived
tables first, ``records`` last, in one INSERT (one block: it appears whole
or not at all), so that the resume point (the newest seq in ``records``)
never passes a record whose rows are missing. ``records`` is a plain
MergeTree: a record is written once, because a writer resumes after the
newest seq stored and checks any older seq it is handed against the table.
The derived tables are ReplacingMergeTrees ordered by their identity: rows
sent again (a collector killed between the inserts of a batch, whose
successor pulls that batch again) collapse, and reads use FINAL.

Several collectors share one store, each pulling its own agents
(``collector.shard``); one agent must be pulled by one collector at a time.

Units: bytes, nanoseconds since the epoch (wall_ns), seconds (ages, rates per second).
"""

import http.client
import json
import struct
import time
import urllib.parse
import zlib

from hostdiag.encode.wire import decode_msgpack
from hostdiag.findings.stream import TABLES_LOOKBACK, FindingsStream
from hostdiag.store.findings_rows import connection_rates_of, finding_rows, process_rates_of
from hostdiag.store.sqlite import MAX_PAYLOAD_BYTES, StoredRecord, StoreError

SCHEME = "clickhouse://"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_HOST_AGE_S = 30 * 86400.0
# How often retention looks for whole days to drop, at the most.
RETENTION_PERIOD_S = 600.0
# The largest reply read for one query.
MAX_REPLY_BYTES = 256 * 1024 * 1024

_ENGINE = "ENGINE = ReplacingMergeTree(%s) PARTITION BY toYYYYMMDD(time) ORDER BY (%s)"

_SAMPLE_COLUMNS = (
    # (column, type, path in the snapshot)
    ("cpu_user", "UInt64", ("cpu", "total", "user")),
    ("cpu_nice", "UInt64", ("cpu", "total", "nice")),
    ("cpu_system", "UInt64", ("cpu", "total", "system")),
    ("cpu_idle", "UInt64", ("cpu", "total", "idle")),
    ("cpu_iowait", "UInt64", ("cpu", "total", "iowait")),
    ("cpu_irq", "UInt64", ("cpu", "total", "irq")),
    ("cpu_softirq", "UInt64", ("cpu", "total", "softirq")),
    ("cpu_steal", "UInt64", ("cpu", "total", "steal")),
    ("ctxt", "UInt64", ("cpu", "ctxt")),
    ("forks", "UInt64", ("cpu", "processes")),
    ("procs_running", "UInt64", ("cpu", "procs_running")),
    ("procs_blocked", "UInt64", ("cpu", "procs_blocked")),
    ("load1", "Float64", ("cpu", "loadavg", "load1")),
    ("load5", "Float64", ("cpu", "loadavg", "load5")),
    ("load15", "Float64", ("cpu", "loadavg", "load15")),
    ("mem_total_bytes", "UInt64", ("memory", "meminfo", "MemTotal")),
    ("mem_available_bytes", "UInt64", ("memory", "meminfo", "MemAvailable")),
    ("mem_free_bytes", "UInt64", ("memory", "meminfo", "MemFree")),
    ("swap_total_bytes", "UInt64", ("memory", "meminfo", "SwapTotal")),
    ("swap_free_bytes", "UInt64", ("memory", "meminfo", "SwapFree")),
    ("tcp_sockets", "UInt64", ("sockets", "tcp_total")),
)
_TOTAL_COLUMNS = ("net_rx_bytes", "net_tx_bytes", "disk_read_bytes", "disk_write_bytes")
_RATE_COLUMNS = ("cpu_busy_pct", "ctxt_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s",
                 "disk_read_bytes_per_s", "disk_write_bytes_per_s")
_PROCESS_COLUMNS = (
    ("ppid", "UInt32"), ("comm", "String"), ("state", "String"), ("user", "String"),
    ("start_time", "UInt64"), ("utime", "UInt64"), ("stime", "UInt64"), ("num_threads", "UInt32"),
    ("rss_bytes", "UInt64"), ("read_bytes", "UInt64"), ("write_bytes", "UInt64"), ("cgroup", "String"),
)
_SOCKET_COLUMNS = (
    ("family", "String"), ("state", "String"), ("local", "String"), ("local_port", "UInt32"),
    ("remote", "String"), ("remote_port", "UInt32"), ("rqueue", "UInt64"), ("wqueue", "UInt64"),
    ("uid", "UInt32"), ("rtt", "Float64"), ("total_retrans", "UInt64"), ("bytes_acked", "UInt64"),
    ("inode", "UInt64"),
)
# Computed by the writer, not read from the snapshot's rows.
_PROCESS_RATE_COLUMNS = (("cpu_pct", "Float64"), ("io_bytes_per_s", "Float64"))
_SOCKET_EXTRA_COLUMNS = (("retrans_per_s", "Float64"), ("pid", "UInt32"), ("comm", "String"))
_FINDING_COLUMNS = (
    ("n", "UInt16"), ("rule", "String"), ("severity", "String"), ("cause", "Nullable(String)"),
    ("subject", "Nullable(String)"),
    ("title", "String"), ("threshold", "String"), ("evidence_keys", "Array(String)"),
    ("evidence_values", "Array(Float64)"), ("culprit_kind", "Nullable(String)"),
    ("culprit_pid", "Nullable(UInt32)"), ("culprit_comm", "Nullable(String)"),
    ("culprit_workload", "Nullable(String)"),
)
_SECTOR_BYTES = 512
_IDENTITY = "host String, agent_id String, boot_id String, seq UInt64, time DateTime, wall_ns UInt64"


def _nullable(columns):
    return ", ".join("%s Nullable(%s)" % (name, kind) for name, kind in columns)


_TABLES = {
    "records": "CREATE TABLE IF NOT EXISTS records (%s, crc32 UInt32, raw String) ENGINE = MergeTree "
               "PARTITION BY toYYYYMMDD(time) ORDER BY (host, agent_id, boot_id, seq)" % _IDENTITY,
    "samples": "CREATE TABLE IF NOT EXISTS samples (%s, hostname String, %s) %s" % (
        _IDENTITY, _nullable([(n, k) for n, k, _ in _SAMPLE_COLUMNS] + [(n, "UInt64") for n in _TOTAL_COLUMNS]
                             + [(n, "Float64") for n in _RATE_COLUMNS]),
        _ENGINE % ("wall_ns", "host, agent_id, boot_id, seq")),
    "processes": "CREATE TABLE IF NOT EXISTS processes (%s, pid UInt32, %s) %s" % (
        _IDENTITY, _nullable(_PROCESS_COLUMNS + _PROCESS_RATE_COLUMNS),
        _ENGINE % ("wall_ns", "host, agent_id, boot_id, seq, pid")),
    "sockets": "CREATE TABLE IF NOT EXISTS sockets (%s, row UInt32, %s) %s" % (
        _IDENTITY, _nullable(_SOCKET_COLUMNS + _SOCKET_EXTRA_COLUMNS),
        _ENGINE % ("wall_ns", "host, agent_id, boot_id, seq, row")),
    "findings": "CREATE TABLE IF NOT EXISTS findings (%s, %s) %s" % (
        _IDENTITY, ", ".join("%s %s" % c for c in _FINDING_COLUMNS),
        _ENGINE % ("wall_ns", "host, agent_id, boot_id, seq, n")),
    "gaps": "CREATE TABLE IF NOT EXISTS gaps (host String, agent_id String, boot_id String, from_seq UInt64, "
            "to_seq Nullable(UInt64), reason String, noted_ns UInt64, time DateTime) %s" % (
                _ENGINE % ("noted_ns", "host, agent_id, boot_id, from_seq")),
    "hosts": "CREATE TABLE IF NOT EXISTS hosts (name String, address Nullable(String), hostname Nullable(String), "
             "updated_ns UInt64, time DateTime) ENGINE = ReplacingMergeTree(updated_ns) ORDER BY name",
    "status": "CREATE TABLE IF NOT EXISTS status (name String, state String, detail String, updated_ns UInt64, "
              "time DateTime) ENGINE = ReplacingMergeTree(updated_ns) ORDER BY name",
    "incidents": "CREATE TABLE IF NOT EXISTS incidents (host String, id String, start_ns UInt64, "
                 "end_ns Nullable(UInt64), title String, severity String, summary String, bundle String, "
                 "stored_ns UInt64, time DateTime) ENGINE = ReplacingMergeTree(stored_ns) PARTITION BY toYYYYMM(time) "
                 "ORDER BY (host, id)",
}
# The tables whose days go at retention (hosts and status are one row per host).
_PARTITIONED = ("records", "samples", "processes", "sockets", "gaps", "findings")
# The table whose months go at retention: incidents, by the month of their start.
_PARTITIONED_BY_MONTH = ("incidents",)
# Columns added to a table after its first release: (table, column, type), added
# to a store made before them (18.16 has no ADD COLUMN IF NOT EXISTS).
_ADDED_COLUMNS = tuple(("processes", n, "Nullable(%s)" % k) for n, k in _PROCESS_RATE_COLUMNS) + tuple(
    ("sockets", n, "Nullable(%s)" % k) for n, k in (("inode", "UInt64"),) + _SOCKET_EXTRA_COLUMNS) + (
    ("findings", "cause", "Nullable(String)"),)


def parse_url(url):
    """(host, port, database) of ``clickhouse://HOST:PORT/DB``; ValueError saying what is wrong."""
    if not isinstance(url, str) or not url.startswith(SCHEME):
        raise ValueError("must be clickhouse://HOST:PORT/DATABASE")
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    database = parts.path.lstrip("/")
    if not parts.hostname or port is None or parts.query or parts.fragment or parts.username:
        raise ValueError("must be clickhouse://HOST:PORT/DATABASE, got %r" % url)
    if not database or not all(c.isalnum() or c == "_" for c in database):
        raise ValueError("the database must be letters, digits and _, got %r" % database)
    return parts.hostname, port, database


def is_url(location):
    return isinstance(location, str) and location.startswith(SCHEME)


def _quote(text):
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _uvarint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _row_string(data):
    data = data.encode() if isinstance(data, str) else bytes(data)
    return _uvarint(len(data)) + data


def _dig(doc, path):
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc if isinstance(doc, (int, float)) and not isinstance(doc, bool) else None


def _totals(doc):
    """(net rx bytes, net tx bytes, disk read bytes, disk write bytes): links but lo, disks summed."""
    rx = tx = read = written = None
    network = doc.get("network") if isinstance(doc.get("network"), dict) else {}
    for link in network.get("links") or ():
        stats = link.get("stats") if isinstance(link, dict) else None
        if isinstance(stats, dict) and link.get("name") != "lo":
            rx = (rx or 0) + (stats.get("rx_bytes") or 0)
            tx = (tx or 0) + (stats.get("tx_bytes") or 0)
    for disk in doc.get("disks") or ():
        if isinstance(disk, dict):
            read = (read or 0) + (disk.get("sectors_read") or 0) * _SECTOR_BYTES
            written = (written or 0) + (disk.get("sectors_written") or 0) * _SECTOR_BYTES
    return rx, tx, read, written


def _rate(new, old, seconds):
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


class ClickHouseStore:
    """The fleet store at ``url``. ``readonly``: for readers, no table is created.
    ``findings``: evaluate each record's findings and the rates of its
    processes and connections (else those rows and columns stay empty).

    Not thread-safe: one connection used by one thread at a time.
    """

    def __init__(self, url, readonly=False, max_host_age_s=DEFAULT_MAX_HOST_AGE_S, timeout=DEFAULT_TIMEOUT_S,
                 clock=time.time_ns, findings=True):
        try:
            self.address, self.port, self.database = parse_url(url)
        except ValueError as exc:
            raise StoreError("collector.store %s" % exc) from None
        self.directory = url  # what readers print as the store's name
        self.readonly = readonly
        self.max_host_bytes = None  # retention here is by age only, whole days
        self.max_host_age_s = float(max_host_age_s)
        self.timeout = timeout
        self._clock = clock
        self._conn = None
        self._batch = None
        self._seen = {}  # (host, agent_id, boot_id) -> [newest seq stored before this process, seqs added since]
        self._previous = {}  # (host, agent_id, boot_id) -> (seq, wall_ns, counters) for rates
        self._findings = FindingsStream() if findings else None
        self._next_retention = 0.0
        self.corrupt_skipped = 0
        if not readonly:
            self.query("CREATE DATABASE IF NOT EXISTS %s" % self.database, database=None)
            for create in _TABLES.values():
                self.query(create)
            self._add_missing_columns()
        elif self.query("EXISTS TABLE %s.records" % self.database, database=None).strip() != "1":
            raise StoreError("no fleet store in %s (no table %s.records)" % (url, self.database))

    def _add_missing_columns(self):
        have = {(r["table"], r["name"]) for r in self.rows(
            "SELECT table, name FROM system.columns WHERE database = %s" % _quote(self.database))}
        for table, column, kind in _ADDED_COLUMNS:
            if (table, column) not in have:
                self.query("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, kind))

    # -- HTTP -----------------------------------------------------------------

    def query(self, sql, body=None, database=True):
        """The server's reply to ``sql`` (text); ``body`` follows the query (an INSERT's data)."""
        params = {"query": sql}
        if database:
            params["database"] = self.database
        path = "/?" + urllib.parse.urlencode(params)
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", path, body=body or b"")
                reply = self._conn.getresponse()
                data = reply.read(MAX_REPLY_BYTES + 1)
                break
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                self._conn = None
                # A kept-alive connection the server closed meanwhile: one new try.
                if attempt or not isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                   ConnectionResetError)):
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    raise StoreError("ClickHouse at %s:%d: %s" % (self.address, self.port, reason)) from None
        if reply.status != 200:
            message = data.decode("utf-8", "replace").strip().splitlines()
            raise StoreError("ClickHouse at %s:%d: %s" % (self.address, self.port,
                                                          message[0] if message else "HTTP %d" % reply.status))
        if len(data) > MAX_REPLY_BYTES:
            raise StoreError("ClickHouse at %s:%d: a reply beyond %d bytes" % (self.address, self.port,
                                                                              MAX_REPLY_BYTES))
        return data.decode("utf-8", "replace")

    def rows(self, sql):
        """The rows of a SELECT as dicts (JSONEachRow; 64-bit integers arrive as text)."""
        text = self.query(sql + " FORMAT JSONEachRow")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _insert_json(self, table, rows):
        if rows:
            body = "\n".join(json.dumps(row, separators=(",", ":")) for row in rows).encode()
            self.query("INSERT INTO %s FORMAT JSONEachRow" % table, body)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing --------------------------------------------------------------

    def begin(self):
        self._batch = {"records": [], "samples": [], "processes": [], "sockets": [], "gaps": [], "hosts": [],
                       "findings": []}

    def commit(self):
        batch, self._batch = self._batch, None
        if batch is None:
            return
        for table in ("hosts", "gaps", "samples", "processes", "sockets", "findings"):
            self._insert_json(table, batch[table])
        if batch["records"]:
            self.query("INSERT INTO records (host, agent_id, boot_id, seq, time, wall_ns, crc32, raw) "
                       "FORMAT RowBinary", b"".join(batch["records"]))

    def rollback(self):
        self._batch = None
        # What this process believed stored may not be: ask the server again.
        self._seen.clear()
        self._previous.clear()
        if self._findings is not None:
            self._findings.clear()

    def set_host(self, name, address=None, hostname=None):
        row = {"name": name, "address": address, "hostname": hostname, "updated_ns": self._clock(),
               "time": int(time.time())}
        if address is None or hostname is None:
            known = self.rows("SELECT address, hostname FROM hosts FINAL WHERE name = %s" % _quote(name))
            if known:
                row["address"] = address if address is not None else known[0]["address"]
                row["hostname"] = hostname if hostname is not None else known[0]["hostname"]
        if self._batch is None:
            self._insert_json("hosts", [row])
        else:
            self._batch["hosts"].append(row)

    def _is_stored(self, key, seq):
        seen = self._seen.get(key)
        if seen is None:
            found = self.rows("SELECT max(seq) AS seq, count() AS n FROM records WHERE host = %s AND agent_id = %s "
                              "AND boot_id = %s" % tuple(_quote(k) for k in key))
            newest = int(found[0]["seq"]) if found and int(found[0]["n"]) else 0
            seen = self._seen[key] = [newest, set()]
        if seq in seen[1]:
            return True
        if seq <= seen[0]:
            return bool(self.rows("SELECT 1 AS x FROM records WHERE host = %s AND agent_id = %s AND boot_id = %s "
                                  "AND seq = %d LIMIT 1" % (_quote(key[0]), _quote(key[1]), _quote(key[2]), seq)))
        return False

    def add_record(self, host_name, agent_id, boot_id, seq, wall_ns, payload, doc=None, change=None):
        """Add one record to the batch; True when added, False when it is already stored.
        ``doc``: the map ``payload`` was encoded from, when the caller has it: the
        derived rows are taken from it instead of decoding ``payload`` again.
        ``change`` (how ``doc`` was built from the record before it) is not used:
        this store keeps every record whole."""
        payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("a payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD_BYTES))
        key = (host_name, agent_id, boot_id)
        if self._is_stored(key, seq):
            return False
        self._seen[key][1].add(seq)
        when = int(wall_ns // 10**9)
        self._batch["records"].append(
            _row_string(host_name) + _row_string(agent_id) + _row_string(boot_id) + struct.pack("<Q", seq)
            + struct.pack("<I", max(0, min(when, 2**32 - 1))) + struct.pack("<Q", wall_ns)
            + struct.pack("<I", zlib.crc32(payload)) + _row_string(payload))
        if type(doc) is not dict:
            try:
                doc = decode_msgpack(payload)
            except (ValueError, RecursionError):
                doc = None
        if isinstance(doc, dict):
            ident = {"host": host_name, "agent_id": agent_id, "boot_id": boot_id, "seq": seq, "time": when,
                     "wall_ns": wall_ns}
            self._add_derived(key, ident, doc)
        return True

    def _add_derived(self, key, ident, doc):
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        sample = dict(ident, hostname=str(meta.get("hostname") or ""))
        for name, _, path in _SAMPLE_COLUMNS:
            sample[name] = _dig(doc, path)
        for name, value in zip(_TOTAL_COLUMNS, _totals(doc)):
            sample[name] = value
        previous = self._previous.get(key)
        self._previous[key] = (ident["seq"], ident["wall_ns"], sample)
        rates = dict.fromkeys(_RATE_COLUMNS)
        if previous is not None and previous[0] == ident["seq"] - 1:
            seconds = (ident["wall_ns"] - previous[1]) / 1e9
            old = previous[2]
            # Busy as derive/rates.py has it: 100 - idle - iowait - steal
            # (the time a hypervisor took is apart, as sar and top show it).
            busy = ("cpu_user", "cpu_nice", "cpu_system", "cpu_irq", "cpu_softirq")
            total = busy + ("cpu_idle", "cpu_iowait", "cpu_steal")
            if all(sample[n] is not None and old[n] is not None for n in total):
                spent = sum(sample[n] - old[n] for n in total)
                if spent > 0:
                    rates["cpu_busy_pct"] = 100.0 * sum(sample[n] - old[n] for n in busy) / spent
            for rate, counter in (("ctxt_per_s", "ctxt"), ("net_rx_bytes_per_s", "net_rx_bytes"),
                                  ("net_tx_bytes_per_s", "net_tx_bytes"),
                                  ("disk_read_bytes_per_s", "disk_read_bytes"),
                                  ("disk_write_bytes_per_s", "disk_write_bytes")):
                rates[rate] = _rate(sample[counter], old[counter], seconds)
        sample.update(rates)
        self._batch["samples"].append(sample)
        evaluated = None if self._findings is None else self._findings.evaluate(
            ident["host"], ident["agent_id"], ident["boot_id"], ident["seq"], doc,
            lambda boot_id, seq: self._bases(ident["host"], ident["agent_id"], boot_id, seq),
            want_rates=isinstance(doc.get("processes"), dict) or isinstance(doc.get("sockets"), dict))
        rates = evaluated.rates if evaluated is not None else None
        if evaluated is not None:
            for row in finding_rows(evaluated.findings, evaluated.snapshot):
                evidence = row.pop("evidence")
                self._batch["findings"].append(dict(ident, evidence_keys=list(evidence),
                                                    evidence_values=[float(v) for v in evidence.values()], **row))
        table = doc.get("processes")
        if isinstance(table, dict):
            process_rates = process_rates_of(rates)
            for proc in table.get("processes") or ():
                if isinstance(proc, dict) and isinstance(proc.get("pid"), int):
                    row = dict(ident, pid=proc["pid"])
                    for name, kind in _PROCESS_COLUMNS:
                        value = proc.get(name)
                        row[name] = value if isinstance(value, (str if kind == "String" else int)) else None
                    row["cpu_pct"], row["io_bytes_per_s"] = process_rates(proc)
                    self._batch["processes"].append(row)
        sockets = doc.get("sockets")
        tcp = sockets.get("tcp_table") if isinstance(sockets, dict) else None
        if isinstance(tcp, dict) and isinstance(tcp.get("fields"), list):
            fields = tcp["fields"]
            retrans_rate = connection_rates_of(rates)
            owners = sockets.get("owners") if isinstance(sockets.get("owners"), dict) else {}
            for n, values in enumerate(tcp.get("rows") or ()):
                found = dict(zip(fields, values)) if isinstance(values, list) else {}
                row = dict(ident, row=n)
                for name, kind in _SOCKET_COLUMNS:
                    value = found.get(name)
                    wanted = str if kind == "String" else (int, float) if kind == "Float64" else int
                    row[name] = value if isinstance(value, wanted) and not isinstance(value, bool) else None
                row["retrans_per_s"] = retrans_rate(found)
                holders = owners.get(str(found.get("inode"))) or ()
                holder = holders[0] if holders and isinstance(holders[0], dict) else {}
                row["pid"] = holder.get("pid") if isinstance(holder.get("pid"), int) else None
                row["comm"] = holder.get("comm") if isinstance(holder.get("comm"), str) else None
                self._batch["sockets"].append(row)

    def _bases(self, host_name, agent_id, boot_id, seq):
        """The documents FindingsStream asks for when it lacks a base: record
        seq - 1, and (seq, document) of the newest record with tables within
        TABLES_LOOKBACK seqs before ``seq`` (found by its process or socket rows)."""
        where = self._where(host_name, boot_id, agent_id)
        previous = self.get(host_name, boot_id, seq - 1, agent_id)
        found = self.rows(
            "SELECT max(seq) AS seq, count() AS n FROM (SELECT seq FROM processes WHERE %s AND seq < %d AND "
            "seq >= %d UNION ALL SELECT seq FROM sockets WHERE %s AND seq < %d AND seq >= %d)"
            % (where, seq, max(0, seq - TABLES_LOOKBACK), where, seq, max(0, seq - TABLES_LOOKBACK)))
        tables = None
        if found and int(found[0]["n"]):
            tables_seq = int(found[0]["seq"])
            record = previous if previous is not None and previous.seq == tables_seq else self.get(
                host_name, boot_id, tables_seq, agent_id)
            if record is not None:
                tables = (tables_seq, decode_msgpack(record.payload))
        return (decode_msgpack(previous.payload) if previous is not None else None), tables

    def add_gap(self, host_name, agent_id, boot_id, from_seq, to_seq, reason):
        """Note that the agent no longer has ``from_seq..to_seq`` (``to_seq`` None: the rest of that boot)."""
        known = self.rows("SELECT to_seq FROM gaps FINAL WHERE host = %s AND agent_id = %s AND boot_id = %s AND "
                          "from_seq = %d" % (_quote(host_name), _quote(agent_id), _quote(boot_id), from_seq))
        if known and to_seq is not None:
            old = known[0]["to_seq"]
            to_seq = None if old is None else max(int(old), to_seq)
        now = self._clock()
        self._batch["gaps"].append({"host": host_name, "agent_id": agent_id, "boot_id": boot_id, "from_seq": from_seq,
                                    "to_seq": to_seq, "reason": reason, "noted_ns": now, "time": now // 10**9})

    def add_incident(self, host_name, summary, bundle):
        """Store (or replace) an incident's bundle; sent at once, not with the batch."""
        end = summary.get("end_ns")
        row = (_row_string(host_name) + _row_string(summary["id"]) + struct.pack("<Q", summary.get("start_ns") or 0)
               + (b"\x01" if end is None else b"\x00" + struct.pack("<Q", end))
               + _row_string(summary.get("title") or "") + _row_string(summary.get("severity") or "")
               + _row_string(json.dumps(summary, sort_keys=True)) + _row_string(bundle)
               + struct.pack("<Q", self._clock()) + struct.pack("<I", (summary.get("start_ns") or 0) // 10**9))
        self.query("INSERT INTO incidents (host, id, start_ns, end_ns, title, severity, summary, bundle, stored_ns, "
                   "time) FORMAT RowBinary", row)

    def _has_incidents(self):
        return self.query("EXISTS TABLE %s.incidents" % self.database, database=None).strip() == "1"

    def incidents(self, host_name=None):
        """As :meth:`hostdiag.store.sqlite.CollectorStore.incidents`."""
        if not self._has_incidents():
            return []
        where = " WHERE host = %s" % _quote(host_name) if host_name else ""
        return [dict(json.loads(r["summary"]), host=r["host"]) for r in self.rows(
            "SELECT host, summary FROM incidents FINAL%s ORDER BY start_ns DESC" % where)]

    def incident_bundle(self, host_name, incident_id):
        """As :meth:`hostdiag.store.sqlite.CollectorStore.incident_bundle`."""
        if not self._has_incidents():
            return []
        where = "id = %s" % _quote(incident_id) + (" AND host = %s" % _quote(host_name) if host_name else "")
        return [(r["host"], bytes.fromhex(r["bundle"])) for r in self.rows(
            "SELECT host, hex(bundle) AS bundle FROM incidents FINAL WHERE %s" % where)]

    def write_status(self, host_name, state, detail):
        now = self._clock()
        self._insert_json("status", [{"name": host_name, "state": state, "updated_ns": now, "time": now // 10**9,
                                      "detail": json.dumps(detail, sort_keys=True, default=str)}])

    def enforce_retention(self, host_name):
        """Drop the days older than max_host_age_s (the whole fleet's: a day is
        a partition of every table), and the months of incidents wholly older
        than it, at most every RETENTION_PERIOD_S; the number of records dropped."""
        now = time.monotonic()
        if now < self._next_retention:
            return 0
        self._next_retention = now + RETENTION_PERIOD_S
        cutoff = time.gmtime(self._clock() / 1e9 - self.max_host_age_s)
        parts = []
        for tables, partition in ((_PARTITIONED, "%Y%m%d"), (_PARTITIONED_BY_MONTH, "%Y%m")):
            # A store made before incidents were partitioned has the partition
            # "tuple()" there, which sorts after every date: it is left alone.
            parts += self.rows(
                "SELECT table, partition, sum(rows) AS rows FROM system.parts WHERE database = %s AND active AND "
                "table IN (%s) AND partition < %s GROUP BY table, partition" % (
                    _quote(self.database), ", ".join(_quote(t) for t in tables),
                    _quote(time.strftime(partition, cutoff))))
        dropped = 0
        for part in parts:
            self.query("ALTER TABLE %s DROP PARTITION %s" % (part["table"], part["partition"]))
            if part["table"] == "records":
                dropped += int(part["rows"])
        return dropped

    # -- reading --------------------------------------------------------------

    def _records(self, where, order_limit):
        rows = self.rows(
            "SELECT host, agent_id, boot_id, seq, wall_ns, crc32, hex(raw) AS raw FROM records WHERE %s %s"
            % (where, order_limit))
        for row in rows:
            payload = bytes.fromhex(row["raw"])
            if zlib.crc32(payload) != int(row["crc32"]):
                self.corrupt_skipped += 1
                continue
            yield StoredRecord(row["host"], row["agent_id"], row["boot_id"], int(row["seq"]), int(row["wall_ns"]),
                               payload)

    @staticmethod
    def _where(host_name, boot_id=None, agent_id=None):
        where = "host = %s" % _quote(host_name)
        if boot_id is not None:
            where += " AND boot_id = %s" % _quote(boot_id)
        if agent_id is not None:
            where += " AND agent_id = %s" % _quote(agent_id)
        return where

    def get(self, host_name, boot_id, seq, agent_id=None):
        where = self._where(host_name, boot_id, agent_id) + " AND seq = %d" % seq
        return next(self._records(where, "ORDER BY wall_ns DESC LIMIT 1"), None)

    def at_or_before(self, host_name, wall_ns, boot_id=None, before_seq=None):
        where = self._where(host_name, boot_id) + " AND wall_ns <= %d" % wall_ns
        if before_seq is not None:
            where += " AND seq < %d" % before_seq
        return next(self._records(where, "ORDER BY wall_ns DESC, seq DESC LIMIT 8"), None)

    def range(self, host_name, boot_id, from_seq=None, to_seq=None, agent_id=None):
        where = self._where(host_name, boot_id, agent_id)
        if from_seq is not None:
            where += " AND seq >= %d" % from_seq
        if to_seq is not None:
            where += " AND seq <= %d" % to_seq
        return self._records(where, "ORDER BY seq")

    def seqs(self, host_name, boot_id, agent_id=None):
        return [int(r["seq"]) for r in self.rows(
            "SELECT seq FROM records WHERE %s ORDER BY seq" % self._where(host_name, boot_id, agent_id))]

    def hosts(self):
        known = {r["name"]: r for r in self.rows("SELECT name, address, hostname FROM hosts FINAL")}
        counts = {r["host"]: r for r in self.rows(
            "SELECT host, count() AS n, sum(length(raw)) AS bytes FROM records GROUP BY host")}
        out = []
        for name in sorted(set(known) | set(counts)):
            row = known.get(name, {})
            count = counts.get(name, {})
            out.append({"name": name, "address": row.get("address"), "hostname": row.get("hostname"),
                        "stored_bytes": int(count.get("bytes", 0)), "records": int(count.get("n", 0))})
        return out

    def resolve_host(self, wanted):
        names = {r["name"] for r in self.rows(
            "SELECT name FROM hosts FINAL WHERE name = %s OR hostname = %s" % (_quote(wanted), _quote(wanted)))}
        names |= {r["host"] for r in self.rows(
            "SELECT DISTINCT host FROM records WHERE host = %s OR agent_id = %s" % (_quote(wanted), _quote(wanted)))}
        if wanted in names:
            return wanted
        if len(names) == 1:
            return names.pop()
        if not names:
            known = [h["name"] for h in self.hosts()]
            raise StoreError("no host %r in the store %s (it has: %s)"
                             % (wanted, self.directory, ", ".join(known) or "none"))
        raise StoreError("%r matches several hosts: %s" % (wanted, ", ".join(sorted(names))))

    def boots(self, host_name):
        rows = self.rows(
            "SELECT agent_id, boot_id, min(seq) AS first_seq, max(seq) AS last_seq, min(wall_ns) AS first_wall_ns, "
            "max(wall_ns) AS last_wall_ns, count() AS records, sum(length(raw)) AS raw_bytes FROM records "
            "WHERE %s GROUP BY agent_id, boot_id ORDER BY first_wall_ns" % self._where(host_name))
        out = []
        for row in rows:
            boot = {k: (v if k in ("agent_id", "boot_id") else int(v)) for k, v in row.items()}
            boot["stored_bytes"] = boot["raw_bytes"]
            out.append(boot)
        return out

    def newest(self, host_name, agent_id=None):
        rows = self.rows("SELECT boot_id, max(seq) AS seq, max(wall_ns) AS wall FROM records WHERE %s "
                         "GROUP BY boot_id" % self._where(host_name, agent_id=agent_id))
        per_boot = {r["boot_id"]: int(r["seq"]) for r in rows}
        last = None
        for r in rows:
            if last is None or int(r["wall"]) > last[2]:
                last = (r["boot_id"], int(r["seq"]), int(r["wall"]))
        return per_boot, last

    def resume_points(self, host_name, agent_id):
        """As CollectorStore.resume_points: ``(accounted, closed, last)``."""
        accounted, last = self.newest(host_name, agent_id)
        closed = set()
        for gap in self.rows("SELECT boot_id, from_seq, to_seq FROM gaps FINAL WHERE %s"
                             % self._where(host_name, agent_id=agent_id)):
            to_seq = gap["to_seq"]
            if to_seq is None:
                closed.add(gap["boot_id"])
                to_seq = int(gap["from_seq"]) - 1
            if int(to_seq) > accounted.get(gap["boot_id"], 0):
                accounted[gap["boot_id"]] = int(to_seq)
        return accounted, closed, last

    def gaps(self, host_name):
        """The ranges the agents said were gone, and holes between kept records (reason "missing")."""
        noted = [{"agent_id": g["agent_id"], "boot_id": g["boot_id"], "from_seq": int(g["from_seq"]),
                  "to_seq": None if g["to_seq"] is None else int(g["to_seq"]), "reason": g["reason"],
                  "noted_ns": int(g["noted_ns"])}
                 for g in self.rows("SELECT agent_id, boot_id, from_seq, to_seq, reason, noted_ns FROM gaps FINAL "
                                    "WHERE %s ORDER BY noted_ns, from_seq" % self._where(host_name))]
        out = list(noted)
        for boot in self.boots(host_name):
            seqs = self.seqs(host_name, boot["boot_id"], boot["agent_id"])
            for before, after in zip(seqs, seqs[1:]):
                if after > before + 1:
                    start, end = before + 1, after - 1
                    covered = [g for g in noted if g["boot_id"] == boot["boot_id"] and g["from_seq"] <= start
                               and (g["to_seq"] is None or g["to_seq"] >= end)]
                    if not covered:
                        out.append({"agent_id": boot["agent_id"], "boot_id": boot["boot_id"], "from_seq": start,
                                    "to_seq": end, "reason": "missing", "noted_ns": None})
        return out

    def status(self):
        out = []
        for row in self.rows("SELECT name, state, updated_ns, detail FROM status FINAL ORDER BY name"):
            try:
                extra = json.loads(row["detail"])
            except ValueError:
                extra = {}
            out.append(dict(extra, name=row["name"], state=row["state"], updated_ns=int(row["updated_ns"])))
        return out

    def stats(self):
        found = self.rows("SELECT sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = %s AND active"
                          % _quote(self.database))
        records = self.rows("SELECT count() AS n FROM records")
        return {"file_bytes": int(found[0]["bytes"] or 0) if found else 0,
                "records": int(records[0]["n"]) if records else 0, "corrupt_skipped": self.corrupt_skipped}
