"""Where the history commands read from: an agent over its socket
(:class:`AgentHistory`, docs/protocol.md) or one host of a collector's store
(:class:`StoreHistory`), and the moments they find in it.

Both readers answer the same questions: ``boots()``, ``gaps()``,
``retention()``, ``get(boot_id, seq)``, ``at_or_before(wall_ns)``,
``next_after(record)`` and ``records_between(from_ns, to_ns)``, each record
as a :data:`Rec`. Time gaps (:func:`time_gaps`, :func:`gap_around`) and the
nearest record with the process table (:func:`nearest_tables`) are found
through them. :func:`open_history` picks the reader the options
name, first that applies: ``--store DIR`` (with ``--host H`` unless the store
has one host); ``--host H`` alone (the store of ``collector.store`` in the
settings); ``--agent ADDRESS`` (``unix:PATH``, ``tcp:HOST:PORT`` with
``--token-file``, and ``--tls-ca`` for TLS, ``--tls-cert``/``--tls-key`` for
an agent that asks for a client certificate); the agent socket of the
settings (``--config`` or $HOSTDIAG_CONFIG); else ``unix:/run/hostdiag/agent.sock``.
"""

import os
from collections import namedtuple

from hostdiag.apps.common import CommandFailed, UsageError, client_address, read_token
from hostdiag.views.timefmt import format_time

DEFAULT_AGENT = "unix:/run/hostdiag/agent.sock"
CONNECT_TIMEOUT_S = 10.0
NS = 1_000_000_000

Rec = namedtuple("Rec", "boot_id seq wall_ns snapshot")
Rec.__doc__ = """One record: ``snapshot`` is the snapshot as plain data (a dict)."""


def _decode(payload):
    from hostdiag.transport.framing import decode_document
    from hostdiag.transport.protocol import ProtocolError

    try:
        return decode_document(payload)
    except ProtocolError as exc:
        raise CommandFailed("a stored record cannot be decoded: %s" % exc.message) from None


