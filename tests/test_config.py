"""Settings: declared once, resolved defaults < file < environment < command line,
and every bad value is one line that names its key."""

import os
import pathlib
import re

import pytest

from hostdiag.apps.config import SETTINGS, ConfigError, load_config, parse_address, render_markdown

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "config.md"


def write(tmp_path, text, name="hostdiag.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(**kw):
    kw.setdefault("env", {})
    with pytest.raises(ConfigError) as caught:
        load_config(**kw)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("config: "), message
    return message


def test_defaults():
    config = load_config(env={})
    assert config.agent.interval == 1.0 and config.agent.table_every == 5
    assert config.agent.budget == 0.5 and config.source("agent.budget") == "derived"
    assert config.spool.dir == "/var/lib/hostdiag/spool"
    assert (config.spool.max_bytes, config.spool.max_age, config.spool.fsync_interval) == (256 << 20, 7 * 86400, 5.0)
    assert (config.ring.max_records, config.ring.max_bytes) == (3600, 64 << 20)
    assert (config.server.unix_path, config.server.unix_mode, config.server.unix_group) == (
        "/run/hostdiag/agent.sock", 0o660, None)
    assert (config.server.max_clients, config.server.send_buffer_bytes, config.server.max_frame_bytes) == (
        256, 4 << 20, 16 << 20)
    assert (config.server.read_timeout, config.server.full_every) == (30.0, 60)
    assert (config.tcp.enabled, config.tcp.listen, config.tcp.token_file) == (False, "127.0.0.1:7781", None)
    assert (config.collector.agents, config.collector.poll_interval) == ((), 5.0)
    assert all(config.source(s.name) in ("default", "derived") for s in SETTINGS)
    assert config["agent.interval"] == 1.0 and config.path is None


def test_precedence_default_file_env_command_line(tmp_path):
    path = write(tmp_path, """
        [agent]
        interval = 2
        table_every = 3
        budget_ratio = 0.25
        [spool]
        max_bytes = "1GiB"
        [server]
        unix_mode = 0o600
        [[collector.agents]]
        name = "web1"
        address = "unix:/run/hostdiag/agent.sock"
        [[collector.agents]]
        name = "db1"
        address = "tcp:[2001:db8::1]:7781"
        token_file = "/etc/hostdiag/db1.token"
    """)
    env = {"HOSTDIAG_AGENT_TABLE_EVERY": "7", "HOSTDIAG_SPOOL_MAX_AGE": "2d", "HOSTDIAG_PURE": "1"}
    config = load_config(path, env=env, overrides={"agent.table_every": "9", "spool.dir": None})
    assert config.agent.interval == 2.0 and config.source("agent.interval") == "file %s" % path
    assert config.agent.table_every == 9 and config.source("agent.table_every") == "command line"
    assert config.spool.max_age == 2 * 86400 and config.source("spool.max_age") == "env HOSTDIAG_SPOOL_MAX_AGE"
    assert config.spool.dir == "/var/lib/hostdiag/spool" and config.source("spool.dir") == "default"
    assert config.agent.budget == 0.5  # 2 s x 0.25
    assert config.spool.max_bytes == 1 << 30 and config.server.unix_mode == 0o600
    web, db = config.collector.agents
    assert (web.name, web.address, web.token_file) == ("web1", "unix:/run/hostdiag/agent.sock", None)
    assert parse_address(db.address) == ("tcp", "2001:db8::1", 7781)
    assert config.as_dict()["collector"]["agents"][1]["token_file"] == "/etc/hostdiag/db1.token"

    # The file can come from HOSTDIAG_CONFIG; typed overrides are checked like TOML values.
    config = load_config(env={"HOSTDIAG_CONFIG": path}, overrides={"agent.interval": 4, "tcp.enabled": False})
    assert config.agent.interval == 4.0 and config.agent.table_every == 3 and config.path == path
    with pytest.raises(AttributeError):
        config.agent.interval = 3


@pytest.mark.parametrize("var, value, expected", [
    ("HOSTDIAG_AGENT_INTERVAL", "abc", "agent.interval: must be a duration between 0.1s and 1h"),
    ("HOSTDIAG_AGENT_INTERVAL", "0", "agent.interval: must be a duration"),
    ("HOSTDIAG_AGENT_INTERVAL", "nan", "agent.interval: must be a duration"),
    ("HOSTDIAG_AGENT_TABLE_EVERY", "2.5", "agent.table_every: must be an integer between 1 and 3600, got '2.5'"),
    ("HOSTDIAG_AGENT_BUDGET_RATIO", "2", "agent.budget_ratio: must be a number between 0.05 and 1.0"),
    ("HOSTDIAG_SPOOL_MAX_BYTES", "lots", "spool.max_bytes: must be a size between 1 MiB and 1 TiB"),
    ("HOSTDIAG_SPOOL_MAX_BYTES", "2TiB", "spool.max_bytes: must be a size"),
    ("HOSTDIAG_SPOOL_ENABLED", "maybe", "spool.enabled: must be true or false, got 'maybe'"),
    ("HOSTDIAG_SPOOL_DIR", "var/spool", "spool.dir: must be an absolute path, got 'var/spool'"),
    ("HOSTDIAG_SERVER_UNIX_PATH", "/run/" + "x" * 120, "server.unix_path: must be a path of at most 107 bytes"),
    ("HOSTDIAG_SERVER_UNIX_MODE", "0869", "server.unix_mode: must be an octal file mode"),
    ("HOSTDIAG_SERVER_UNIX_MODE", "1777", "server.unix_mode: must be an octal file mode"),
    ("HOSTDIAG_SERVER_UNIX_GROUP", "bad group", "server.unix_group: must be a group name or gid"),
    ("HOSTDIAG_SERVER_MAX_CLIENTS", "0", "server.max_clients: must be an integer between 1 and 65536"),
    ("HOSTDIAG_SERVER_MAX_FRAME_BYTES", "1GiB", "server.max_frame_bytes: must be a size between 64 KiB and 64 MiB"),
    ("HOSTDIAG_TCP_LISTEN", "7781", "tcp.listen: must be \"host:port\""),
    ("HOSTDIAG_TCP_LISTEN", "localhost:0", "tcp.listen: must have a port from 1 to 65535"),
    ("HOSTDIAG_TCP_LISTEN", "[nothost]:1", "tcp.listen: must have an IPv6 address in brackets"),
    ("HOSTDIAG_TCP_LISTEN", "::1:7781", "tcp.listen: must be \"host:port\" or \"[ipv6]:port\""),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"a\"", "collector.agents: must be a TOML array of tables"),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"a\", address = \"http://x\"}]",
     "collector.agents[0].address: must be \"unix:/path\" or \"tcp:host:port\""),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"a\", address = \"tcp:h:1\"}]",
     "collector.agents[0].token_file: is required for a tcp: address"),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"a\", adress = \"unix:/a\"}]",
     "collector.agents[0].adress: unknown key, did you mean address?"),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"../a\", address = \"unix:/a\"}]", "collector.agents[0].name: must be"),
    ("HOSTDIAG_COLLECTOR_AGENTS", "[{name = \"a\", address = \"unix:/a\"}, {name = \"a\", address = \"unix:/b\"}]",
     "collector.agents[1].name: duplicate agent name 'a'"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"ping\", target = \"x\"}]",
     "probe.list[0].kind: must be one of tcp, http, dns, unix, systemd, process, got 'ping'"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"http\", target = \"ftp://x/\"}]",
     "probe.list[0].target: must be an http:// or https:// URL with a host, got 'ftp://x/'"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"unix\", target = \"run/x.sock\"}]",
     "probe.list[0].target: must be an absolute path"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"tcp\", target = \"h:1\", body = \"ok\"}]",
     "probe.list[0].body: applies to http probes only"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"tcp\", target = \"h:1\", timeout = \"2m\"}]",
     "probe.list[0].timeout: must be a duration between 0.01s and 1m"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"tcp\", target = \"h:1\", slo = 100}]",
     "probe.list[0].slo: must be a number between 50.0 and 99.999, got 100"),
    ("HOSTDIAG_PROBE_LIST", "[{name = \"a\", kind = \"dns\", target = \"x\"}, {name = \"a\", kind = \"dns\", "
                            "target = \"y\"}]", "probe.list[1].name: duplicate probe name 'a'"),
    ("HOSTDIAG_PROBE_LIST", "[" + ", ".join(["{name = \"p%d\", kind = \"dns\", target = \"x\"}" % i
                                             for i in range(65)]) + "]",
     "probe.list: must list at most 64 probes, got 65"),
    ("HOSTDIAG_PROBE_WORKERS", "0", "probe.workers: must be an integer between 1 and 16"),
    ("HOSTDIAG_AGENT_INTERVALL", "1", "HOSTDIAG_AGENT_INTERVALL: unknown environment variable, "
                                      "did you mean HOSTDIAG_AGENT_INTERVAL?"),
])
def test_bad_environment_value_is_one_line_naming_the_key(var, value, expected):
    message = error_of(env={var: value})
    assert message.startswith("config: " + expected), message
    if not var.endswith("INTERVALL"):
        assert message.endswith("(env %s)" % var)


