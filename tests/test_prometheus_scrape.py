"""A real Prometheus server, started here on loopback, scrapes our /metrics
(served from real samples the real sampler takes in a thread), and a PromQL
query over what it stored returns a counter this test moved itself: the bytes
sent over a veth pair into a namespace made for the test."""

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from hostdiag.derive.rates import derive_rates
from hostdiag.findings.rules import evaluate
from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems
from hostdiag.transport.metrics_http import MetricsServer

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (Debian package prometheus)")

DEADLINE_S = 60  # for Prometheus to start, scrape and answer; a bound, never an expected duration
SAMPLE_EVERY_S = 0.5
DATAGRAMS = 50
PAYLOAD = 1000

RECEIVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(30)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
total = 0
while total < int(sys.argv[3]):
    total += len(sock.recv(65535))
print(total, flush=True)
"""


def ip(*args):
    subprocess.run(("ip",) + args, check=True, capture_output=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(what, probe):
    """``probe()``'s first true answer, polled until the deadline."""
    end = time.monotonic() + DEADLINE_S
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > end:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.2)


@pytest.fixture
def veth():
    """``(host end, peer address, namespace)``: a veth pair into a new namespace, /30 addresses."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("creating namespaces and veth pairs needs root and iproute2")
    tag = secrets.token_hex(3)
    ns, host, peer = "hd-prom-" + tag, "hdm" + tag, "hdn" + tag
    block = random.randrange(64) * 4
    subnet = "10.214.%d." % random.randrange(256)
    host_addr, peer_addr = subnet + str(block + 1), subnet + str(block + 2)
    try:
        ip("netns", "add", ns)
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("addr", "add", host_addr + "/30", "dev", host)
        ip("-n", ns, "addr", "add", peer_addr + "/30", "dev", peer)
        ip("link", "set", host, "up")
        ip("-n", ns, "link", "set", peer, "up")
        yield host, peer_addr, ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host], capture_output=True)


class Sampler(threading.Thread):
    """Takes real samples every SAMPLE_EVERY_S and publishes them with their rates and findings."""

    def __init__(self, server):
        super().__init__(name="test-sampler", daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.failure = None

    def run(self):
        root = HostRoot()
        previous = None
        try:
            with SystemCollector(root) as system, TableCollector(root) as tables:
                while not self.stop.is_set():
                    problems = Problems()
                    processes, sockets, _ = tables.collect(problems)
                    snapshot = attach(system.collect(), processes, sockets, problems)
                    rates = derive_rates(previous, snapshot) if previous is not None else None
                    self.server.publish(snapshot.to_dict(), rates, evaluate(snapshot, rates))
                    previous = snapshot
                    self.stop.wait(SAMPLE_EVERY_S)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.failure = exc


@pytest.fixture
def endpoint():
    server = MetricsServer(("127.0.0.1", 0))
    server.start()
    sampler = Sampler(server)
    sampler.start()
    try:
        yield server
    finally:
        sampler.stop.set()
        sampler.join()
        server.close()
        assert sampler.failure is None, sampler.failure


@pytest.fixture
def prometheus(endpoint):
    """The base URL of a Prometheus scraping ``endpoint`` every second."""
    workdir = tempfile.mkdtemp(prefix="hd-prom-")
    port = free_port()
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: hostdiag\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % endpoint.address[1])
    log = open(os.path.join(workdir, "prometheus.log"), "wb")
    process = subprocess.Popen([PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + workdir + "/data",
                                "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        poll("prometheus to be ready", lambda: process.poll() is not None or _get(base + "/-/ready") is not None)
        assert process.poll() is None, open(log.name, "rb").read()[-2000:].decode(errors="replace")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


def query(base, promql):
    """The vector result of an instant query, or None while Prometheus cannot answer."""
    body = _get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    if body is None:
        return None
    answer = json.loads(body)
    return answer["data"]["result"] if answer.get("status") == "success" else None


def send(peer_addr, ns):
    """DATAGRAMS datagrams of PAYLOAD bytes to a receiver in the namespace;
    returns once it has them all."""
    port = 40000 + random.randrange(20000)
    receiver = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", RECEIVER, peer_addr, str(port),
                                 str(DATAGRAMS * PAYLOAD)], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(DATAGRAMS):
                sock.sendto(bytes([i % 256]) * PAYLOAD, (peer_addr, port))
        assert int(receiver.stdout.readline()) == DATAGRAMS * PAYLOAD
        assert receiver.wait(timeout=DEADLINE_S) == 0
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


def test_prometheus_scrapes_a_counter_the_test_moved(veth, endpoint, prometheus):
    host, peer_addr, ns = veth
    series = 'node_network_transmit_bytes_total{job="hostdiag",device="%s"}' % host

    def stored_value():
        result = query(prometheus, series)
        return float(result[0]["value"][1]) if result else None

    before = poll("Prometheus to store the veth's counter", stored_value)
    send(peer_addr, ns)
    sent = DATAGRAMS * PAYLOAD
    poll("Prometheus to store the bytes sent", lambda: (stored_value() or 0) >= before + sent)
    # The same through PromQL arithmetic over the stored range.
    moved = poll("an increase over the window",
                 lambda: query(prometheus, "max_over_time(%s[5m]) - min_over_time(%s[5m])" % (series, series)))
    assert float(moved[0]["value"][1]) >= sent

    # Every scrape succeeded, and Prometheus asked for OpenMetrics with gzip (its default Accept).
    up = query(prometheus, 'up{job="hostdiag"}')
    assert up and up[0]["value"][1] == "1"
    assert endpoint.stats["scrapes"].get("openmetrics", 0) > 0 and endpoint.stats["gzipped"] > 0
    families = poll("hostdiag_* families stored",
                    lambda: query(prometheus, 'count by (__name__) ({__name__=~"hostdiag_tcp_connection_rtt_seconds_bucket'
                                              '|hostdiag_finding.*|node_cpu_seconds_total|node_netstat_Tcp_InSegs"})'))
    names = {entry["metric"]["__name__"] for entry in families}
    assert {"hostdiag_tcp_connection_rtt_seconds_bucket", "hostdiag_findings", "node_cpu_seconds_total",
            "node_netstat_Tcp_InSegs"} <= names
