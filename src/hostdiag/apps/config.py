"""Settings of the agent and the collector, declared once in :data:`SETTINGS`.

Each setting has a name (``section.key``), a kind that parses and bounds its
value, a default, a help line and an environment variable
(``HOSTDIAG_<SECTION>_<KEY>``). A value is resolved as

    default  <  file (TOML)  <  environment  <  command line

The file is the ``path`` argument, else ``$HOSTDIAG_CONFIG``, else none. Any bad
value raises :class:`ConfigError`, whose message is one line naming the key and
where the value came from. docs/config.md is generated from the table
(``python -m hostdiag.apps.config``) and a test keeps it in sync.
"""

import difflib
import ipaddress
import math
import os
import re
import sys
import tomllib
from collections import namedtuple

from hostdiag.apps.common import UsageError
from hostdiag.transport import protocol as P

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
DAY = 86400

ENV_PREFIX = "HOSTDIAG_"
ENV_CONFIG = "HOSTDIAG_CONFIG"
# sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH_BYTES = 107
MAX_PATH_BYTES = 4095
MAX_AGENTS = 10000


class ConfigError(UsageError):
    """A bad setting, file or override; ``str()`` is one line naming the key."""

    def __init__(self, message):
        super().__init__("config: " + " ".join(str(message).split()))


class _Invalid(ValueError):
    """A value a kind rejects; the caller adds the key and the source."""


def _shown(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a %s" % type(value).__name__


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt_seconds(seconds):
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%gs" % seconds


def _fmt_bytes(count):
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count >= size and count % size == 0:
            return "%d %s" % (count // size, unit)
    return "%d bytes" % count


# -- kinds: each turns a TOML value or a text (environment, command line) into a checked value


class _Kind:
    name = ""
    nullable = False

    def from_toml(self, value):
        return self.check(value)

    def from_text(self, text):
        if self.nullable and text.strip() == "":
            return None
        return self.check(text.strip())

    def check(self, value):
        raise NotImplementedError

    def show(self, value):
        return "none" if value is None else str(value)

    def limits(self):
        return ""


class _Number(_Kind):
    def __init__(self, lo, hi, integer=False, nullable=False):
        self.lo, self.hi, self.integer, self.nullable = lo, hi, integer, nullable
        self.name = "integer" if integer else "number"

    def _expect(self):
        return "must be %s between %s and %s" % ("an integer" if self.integer else "a number", self.lo, self.hi)

    def check(self, value):
        if value is None and self.nullable:
            return None
        if isinstance(value, str):
            try:
                value = int(value, 10) if self.integer else float(value)
            except ValueError:
                raise _Invalid("%s, got %s" % (self._expect(), _shown(value))) from None
        if not _number(value) or (self.integer and not isinstance(value, int)):
            raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
        return value if self.integer else float(value)

    def limits(self):
        return "%s to %s" % (self.lo, self.hi)


_DURATION = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h|d)?$")
_DURATION_UNITS = {None: 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY}


class _Duration(_Kind):
    """Seconds: a number, or text with a unit (250ms, 30s, 5m, 2h, 7d)."""

    name = "duration"

    def __init__(self, lo, hi, nullable=False):
        self.lo, self.hi, self.nullable = lo, hi, nullable

    def _expect(self):
        return "must be a duration between %s and %s (seconds, or like \"250ms\", \"5m\", \"7d\")" % (
            _fmt_seconds(self.lo), _fmt_seconds(self.hi))

    def check(self, value):
        if value is None and self.nullable:
            return None
        seconds = value
        if isinstance(value, str):
            match = _DURATION.match(value.strip())
            if match is None:
                raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        if not _number(seconds) or not math.isfinite(seconds) or not self.lo <= seconds <= self.hi:
            raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
        return float(seconds)

    def show(self, value):
        return "none" if value is None else _fmt_seconds(value)

    def limits(self):
        return "%s to %s" % (_fmt_seconds(self.lo), _fmt_seconds(self.hi))


_SIZE = re.compile(r"^([0-9]*\.?[0-9]+)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}


class _Size(_Kind):
    """Bytes: an integer, or text with a binary unit (64KiB, 16MiB, 1GiB; K, M, G alike)."""

    name = "size"

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def _expect(self):
        return "must be a size between %s and %s (bytes, or like \"64KiB\", \"16MiB\")" % (
            _fmt_bytes(self.lo), _fmt_bytes(self.hi))

    def check(self, value):
        count = value
        if isinstance(value, str):
            match = _SIZE.match(value.strip())
            if match is None:
                raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
            unit = (match.group(2) or "").upper()
            count = float(match.group(1)) * _SIZE_UNITS[unit[:1] if unit not in ("", "B") else unit]
            if count != int(count):
                raise _Invalid("%s, got %s (not a whole number of bytes)" % (self._expect(), _shown(value)))
            count = int(count)
        if not isinstance(count, int) or isinstance(count, bool) or not self.lo <= count <= self.hi:
            raise _Invalid("%s, got %s" % (self._expect(), _shown(value)))
        return count

    def show(self, value):
        return _fmt_bytes(value)

    def limits(self):
        return "%s to %s" % (_fmt_bytes(self.lo), _fmt_bytes(self.hi))


class _Bool(_Kind):
    name = "bool"
    _TEXT = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}

    def from_text(self, text):
        found = self._TEXT.get(text.strip().lower())
        if found is None:
            raise _Invalid("must be true or false, got %s" % _shown(text))
        return found

    def check(self, value):
        if not isinstance(value, bool):
            raise _Invalid("must be true or false, got %s" % _shown(value))
        return value

    def show(self, value):
        return "true" if value else "false"


class _Path(_Kind):
    """An absolute path (services run from /, so a relative path would mislead)."""

    name = "path"

    def __init__(self, nullable=False, max_bytes=MAX_PATH_BYTES):
        self.nullable, self.max_bytes = nullable, max_bytes

    def check(self, value):
        if value is None and self.nullable:
            return None
        if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
            raise _Invalid("must be an absolute path, got %s" % _shown(value))
        if len(os.fsencode(value)) > self.max_bytes:
            raise _Invalid("must be a path of at most %d bytes, got %d bytes"
                           % (self.max_bytes, len(os.fsencode(value))))
        return os.path.normpath(value)

    def limits(self):
        return "absolute, at most %d bytes" % self.max_bytes


class _Mode(_Kind):
    """File permission bits: 0o660 in TOML, or octal text "0660"."""

    name = "octal mode"
    _expect = "must be an octal file mode from 0000 to 0777 (like 0o660 or \"0660\")"

    def check(self, value):
        mode = value
        if isinstance(value, str):
            text = value.strip().lower()
            text = text[2:] if text.startswith("0o") else text
            if not re.fullmatch(r"[0-7]{1,4}", text):
                raise _Invalid("%s, got %s" % (self._expect, _shown(value)))
            mode = int(text, 8)
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            raise _Invalid("%s, got %s" % (self._expect, _shown(value)))
        return mode

    def show(self, value):
        return "0o%03o" % value

    def limits(self):
        return "0o000 to 0o777"


class _Group(_Kind):
    """A group name or numeric gid; whether it exists is checked when the socket is made."""

    name = "group"
    nullable = True

    def check(self, value):
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 32:
            return str(value)
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?", value):
            raise _Invalid("must be a group name or gid, got %s" % _shown(value))
        return value

    def limits(self):
        return "a name of at most 32 characters, or a gid"


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def parse_host_port(text):
    """(host, port) from "host:port" or "[ipv6]:port"; raises ValueError with the reason."""
    if not isinstance(text, str):
        raise ValueError("must be \"host:port\", got %s" % _shown(text))
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:] if close > 0 else ""
        if close < 0 or not rest.startswith(":"):
            raise ValueError("must be \"host:port\" or \"[ipv6]:port\", got %s" % _shown(text))
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("must have an IPv6 address in brackets, got %s" % _shown(text)) from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError("must be \"host:port\" or \"[ipv6]:port\", got %s" % _shown(text))
        if not _HOSTNAME.match(host):
            raise ValueError("must have a host name or IPv4 address, got %s" % _shown(text))
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("must have a port from 1 to 65535, got %s" % _shown(text))
    return host, int(port_text)