def test_probes_from_a_file_with_their_defaults(tmp_path):
    config = load_config(path=write(tmp_path, """
        [probe]
        workers = 2
        [[probe.list]]
        name = "web"
        kind = "http"
        target = "https://[::1]:8443/health?full=1"
        body = "ok"
        latency = "250ms"
        [[probe.list]]
        name = "sshd"
        kind = "process"
        target = "/run/sshd.pid"
        interval = "1m"
        """), env={})
    web, sshd = config.probe.list
    assert (web.kind, web.status, web.body, web.latency, web.interval, web.timeout, web.slo) == (
        "http", 200, "ok", 0.25, 30.0, 5.0, 99.9)
    assert (sshd.target, sshd.interval, sshd.body, sshd.latency) == ("/run/sshd.pid", 60.0, None, None)
    assert config.probe.workers == 2 and config.as_dict()["probe"]["list"][1]["name"] == "sshd"


@pytest.mark.parametrize("text, expected", [
    ("[agent]\ninterval = \"abc\"\n", "agent.interval: must be a duration between 0.1s and 1h (seconds, or like "
                                      "\"250ms\", \"5m\", \"7d\"), got 'abc' (file "),
    ("[agent]\nintervall = 1\n", "agent.intervall: unknown key, did you mean agent.interval? (file "),
    ("[agnt]\ninterval = 1\n", "agnt: unknown section, did you mean agent? (file "),
    ("agent = 1\n", "agent: must be a table, got 1 (file "),
    ("[agent]\ntable_every = 5.0\n", "agent.table_every: must be an integer between 1 and 3600, got 5.0"),
    ("[spool]\nenabled = \"yes\"\n", "spool.enabled: must be true or false, got 'yes'"),
    ("[server]\nunix_mode = 1000\n", "server.unix_mode: must be an octal file mode"),
    ("[collector]\nagents = {name = \"a\"}\n", "collector.agents: must be an array of agent tables, got a table"),
    ("[agent]\ninterval = 1\ninterval = 2\n", "invalid TOML: Cannot overwrite a value (at line 3, column 13)"),
    ("[agent]\ntable_every = \n", "invalid TOML: Invalid value (at line 2, column 15)"),
])
def test_bad_file_is_one_line_naming_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    message = error_of(path=path)
    assert expected in message, message
    assert path in message


