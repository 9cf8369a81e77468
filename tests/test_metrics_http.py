"""The /metrics HTTP server on a real loopback socket, fed real samples of this
host: formats and compression by request header, every refusal and limit, and
that a scrape is served from the published sample."""

import gzip
import http.client
import re
import socket
import threading

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from hostdiag.sampler.system import SystemCollector
from hostdiag.sampler.tables import TableCollector, attach
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems
from hostdiag.transport.metrics_http import MetricsLimits, MetricsServer

WAIT_S = 10  # a deadline for what the server must do, never an expected duration


@pytest.fixture(scope="module")
def snapshot():
    root = HostRoot()
    with SystemCollector(root) as system, TableCollector(root) as tables:
        problems = Problems()
        processes, sockets, _ = tables.collect(problems)
        return attach(system.collect(), processes, sockets, problems).to_dict()


@pytest.fixture
def server():
    srv = MetricsServer(("127.0.0.1", 0), MetricsLimits(max_connections=4, max_request_bytes=1024, timeout=0.5))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def get(server, path="/metrics", headers=None, method="GET"):
    conn = http.client.HTTPConnection(*server.address, timeout=WAIT_S)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def raw(server, data):
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def closed_unanswered(server, data):
    """True when a new connection is closed (or reset) without a byte of answer."""
    try:
        return raw(server, data) == b""
    except ConnectionResetError:
        return True


def test_no_sample_yet_then_text(server, snapshot):
    assert get(server)[0] == 503
    server.publish(snapshot)
    status, headers, body = get(server)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in parse_text(body.decode())}
    assert {"node_cpu_seconds", "node_network_receive_bytes", "hostdiag_tcp_listeners"} <= names