def parse_address(text):
    """("unix", path) or ("tcp", host, port) from "unix:/path" or "tcp:host:port"."""
    if isinstance(text, str) and text.startswith("unix:"):
        path = text[len("unix:"):]
        try:
            return ("unix", _Path(max_bytes=MAX_UNIX_PATH_BYTES).check(path))
        except _Invalid as exc:
            raise ValueError("unix: %s" % exc) from None
    if isinstance(text, str) and text.startswith("tcp:"):
        return ("tcp",) + parse_host_port(text[len("tcp:"):])
    raise ValueError("must be \"unix:/path\" or \"tcp:host:port\", got %s" % _shown(text))


class _HostPort(_Kind):
    name = "host:port"

    def check(self, value):
        try:
            parse_host_port(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        return value

    def limits(self):
        return "port 1 to 65535"


class _StoreLocation(_Kind):
    """The collector's store: a directory (SQLite) or clickhouse://HOST:PORT/DATABASE."""

    name = "path or clickhouse URL"

    def check(self, value):
        if isinstance(value, str) and value.startswith("clickhouse:"):
            from hostdiag.store.clickhouse import parse_url

            try:
                parse_url(value)
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
            return value
        return _Path().check(value)

    def limits(self):
        return "absolute path, or clickhouse://HOST:PORT/DATABASE"


Shard = namedtuple("Shard", "index count")
Shard.__doc__ = """This collector's share of the agents: shard ``index`` (1..count) of ``count``."""


class _Shard(_Kind):
    """"K/N": this collector pulls the agents whose name hashes to shard K of N."""

    name = "shard"

    def check(self, value):
        if isinstance(value, Shard):
            value = self.show(value)
        match = re.fullmatch(r"(\d{1,4})/(\d{1,4})", value) if isinstance(value, str) else None
        if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise _Invalid("must be K/N with 1 <= K <= N, got %s" % _shown(value))
        return Shard(int(match.group(1)), int(match.group(2)))

    def show(self, value):
        return "%d/%d" % tuple(value)

    def limits(self):
        return "K/N, 1 <= K <= N <= 9999"


AgentEntry = namedtuple("AgentEntry", "name address token_file tls_ca tls_cert tls_key",
                        defaults=(None, None))
AgentEntry.__doc__ = """One agent a collector pulls from (see ``collector.agents``)."""

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_AGENT_KEYS = ("name", "address", "token_file", "tls_ca", "tls_cert", "tls_key")


class _Agents(_Kind):
    """An array of tables: [[collector.agents]] name, address, token_file, tls_ca,
    tls_cert, tls_key.
    In the environment or on the command line: the same array in TOML syntax."""

    name = "array of agents"

    def from_text(self, text):
        try:
            value = tomllib.loads("v = " + text)["v"]
        except tomllib.TOMLDecodeError as exc:
            raise _Invalid("must be a TOML array of tables like "
                           "[{name = \"web1\", address = \"unix:/run/hostdiag/agent.sock\"}] (%s)" % exc) from None
        return self.check(value)

    def check(self, value):
        if not isinstance(value, (list, tuple)):
            raise _Invalid("must be an array of agent tables, got %s" % _shown(value))
        if len(value) > MAX_AGENTS:
            raise _Invalid("must list at most %d agents, got %d" % (MAX_AGENTS, len(value)))
        entries, names = [], set()
        for i, table in enumerate(value):
            where = "[%d]" % i
            if not isinstance(table, dict):
                raise _Invalid("must be a table, got %s" % _shown(table), where)
            for key in table:
                if key not in _AGENT_KEYS:
                    raise _Invalid("unknown key%s" % _did_you_mean(key, _AGENT_KEYS), "%s.%s" % (where, _named(key)))
            name = table.get("name")
            if not isinstance(name, str) or not _AGENT_NAME.match(name):
                raise _Invalid("must be 1 to 64 letters, digits, '.', '_' or '-' (it names a directory), got %s"
                               % _shown(name), where + ".name")
            if name in names:
                raise _Invalid("duplicate agent name %s" % _shown(name), where + ".name")
            names.add(name)
            try:
                address = parse_address(table.get("address"))
            except ValueError as exc:
                raise _Invalid(str(exc), where + ".address") from None
            paths = {}
            for key in ("token_file", "tls_ca", "tls_cert", "tls_key"):
                try:
                    paths[key] = _Path(nullable=True).check(table.get(key))
                except _Invalid as exc:
                    raise _Invalid(str(exc), "%s.%s" % (where, key)) from None
            if address[0] == "tcp" and paths["token_file"] is None:
                raise _Invalid("is required for a tcp: address", where + ".token_file")
            for key in ("tls_ca", "tls_cert", "tls_key"):
                if address[0] == "unix" and paths[key] is not None:
                    raise _Invalid("applies to tcp: addresses only", "%s.%s" % (where, key))
            if (paths["tls_cert"] is None) != (paths["tls_key"] is None):
                missing, other = ("tls_key", "tls_cert") if paths["tls_key"] is None else ("tls_cert", "tls_key")
                raise _Invalid("is required when %s is set" % other, "%s.%s" % (where, missing))
            entries.append(AgentEntry(name, table["address"], paths["token_file"], paths["tls_ca"],
                                      paths["tls_cert"], paths["tls_key"]))
        return tuple(entries)

    def show(self, value):
        return "[]" if not value else "%d agents" % len(value)

    def limits(self):
        return "at most %d agents; unique names of at most 64 characters" % MAX_AGENTS


ProbeEntry = namedtuple("ProbeEntry", "name kind target interval timeout status body slo latency")
ProbeEntry.__doc__ = """One availability probe of the agent (see ``probe.list``, docs/availability.md):
``interval`` and ``timeout`` in seconds, ``slo`` a percent, ``latency`` seconds or None."""

MAX_PROBES = 64
PROBE_KINDS = ("tcp", "http", "dns", "unix", "systemd", "process")
MAX_PROBE_TARGET_CHARS = 2048
MAX_PROBE_BODY_CHARS = 256
_PROBE_KEYS = ("name", "kind", "target", "interval", "timeout", "status", "body", "slo", "latency")
_PROBE_DEFAULTS = {"interval": 30.0, "timeout": 5.0, "status": 200, "body": None, "slo": 99.9, "latency": None}
_PROBE_INTERVAL = _Duration(0.1, DAY)
_PROBE_TIMEOUT = _Duration(0.01, 60)
_PROBE_STATUS = _Number(100, 599, integer=True)
_PROBE_SLO = _Number(50.0, 99.999)
_PROBE_LATENCY = _Duration(0.001, 60, nullable=True)
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@\\-]{1,240}\.(service|socket|target|mount|automount|swap|timer|path|"
                        r"slice|scope|device)$")