def test_unusable_files(tmp_path):
    assert error_of(path=str(tmp_path / "missing.toml")) == (
        "config: %s: cannot read: No such file or directory" % (tmp_path / "missing.toml"))
    assert error_of(path=str(tmp_path)).endswith(": cannot read: Is a directory")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[agent]\ninterval = \"\xff\"\n")
    assert "invalid TOML" in error_of(path=str(binary))
    assert error_of(env={"HOSTDIAG_CONFIG": str(tmp_path / "gone.toml")}).endswith("No such file or directory")


@pytest.mark.parametrize("env, overrides, expected", [
    ({"HOSTDIAG_AGENT_BUDGET": "2s"}, None,
     "config: agent.budget: must be at most agent.interval (1s), got 2s (env HOSTDIAG_AGENT_BUDGET)"),
    ({}, {"spool.segment_bytes": "200MiB"},
     "config: spool.segment_bytes: must be at most half of spool.max_bytes (256 MiB), got 200 MiB (command line)"),
    ({"HOSTDIAG_TCP_ENABLED": "true"}, None,
     "config: tcp.token_file: is required when tcp.enabled is true (env HOSTDIAG_TCP_ENABLED)"),
    ({}, {"tcp.tls_cert": "/etc/hostdiag/cert.pem"},
     "config: tcp.tls_key: is required when tcp.tls_cert is set (command line)"),
    ({}, {"agent.intervall": "2"}, "config: agent.intervall: unknown key, did you mean agent.interval? (command line)"),
    ({}, {"agent.interval": True}, "config: agent.interval: must be a duration"),
])
def test_settings_that_disagree(env, overrides, expected):
    assert error_of(env=env, overrides=overrides).startswith(expected)


