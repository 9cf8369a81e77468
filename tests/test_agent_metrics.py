"""`diag agent` with `metrics.enabled`: a real agent process serves /metrics
(docs/metrics.md) from its latest sample, and refuses a non-loopback address
unless told otherwise."""

import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest

from agentproc import AGENT_MAIN, AgentProcess, clean_env, wait_for, write_toml


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port, accept=None):
    request = urllib.request.Request("http://127.0.0.1:%d/metrics" % port)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read().decode()


def test_the_agent_serves_metrics_of_its_own_samples(workdir):
    port = _free_port()
    agent = AgentProcess(workdir, agent={"table_every": 2},
                         metrics={"enabled": True, "listen": "127.0.0.1:%d" % port})
    agent.start()
    try:
        agent.wait_ready().close()

        def scraped():
            try:
                body = _scrape(port)[1]
            except OSError:
                return None
            return body if "hostdiag_top_process" in body or "node_cpu_seconds_total" in body else None

        body = wait_for(scraped, "/metrics to serve a sample", on_fail=agent.log_tail)
        assert 'node_cpu_seconds_total{cpu="0",mode="user"}' in body
        assert "node_memory_MemTotal_bytes" in body
        boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
        assert 'node_boot_time_seconds' in body and agent.info()["boot_id"] == boot_id
        content_type, om = _scrape(port, accept="application/openmetrics-text; version=1.0.0")
        assert content_type.startswith("application/openmetrics-text") and om.rstrip().endswith("# EOF")
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                                   text=True, timeout=60)
            assert check.returncode in (0, 3), check.stdout + check.stderr  # 3: lint advice only
    finally:
        assert agent.stop() == 0, agent.log_tail()


@pytest.mark.parametrize("listen", ["0.0.0.0:9781", "192.0.2.1:9781"])
def test_a_remote_metrics_address_needs_allow_remote(workdir, listen):
    config = workdir + "/agent.toml"
    write_toml(config, {"spool": {"dir": workdir + "/spool"}, "server": {"unix_path": workdir + "/a.sock"},
                        "metrics": {"enabled": True, "listen": listen}})
    done = subprocess.run([sys.executable, "-c", AGENT_MAIN, "--config", config], env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "metrics.listen" in lines[0] and "loopback" in lines[0], done.stderr