class AgentHistory:
    """History served by an agent (docs/protocol.md: info and range)."""

    kind = "agent"

    def __init__(self, client, address, spool_dir=None):
        self.client = client
        self.address = address
        self.info = client.info()
        self.spool_dir = spool_dir
        self.interval_s = self.info.get("interval_s")
        host = self.info.get("host") or {}
        self.hostname = host.get("hostname")
        self.agent_id = self.info.get("agent_id")

    def describe(self):
        return {"source": "agent", "address": self.address, "hostname": self.hostname,
                "agent_id": self.agent_id, "boot_id": self.info.get("boot_id")}

    def label(self):
        return "agent %s" % self.address

    def close(self):
        self.client.close()

    def boots(self, counts=False):
        """[{"boot_id", "first_seq", "last_seq", "first_wall_ns", "last_wall_ns",
        "records", "current"}], oldest first; ``records`` (counted in the
        spool, which is read in full for it) when ``counts`` and the spool is
        readable here, else None."""
        spool = self._spool_boots() if counts else None
        kept = {} if spool is None else {boot: entry.get("records") for boot, entry in spool.items()}
        out = []
        for boot in sorted(self.info.get("boots") or (), key=lambda b: b.get("oldest_wall_ns") or 0):
            if boot.get("oldest_seq") is None:
                continue
            out.append({"boot_id": boot.get("boot_id"), "first_seq": boot.get("oldest_seq"),
                        "last_seq": boot.get("newest_seq"), "first_wall_ns": boot.get("oldest_wall_ns"),
                        "last_wall_ns": boot.get("newest_wall_ns"), "records": kept.get(boot.get("boot_id")),
                        "current": boot.get("boot_id") == self.info.get("boot_id")})
        return out

    def _open_spool(self):
        from hostdiag.store.spool import Spool, SpoolError

        if self.spool_dir is None or not os.path.isdir(self.spool_dir):
            return None
        try:
            return Spool(self.spool_dir, 1 << 60, 1e12, readonly=True)
        except (SpoolError, OSError, ValueError):
            return None

    def _spool_boots(self):
        if not hasattr(self, "_spool_cache"):
            spool = self._open_spool()
            self._spool_cache = None
            if spool is not None:
                try:
                    self._spool_cache = {boot: dict(entry, runs=spool.seq_runs(boot))
                                         for boot, entry in spool.boots().items()}
                finally:
                    spool.close()
        return self._spool_cache

    def gaps(self):
        """Missing seq ranges inside each boot's kept history, or None when the
        agent does not say (the protocol's info has no gaps) and its spool is
        not readable here (``--spool DIR``)."""
        reported = self.info.get("gaps")
        if isinstance(reported, list):
            return [{"boot_id": g.get("boot_id"), "from_seq": g.get("start_seq", g.get("from_seq")),
                     "to_seq": g.get("end_seq", g.get("to_seq")), "reason": g.get("reason") or "not_kept"}
                    for g in reported if isinstance(g, dict)]
        spool = self._spool_boots()
        if spool is None:
            return None
        out = []
        for boot_id, entry in spool.items():
            runs = entry["runs"]
            for (_, end), (start, _) in zip(runs, runs[1:]):
                out.append({"boot_id": boot_id, "from_seq": end + 1, "to_seq": start - 1, "reason": "not_kept"})
        return out

    def retention(self):
        """The limits (``ring_records``, ``ring_bytes``, ``spool_bytes``,
        ``spool_age_s``) and what is used of them (``ring_used_records``,
        ``ring_used_bytes``, ``spool_used_bytes``), None where unknown."""
        limits = self.info.get("retention")
        if not isinstance(limits, dict):
            return None
        ring = self.info.get("ring") or {}
        spool = self.info.get("spool") or {}
        return dict(limits, ring_used_records=ring.get("records"), ring_used_bytes=ring.get("bytes"),
                    spool_used_bytes=spool.get("bytes"))

    def _page(self, **request):
        from hostdiag.transport.protocol import Error, ProtocolError

        try:
            return self.client.range_page(**request)
        except ProtocolError as exc:
            if exc.code == Error.NOT_FOUND:
                return None
            raise

    def get(self, boot_id, seq):
        if seq is None or seq < 1:
            return None
        page = self._page(from_seq=seq, to_seq=seq, boot_id=boot_id, limit=1)
        if page is None:
            return None
        for record in page.records:
            if record.seq == seq:
                return Rec(record.boot_id or boot_id, record.seq, record.wall_ns, record.snapshot)
        return None

    def at_or_before(self, wall_ns, boot_id=None, before_seq=None):
        """The newest record with wall_ns <= ``wall_ns`` (in ``boot_id`` and
        below ``before_seq`` when given), or None."""
        for boot in reversed(self.boots()):
            if boot_id is not None and boot["boot_id"] != boot_id:
                continue
            if boot["first_wall_ns"] is None or boot["first_wall_ns"] > wall_ns:
                continue
            upper = boot["last_seq"]
            if before_seq is not None:
                upper = min(upper, before_seq - 1)
            if wall_ns < boot["last_wall_ns"]:
                page = self._page(from_ns=wall_ns + 1, boot_id=boot["boot_id"], limit=1)
                if page is not None and page.records:
                    upper = min(upper, page.records[0].seq - 1)
            found = self._last_at_or_below(boot["boot_id"], upper, boot["first_seq"], wall_ns)
            if found is not None:
                return found
        return None

    def next_after(self, record):
        """The first record of ``record``'s boot after it, else the first of
        the next boot kept; None when ``record`` is the newest."""
        page = self._page(from_seq=record.seq + 1, boot_id=record.boot_id, limit=1)
        if page is not None and page.records:
            found = page.records[0]
            return Rec(found.boot_id or record.boot_id, found.seq, found.wall_ns, found.snapshot)
        return _first_of_next_boot(self, record)

    def records_between(self, from_ns, to_ns):
        """Every kept record with from_ns <= wall_ns <= to_ns, boot by boot
        (oldest boot first), seq ascending; read page by page."""
        for boot in self.boots():
            if boot["last_wall_ns"] is None or boot["last_wall_ns"] < from_ns or boot["first_wall_ns"] > to_ns:
                continue
            for found in self.client.range(from_ns=from_ns, to_ns=to_ns, boot_id=boot["boot_id"]):
                yield Rec(found.boot_id or boot["boot_id"], found.seq, found.wall_ns, found.snapshot)

    def _last_at_or_below(self, boot_id, upper, lower, wall_ns):
        """The highest-seq record in lower..upper with wall_ns <= ``wall_ns``:
        upper itself in the common case, else pages downwards (a seq gap, or
        the wall clock stepped back)."""
        found = self.get(boot_id, upper)
        if found is not None and found.wall_ns <= wall_ns:
            return found
        high, step = upper - 1, 16
        while high >= lower:
            low = max(lower, high - step + 1)
            page = self._page(from_seq=low, to_seq=high, boot_id=boot_id, limit=step)
            fits = [r for r in (page.records if page else ()) if r.wall_ns <= wall_ns]
            if fits:
                last = fits[-1]
                return Rec(last.boot_id or boot_id, last.seq, last.wall_ns, last.snapshot)
            high, step = low - 1, min(step * 2, 256)
        return None


