"""A secret given to a process on its command line or in its environment
appears in none of hostdiag's outputs: the report as text, JSON and msgpack,
the agent's protocol and spool, the collector's store, and /metrics (text and
OpenMetrics).

The process under test spins (so that it is in the text report's top CPU
table) with a command line holding a harmless marker and then ``--pwd SECRET``,
and a secret in its environment. Every output is checked two ways: the
marker must be there (so the process's command line really is in it, and the
check cannot pass on an output that lacks it) and neither secret may be, in the
decoded documents, and in the raw bytes of msgpack. (The spool and the store
compress their records: their bytes would hide the marker and a secret alike,
so they are read back through `diag show`.) /metrics names a process by its
pid and comm only, never its command line: there the process's comm is the
check, a second marker, the name of the symbolic link to Python it is started
through.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request

import msgpack
import pytest

from agentproc import AgentProcess, CollectorProcess, clean_env, wait_for

# Short, so that the text report's command column (about 40 characters) shows
# the marker and the redacted secret after it: "python -c while 1:0 Qx12ab --pwd ***".
SPIN = "while 1:0"


@pytest.fixture(scope="module")
def secret_process(tmp_path_factory):
    # Short enough for the text report's command column; "Zq" and "Qx" make a
    # chance match in megabytes of output unlikely.
    argv_secret = "Zq" + secrets.token_hex(3)
    env_secret = "hd-env-" + secrets.token_hex(12)
    marker = "Qx" + secrets.token_hex(2)
    # The kernel names a process (comm) after the file it executes, here a link to Python.
    comm = "Qy" + secrets.token_hex(2)
    executable = tmp_path_factory.mktemp("secret-process") / comm
    os.symlink(sys.executable, executable)
    env = clean_env({"DB_PASSWORD": env_secret, "API_TOKEN": env_secret})
    child = subprocess.Popen(["python", "-c", SPIN, marker, "--pwd", argv_secret],
                             executable=str(executable), env=env)
    try:
        def executed():
            with open("/proc/%d/cmdline" % child.pid, "rb") as cmdline:
                return argv_secret.encode() in cmdline.read()
        wait_for(executed, "the child to exec")  # from then on the secret is there to leak
        yield {"pid": child.pid, "marker": marker, "comm": comm, "secrets": (argv_secret, env_secret)}
    finally:
        child.kill()
        child.wait()


def _check(name, text, process, marker_key="marker"):
    """``text``: what one output holds, as str or bytes; it must hold
    ``process[marker_key]``."""
    if isinstance(text, bytes):
        marker, found = process[marker_key].encode(), [s.encode() for s in process["secrets"]]
    else:
        marker, found = process[marker_key], list(process["secrets"])
    assert marker in text, "%s does not hold the process's %s: the check would prove nothing" % (
        name, "command line" if marker_key == "marker" else marker_key)
    leaked = [s for s in found if s in text]
    assert not leaked, "%s leaks %s" % (name, leaked)


def _diag(*args):
    done = subprocess.run([sys.executable, "-m", "hostdiag", *args], capture_output=True, env=clean_env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_report_text_json_msgpack(secret_process):
    text = _diag("report", "--format", "text", "--interval", "1", "--full", "--width", "1000").decode()
    _check("the text report", text, secret_process)
    _check("the JSON report", _diag("report", "--format", "json", "--interval", "0"), secret_process)
    packed = _diag("report", "--format", "msgpack", "--interval", "0")
    _check("the msgpack report (bytes)", packed, secret_process)
    decoded = json.dumps(msgpack.unpackb(packed, raw=False, strict_map_key=False), default=repr)
    _check("the msgpack report (decoded)", decoded, secret_process)


def _holds(document, pid):
    processes = ((document.get("snapshot") or {}).get("processes") or {}).get("processes") or ()
    return any(p.get("pid") == pid for p in processes)


def test_protocol_spool_and_collector_store(workdir, secret_process):
    agent = AgentProcess(workdir, agent={"interval": 1.0, "table_every": 1, "budget": 1.0})
    agent.start()
    try:
        agent.wait_ready()

        def shown():
            document = json.loads(_diag("show", "--format", "json", "--agent", agent.address))
            return document if _holds(document, secret_process["pid"]) else None
        document = wait_for(shown, "a record with the process table", deadline_s=120, step_s=0.5,
                            on_fail=agent.log_tail)
        _check("the protocol (diag show --agent)", json.dumps(document), secret_process)

        collector = CollectorProcess(workdir, [("web1", agent.address)])
        done = collector.run("--once")
        assert done.returncode == 0, done.stderr
        stored = json.loads(_diag("show", "--format", "json", "--store", collector.store_dir, "--host", "web1"))
        assert _holds(stored, secret_process["pid"])
        _check("the collector store (diag show --store)", json.dumps(stored), secret_process)
    finally:
        agent.stop()
    # A restarted agent has an empty memory ring: the record comes from the spool.
    agent.start()
    try:
        agent.wait_ready()
        # Rounded up to the millisecond: the next record is a second later.
        at = "%.3f" % (-(-document["snapshot"]["meta"]["wall_ns"] // 1000000) / 1000)
        spooled = json.loads(_diag("show", "--format", "json", "--agent", agent.address, "--at", at))
        assert spooled["snapshot"]["meta"]["wall_ns"] == document["snapshot"]["meta"]["wall_ns"]
        _check("the spool (diag show --at, after a restart)", json.dumps(spooled), secret_process)
    finally:
        agent.stop()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port, accept):
    request = urllib.request.Request("http://127.0.0.1:%d/metrics" % port, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_metrics_text_and_openmetrics(workdir, secret_process):
    port = _free_port()
    agent = AgentProcess(workdir, agent={"interval": 1.0, "table_every": 1, "budget": 1.0},
                         metrics={"enabled": True, "listen": "127.0.0.1:%d" % port})
    agent.start()
    try:
        agent.wait_ready().close()
        # The top processes are ranked by the last interval's CPU: the spinning
        # process is among them once the agent has two samples of its table.
        label = ('pid="%d",comm="%s"' % (secret_process["pid"], secret_process["comm"])).encode()

        for name, accept in (("text format", "text/plain"),
                             ("OpenMetrics", "application/openmetrics-text; version=1.0.0")):
            def scraped():
                try:
                    body = _scrape(port, accept)
                except OSError:
                    return None
                return body if label in body else None
            body = wait_for(scraped, "/metrics (%s) to list the process" % name, deadline_s=120, step_s=0.5,
                            on_fail=agent.log_tail)
            _check("/metrics, " + name, body, secret_process, "comm")
        assert body.rstrip().endswith(b"# EOF")  # the last one was OpenMetrics indeed
    finally:
        assert agent.stop() == 0, agent.log_tail()