def check_probe_target(kind, target):
    """``target`` checked for a probe of ``kind``; raises ValueError with the reason."""
    if not isinstance(target, str) or not target or len(target) > MAX_PROBE_TARGET_CHARS:
        raise ValueError("must be a text of 1 to %d characters, got %s" % (MAX_PROBE_TARGET_CHARS, _shown(target)))
    if kind == "tcp":
        parse_host_port(target)
    elif kind == "http":
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError as exc:
            raise ValueError("must be an http:// or https:// URL, got %s (%s)" % (_shown(target), exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or any(
                c in target for c in " \r\n\t"):
            raise ValueError("must be an http:// or https:// URL with a host, got %s" % _shown(target))
    elif kind == "dns":
        if not _HOSTNAME.match(target):
            raise ValueError("must be a host name to resolve, got %s" % _shown(target))
    elif kind == "unix":
        try:
            _Path(max_bytes=MAX_UNIX_PATH_BYTES).check(target)
        except _Invalid as exc:
            raise ValueError(str(exc)) from None
    elif kind == "systemd":
        if not _UNIT_NAME.match(target):
            raise ValueError("must be a systemd unit name like \"ssh.service\", got %s" % _shown(target))
    elif kind == "process":
        if target.startswith("/"):
            try:
                _Path().check(target)
            except _Invalid as exc:
                raise ValueError(str(exc)) from None
        elif len(target) > 15 or "/" in target or "\x00" in target:
            raise ValueError("must be a pidfile (an absolute path) or a process name of at most 15 "
                             "characters (its comm), got %s" % _shown(target))
    return target


class _Probes(_Kind):
    """An array of tables: [[probe.list]] name, kind, target, interval, timeout,
    status, body, slo, latency. In the environment or on the command line: the
    same array in TOML syntax."""

    name = "array of probes"

    def from_text(self, text):
        try:
            value = tomllib.loads("v = " + text)["v"]
        except tomllib.TOMLDecodeError as exc:
            raise _Invalid("must be a TOML array of tables like "
                           "[{name = \"web\", kind = \"tcp\", target = \"127.0.0.1:80\"}] (%s)" % exc) from None
        return self.check(value)

    def check(self, value):
        if not isinstance(value, (list, tuple)):
            raise _Invalid("must be an array of probe tables, got %s" % _shown(value))
        if len(value) > MAX_PROBES:
            raise _Invalid("must list at most %d probes, got %d" % (MAX_PROBES, len(value)))
        entries, names = [], set()
        for i, table in enumerate(value):
            where = "[%d]" % i
            if isinstance(table, ProbeEntry):
                table = table._asdict()
            if not isinstance(table, dict):
                raise _Invalid("must be a table, got %s" % _shown(table), where)
            for key in table:
                if key not in _PROBE_KEYS:
                    raise _Invalid("unknown key%s" % _did_you_mean(key, _PROBE_KEYS), "%s.%s" % (where, _named(key)))
            name = table.get("name")
            if not isinstance(name, str) or not _AGENT_NAME.match(name):
                raise _Invalid("must be 1 to 64 letters, digits, '.', '_' or '-', got %s" % _shown(name),
                               where + ".name")
            if name in names:
                raise _Invalid("duplicate probe name %s" % _shown(name), where + ".name")
            names.add(name)
            kind = table.get("kind")
            if kind not in PROBE_KINDS:
                raise _Invalid("must be one of %s, got %s" % (", ".join(PROBE_KINDS), _shown(kind)), where + ".kind")
            try:
                target = check_probe_target(kind, table.get("target"))
            except ValueError as exc:
                raise _Invalid(str(exc), where + ".target") from None
            values = dict(_PROBE_DEFAULTS)
            for key, kind_of in (("interval", _PROBE_INTERVAL), ("timeout", _PROBE_TIMEOUT),
                                 ("status", _PROBE_STATUS), ("slo", _PROBE_SLO), ("latency", _PROBE_LATENCY)):
                if key in table:
                    try:
                        values[key] = kind_of.check(table[key])
                    except _Invalid as exc:
                        raise _Invalid(str(exc), "%s.%s" % (where, key)) from None
            if "body" in table:
                body = table["body"]
                if not isinstance(body, str) or not 1 <= len(body) <= MAX_PROBE_BODY_CHARS:
                    raise _Invalid("must be a text of 1 to %d characters, got %s" % (MAX_PROBE_BODY_CHARS,
                                                                                      _shown(body)), where + ".body")
                values["body"] = body
            for key in ("status", "body"):
                if key in table and kind != "http":
                    raise _Invalid("applies to http probes only", "%s.%s" % (where, key))
            entries.append(ProbeEntry(name, kind, target, values["interval"], values["timeout"], values["status"],
                                      values["body"], values["slo"], values["latency"]))
        return tuple(entries)

    def show(self, value):
        return "[]" if not value else "%d probes" % len(value)

    def limits(self):
        return "at most %d probes; unique names of at most 64 characters" % MAX_PROBES


class Setting(namedtuple("Setting", "name kind default help")):
    """One setting: ``name`` is "section.key"; ``kind`` parses and bounds it."""

    @property
    def env(self):
        return ENV_PREFIX + self.name.upper().replace(".", "_")

    @property
    def section(self):
        return self.name.split(".", 1)[0]

    @property
    def key(self):
        return self.name.split(".", 1)[1]


# The agent's budget is derived from its interval unless set.
BUDGET_DERIVED = None

SETTINGS = (
    Setting("agent.interval", _Duration(0.1, 3600), 1.0,
            "Seconds between two samples of the system counters."),
    Setting("agent.table_every", _Number(1, 3600, integer=True), 5,
            "The process, socket and cgroup tables are taken every N-th sample."),
    Setting("agent.cgroup_depth", _Number(0, 32, integer=True), 5,
            "Levels of the cgroup tree below each hierarchy's root that the cgroup table walks "
            "(docs/cgroups.md). Needs a restart."),
    Setting("agent.max_cgroups", _Number(1, 100000, integer=True), 2000,
            "Most cgroups in one sample's cgroup table; the rest are counted as omitted. Needs a restart."),
    Setting("agent.budget_ratio", _Number(0.05, 1.0), 0.5,
            "Time budget of one collection as a fraction of agent.interval, used when agent.budget is "
            "not set. An overrun is logged and counted; the schedule never drifts."),
    Setting("agent.budget", _Duration(0.01, 3600, nullable=True), BUDGET_DERIVED,
            "Time budget of one collection in seconds; at most agent.interval. "
            "Default: agent.interval x agent.budget_ratio."),
    Setting("agent.max_netns", _Number(2, 4096, integer=True), 16,
            "Network namespaces besides the host's whose counters and sockets one table sample reads; "
            "with more, a window moves over them in turn (each costs a sock_diag dump; "
            "docs/snapshot.md). Needs a restart."),
    Setting("spool.enabled", _Bool(), True,
            "Keep history on disk. Off: the memory ring only, lost on restart."),
    Setting("spool.dir", _Path(), "/var/lib/hostdiag/spool",
            "Directory of the on-disk history (segment files, agent_id). One agent per directory "
            "(a lock enforces it)."),
    Setting("spool.max_bytes", _Size(1 * MiB, 1 * TiB), 256 * MiB,
            "Total size of the segment files; the oldest segments are deleted beyond it. "
            "About 100 MB holds a day of 1 s snapshots with the tables every 5th."),
    Setting("spool.max_age", _Duration(60, 366 * DAY), 7 * DAY,
            "Segments whose newest record is older than this are deleted."),
    Setting("spool.segment_bytes", _Size(64 * KiB, 1 * GiB), 8 * MiB,
            "Size at which a segment file is closed and a new one begun; at most half of "
            "spool.max_bytes. Retention deletes whole segments."),
    Setting("spool.fsync_interval", _Duration(0, 3600), 5.0,
            "Seconds between fsyncs of the spool: the most history a power failure can lose "
            "(a killed agent loses nothing written). 0: fsync every record."),
    Setting("spool.retry_interval", _Duration(0.1, 3600), 10.0,
            "After a failed write (a full disk) the spool keeps history in memory only and tries "
            "again this often, in a new segment."),
    Setting("ring.max_records", _Number(1, 1000000, integer=True), 3600,
            "Records kept in memory (the newest ones), served without touching the disk."),
    Setting("ring.max_bytes", _Size(64 * KiB, 64 * GiB), 64 * MiB,
            "Compressed bytes kept in memory; whichever of the two ring limits is reached first applies."),
    Setting("server.unix_path", _Path(max_bytes=MAX_UNIX_PATH_BYTES), "/run/hostdiag/agent.sock",
            "The agent's Unix socket."),
    Setting("server.unix_mode", _Mode(), 0o660,
            "Permission bits of the Unix socket: who may connect."),
    Setting("server.unix_group", _Group(), None,
            "Group owning the Unix socket (name or gid). Default: the agent's group."),
    Setting("server.max_clients", _Number(1, 65536, integer=True), 256,
            "Connections served at once, Unix and TCP together; more are refused with an error frame."),
    Setting("server.send_buffer_bytes", _Size(4 * KiB, 1 * GiB), 4 * MiB,
            "Bytes queued for one client; a client that lets more pile up is dropped with an error frame."),
    Setting("server.read_timeout", _Duration(0.1, 3600), 30.0,
            "A client that sends part of a frame and then nothing for this long is dropped."),
    Setting("server.max_frame_bytes", _Size(P.MIN_FRAME_BYTES, P.MAX_FRAME_BYTES), P.DEFAULT_MAX_FRAME_BYTES,
            "Largest frame the server sends; a record that does not fit is not sent (docs/protocol.md)."),
    Setting("server.full_every", _Number(1, P.MAX_FULL_EVERY, integer=True), P.DEFAULT_FULL_EVERY,
            "A subscription gets a full snapshot every N frames, deltas between."),
    Setting("tcp.enabled", _Bool(), False,
            "Also listen on TCP (token authentication, optional TLS)."),
    Setting("tcp.listen", _HostPort(), "127.0.0.1:7781",
            "TCP address to listen on: \"host:port\" or \"[ipv6]:port\"."),
    Setting("tcp.token_file", _Path(nullable=True), None,
            "File holding the token TCP clients must present; required when tcp.enabled."),
    Setting("tcp.tls_cert", _Path(nullable=True), None,
            "TLS certificate chain (PEM); with tcp.tls_key, TCP is TLS only."),
    Setting("tcp.tls_key", _Path(nullable=True), None,
            "TLS private key (PEM) for tcp.tls_cert."),
    Setting("tcp.tls_client_ca", _Path(nullable=True), None,
            "CA certificates (PEM); when set, a TCP client must show a certificate one of them signed "
            "(mutual TLS), as well as the token. Needs tcp.tls_cert."),
    Setting("metrics.enabled", _Bool(), False,
            "Serve Prometheus /metrics over HTTP (docs/metrics.md)."),
    Setting("metrics.listen", _HostPort(), "127.0.0.1:9781",
            "Address of /metrics: \"host:port\" or \"[ipv6]:port\"; loopback unless metrics.allow_remote."),
    Setting("metrics.allow_remote", _Bool(), False,
            "Allow metrics.listen on a non-loopback address (the endpoint has no TLS or authentication)."),
    Setting("metrics.max_connections", _Number(1, 1024, integer=True), 16,
            "HTTP connections open at once; one more is closed at once."),
    Setting("metrics.max_request_bytes", _Number(1024, 65536, integer=True), 8192,
            "Largest HTTP request head (request line and headers), in bytes."),
    Setting("metrics.timeout", _Duration(0.1, 300), 10.0,
            "Seconds a request may take to arrive, and a response to be sent."),
    Setting("probe.list", _Probes(), (),
            "Availability probes, [[probe.list]] tables: name, kind (tcp, http, dns, unix, systemd, process), "
            "target, interval (default 30s), timeout (default 5s), status and body (http: the expected status, "
            "default 200, and a text the body must hold), slo (percent over 30 days, default 99.9), latency "
            "(a slower success counts against the SLO). docs/availability.md. Needs a restart."),
    Setting("probe.workers", _Number(1, 16, integer=True), 4,
            "Threads that run the probes; a probe due while all are busy, or while its previous run is still "
            "out, is skipped and counted. Needs a restart."),
    Setting("incidents.enabled", _Bool(), True,
            "Track incidents (docs/incidents.md): the agent judges every sample with the findings and "
            "the SLOs, and freezes the evidence of each incident into a bundle."),
    Setting("incidents.open_after", _Number(1, 10000, integer=True), 3,
            "An incident opens when a crit finding or an SLO burn alert holds for this many samples in a row."),
    Setting("incidents.close_after", _Number(1, 100000, integer=True), 10,
            "An open incident closes after this many samples in a row with neither."),
    Setting("incidents.before", _Duration(0, 86400), 120.0,
            "Seconds of history before an incident's start frozen into its bundle (the one-time cost of "
            "opening: about 1 ms per record on this machine)."),
    Setting("incidents.write_every", _Duration(0.1, 3600), 30.0,
            "An open incident's bundle is written again this often (and when it closes): the most of it a "
            "crash can lose (those records stay in the spool)."),
    Setting("incidents.max_count", _Number(1, 100000, integer=True), 50,
            "Bundles kept; the oldest are deleted beyond it."),
    Setting("incidents.max_bytes", _Size(64 * KiB, 1 * TiB), 256 * MiB,
            "Total size of the bundles; the oldest are deleted beyond it."),
    Setting("incidents.bundle_max_bytes", _Size(64 * KiB, 64 * MiB), 8 * MiB,
            "Size of one bundle: past it a long incident keeps its start and stops adding records (the "
            "report says so). At most incidents.max_bytes; the agent also keeps each bundle 4 KiB under "
            "server.max_frame_bytes, so that it travels in one frame."),
    Setting("collector.store", _StoreLocation(), "/var/lib/hostdiag/collector",
            "The collector's store of raw snapshots, per agent: a directory (SQLite, one collector), or "
            "clickhouse://HOST:PORT/DATABASE (the HTTP port; shared by collectors, docs/fleet.md)."),
    Setting("collector.shard", _Shard(), Shard(1, 1),
            "K/N: pull only the agents whose name hashes (CRC-32) to shard K of N, so that N collectors "
            "share one store. Overridden by --shard."),
    Setting("collector.agents", _Agents(), (),
            "Agents to pull from, [[collector.agents]] tables: name (a directory name), address "
            "(\"unix:/path\" or \"tcp:host:port\"), token_file (required for tcp), tls_ca (optional, tcp), tls_cert and tls_key (a client "
            "certificate for an agent with tcp.tls_client_ca)."),
    Setting("collector.poll_interval", _Duration(0.1, 3600), 5.0,
            "Records are pulled as the agents take them (a subscription), not polled. This is the "
            "first wait before reconnecting to an agent after a failure (doubling up to 60 s, with "
            "jitter), and how often, at most every 5 s, the status table is written and retention "
            "applied."),
    Setting("collector.host_max_bytes", _Size(1 * MiB, 1024 * TiB), 1 * GiB,
            "Stored bytes kept per agent (its compressed records); the oldest records are "
            "deleted beyond it. Overridden by --host-max-bytes."),
    Setting("collector.host_max_age", _Duration(60, 3660 * DAY), 30 * DAY,
            "Records older than this, measured against the agent's newest stored record, are "
            "deleted. Overridden by --host-max-age."),
    Setting("collector.findings", _Bool(), True,
            "Evaluate each record's findings as it is stored and keep them, with the rates of its processes "
            "and connections (ClickHouse), for `diag fleet` (docs/fleet.md). The writer's CPU: about 0.5 ms "
            "a record, 15 ms a record with the tables of 1,100 processes (benchmarks/README.md). Off: no "
            "findings and no process or connection rates are stored."),
)

_BY_NAME = {s.name: s for s in SETTINGS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))
_BY_ENV = {s.env: s for s in SETTINGS}


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]+")