class StoreHistory:
    """History of one host in a collector's store."""

    kind = "store"

    def __init__(self, store, host):
        self.store = store
        self.host = host
        hosts = {h["name"]: h for h in store.hosts()}
        self.hostname = hosts.get(host, {}).get("hostname")
        self.interval_s = None
        self.agent_id = None

    def describe(self):
        return {"source": "store", "store": self.store.directory, "host": self.host, "hostname": self.hostname}

    def label(self):
        return "store %s host %s" % (self.store.directory, self.host)

    def close(self):
        self.store.close()

    def _rec(self, stored):
        if stored is None:
            return None
        return Rec(stored.boot_id, stored.seq, stored.wall_ns, _decode(stored.payload))

    def boots(self):
        out = []
        boots = self.store.boots(self.host)
        for i, boot in enumerate(boots):
            out.append({"boot_id": boot["boot_id"], "agent_id": boot["agent_id"], "first_seq": boot["first_seq"],
                        "last_seq": boot["last_seq"], "first_wall_ns": boot["first_wall_ns"],
                        "last_wall_ns": boot["last_wall_ns"], "records": boot["records"],
                        "stored_bytes": boot["stored_bytes"], "current": i == len(boots) - 1})
        return out

    def gaps(self):
        return self.store.gaps(self.host)

    def retention(self):
        return {"host_bytes": self.store.max_host_bytes, "host_age_s": self.store.max_host_age_s,
                "stored_bytes": next((h["stored_bytes"] for h in self.store.hosts() if h["name"] == self.host), None)}

    def get(self, boot_id, seq):
        if seq is None:
            return None
        return self._rec(self.store.get(self.host, boot_id, seq))

    def at_or_before(self, wall_ns, boot_id=None, before_seq=None):
        return self._rec(self.store.at_or_before(self.host, wall_ns, boot_id=boot_id, before_seq=before_seq))

    def next_after(self, record):
        """As :meth:`AgentHistory.next_after`."""
        for found in self.store.range(self.host, record.boot_id, from_seq=record.seq + 1):
            return self._rec(found)
        return _first_of_next_boot(self, record)

    def records_between(self, from_ns, to_ns):
        """As :meth:`AgentHistory.records_between`. Reading starts at the
        record at or before ``from_ns``, not at the boot's first: after a
        wall clock stepped back across ``from_ns``, records of the range
        taken before the step are left out."""
        for boot in self.boots():
            if boot["last_wall_ns"] is None or boot["last_wall_ns"] < from_ns or boot["first_wall_ns"] > to_ns:
                continue
            start = self.store.at_or_before(self.host, from_ns, boot_id=boot["boot_id"])
            for found in self.store.range(self.host, boot["boot_id"], from_seq=None if start is None else start.seq):
                if from_ns <= found.wall_ns <= to_ns:
                    yield self._rec(found)


