"""`diag show`, `diag diff` and `diag history`: the past of a host, from its
agent's socket or from a collector's store.

    diag show --at TIME [--window N]      the `diag` report of a past moment
    diag diff A B                         what changed between two moments
    diag history                          what is kept: boots, ranges, gaps

A moment is the record nearest at or before TIME, and the record N seconds
before it (default: the record just before it) for the rates; the report is
the same text `diag` prints live (findings, rates, sections). TIME is
ISO-8601 (``2026-11-26T08:00:00Z``, ``2026-11-26 09:00``, ``08:00`` for
today, local time without a zone), epoch seconds (``1795680000``, or
nanoseconds when it has 17 digits or more), relative (``-10m``, ``10 minutes
ago``, ``-1h30m``) or ``now``.

Where history comes from, first that applies: ``--store DIR`` (with
``--host H`` unless the store has one host); ``--host H`` alone (the store
of ``collector.store`` in the settings); ``--agent ADDRESS`` (``unix:PATH``,
``tcp:HOST:PORT`` with ``--token-file``, and ``--tls-ca`` for TLS); the
agent socket of the settings (``--config`` or $HOSTDIAG_CONFIG); else
``unix:/run/hostdiag/agent.sock``.

Exit codes: 0 done; 1 could not do it (no agent, no store, nothing kept at
that time); 2 bad usage or configuration, one line.
"""

import argparse
import datetime
import json
import math
import os
import re
import sys
import time
from collections import namedtuple

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_AGENT = "unix:/run/hostdiag/agent.sock"
CONNECT_TIMEOUT_S = 10.0
DIFF_TOP = 15
PROCESS_TOP = 5
NS = 1_000_000_000


class UsageError(Exception):
    """Bad arguments: one line, exit 2."""


class Failed(Exception):
    """The command could not do its job: one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# -- time ---------------------------------------------------------------------

_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_SPAN_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)")
_EPOCH = re.compile(r"^@?([0-9]+(?:\.[0-9]+)?)$")
_TIME_HELP = ("give ISO-8601 (2026-11-26T08:00:00Z, 08:00), epoch seconds (1795680000) "
              "or relative (-10m, \"10 minutes ago\", now)")


def parse_span(text):
    """Seconds in "90", "10m", "1h30m", "2 hours", "1.5d"; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for match in _SPAN_PART.finditer(text):
        if match.start() != pos or match.group(2) not in _UNIT_SECONDS:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(text)
    return total


def parse_time(text, now_ns):
    """Nanoseconds since the epoch for a TIME argument (see the module doc);
    ValueError with the reason."""
    raw = text
    text = text.strip()
    lowered = text.lower()
    if lowered == "now":
        return now_ns
    relative = None
    if lowered.startswith("-"):
        relative = lowered[1:]
    elif lowered.endswith(" ago") or lowered.endswith("ago"):
        relative = lowered[:-3].strip()
    if relative is not None:
        try:
            return now_ns - int(parse_span(relative) * NS)
        except ValueError:
            raise ValueError("cannot read the relative time %r: %s" % (raw, _TIME_HELP)) from None
    match = _EPOCH.match(text)
    if match:
        value = float(match.group(1))
        digits = len(match.group(1).split(".")[0])
        return int(match.group(1)) if digits >= 17 and "." not in match.group(1) else int(value * NS)
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?\s*[a-z][a-z ]*", lowered):
        try:  # "10m", "10 minutes": before now, like "10m ago"
            return now_ns - int(parse_span(lowered) * NS)
        except ValueError:
            pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = datetime.time.fromisoformat(text)
        except ValueError:
            raise ValueError("cannot read the time %r: %s" % (raw, _TIME_HELP)) from None
        today = datetime.datetime.fromtimestamp(now_ns / NS).date()
        moment = datetime.datetime.combine(today, clock)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def format_time(ns):
    """Local ISO-8601 with milliseconds and the offset; "-" for None."""
    if ns is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ns / NS).astimezone()
    return moment.isoformat(timespec="milliseconds")


def format_span(seconds):
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return "%s%.1fs" % (sign, seconds)
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return "%s%dd%02dh%02dm" % (sign, days, hours, minutes)
    if hours:
        return "%s%dh%02dm%02ds" % (sign, hours, minutes, secs)
    return "%s%dm%02ds" % (sign, minutes, secs)


# -- where history comes from -------------------------------------------------