def _named(name):
    """An unknown name as the message shows it: as written when it is plain,
    else quoted with its control characters and blanks escaped, so that the
    message stays one readable line that names exactly what was written."""
    return name if _PLAIN_NAME.fullmatch(name) else repr(name)


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return ", did you mean %s?" % close[0] if close else ""


class _Section:
    """The settings of one section, read-only, by attribute."""

    def __init__(self, name, values):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError("no setting %s.%s%s" % (self._name, key, _did_you_mean(key, self._values))) from None

    def __setattr__(self, key, value):
        raise AttributeError("settings are read-only")

    def __repr__(self):
        return "<%s %s>" % (self._name, self._values)


class Config:
    """Resolved settings: ``config.agent.interval`` or ``config["agent.interval"]``;
    ``config.source(name)`` says where a value came from."""

    def __init__(self, values, sources, path=None):
        self._values = dict(values)
        self._sources = dict(sources)
        self.path = path
        for section in SECTIONS:
            keys = {s.key: self._values[s.name] for s in SETTINGS if s.section == section}
            object.__setattr__(self, section, _Section(section, keys))

    def __getitem__(self, name):
        return self._values[name]

    def source(self, name):
        """"default", "file <path>", "env <VAR>", "command line" or "derived"."""
        return self._sources[name]

    def as_dict(self):
        """{section: {key: value}}, the agents and probes as tables: for printing or JSON."""
        out = {}
        for s in SETTINGS:
            value = self._values[s.name]
            if s.name in ("collector.agents", "probe.list"):
                value = [entry._asdict() for entry in value]
            out.setdefault(s.section, {})[s.key] = value
        return out

    def __repr__(self):
        return "Config(%r)" % self.as_dict()


