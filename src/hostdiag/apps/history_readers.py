"""Where the history commands read from: an agent over its socket
(:class:`AgentHistory`, docs/protocol.md) or one host of a collector's store
(:class:`StoreHistory`), and the moments they find in it.

Both readers answer the same questions: ``boots()``, ``gaps()``,
``retention()``, ``get(boot_id, seq)`` and ``at_or_before(wall_ns)``, each
record as a :data:`Rec`. :func:`open_history` picks the reader the options
name, first that applies: ``--store DIR`` (with ``--host H`` unless the store
has one host); ``--host H`` alone (the store of ``collector.store`` in the
settings); ``--agent ADDRESS`` (``unix:PATH``, ``tcp:HOST:PORT`` with
``--token-file``, and ``--tls-ca`` for TLS); the agent socket of the
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
        return self.info.get("retention")

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


def add_source_options(parser):
    """The options that say where the history is (see the module doc)."""
    group = parser.add_argument_group("where the history is")
    group.add_argument("--agent", metavar="ADDRESS",
                       help="an agent: unix:PATH (default %s) or tcp:HOST:PORT" % DEFAULT_AGENT)
    group.add_argument("--config", metavar="FILE",
                       help="settings: the agent's socket (server.unix_path), the store (collector.store)")
    group.add_argument("--token-file", metavar="FILE", help="token for a tcp: agent")
    group.add_argument("--tls-ca", metavar="FILE", help="CA to check a TLS agent's certificate")
    group.add_argument("--store", metavar="DIR|URL",
                       help="a collector's store instead of an agent: a directory or clickhouse://HOST:PORT/DB")
    group.add_argument("--host", metavar="NAME", help="the host in the store (agent name, hostname or agent id)")
    group.add_argument("--spool", metavar="DIR",
                       help="the agent's spool directory, read-only, for the gaps `diag history` lists")


def open_history(args):
    """The history the options name (see the module doc)."""
    from hostdiag.store.collector_store import StoreError, is_url, open_collector_store
    from hostdiag.apps.config import load_config

    if args.agent and (args.store or args.host):
        raise UsageError("--agent and --store/--host name two different histories: give one")
    config = None
    if args.config is not None or not (args.agent or args.store):
        config = load_config(args.config, os.environ)
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
    if args.agent:
        address = args.agent
    else:
        address = "unix:" + config.server.unix_path
        if spool_dir is None and os.path.isdir(config.spool.dir):
            spool_dir = config.spool.dir  # the same settings' agent: its spool, if it is on this host
    return connect_agent(client_address(address, args.tls_ca), args.token_file, args.tls_ca, spool_dir)


def connect_agent(address, token_file, tls_ca, spool_dir):
    from hostdiag.transport.client import AgentClient
    from hostdiag.transport.protocol import ProtocolError

    token = read_token(token_file, "--token-file") if token_file else None
    try:
        client = AgentClient.connect(address, token=token, timeout=CONNECT_TIMEOUT_S, cafile=tls_ca)
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
    (None: the record before it), the rates between them and the findings."""

    def __init__(self, asked_ns, record, previous, window_s):
        from hostdiag.derive.rates import derive_rates
        from hostdiag.model.snapshot import Snapshot
        from hostdiag.findings import evaluate

        self.asked_ns = asked_ns
        self.record = record
        self.previous = previous
        self.window_s = window_s
        self.snapshot = _typed(Snapshot, record)
        self.previous_snapshot = _typed(Snapshot, previous) if previous is not None else None
        self.rates = derive_rates(self.previous_snapshot, self.snapshot) if self.previous_snapshot else None
        self.findings = evaluate(self.snapshot, self.rates, self.previous_snapshot)

    def summary(self):
        out = {"asked_ns": self.asked_ns, "asked": format_time(self.asked_ns),
               "record": _record_summary(self.record), "previous": _record_summary(self.previous),
               "window_s": self.window_s}
        return out


def _typed(snapshot_class, record):
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
    return Moment(asked_ns, record, previous, window_s)


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