Rec = namedtuple("Rec", "boot_id seq wall_ns snapshot")
Rec.__doc__ = """One record: ``snapshot`` is the snapshot as plain data (a dict)."""


def _decode(payload):
    from hostdiag.transport.framing import decode_document
    from hostdiag.transport.protocol import ProtocolError

    try:
        return decode_document(payload)
    except ProtocolError as exc:
        raise Failed("a stored record cannot be decoded: %s" % exc.message) from None


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


def _agent_address(text, tls_ca):
    """The client's address for ``unix:PATH``, ``/PATH``, ``tcp:HOST:PORT``
    (TLS with ``--tls-ca``), ``tcp://``, ``tls://``."""
    if text.startswith("tcp:") and not text.startswith("tcp://"):
        return ("tls://" if tls_ca else "tcp://") + text[len("tcp:"):]
    if text.startswith("tcp://") and tls_ca:
        return "tls://" + text[len("tcp://"):]
    return text


def _read_token(path):
    try:
        with open(path, "rb") as f:
            token = f.read(4096).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("--token-file: cannot read %s: %s" % (path, getattr(exc, "strerror", None) or exc)) from None
    if not token:
        raise UsageError("--token-file: %s is empty" % path)
    return token


def _add_source_options(parser):
    group = parser.add_argument_group("where the history is")
    group.add_argument("--agent", metavar="ADDRESS",
                       help="an agent: unix:PATH (default %s) or tcp:HOST:PORT" % DEFAULT_AGENT)
    group.add_argument("--config", metavar="FILE",
                       help="settings: the agent's socket (server.unix_path), the store (collector.store)")
    group.add_argument("--token-file", metavar="FILE", help="token for a tcp: agent")
    group.add_argument("--tls-ca", metavar="FILE", help="CA to check a TLS agent's certificate")
    group.add_argument("--store", metavar="DIR", help="a collector's store instead of an agent")
    group.add_argument("--host", metavar="NAME", help="the host in the store (agent name, hostname or agent id)")
    group.add_argument("--spool", metavar="DIR",
                       help="the agent's spool directory, read-only, for the gaps `diag history` lists")


def open_history(args):
    """The history the options name (see the module doc)."""
    from hostdiag.store.sqlite import CollectorStore, StoreError
    from hostdiag.apps.config import ConfigError, load_config

    if args.agent and (args.store or args.host):
        raise UsageError("--agent and --store/--host name two different histories: give one")
    config = None
    if args.config is not None or not (args.agent or args.store):
        try:
            config = load_config(args.config, os.environ)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.store or args.host:
        directory = os.path.abspath(args.store) if args.store else config.collector.store
        try:
            store = CollectorStore(directory, readonly=True)
        except StoreError as exc:
            raise Failed(str(exc)) from None
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
            raise Failed(str(exc)) from None
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
    return connect_agent(_agent_address(address, args.tls_ca), args.token_file, args.tls_ca, spool_dir)


