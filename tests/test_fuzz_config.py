"""Property-based fuzzing of the settings loader (apps/config.py).

Arbitrary TOML documents (known and unknown sections and keys, values of
every TOML type and size), arbitrary bytes as the file, and arbitrary values
of the environment variables and the command line: :func:`load_config`
either returns settings or raises ConfigError, one line that names the key
(or the section, the variable, the file) it is about; never another
exception. The budget is in fuzzsupport.py.
"""

import datetime
import json
import math
import os
import tempfile

from hypothesis import example, given
from hypothesis import strategies as st

from hostdiag.apps.config import _BY_ENV, _BY_NAME, SECTIONS, ConfigError, load_config

from fuzzsupport import FUZZ

NAMES = sorted(_BY_NAME)
ENV_NAMES = sorted(_BY_ENV)


def _toml(value):
    """``value`` written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[%s]" % ", ".join(_toml(v) for v in value)
    return "{%s}" % ", ".join("%s = %s" % (json.dumps(k), _toml(v)) for k, v in value.items())


def _document(tables):
    lines = []
    for section, table in tables.items():
        if isinstance(table, dict):
            lines.append("[%s]" % json.dumps(section))
            lines.extend("%s = %s" % (json.dumps(key), _toml(value)) for key, value in table.items())
        else:
            lines.insert(0, "%s = %s" % (json.dumps(section), _toml(table)))
    return "\n".join(lines) + "\n"


TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
SCALARS = st.one_of(
    st.booleans(), st.integers(-(1 << 64), 1 << 64), st.floats(), TEXT,
    st.sampled_from(["1s", "250ms", "7d", "0", "-1", "1e999", "16MiB", "0o660", "660", "127.0.0.1:0",
                     "[::1]:7781", "tcp:h:1", "unix:/x", "/", "", " ", "nan", "root", "-", "1KiB", "9" * 40]),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)), st.dates(), st.times(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
AGENT_TABLES = st.lists(st.fixed_dictionaries({}, optional={
    "name": st.one_of(TEXT, st.sampled_from(["web1", "db1", "a" * 65])),
    "address": st.one_of(TEXT, st.sampled_from(["unix:/run/a.sock", "tcp:h:7781", "tcp:[::1]:0", "tcp:h"])),
    "token_file": st.one_of(TEXT, st.just("/t")), "tls_ca": VALUES, "tls_cert": VALUES, "tls_key": VALUES,
    "other": VALUES}), max_size=3)
KNOWN = st.sampled_from(NAMES).flatmap(
    lambda name: st.tuples(st.just(name), AGENT_TABLES if name == "collector.agents" else VALUES))
SETTINGS_DOCUMENTS = st.lists(st.one_of(KNOWN, st.tuples(TEXT, VALUES)), max_size=8)


def _tables(pairs):
    tables = {}
    for name, value in pairs:
        section, _, key = name.partition(".")
        if key:
            tables.setdefault(section, {})
            if isinstance(tables[section], dict):
                tables[section][key] = value
        else:
            tables[section] = value
    return tables


def _load(text_or_bytes, env=None, overrides=None, names=()):
    """load_config over a file holding ``text_or_bytes``: the settings, or the
    ConfigError; ``names``: the sections and keys the file has."""
    with tempfile.NamedTemporaryFile("wb", suffix=".toml") as f:
        f.write(text_or_bytes if isinstance(text_or_bytes, bytes) else text_or_bytes.encode("utf-8", "surrogatepass"))
        f.flush()
        try:
            return load_config(f.name, env or {}, overrides)
        except ConfigError as exc:
            _assert_names_a_key(str(exc), {f.name, *names, *(env or ()), *(overrides or ())})
            return exc


def _assert_names_a_key(message, names):
    """``message`` is one printable line that begins with one of ``names``,
    a known section or variable, as written or quoted (an odd unknown name)."""
    assert message.isprintable() and message.startswith("config: "), message
    named = message[len("config: "):]
    candidates = set(names) | set(SECTIONS) | set(ENV_NAMES)
    # ConfigError makes a message one line by collapsing its blanks, a quoted name's too.
    assert any(named.startswith(" ".join(shown.split()) + part) for c in candidates for shown in (c, repr(c))
               for part in (":", ".", "[")), message


@FUZZ
@given(pairs=SETTINGS_DOCUMENTS)
@example(pairs=[("agent.interval", float("nan"))])
@example(pairs=[("agent.interval", 1 << 64)])
@example(pairs=[("spool.max_bytes", -(1 << 64))])
@example(pairs=[("server.unix_mode", "0o7777777777777777777777")])
@example(pairs=[("tcp.listen", "[::1:7781")])
@example(pairs=[("\x08", [])])                     # an unknown name with a control character
@example(pairs=[("agent.in  terval\x1b[2J", 1)])
@example(pairs=[("collector.agents", [{"name": "web1", "address": "tcp:h:1", "token_file": "/t", "tls_cert": "/c"}])])
def test_arbitrary_toml_documents(pairs):
    tables = _tables(pairs)
    names = set(tables) | {"%s.%s" % (section, key) for section, table in tables.items()
                           if isinstance(table, dict) for key in table}
    _load(_document(tables), names=names)


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe")
@example(data=b"[agent]\ninterval = 1\n[agent]\n")
def test_arbitrary_bytes_as_the_file(data):
    _load(data)


@FUZZ
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES + ["HOSTDIAG_AGENT_NOPE", "HOSTDIAG_PURE"]),
                           st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                                   max_size=40), max_size=6))
@example(env={"HOSTDIAG_AGENT_INTERVAL": "1e999s"})
@example(env={"HOSTDIAG_SPOOL_MAX_BYTES": "99999999999999999999999TiB"})
@example(env={"HOSTDIAG_COLLECTOR_AGENTS": "[{name = \"a\", address = \"tcp:h:1\", token_file = \"/t\"}"})
def test_arbitrary_environment_values(env):
    _load("", env=env)


@FUZZ
@given(overrides=st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), TEXT, SCALARS), max_size=4))
def test_arbitrary_command_line_values(overrides):
    _load("", overrides=overrides)


def test_a_valid_document_loads():
    """The generators write TOML the loader reads: a sound document gives settings."""
    config = _load(_document(_tables([("agent.interval", "2s"), ("tcp.listen", "127.0.0.1:9")])))
    assert not isinstance(config, ConfigError), config
    assert config.agent.interval == 2.0 and os.fspath(config.tcp.listen) == "127.0.0.1:9"