def test_openmetrics_and_gzip_by_request(server, snapshot):
    server.publish(snapshot)
    om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    status, headers, body = get(server, headers={"Accept": om, "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    assert any(f.name == "node_cpu_seconds" for f in parse_openmetrics(text))
    # q=0 refuses: plain text, not compressed.
    status, headers, body = get(server, headers={"Accept": "application/openmetrics-text;q=0",
                                                 "Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in headers and headers["Content-Type"].startswith("text/plain")
    assert not body.decode().endswith("# EOF\n")


def test_one_encoding_per_sample_and_format(server, snapshot):
    server.publish(snapshot)
    first = get(server)[2]
    assert get(server)[2] == first
    assert server.stats["encodes"] == 1 and server.stats["scrapes"] == {"text": 2}
    get(server, headers={"Accept-Encoding": "gzip"})  # compresses the text already encoded
    assert server.stats["encodes"] == 1
    server.publish(snapshot)
    get(server)
    assert server.stats["encodes"] == 2


def test_tables_carried_over_within_a_boot(server, snapshot):
    busiest = max(snapshot["processes"]["processes"], key=lambda r: r["pid"])
    rates = {"processes": {"%d:%d" % (busiest["pid"], busiest["start_time"]): {"cpu_pct": 50.0}}}
    server.publish(snapshot, rates)
    server.publish(dict(snapshot, processes=None, sockets=None), {"processes": None})
    body = get(server)[2].decode()
    assert "hostdiag_tcp_listeners " in body and "hostdiag_top_process_resident_memory_bytes{" in body
    # Ranked by the rates of the carried table: the one process with a CPU rate leads alone.
    ranked = [line for line in body.splitlines() if line.startswith("hostdiag_top_process_cpu_seconds_total{")]
    assert len(ranked) == 1 and 'pid="%d"' % busiest["pid"] in ranked[0]
    other_boot = dict(snapshot, processes=None, sockets=None, meta=dict(snapshot["meta"], boot_id="another"))
    server.publish(other_boot)
    body = get(server)[2].decode()
    assert "hostdiag_tcp_listeners " not in body


def test_tables_summarized_once_per_new_table(server, snapshot):
    server.publish(snapshot)
    summary = server.latest.tables
    assert summary["sockets"]["listeners"] == len(snapshot["sockets"]["listeners"])
    server.publish(dict(snapshot, processes=None, sockets=None))  # the agent's samples between tables
    assert server.latest.tables is summary
    server.publish(dict(snapshot, sockets=dict(snapshot["sockets"])))  # a new table
    assert server.latest.tables is not summary
    assert server.latest.tables == summary


def test_index_not_found_and_method(server, snapshot):
    server.publish(snapshot)
    status, _, body = get(server, "/")
    assert status == 200 and b'href="/metrics"' in body
    assert get(server, "/metrics/x")[0] == 404
    status, headers, _ = get(server, method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert server.stats["rejected"] == {"not_found": 1, "method": 1}


def test_keep_alive_and_pipelining(server, snapshot):
    server.publish(snapshot)
    answer = raw(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                         b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"404", b"200"]


def test_bad_requests_close_the_connection(server):
    assert raw(server, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 2000).startswith(b"HTTP/1.1 431 ")
    assert raw(server, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 1100 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    assert server.stats["rejected"] == {"bad_request": 3, "too_large": 2}


def test_a_stalled_request_times_out(server):
    assert closed_unanswered(server, b"GET /metr")
    assert server.stats["rejected"] == {"timeout": 1}


def test_connection_limit(server, snapshot):
    server.publish(snapshot)
    held = [socket.create_connection(server.address, timeout=WAIT_S) for _ in range(4)]
    try:
        for sock in held:  # each is accepted: it gets an answer
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"
        assert closed_unanswered(server, b"GET / HTTP/1.1\r\n\r\n")  # the fifth
        assert server.stats["rejected"] == {"connections": 1}
    finally:
        for sock in held:
            sock.close()


def test_a_sample_that_cannot_be_encoded(server, snapshot):
    server.publish({"meta": snapshot["meta"], "cpu": "not a section"})
    status, _, body = get(server)
    assert status == 500 and body.startswith(b"cannot encode")
    server.publish(snapshot)
    assert get(server)[0] == 200


def test_loopback_only_unless_allowed():
    with pytest.raises(ValueError, match="not a loopback address"):
        MetricsServer(("192.0.2.1", 0))


def test_close_stops_listening(snapshot):
    srv = MetricsServer(("127.0.0.1", 0))
    srv.start()
    address = srv.address
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=WAIT_S).close()


def test_serve_forever_in_a_thread_of_ones_own(snapshot):
    srv = MetricsServer(("127.0.0.1", 0))
    srv.publish(snapshot)
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    try:
        assert get(srv)[0] == 200
    finally:
        srv.close()
        thread.join()
    srv.close()  # a second close does nothing


OUT_OF_FDS_SERVER = """
import resource, sys
from hostdiag.transport.metrics_http import MetricsLimits, MetricsServer
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
srv = MetricsServer(("127.0.0.1", 0), MetricsLimits(max_connections=64))
srv.publish({"meta": {}})
print(srv.address[1], flush=True)
srv.serve_forever()
"""


def test_out_of_file_descriptors_pauses_accepting_then_recovers():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", OUT_OF_FDS_SERVER], stdout=subprocess.PIPE, text=True)
    held = []
    try:
        port = int(child.stdout.readline())
        server = type("Address", (), {"address": ("127.0.0.1", port)})
        # More connections than the child has descriptors: its accept() fails with EMFILE.
        for _ in range(40):
            held.append(socket.create_connection(server.address, timeout=WAIT_S))
        for sock in held:  # the ones it accepted answer; the rest wait in the backlog
            sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        for sock in held:
            sock.close()
        held.clear()
        status, _, body = get(server)
        assert status == 200
        assert b'hostdiag_metrics_rejected_total{reason="accept_failed"}' in body
    finally:
        for sock in held:
            sock.close()
        child.kill()
        child.wait()