def _raise(name, message, source, sub=""):
    raise ConfigError("%s%s: %s (%s)" % (name, sub, message, source))


def _apply(setting, convert, raw, source, values, sources):
    try:
        values[setting.name] = convert(raw)
    except _Invalid as exc:
        sub = exc.args[1] if len(exc.args) > 1 else ""
        _raise(setting.name, exc.args[0], source, sub)
    sources[setting.name] = source


def _read_file(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s: invalid TOML: %s" % (path, exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: invalid TOML: not UTF-8 text (byte %d)" % (path, exc.start)) from None


def _from_file(path, values, sources):
    document = _read_file(path)
    source = "file %s" % path
    for section, table in document.items():
        if section not in SECTIONS:
            raise ConfigError("%s: unknown section%s (%s)"
                              % (_named(section), _did_you_mean(section, SECTIONS), source))
        if not isinstance(table, dict):
            raise ConfigError("%s: must be a table, got %s (%s)" % (section, _shown(table), source))
        for key, raw in table.items():
            name = "%s.%s" % (section, key)
            setting = _BY_NAME.get(name)
            if setting is None:
                raise ConfigError("%s: unknown key%s (%s)" % (_named(name), _did_you_mean(name, _BY_NAME), source))
            _apply(setting, setting.kind.from_toml, raw, source, values, sources)