def connect_agent(address, token_file, tls_ca, spool_dir):
    from hostdiag.transport.client import AgentClient
    from hostdiag.transport.protocol import ProtocolError

    token = _read_token(token_file) if token_file else None
    try:
        client = AgentClient.connect(address, token=token, timeout=CONNECT_TIMEOUT_S, cafile=tls_ca)
    except ValueError as exc:
        raise UsageError("--agent: %s" % exc) from None
    except (OSError, ProtocolError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise Failed("cannot reach the agent at %s: %s (is `diag agent` running? or read a collector "
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
        raise Failed("record %s of boot %s cannot be read: %s" % (record.seq, record.boot_id, exc)) from None


def _record_summary(record):
    if record is None:
        return None
    return {"boot_id": record.boot_id, "seq": record.seq, "wall_ns": record.wall_ns,
            "time": format_time(record.wall_ns)}


def find_moment(history, asked_ns, window_s=None):
    """The :class:`Moment` at ``asked_ns``; Failed when nothing is kept then."""
    record = history.at_or_before(asked_ns)
    if record is None:
        boots = history.boots()
        oldest = min((b["first_wall_ns"] for b in boots if b["first_wall_ns"] is not None), default=None)
        if oldest is None:
            raise Failed("%s keeps no history yet" % history.label())
        raise Failed("%s has nothing at or before %s: its oldest record is at %s"
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


# -- show ---------------------------------------------------------------------

def _want_color(fmt):
    return fmt == "text" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def render_show(history, moment, color=False):
    from hostdiag.views.report import render_text

    record, previous = moment.record, moment.previous
    line = "history  %s  record %s seq %d at %s (asked %s, %s before)" % (
        history.label(), _short(record.boot_id), record.seq, format_time(record.wall_ns),
        format_time(moment.asked_ns), format_span((moment.asked_ns - record.wall_ns) / NS))
    if previous is None:
        rates_line = "rates    none: no earlier record of this boot is kept"
    else:
        rates_line = "rates    from seq %d at %s" % (previous.seq, format_time(previous.wall_ns))
    return line + "\n" + rates_line + "\n" + render_text(moment.snapshot, moment.rates, moment.findings, color=color)


def _short(boot_id):
    return "boot %s" % (str(boot_id)[:8] if boot_id else "?")


def show_document(history, moment):
    return {"source": history.describe(), **moment.summary(), "snapshot": moment.record.snapshot,
            "rates": moment.rates, "findings": moment.findings}


# -- diff (pure functions of two moments) --------------------------------------

def finding_changes(before, after):
    """{"appeared", "cleared", "persisting"}: findings keyed by (id, subject)."""
    def key(finding):
        return (finding.get("id"), finding.get("subject"))

    old = {key(f): f for f in before}
    new = {key(f): f for f in after}
    return {
        "appeared": [f for k, f in new.items() if k not in old],
        "cleared": [f for k, f in old.items() if k not in new],
        "persisting": [f for k, f in new.items() if k in old],
    }


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(data, prefix, out):
    if isinstance(data, dict):
        for key, value in data.items():
            _leaves(value, "%s.%s" % (prefix, key) if prefix else str(key), out)
    elif _number(data):
        out[prefix] = data
    return out


_RATE_SKIP = ("interval_s", "comparable", "reason")


def measures(snapshot, rates):
    """{path: number}: every rate of ``rates`` ("rate." paths) and the gauges
    of the snapshot that say how loaded the host is ("gauge." paths)."""
    from hostdiag.findings import filesystem_usage

    out = {}
    if rates is not None and rates.get("comparable"):
        for key, value in rates.items():
            if key not in _RATE_SKIP:
                _leaves(value, "rate." + key, out)
    cpu = snapshot.cpu
    if cpu is not None:
        for key in ("load1", "load5", "load15", "runnable", "threads"):
            value = (cpu.loadavg or {}).get(key)
            if _number(value):
                out["gauge.cpu.loadavg." + key] = value
        for key in ("procs_running", "procs_blocked"):
            value = getattr(cpu, key, None)
            if _number(value):
                out["gauge.cpu." + key] = value
    memory = snapshot.memory
    if memory is not None:
        for key, value in (memory.meminfo or {}).items():
            if _number(value):
                out["gauge.memory.meminfo." + key] = value
    for resource, kinds in (snapshot.pressure or {}).items():
        for kind, values in (kinds or {}).items():
            value = (values or {}).get("avg10")
            if _number(value):
                out["gauge.pressure.%s.%s.avg10_pct" % (resource, kind)] = value
    for fs in snapshot.filesystems or ():
        if isinstance(fs, dict) and fs.get("mountpoint"):
            space, inodes = filesystem_usage(fs)
            if space is not None:
                out["gauge.filesystems.%s.used_pct" % fs["mountpoint"]] = space
            if inodes is not None:
                out["gauge.filesystems.%s.inodes_used_pct" % fs["mountpoint"]] = inodes
    return out


def _floor(path):
    """The smallest change of a measure worth showing, in its own unit."""
    if path.endswith("_pct"):
        return 1.0
    if path.endswith("_bits_per_s"):
        return 8192.0
    if path.endswith("bytes_per_s"):
        return 1024.0
    if path.startswith("gauge.memory.meminfo."):
        return 1024.0 * 1024.0
    if path.startswith("gauge.cpu.loadavg.load"):
        return 0.1
    return 1.0


def counter_changes(before, after, top=DIFF_TOP):
    """The ``top`` biggest relative changes between two {path: number} maps:
    [{"path", "a", "b", "change", "relative"}], where ``relative`` is
    (b - a) / |a| (None when a is 0). Changes smaller than a floor per unit
    (1 point of a percentage, 1 KiB/s, 1 MiB of memory, 1 per second) are
    noise and left out. Ordered by |relative| (from 0: first), then by size."""
    rows = []
    for path in sorted(set(before) & set(after)):
        a, b = before[path], after[path]
        change = b - a
        if abs(change) < _floor(path):
            continue
        relative = change / abs(a) if a else None
        rows.append({"path": path, "a": a, "b": b, "change": change, "relative": relative})
    rows.sort(key=lambda r: (-(math.inf if r["relative"] is None else abs(r["relative"])),
                             -abs(r["change"]) / _floor(r["path"]), r["path"]))
    return rows[:top]


def process_view(current, previous, top=PROCESS_TOP):
    """The process table of a tables record: totals, rates against the
    previous tables record (None: RSS only) and the top lists; None when the
    record has no process table."""
    from hostdiag.derive.process_rates import process_key, process_rates, top_processes

    if current is None or not isinstance(current.snapshot.get("processes"), dict):
        return None
    section = current.snapshot["processes"]
    rates = {}
    if previous is not None and isinstance(previous.snapshot.get("processes"), dict):
        dt = ((current.snapshot.get("meta") or {}).get("mono_ns", 0)
              - (previous.snapshot.get("meta") or {}).get("mono_ns", 0)) / NS
        ticks = (current.snapshot.get("meta") or {}).get("clock_ticks")
        rates = process_rates(previous.snapshot["processes"], section, dt, ticks)
    by_key = {process_key(r): r for r in section.get("processes") or ()}
    return {"seq": current.seq, "wall_ns": current.wall_ns, "rated": bool(rates),
            "counts": section.get("counts") or {}, "top": top_processes(section, rates, top),
            "keys": by_key, "rates": rates}


def process_changes(a, b):
    """What changed in the process tables between two process views: totals,
    B's top CPU and RSS with their values at A, and the top processes of one
    side that the other side does not have (started, exited)."""
    from hostdiag.derive.process_rates import process_key

    if a is None or b is None:
        return None
    totals = {}
    for key in ("total", "threads"):
        totals[key] = {"a": a["counts"].get(key), "b": b["counts"].get(key)}
    rows = {}
    for category, measure in (("cpu", "cpu_pct"), ("rss", "rss_bytes")):
        out = []
        for row in b["top"].get(category) or ():
            key = process_key(row)
            before = None
            if key in a["keys"]:
                before = (a["rates"].get(key) or {}).get(measure) if measure == "cpu_pct" \
                    else a["keys"][key].get(measure)
            out.append({"pid": row["pid"], "comm": row.get("comm"), "user": row.get("user"),
                        "measure": measure, "a": before, "b": row.get(measure), "new": key not in a["keys"]})
        rows[category] = out
    exited = sorted({(r["pid"], r.get("comm")) for rows_ in a["top"].values() for r in rows_
                     if process_key(r) not in b["keys"]})
    started = sorted({(r["pid"], r.get("comm")) for rows_ in b["top"].values() for r in rows_
                      if process_key(r) not in a["keys"]})
    return {"totals": totals, "top": rows,
            "exited": [{"pid": pid, "comm": comm} for pid, comm in exited],
            "started": [{"pid": pid, "comm": comm} for pid, comm in started]}


def socket_changes(a, b):
    """What changed in the socket tables: totals, TCP states, listeners."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None

    def listeners(section):
        return {"%s:%s" % (entry.get("local"), entry.get("local_port")): entry
                for entry in section.get("listeners") or () if isinstance(entry, dict)}

    totals = {}
    for key, value_of in (("tcp", lambda s: s.get("tcp_total")), ("udp", lambda s: s.get("udp_total")),
                          ("unix", lambda s: (s.get("unix") or {}).get("total"))):
        before, after = value_of(a), value_of(b)
        if before is not None or after is not None:
            totals[key] = {"a": before, "b": after}
    states_a, states_b = a.get("tcp_states") or {}, b.get("tcp_states") or {}
    states = {state: {"a": states_a.get(state, 0), "b": states_b.get(state, 0)}
              for state in sorted(set(states_a) | set(states_b))
              if states_a.get(state, 0) != states_b.get(state, 0)}
    listen_a, listen_b = listeners(a), listeners(b)
    return {"totals": totals, "tcp_states": states,
            "listeners_opened": sorted(set(listen_b) - set(listen_a)),
            "listeners_closed": sorted(set(listen_a) - set(listen_b))}


def compute_diff(history, moment_a, moment_b, top=DIFF_TOP):
    """The whole diff as plain data."""
    tables = []
    for moment in (moment_a, moment_b):
        current, previous = table_records(history, moment.record)
        tables.append((current, previous))
    views = [process_view(current, previous) for current, previous in tables]
    sockets = [current.snapshot.get("sockets") if current is not None else None for current, _ in tables]
    processes = process_changes(*views)
    return {
        "source": history.describe(),
        "a": moment_a.summary(),
        "b": moment_b.summary(),
        "apart_s": (moment_b.record.wall_ns - moment_a.record.wall_ns) / NS,
        "same_boot": moment_a.record.boot_id == moment_b.record.boot_id,
        "findings": finding_changes(moment_a.findings, moment_b.findings),
        "counters": counter_changes(measures(moment_a.snapshot, moment_a.rates),
                                    measures(moment_b.snapshot, moment_b.rates), top),
        "rates": {"a": moment_a.rates is not None and bool(moment_a.rates.get("comparable")),
                  "b": moment_b.rates is not None and bool(moment_b.rates.get("comparable"))},
        "processes": None if processes is None else dict(
            processes, a_seq=views[0]["seq"], b_seq=views[1]["seq"], rated=views[0]["rated"] and views[1]["rated"]),
        "sockets": socket_changes(*sockets),
        "tables_seq": [None if current is None else current.seq for current, _ in tables],
    }


def _value(path, value):
    from hostdiag.views.report import human_bits, human_bytes, human_count

    if value is None:
        return "-"
    if path.endswith("_pct"):
        return "%.1f%%" % value
    if path.endswith("_bits_per_s"):
        return human_bits(value, "/s")
    if path.endswith("bytes_per_s"):
        return human_bytes(value, "/s")
    if path.endswith("_bytes") or path.startswith("gauge.memory.meminfo."):
        return human_bytes(value)
    if path.endswith("_per_s"):
        return human_count(round(value, 1), "/s")
    if isinstance(value, float):
        return "%.2f" % value if abs(value) < 100 else human_count(round(value))
    return human_count(value)


def _change(row):
    if row["relative"] is None:
        return "from 0"
    return "%+.0f%%" % (100.0 * row["relative"]) if abs(row["relative"]) < 100 else "x%.0f" % (
        row["b"] / row["a"] if row["a"] else math.inf)


def render_diff(diff):
    lines = []
    a, b = diff["a"], diff["b"]
    source = diff["source"]
    where = ("agent %s" % source.get("address")) if source.get("source") == "agent" else (
        "store %s host %s" % (source.get("store"), source.get("host")))
    lines.append("diff  %s  %s" % (source.get("hostname") or "?", where))
    for name, moment in (("A", a), ("B", b)):
        record = moment["record"]
        lines.append("  %s  %s  %s seq %d  (asked %s)" % (
            name, record["time"], _short(record["boot_id"]), record["seq"], moment["asked"]))
    lines.append("  B - A = %s%s" % (format_span(diff["apart_s"]), "" if diff["same_boot"] else
                                     "  (different boots: the host rebooted between them)"))

    findings = diff["findings"]
    lines.append("FINDINGS")
    changed = False
    for label, key in (("appeared", "appeared"), ("cleared", "cleared"), ("still", "persisting")):
        for finding in findings[key]:
            changed = True
            lines.append("  %-9s %-4s  %s  [%s]" % (label, str(finding.get("severity", "")).upper(),
                                                   finding.get("title"), finding.get("id")))
    if not changed:
        lines.append("  none at either moment")

    lines.append("COUNTERS  biggest relative changes of rates and gauges, A -> B")
    if not diff["rates"]["a"] or not diff["rates"]["b"]:
        lines.append("  (rates missing at %s: no earlier record of that boot; gauges only there)"
                     % " and ".join(n for n in ("A", "B") if not diff["rates"][n.lower()]))
    if diff["counters"]:
        width = min(56, max(len(r["path"]) for r in diff["counters"]))
        for row in diff["counters"]:
            lines.append("  %-*s  %12s -> %-12s %s" % (width, row["path"], _value(row["path"], row["a"]),
                                                        _value(row["path"], row["b"]), _change(row)))
    else:
        lines.append("  no change above the noise floor")

    processes = diff["processes"]
    lines.append("PROCESSES")
    if processes is None:
        missing = [name for name, seq in zip("AB", diff["tables_seq"]) if seq is None]
        if missing:
            lines.append("  not in these snapshots: no record with the process table at or before %s (the agent "
                         "takes it every agent.table_every records)" % " and ".join(missing))
        else:
            lines.append("  not in these snapshots")
    else:
        totals = processes["totals"]
        lines.append("  tables of seq %s and %s: %s -> %s processes, %s -> %s threads" % (
            processes["a_seq"], processes["b_seq"], totals["total"]["a"], totals["total"]["b"],
            totals["threads"]["a"], totals["threads"]["b"]))
        if not processes["rated"]:
            lines.append("  (CPU needs two tables in a row of the same boot: not kept here)")
        for category, label in (("cpu", "top cpu"), ("rss", "top rss")):
            for row in processes["top"].get(category) or ():
                path = row["measure"]  # cpu_pct or rss_bytes: _value formats by the suffix
                lines.append(("  %-8s %7d %-16s %10s -> %-10s %s" % (
                    label, row["pid"], (row.get("comm") or "?")[:16], _value(path, row["a"]),
                    _value(path, row["b"]), "(new)" if row["new"] else "")).rstrip())
        if processes["started"]:
            lines.append("  started  " + ", ".join("%s[%d]" % (p["comm"], p["pid"]) for p in processes["started"]))
        if processes["exited"]:
            lines.append("  exited   " + ", ".join("%s[%d]" % (p["comm"], p["pid"]) for p in processes["exited"]))

    sockets = diff["sockets"]
    lines.append("SOCKETS")
    if sockets is None:
        lines.append("  not in these snapshots")
    else:
        totals = "  ".join("%s %s -> %s" % (k, v["a"], v["b"]) for k, v in sockets["totals"].items())
        lines.append("  totals   " + (totals or "-"))
        if sockets["tcp_states"]:
            lines.append("  tcp      " + "  ".join("%s %s -> %s" % (k, v["a"], v["b"])
                                                  for k, v in sockets["tcp_states"].items()))
        if sockets["listeners_opened"]:
            lines.append("  listen+  " + ", ".join(sockets["listeners_opened"]))
        if sockets["listeners_closed"]:
            lines.append("  listen-  " + ", ".join(sockets["listeners_closed"]))
    return "\n".join(lines) + "\n"


# -- history ------------------------------------------------------------------

def history_document(history):
    boots = history.boots(counts=True) if history.kind == "agent" else history.boots()
    return {"source": history.describe(), "boots": boots, "gaps": history.gaps(),
            "retention": history.retention()}


def render_history(document):
    lines = []
    source = document["source"]
    if source.get("source") == "agent":
        lines.append("history of %s (agent %s) at %s" % (source.get("hostname") or "?", source.get("agent_id"),
                                                         source.get("address")))
    else:
        lines.append("history of %s in the store %s" % (source.get("host"), source.get("store")))
    boots = document["boots"]
    lines.append("BOOTS  %d" % len(boots))
    for boot in boots:
        span = None
        if boot["first_wall_ns"] is not None and boot["last_wall_ns"] is not None:
            span = (boot["last_wall_ns"] - boot["first_wall_ns"]) / NS
        count = boot.get("records")
        lines.append("  %s  seq %s..%s  %s .. %s  (%s%s)%s" % (
            boot["boot_id"], boot["first_seq"], boot["last_seq"], format_time(boot["first_wall_ns"]),
            format_time(boot["last_wall_ns"]), format_span(span),
            "" if count is None else ", %d records" % count, "  current" if boot.get("current") else ""))
    gaps = document["gaps"]
    if gaps is None:
        lines.append("GAPS   not reported by the agent; give --spool DIR (its spool, read-only) to list them")
    else:
        lines.append("GAPS   %d" % len(gaps))
        for gap in gaps:
            size = "" if gap["to_seq"] is None else " (%d records)" % (gap["to_seq"] - gap["from_seq"] + 1)
            lines.append("  %s  seq %s..%s%s  %s" % (gap["boot_id"], gap["from_seq"],
                                                     "end" if gap["to_seq"] is None else gap["to_seq"], size,
                                                     gap.get("reason") or ""))
    retention = document.get("retention")
    if retention:
        lines.append("KEPT   " + "  ".join("%s %s" % (k, v) for k, v in retention.items() if v is not None))
    return "\n".join(lines) + "\n"


# -- entry points -------------------------------------------------------------

def _window(text):
    try:
        value = parse_span(text)
    except ValueError:
        raise UsageError("--window: must be seconds or a duration like 30s or 5m, got %r" % text) from None
    if value <= 0:
        raise UsageError("--window: must be more than 0 seconds, got %r" % text)
    return value


def _time(option, text, now_ns):
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise UsageError("%s: %s" % (option, exc)) from None


def _emit(text):
    sys.stdout.write(text)
    sys.stdout.flush()


_RELATIVE_ARG = re.compile(r"^-[0-9.]")


def _protect_relative(argv):
    """argparse reads "-10m" as an unknown option; with a leading space it
    reads it as a value (argparse never takes an argument containing a space
    for an option), and parse_time strips the space."""
    return [" " + arg if _RELATIVE_ARG.match(arg) else arg for arg in argv]


def _run(prog, argv, build, act, check=None):
    """Parse, check the arguments (``check(args)``, before any connection),
    open the history, act; the exit code, errors as one line."""
    history = None
    try:
        args = build().parse_args(_protect_relative(argv))
        if check is not None:
            check(args)
        history = open_history(args)
        _emit(act(args, history))
        return EXIT_OK
    except UsageError as exc:
        sys.stderr.write("%s: error: %s\n" % (prog, exc))
        return EXIT_USAGE
    except Failed as exc:
        sys.stderr.write("%s: %s\n" % (prog, exc))
        return EXIT_FAILED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OSError, ConnectionError, TimeoutError) as exc:
        sys.stderr.write("%s: %s\n" % (prog, getattr(exc, "strerror", None) or exc))
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - protocol errors and the like: one line, never a trace
        if os.environ.get("HOSTDIAG_DEBUG"):
            raise
        sys.stderr.write("%s: %s: %s\n" % (prog, type(exc).__name__, exc))
        return EXIT_FAILED
    finally:
        if history is not None:
            history.close()


def _json(document):
    return json.dumps(document, indent=2, default=str) + "\n"


def main_show(argv):
    """`diag show --at TIME [--window N] [--format text|json]`: the exit code."""
    def build():
        parser = _Parser(prog="diag show", description="The diag report of a past moment.")
        parser.add_argument("--at", default="now", metavar="TIME",
                            help="ISO-8601, epoch seconds, or relative like -10m (default now)")
        parser.add_argument("--window", type=_window, default=None, metavar="N",
                            help="rates over the N seconds before the record (default: from the record before)")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        _add_source_options(parser)
        return parser

    def check(args):
        args.asked_ns = _time("--at", args.at, time.time_ns())

    def act(args, history):
        moment = find_moment(history, args.asked_ns, args.window)
        if args.format == "json":
            return _json(show_document(history, moment))
        return render_show(history, moment, color=_want_color(args.format))

    return _run("diag show", argv, build, act, check)


def main_diff(argv):
    """`diag diff A B`: the exit code."""
    def build():
        parser = _Parser(prog="diag diff", description="What changed between two moments.")
        parser.add_argument("a", metavar="A", help="the earlier moment (a TIME, as for diag show --at)")
        parser.add_argument("b", metavar="B", nargs="?", default="now", help="the later moment (default now)")
        parser.add_argument("--window", type=_window, default=None, metavar="N",
                            help="rates at each moment over N seconds (default: from the record before)")
        parser.add_argument("--top", type=int, default=DIFF_TOP, metavar="N", help="counters shown (default 15)")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        _add_source_options(parser)
        return parser

    def check(args):
        now = time.time_ns()
        args.asked_a, args.asked_b = _time("A", args.a, now), _time("B", args.b, now)
        if args.top < 1:
            raise UsageError("--top: must be at least 1")

    def act(args, history):
        moment_a = find_moment(history, args.asked_a, args.window)
        moment_b = find_moment(history, args.asked_b, args.window)
        diff = compute_diff(history, moment_a, moment_b, args.top)
        if args.format == "json":
            return _json(diff)
        return render_diff(diff)

    return _run("diag diff", argv, build, act, check)


def main_history(argv):
    """`diag history`: the exit code."""
    def build():
        parser = _Parser(prog="diag history", description="What history is kept: boots, ranges, gaps.")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        _add_source_options(parser)
        return parser

    def act(args, history):
        document = history_document(history)
        if args.format == "json":
            return _json(document)
        return render_history(document)

    return _run("diag history", argv, build, act)