def add_source_options(parser):
    """The options that say where the history is (see the module doc)."""
    group = parser.add_argument_group("where the history is")
    group.add_argument("--agent", metavar="ADDRESS",
                       help="an agent: unix:PATH (default %s) or tcp:HOST:PORT" % DEFAULT_AGENT)
    group.add_argument("--config", metavar="FILE",
                       help="settings: the agent's socket (server.unix_path), the store (collector.store)")
    group.add_argument("--token-file", metavar="FILE", help="token for a tcp: agent")
    group.add_argument("--tls-ca", metavar="FILE", help="CA to check a TLS agent's certificate")
    group.add_argument("--tls-cert", metavar="FILE",
                       help="client certificate (PEM) for an agent that asks for one (tcp.tls_client_ca)")
    group.add_argument("--tls-key", metavar="FILE", help="private key (PEM) of --tls-cert (default: in --tls-cert)")
    group.add_argument("--store", metavar="DIR|URL",
                       help="a collector's store instead of an agent: a directory or clickhouse://HOST:PORT/DB")
    group.add_argument("--host", metavar="NAME", help="the host in the store (agent name, hostname or agent id)")
    group.add_argument("--spool", metavar="DIR",
                       help="the agent's spool directory, read-only, for the gaps `diag history` lists")


def open_history(args):
    """The history the options name (see the module doc)."""
    from hostdiag.store.collector_store import StoreError, is_url, open_collector_store

    config = source_config(args, "histories")
    if args.store or args.host:
        if args.store:
            directory = args.store if is_url(args.store) else os.path.abspath(args.store)
        else:
            directory = config.collector.store
        try:
            store = open_collector_store(directory, readonly=True)
        except StoreError as exc:
            raise CommandFailed(str(exc)) from None
        try:
            if args.host:
                host = store.resolve_host(args.host)
            else:
                hosts = [h["name"] for h in store.hosts()]
                if len(hosts) != 1:
                    raise UsageError("--host is needed: the store %s has %s" % (
                        directory, "hosts " + ", ".join(hosts) if hosts else "no hosts"))
                host = hosts[0]
        except StoreError as exc:
            store.close()
            raise CommandFailed(str(exc)) from None
        except BaseException:
            store.close()
            raise
        return StoreHistory(store, host)
    spool_dir = args.spool
    if not args.agent and spool_dir is None and os.path.isdir(config.spool.dir):
        spool_dir = config.spool.dir  # the same settings' agent: its spool, if it is on this host
    return agent_from_options(args, config, spool_dir)


def source_config(args, what):
    """The settings the source options need (None when --agent or --store say
    it all and no --config is given); a usage error when both name a source."""
    from hostdiag.apps.config import load_config

    if args.agent and (args.store or args.host):
        raise UsageError("--agent and --store/--host name two different %s: give one" % what)
    if args.config is not None or not (args.agent or args.store):
        return load_config(args.config, os.environ)
    return None


def agent_from_options(args, config, spool_dir=None):
    """The agent that --agent (else the settings' socket) and the TLS options name, connected."""
    address = args.agent or "unix:" + config.server.unix_path
    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key: needs --tls-cert")
    return connect_agent(client_address(address, args.tls_ca, args.tls_cert), args.token_file,
                         args.tls_ca, spool_dir, args.tls_cert, args.tls_key)