def _from_env(env, values, sources):
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        setting = _BY_ENV.get(var)
        if setting is None:
            # Only names in our sections are ours to reject (HOSTDIAG_CONFIG, _PURE, _DEBUG are not settings).
            if any(var.startswith(ENV_PREFIX + section.upper() + "_") for section in SECTIONS):
                raise ConfigError("%s: unknown environment variable%s" % (_named(var), _did_you_mean(var, _BY_ENV)))
            continue
        _apply(setting, setting.kind.from_text, env[var], "env %s" % var, values, sources)


def _from_overrides(overrides, values, sources):
    for name, raw in overrides.items():
        if raw is None:
            continue  # an option not given on the command line
        setting = _BY_NAME.get(name)
        if setting is None:
            raise ConfigError("%s: unknown key%s (command line)" % (_named(name), _did_you_mean(name, _BY_NAME)))
        convert = setting.kind.from_text if isinstance(raw, str) else setting.kind.from_toml
        _apply(setting, convert, raw, "command line", values, sources)


def _check_together(values, sources):
    """The rules that tie settings to each other."""
    interval = values["agent.interval"]
    if values["agent.budget"] is None:
        values["agent.budget"] = interval * values["agent.budget_ratio"]
        sources["agent.budget"] = "derived"
    elif values["agent.budget"] > interval:
        _raise("agent.budget", "must be at most agent.interval (%s), got %s"
               % (_fmt_seconds(interval), _fmt_seconds(values["agent.budget"])), sources["agent.budget"])
    if values["spool.segment_bytes"] * 2 > values["spool.max_bytes"]:
        _raise("spool.segment_bytes", "must be at most half of spool.max_bytes (%s), got %s"
               % (_fmt_bytes(values["spool.max_bytes"]), _fmt_bytes(values["spool.segment_bytes"])),
               sources["spool.segment_bytes"])
    bundle = values["incidents.bundle_max_bytes"]
    if bundle > values["incidents.max_bytes"]:
        _raise("incidents.bundle_max_bytes", "must be at most incidents.max_bytes (%s), got %s"
               % (_fmt_bytes(values["incidents.max_bytes"]), _fmt_bytes(bundle)), sources["incidents.bundle_max_bytes"])
    if values["tcp.enabled"] and values["tcp.token_file"] is None:
        _raise("tcp.token_file", "is required when tcp.enabled is true", sources["tcp.enabled"])
    if (values["tcp.tls_cert"] is None) != (values["tcp.tls_key"] is None):
        missing = "tcp.tls_key" if values["tcp.tls_key"] is None else "tcp.tls_cert"
        other = "tcp.tls_cert" if missing == "tcp.tls_key" else "tcp.tls_key"
        _raise(missing, "is required when %s is set" % other, sources[other])
    if values["tcp.tls_client_ca"] is not None and values["tcp.tls_cert"] is None:
        _raise("tcp.tls_cert", "is required when tcp.tls_client_ca is set (client certificates need TLS)",
               sources["tcp.tls_client_ca"])


