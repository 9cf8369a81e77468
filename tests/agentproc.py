"""Real `diag agent` and `diag collector` processes for the tests.

Shared by test_agent.py, test_agent_disk.py, test_collector.py and
test_show.py. Each process runs in a temporary directory of its own, with a
short interval (0.2 s); every wait polls a condition with a bounded deadline.
Pytest puts this directory on sys.path (the tests have no __init__.py), so
the test modules import it as ``agentproc``.
"""

import json
import os
import signal
import subprocess
import sys
import time

from hostdiag.store.sqlite import CollectorStore
from hostdiag.transport.client import AgentClient
from hostdiag.transport.protocol import ProtocolError

AGENT_MAIN = "import sys; from hostdiag.apps.agent import main_agent; sys.exit(main_agent(sys.argv[1:]))"
COLLECTOR_MAIN = ("import sys; from hostdiag.apps.collector import main_collector; "
                  "sys.exit(main_collector(sys.argv[1:]))")
INTERVAL = 0.2
DEADLINE_S = 30.0


def wait_for(condition, what, deadline_s=DEADLINE_S, step_s=0.05, on_fail=None):
    """Poll ``condition()`` until it returns something true; that value."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_fail() if on_fail else ""
            raise AssertionError("timed out after %.0f s waiting for %s\n%s" % (deadline_s, what, detail))
        time.sleep(step_s)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def write_toml(path, settings, agents=(), arrays=None):
    """``settings`` {section: {key: value}}; ``agents`` the [[collector.agents]]
    tables; ``arrays`` {"section.key": [table, ...]} other arrays of tables
    (``{"probe.list": [...]}``)."""
    lines = []
    for section, table in settings.items():
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % (key, _toml_value(value)) for key, value in table.items())
    arrays = dict(arrays or {})
    if agents:
        arrays["collector.agents"] = agents
    for name, tables in arrays.items():
        for table in tables:
            lines.append("[[%s]]" % name)
            lines.extend("%s = %s" % (key, _toml_value(value)) for key, value in table.items())
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def clean_env(extra=None):
    """The environment of a process under test: no HOSTDIAG_* setting leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOSTDIAG_") or k in ("HOSTDIAG_PURE", "HOSTDIAG_DEBUG")}
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra or {})
    return env


class _Process:
    """A process under test writing to a log file in its directory."""

    stop_timeout = 15

    def __init__(self, workdir, log_name):
        self.dir = workdir
        self.log_path = os.path.join(workdir, log_name)
        self.proc = None
        self.log = None

    def _spawn(self, argv, env=None):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=clean_env(env),
                                     cwd=self.dir)
        return self

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self):
        return self.read_log()[-4000:]

    def stop(self, signum=signal.SIGTERM, timeout=None):
        """Signal (SIGTERM by default), wait, kill if it takes too long; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()
            self.log = None
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self):
        self.stop(signal.SIGKILL)


class AgentProcess(_Process):
    """One `diag agent` process with its own config, spool and socket."""

    def __init__(self, workdir, probes=(), **sections):
        super().__init__(workdir, "agent.log")
        self.probes = list(probes)  # [[probe.list]] tables
        self.sock_path = os.path.join(workdir, "agent.sock")
        self.address = "unix:" + self.sock_path  # what a client names; a test may point it elsewhere
        self.spool_dir = os.path.join(workdir, "spool")
        self.config_path = os.path.join(workdir, "agent.toml")
        self.settings = {
            # No process or socket tables: the first table sample costs seconds.
            "agent": {"interval": INTERVAL, "table_every": 3600, "budget": INTERVAL},
            "spool": {"dir": self.spool_dir},
            "server": {"unix_path": self.sock_path, "read_timeout": 5},
        }
        self.configure(**sections)

    def configure(self, **sections):
        for section, table in sections.items():
            self.settings.setdefault(section, {}).update(table)
        write_toml(self.config_path, self.settings, arrays={"probe.list": self.probes})

    def start(self, env=None, args=()):
        return self._spawn([sys.executable, "-c", AGENT_MAIN, "--config", self.config_path, "--foreground", *args],
                           env)

    def client(self, timeout=10):
        return AgentClient.connect("unix:" + self.sock_path, timeout=timeout)

    def info(self):
        with self.client() as client:
            return client.info()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait_ready(self, deadline_s=DEADLINE_S):
        """Poll the socket until the agent serves a record; the client that saw it."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("agent exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                client = self.client(timeout=5)
            except (OSError, ProtocolError):
                return None
            if client.latest() is not None:
                return client
            client.close()
            return None
        return wait_for(ready, "the agent to serve a record", deadline_s, on_fail=self.log_tail)

    def wait_newest(self, seq):
        """Until the agent's current boot has a record at or after ``seq``; its info."""
        def reached():
            info = self.info()
            return info if (info.get("newest_seq") or 0) >= seq else None
        return wait_for(reached, "agent seq %d" % seq, on_fail=self.log_tail)

    def seqs(self, boot_id=None):
        """Every seq the agent keeps of a boot (the current one by default)."""
        with self.client() as client:
            return [r.seq for r in client.range(from_seq=1, boot_id=boot_id, page=1000)]


class CollectorProcess(_Process):
    """One `diag collector` process over a config naming its agents."""

    stop_timeout = 20

    def __init__(self, workdir, agents, poll_interval=INTERVAL, extra_args=()):
        super().__init__(workdir, "collector.log")
        self.store_dir = os.path.join(workdir, "store")
        self.config_path = os.path.join(workdir, "collector.toml")
        write_toml(self.config_path, {"collector": {"store": self.store_dir, "poll_interval": poll_interval}},
                   [{"name": name, "address": address} for name, address in agents])
        self.extra_args = list(extra_args)

    def command(self, *args):
        return [sys.executable, "-c", COLLECTOR_MAIN, "--config", self.config_path, *args]

    def start(self):
        return self._spawn(self.command("--foreground", *self.extra_args))

    def run(self, *args, timeout=60):
        return subprocess.run(self.command(*args), capture_output=True, text=True, env=clean_env(),
                              cwd=self.dir, timeout=timeout)

    def store(self):
        return CollectorStore(self.store_dir, readonly=True)

    def stored_seqs(self, host, boot_id):
        if not os.path.exists(os.path.join(self.store_dir, "collector.sqlite3")):
            return []
        with self.store() as store:
            return store.seqs(host, boot_id)

    def wait_stored(self, host, boot_id, seq):
        def reached():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("collector exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            seqs = self.stored_seqs(host, boot_id)
            return bool(seqs) and seqs[-1] >= seq
        wait_for(reached, "the store to hold seq %d of %s" % (seq, host), on_fail=self.log_tail)

    def status(self, host):
        with self.store() as store:
            return next((row for row in store.status() if row["name"] == host), None)