def connect_agent(address, token_file, tls_ca, spool_dir, tls_cert=None, tls_key=None):
    from hostdiag.transport.client import AgentClient, client_tls_context
    from hostdiag.transport.protocol import ProtocolError

    token = read_token(token_file, "--token-file") if token_file else None
    context = None
    if address.startswith("tls://"):
        try:
            context = client_tls_context(tls_ca, tls_cert, tls_key)
        except ValueError as exc:
            raise UsageError("--tls-ca/--tls-cert/--tls-key: %s" % exc) from None
    try:
        client = AgentClient.connect(address, token=token, timeout=CONNECT_TIMEOUT_S, ssl_context=context)
    except ValueError as exc:
        raise UsageError("--agent: %s" % exc) from None
    except (OSError, ProtocolError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise CommandFailed("cannot reach the agent at %s: %s (is `diag agent` running? or read a collector "
                     "store with --store DIR --host H)" % (address, reason)) from None
    try:
        return AgentHistory(client, address, spool_dir)
    except BaseException:
        client.close()
        raise


# -- a moment -----------------------------------------------------------------

class Moment:
    """The record at or before ``asked_ns``, the one ``window_s`` before it
    (None: the record before it), the rates between them and the findings.

    ``tables``: the record whose process and socket tables are shown (the
    record itself, else the nearest one that has them, else None);
    ``gap``: the gap (:func:`hostdiag.derive.gaps.find_gaps`) that holds
    ``asked_ns``, or {"since_ns", "seconds"} when nothing was sampled since
    the record and it is over two intervals old, else None."""

    def __init__(self, asked_ns, record, previous, window_s, tables=(None, None), gap=None):
        from hostdiag.derive.rates import derive_rates
        from hostdiag.model.snapshot import Snapshot
        from hostdiag.findings import evaluate

        self.asked_ns = asked_ns
        self.record = record
        self.previous = previous
        self.window_s = window_s
        self.gap = gap
        self.tables, tables_previous = tables
        if self.tables is record:
            self.tables = tables_previous = None
        self.snapshot = typed_snapshot(Snapshot, _with_tables(record, self.tables))
        self.previous_snapshot = typed_snapshot(Snapshot, previous) if previous is not None else None
        self.rates = derive_rates(self.previous_snapshot, self.snapshot) if self.previous_snapshot else None
        if self.tables is not None and tables_previous is not None and self.rates is not None:
            table_rates = derive_rates(typed_snapshot(Snapshot, tables_previous),
                                       typed_snapshot(Snapshot, self.tables))
            self.rates = dict(self.rates, **{name: table_rates[name] for name in _TABLES})
        self.findings = evaluate(self.snapshot, self.rates, self.previous_snapshot)

    def summary(self):
        out = {"asked_ns": self.asked_ns, "asked": format_time(self.asked_ns),
               "record": _record_summary(self.record), "previous": _record_summary(self.previous),
               "window_s": self.window_s, "tables": _record_summary(self.tables), "gap": self.gap}
        return out


# The sections the agent takes every agent.table_every samples (null in between).
_TABLES = ("processes", "sockets", "cgroups", "netns")


def _with_tables(record, tables):
    """``record``'s snapshot with the tables (:data:`_TABLES`) of ``tables``."""
    if tables is None:
        return record
    snapshot = dict(record.snapshot)
    for name in _TABLES:
        snapshot[name] = tables.snapshot.get(name)
    return Rec(record.boot_id, record.seq, record.wall_ns, snapshot)


def typed_snapshot(snapshot_class, record):
    """``record``'s snapshot as ``snapshot_class``; CommandFailed naming the record."""
    try:
        return snapshot_class.from_dict(record.snapshot)
    except ValueError as exc:
        raise CommandFailed("record %s of boot %s cannot be read: %s" % (record.seq, record.boot_id, exc)) from None


def _record_summary(record):
    if record is None:
        return None
    return {"boot_id": record.boot_id, "seq": record.seq, "wall_ns": record.wall_ns,
            "time": format_time(record.wall_ns)}


def find_moment(history, asked_ns, window_s=None):
    """The :class:`Moment` at ``asked_ns``; CommandFailed when nothing is kept then."""
    record = history.at_or_before(asked_ns)
    if record is None:
        boots = history.boots()
        oldest = min((b["first_wall_ns"] for b in boots if b["first_wall_ns"] is not None), default=None)
        if oldest is None:
            raise CommandFailed("%s keeps no history yet" % history.label())
        raise CommandFailed("%s has nothing at or before %s: its oldest record is at %s"
                     % (history.label(), format_time(asked_ns), format_time(oldest)))
    if window_s is None:
        previous = history.get(record.boot_id, record.seq - 1)
        if previous is None:
            previous = history.at_or_before(record.wall_ns, boot_id=record.boot_id, before_seq=record.seq)
    else:
        previous = history.at_or_before(record.wall_ns - int(window_s * NS), boot_id=record.boot_id,
                                        before_seq=record.seq)
    return Moment(asked_ns, record, previous, window_s, nearest_tables(history, record),
                  gap_around(history, record, asked_ns))


def record_interval(history, record):
    """The sampling interval (seconds) the agent had when it took ``record``,
    else the one its agent reports now, else None."""
    value = (record.snapshot.get("agent") or {}).get("interval_s")
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    return history.interval_s


def record_point(record):
    """The :class:`hostdiag.derive.gaps.Point` of a record."""
    from hostdiag.derive.gaps import Point

    meta = record.snapshot.get("meta") or {}
    started = (record.snapshot.get("agent") or {}).get("started_wall_ns")
    mono = meta.get("mono_ns")
    return Point(record.boot_id, record.seq, record.wall_ns, mono if isinstance(mono, int) else None,
                 started if isinstance(started, int) else None)


def _first_of_next_boot(history, record):
    boots = history.boots()
    later = False
    for boot in boots:
        if later and boot["first_seq"] is not None:
            found = history.get(boot["boot_id"], boot["first_seq"])
            if found is not None:
                return found
        later = later or boot["boot_id"] == record.boot_id
    return None


def gap_around(history, record, asked_ns):
    """The gap holding ``asked_ns``, ``record`` being the record at or before
    it (see :class:`Moment`), or None when ``asked_ns`` is within two
    intervals of ``record`` or no interval is known."""
    from hostdiag.derive.gaps import GAP_INTERVALS, find_gaps

    interval = record_interval(history, record)
    if interval is None or asked_ns - record.wall_ns <= GAP_INTERVALS * interval * NS:
        return None
    following = history.next_after(record)
    if following is None:
        return {"since_ns": record.wall_ns, "seconds": (asked_ns - record.wall_ns) / NS}
    for gap in find_gaps([record_point(record), record_point(following)], interval, _seq_reasons(history)):
        return gap
    return None


def _seq_reasons(history):
    """{(boot_id, first missing seq): reason} of the seq gaps the history names."""
    return {(g["boot_id"], g["from_seq"]): g.get("reason") or "not_kept" for g in (history.gaps() or ())}


def time_gaps(history, from_ns, to_ns):
    """(the gaps (:func:`hostdiag.derive.gaps.find_gaps`) between the records
    kept from ``from_ns`` to ``to_ns``, the sampling interval in seconds they
    were judged by: the agent's, else the typical step); every record read once."""
    from hostdiag.derive.gaps import find_gaps, typical_interval

    points = [record_point(record) for record in history.records_between(from_ns, to_ns)]
    interval = history.interval_s or typical_interval(points)
    return find_gaps(points, interval, _seq_reasons(history)), interval


def _has_tables(record):
    return record is not None and any(record.snapshot.get(name) is not None for name in _TABLES)


def nearest_tables(history, record):
    """(the record with process/socket tables nearest in time to ``record``,
    the one with tables before that for their rates) of the same boot; either
    may be None. The one before is found through ``agent.tables_seq``; the
    one after is tried at ``agent.table_every`` records after that."""
    if _has_tables(record):
        return table_records(history, record)
    before, before_previous = table_records(history, record)
    every = (record.snapshot.get("agent") or {}).get("table_every")
    if before is None or not isinstance(every, int) or every < 1:
        return before, before_previous
    after = history.get(record.boot_id, before.seq + every)
    if not _has_tables(after) or after.seq <= record.seq:
        return before, before_previous
    if after.wall_ns - record.wall_ns < record.wall_ns - before.wall_ns:
        return after, before
    return before, before_previous


def table_records(history, record):
    """(record with the process/socket tables at or before ``record``, the
    one with tables before that) of the same boot; either may be None. The
    agent takes the tables every few records; ``agent.tables_seq`` of a
    record names the newest record before it that has them."""
    def has_tables(rec):
        return rec is not None and (rec.snapshot.get("processes") is not None
                                    or rec.snapshot.get("sockets") is not None)

    def hint(rec):
        value = (rec.snapshot.get("agent") or {}).get("tables_seq")
        return value if isinstance(value, int) and value < rec.seq else None

    current = record if has_tables(record) else None
    if current is None and hint(record) is not None:
        current = history.get(record.boot_id, hint(record))
        if not has_tables(current):
            current = None
    previous = None
    if current is not None and hint(current) is not None:
        previous = history.get(current.boot_id, hint(current))
        if not has_tables(previous):
            previous = None
    return current, previous

