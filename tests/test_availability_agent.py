"""A real agent probing a real HTTP service on loopback that the test makes
flap on a known pattern of requests: `diag slo` shows availability and error
budget equal to the test's own count of failures, /metrics exports them, the
counters survive a restart, and a damaged state file is set aside with one
warning (docs/availability.md)."""

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from fractions import Fraction

import pytest

from hostdiag.model import records as R

from agentproc import AgentProcess, clean_env, wait_for

DIAG_MAIN = "import sys; from hostdiag.apps.diag import main; sys.exit(main(sys.argv[1:]))"
TARGET = 99.0


def fails(n):
    """The flapping pattern: request n (1, 2, ...) fails when n % 10 is 3, 4 or 7."""
    return n % 10 in (3, 4, 7)


class _Flapping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with self.server.lock:
            self.server.served += 1
            failing = fails(self.server.served)
        body = b"down" if failing else b"service ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flapping():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Flapping)  # one request at a time, in order
    server.served = 0
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def diag(*args):
    done = subprocess.run([sys.executable, "-c", DIAG_MAIN, *args], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def slo_now(agent):
    with agent.client() as client:
        record = client.latest()
    return None if record is None else (record.snapshot.get("slo") or [None])[0]


def newest_seq(agent):
    return agent.info()["newest_seq"]


def web_slo_at(agent, seq):
    """The web probe's SLO summary in the record ``seq``."""
    with agent.client() as client:
        (record,) = list(client.range(from_seq=seq, to_seq=seq))
    return next(s for s in record.snapshot["slo"] if s["name"] == "web")


def expected(total):
    """(good, availability, budget left) after the first ``total`` requests of the pattern."""
    bad = sum(1 for n in range(1, total + 1) if fails(n))
    good = total - bad
    burn = Fraction(bad, total) * 100 / (100 - Fraction(str(TARGET)))
    return good, good / total, float(1 - burn)


def test_diag_slo_matches_the_count_of_failures_and_survives_a_restart(workdir, flapping):
    port = _free_port()
    url = "http://127.0.0.1:%d/health" % flapping.server_address[1]
    agent = AgentProcess(workdir, probes=[
        {"name": "web", "kind": "http", "target": url, "interval": 0.1, "timeout": 10, "body": "ok",
         "slo": TARGET},
        {"name": "web-port", "kind": "tcp", "target": "127.0.0.1:%d" % flapping.server_address[1],
         "interval": 3600}], metrics={"enabled": True, "listen": "127.0.0.1:%d" % port})
    agent.start()
    try:
        agent.wait_ready().close()
        wait_for(lambda: (slo_now(agent) or {}).get("total_1h", 0) >= 20, "20 results of the web probe",
                 on_fail=agent.log_tail)
        document = json.loads(diag("slo", "--agent", agent.address, "--format", "json"))
        web = next(s for s in document["slo"] if s["name"] == "web")
        total = web["total_30d"]
        good, availability, budget = expected(total)
        assert flapping.served >= total >= 20
        assert (web["good_30d"], web["good_1h"], web["total_1h"]) == (good, good, total)
        assert web["availability_1h"] == web["availability_30d"] == availability
        assert web["budget_left"] == budget
        # 3 bad in 10 at 99 %: 30 times the allowed rate, over every window.
        assert web["alerts"] == ["page:1h/5m", "page:6h/30m", "ticket:3d/6h"] and web["alerting"] is True
        assert {tuple(s) for s in document["slo"]} == {R.SLO_SUMMARY.names}
        assert {tuple(r) for r in document["probes"]} == {R.PROBE_RESULT.names}
        results = {r["name"]: r for r in document["probes"]}
        assert results["web-port"]["ok"] is True and results["web"]["kind"] == "http"

        text = diag("slo", "--agent", agent.address)
        assert max(len(line) for line in text.splitlines()) <= 80
        # A later sample than the JSON's: the text's own count of results gives the figures it must show.
        lines = text.splitlines()
        row = next(i for i, line in enumerate(lines) if line.startswith("web "))
        match = re.search(r"30d (\d+) of (\d+) bad", lines[row + 1])
        shown_total = int(match.group(2))
        shown_good, shown_availability, shown_budget = expected(shown_total)
        assert int(match.group(1)) == shown_total - shown_good and shown_total >= total
        assert lines[row].split()[2:4] == ["%.3f%%" % (shown_availability * 100)] * 2
        assert lines[row].split()[5] in ("%.1f%%" % (shown_budget * 100), "%.0f%%" % (shown_budget * 100))
        assert lines[row].split()[-1] == "page"

        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
            body = response.read().decode()
        assert 'hostdiag_probe_success{probe="web-port",kind="tcp"} 1' in body
        assert 'hostdiag_slo_target_ratio{probe="web"} 0.99' in body
        assert 'hostdiag_slo_alert{probe="web",rule="page:1h/5m"} 1' in body
        assert 'hostdiag_slo_availability_ratio{probe="web",window="30d"}' in body

        before = slo_now(agent)["total_30d"]
        last = newest_seq(agent)
        assert agent.stop() == 0, agent.log_tail()
        assert os.path.exists(os.path.join(agent.spool_dir, "slo.state"))
        agent.start()
        agent.wait_ready().close()
        # The first sample after the restart already counts what came before it.
        assert web_slo_at(agent, last + 1)["total_30d"] >= before
        last = newest_seq(agent)
        assert agent.stop() == 0, agent.log_tail()

        with open(os.path.join(agent.spool_dir, "slo.state"), "r+b") as f:
            f.seek(30)
            f.write(b"\xff" * 64)
        agent.start()
        agent.wait_ready().close()
        # Counted afresh: the first sample holds at most the results of its first instants.
        assert web_slo_at(agent, last + 1)["total_30d"] < 10 <= before
        warnings = [line for line in agent.read_log().splitlines() if "SLO state not used" in line]
        assert len(warnings) == 1 and "slo.state is damaged" in warnings[0]
    finally:
        agent.stop()