def test_units_and_empty_values():
    config = load_config(env={
        "HOSTDIAG_AGENT_INTERVAL": "250ms", "HOSTDIAG_SPOOL_MAX_AGE": "36h", "HOSTDIAG_RING_MAX_BYTES": "1.5M",
        "HOSTDIAG_SPOOL_SEGMENT_BYTES": "64KiB", "HOSTDIAG_SERVER_UNIX_MODE": "0o640",
        "HOSTDIAG_SERVER_UNIX_GROUP": "", "HOSTDIAG_TCP_LISTEN": "[::1]:9000", "HOSTDIAG_TCP_ENABLED": "on",
        "HOSTDIAG_TCP_TOKEN_FILE": "/etc/hostdiag//token", "HOSTDIAG_DEBUG": "1",
    })
    assert config.agent.interval == 0.25 and config.agent.budget == 0.125
    assert config.spool.max_age == 36 * 3600 and config.ring.max_bytes == 1536 * 1024
    assert config.spool.segment_bytes == 64 * 1024 and config.server.unix_mode == 0o640
    assert config.server.unix_group is None and config.tcp.listen == "[::1]:9000"
    assert config.tcp.enabled is True and config.tcp.token_file == "/etc/hostdiag/token"


def test_every_setting_is_declared_once_and_documented():
    names = [s.name for s in SETTINGS]
    envs = [s.env for s in SETTINGS]
    assert len(set(names)) == len(names) and len(set(envs)) == len(envs)
    for s in SETTINGS:
        assert re.fullmatch(r"(agent|spool|ring|server|tcp|metrics|probe|incidents|collector)\.[a-z_]+", s.name)
        assert s.env == "HOSTDIAG_" + s.name.upper().replace(".", "_") and s.help
    docs = DOCS.read_text()
    assert render_markdown() in docs, "docs/config.md is stale: regenerate with python -m hostdiag.apps.config"
    defaults = load_config(env={})
    for s in SETTINGS:  # every default passes its own validator
        if s.default is not None:
            assert s.kind.from_toml(s.default) == defaults[s.name]


def test_environment_outside_our_sections_is_left_alone():
    config = load_config(env=dict(os.environ, HOSTDIAG_PURE="1", HOSTDIAG_SOMETHING_ELSE="x", HOSTDIAG_CONFIG=""))
    assert config.path is None