def _check_metrics(values, sources):
    if values["metrics.enabled"] and not values["metrics.allow_remote"]:
        from hostdiag.transport.metrics_http import is_loopback

        if not is_loopback(parse_host_port(values["metrics.listen"])[0]):
            _raise("metrics.listen", "must be a loopback address unless metrics.allow_remote is true",
                   sources["metrics.listen"])


def load_config(path=None, env=os.environ, overrides=None):
    """Resolve every setting: defaults < file < environment < ``overrides``.

    ``path`` (else ``env["HOSTDIAG_CONFIG"]``) names a TOML file that must
    exist. ``overrides`` maps setting names to values from the command line:
    text is parsed like the environment, other values like TOML; None means
    "not given". Raises :class:`ConfigError`.
    """
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    if path is None:
        path = env.get(ENV_CONFIG) or None
    if path is not None:
        _from_file(os.fspath(path), values, sources)
    _from_env(env, values, sources)
    if overrides:
        _from_overrides(overrides, values, sources)
    _check_together(values, sources)
    _check_metrics(values, sources)
    return Config(values, sources, path)


def render_markdown():
    """The reference table of docs/config.md."""
    lines = ["| key | type | default | limits | environment | meaning |",
             "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        default = s.kind.show(s.default) if s.default is not None else "none"
        if s.name == "agent.budget":
            default = "interval x budget_ratio"
        lines.append("| `%s` | %s | `%s` | %s | `%s` | %s |" % (
            s.name, s.kind.name, default, s.kind.limits() or "", s.env, s.help.replace("|", "\\|")))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
