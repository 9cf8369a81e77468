"""Each probe kind of sources/probes.py against real things on this host: TCP
and HTTP servers on loopback started here, a Unix socket, a pidfile of a child
process, a process by name, "localhost", systemd (not PID 1 here); and the
runner of sampler/probes.py: timeouts, skipped turns, one run out per probe."""

import http.server
import os
import socket
import subprocess
import threading
import time

import pytest

from hostdiag.apps.config import ProbeEntry
from hostdiag.sampler.probes import ProbeRunner
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.probes import ERROR_CLASSES, check

from agentproc import wait_for

ROOT = HostRoot()


def probe(kind, target, **options):
    values = dict(name="p", kind=kind, target=target, interval=1.0, timeout=2.0, status=200, body=None,
                  slo=99.9, latency=None)
    values.update(options)
    return ProbeEntry(**values)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = self.server.answers.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    """An HTTP server on loopback: /ok 200 "healthy", /busy 503, /big 200 with 100 KiB then "tail"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.answers = {"/ok": (200, b"all healthy here"), "/busy": (503, b"busy"),
                      "/big": (200, b"x" * 100 * 1024 + b"tail")}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mute_listener():
    """A TCP listener that accepts, reads and never answers: ``(port, accepted,
    peak)``, ``peak[0]`` the most connections open at once (each is watched
    until its client closes it)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    listener.settimeout(0.05)
    accepted, stop, lock = [], threading.Event(), threading.Lock()
    open_now, peak, watchers = [0], [0], []

    def watch(conn):
        conn.settimeout(0.05)
        while not stop.is_set():
            try:
                if conn.recv(4096) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        with lock:
            open_now[0] -= 1

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with lock:
                accepted.append(conn)
                open_now[0] += 1
                peak[0] = max(peak[0], open_now[0])
            watcher = threading.Thread(target=watch, args=(conn,), daemon=True)
            watchers.append(watcher)
            watcher.start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted, peak
    finally:
        stop.set()
        thread.join()
        for watcher in watchers:
            watcher.join()
        for conn in accepted:
            conn.close()
        listener.close()


def closed_port():
    """A loopback port nothing listens on (bound, never listening: connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_tcp_connects_or_is_refused(web):
    port = int(web.rsplit(":", 1)[1])
    assert check(probe("tcp", "127.0.0.1:%d" % port), ROOT) == (True, None, None)
    holder, port = closed_port()
    with holder:
        outcome = check(probe("tcp", "127.0.0.1:%d" % port), ROOT)
    assert (outcome.ok, outcome.error) == (False, "refused")


def test_http_status_body_and_their_failures(web):
    assert check(probe("http", web + "/ok", body="healthy"), ROOT).ok
    busy = check(probe("http", web + "/busy"), ROOT)
    assert (busy.ok, busy.error, busy.detail) == (False, "status", "HTTP 503, expected 200")
    assert check(probe("http", web + "/busy", status=503), ROOT).ok
    wrong = check(probe("http", web + "/ok", body="sick"), ROOT)
    assert (wrong.ok, wrong.error) == (False, "body")
    # The body is read up to 64 KiB: text past it is not found.
    assert check(probe("http", web + "/big", body="xxx"), ROOT).ok
    assert check(probe("http", web + "/big", body="tail"), ROOT).error == "body"


def test_http_timeout_refused_tls_and_not_http(web, mute_listener):
    port = mute_listener[0]
    started = time.monotonic()
    slow = check(probe("http", "http://127.0.0.1:%d/" % port, timeout=0.3), ROOT)
    assert (slow.ok, slow.error) == (False, "timeout") and time.monotonic() - started < 2.0
    holder, closed = closed_port()
    with holder:
        assert check(probe("http", "http://127.0.0.1:%d/" % closed), ROOT).error == "refused"
    # https to a plain HTTP server: the handshake fails.
    assert check(probe("http", web.replace("http:", "https:") + "/ok"), ROOT).error == "tls"
    with socket.create_server(("127.0.0.1", 0)) as garbage:
        def answer():
            conn, _ = garbage.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
        thread = threading.Thread(target=answer)
        thread.start()
        outcome = check(probe("http", "http://127.0.0.1:%d/" % garbage.getsockname()[1]), ROOT)
        thread.join()
    assert (outcome.ok, outcome.error) == (False, "protocol")


def test_dns_resolves_localhost():
    outcome = check(probe("dns", "localhost"), ROOT)
    assert outcome.ok and outcome.detail in ("127.0.0.1", "::1")


def test_unix_socket_listening_refused_absent(tmp_path):
    path = str(tmp_path / "svc.sock")
    assert check(probe("unix", path), ROOT).error == "absent"
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(path)
    try:
        assert check(probe("unix", path), ROOT).error == "refused"      # bound, not listening
        listening.listen(1)
        assert check(probe("unix", path), ROOT) == (True, None, None)
    finally:
        listening.close()


def test_systemd_unit_without_systemd_is_its_own_error_class():
    outcome = check(probe("systemd", "ssh.service"), ROOT)
    if os.path.isdir("/run/systemd/system"):   # booted with systemd: the unit's state decides
        assert outcome.error in (None, "inactive")
    else:
        assert (outcome.ok, outcome.error) == (False, "systemd")
        assert "systemd" in outcome.detail and "\n" not in outcome.detail


def test_process_by_pidfile_and_by_name(tmp_path):
    name = "hdprobe%d" % (os.getpid() % 100000)
    child = subprocess.Popen(["sh", "-c", "printf %s > /proc/$$/comm; read line" % name], stdin=subprocess.PIPE)
    try:
        pidfile = tmp_path / "svc.pid"
        pidfile.write_text("%d\n" % child.pid)
        wait_for(lambda: check(probe("process", name), ROOT).ok, "the child to take its name", 10)
        assert check(probe("process", str(pidfile)), ROOT) == (True, None, "pid %d" % child.pid)
        assert check(probe("process", name), ROOT).detail == "pid %d" % child.pid
    finally:
        child.stdin.close()
        child.wait(10)
    for target in (name, str(pidfile)):
        outcome = check(probe("process", target), ROOT)
        assert (outcome.ok, outcome.error) == (False, "absent"), target
    pidfile.write_text("not a pid")
    assert check(probe("process", str(pidfile)), ROOT).detail.endswith("holds no pid")
    assert check(probe("process", str(tmp_path / "none.pid")), ROOT).error == "absent"


def test_the_runner_times_out_skips_and_keeps_one_run_per_probe(mute_listener):
    """An HTTP probe every 50 ms with a 300 ms timeout against a server that
    never answers: each run ends as a timeout, the turns that come while it is
    out are skipped, and the server never sees two of its connections at once."""
    port, accepted, peak = mute_listener
    results = []
    slow = probe("http", "http://127.0.0.1:%d/" % port, interval=0.05, timeout=0.3)
    runner = ProbeRunner([slow], ROOT, workers=2, on_result=lambda p, r: results.append(r))
    runner.start()
    try:
        wait_for(lambda: len(results) >= 3, "three results", 20)
    finally:
        runner.stop()
    assert {r["error"] for r in results} == {"timeout"} and {r["latency_ms"] for r in results} == {None}
    stats = runner.stats()
    assert stats["skipped"] >= 3 * 4 and stats["timeouts"] == stats["runs"] >= 3
    assert peak[0] == 1 and len(accepted) >= 3
    assert runner.latest() == [results[-1]]
    assert all(r["error"] in ERROR_CLASSES for r in results)


def test_a_busy_pool_delays_a_turn_instead_of_dropping_it(mute_listener, web):
    """One worker, held by a slow probe: the fast probe's turn waits for it and runs."""
    port = mute_listener[0]
    results = []
    slow = probe("http", "http://127.0.0.1:%d/" % port, name="slow", interval=10.0, timeout=0.3)
    fast = probe("http", web + "/ok", name="fast", interval=10.0)
    runner = ProbeRunner([slow, fast], ROOT, workers=1, on_result=lambda p, r: results.append(r))
    runner.start()
    try:
        wait_for(lambda: len(results) >= 2, "both probes' first results", 20)
    finally:
        runner.stop()
    assert [(r["name"], r["ok"], r["error"]) for r in results[:2]] == [("slow", False, "timeout"),
                                                                      ("fast", True, None)]
    assert runner.stats()["skipped"] == 0


def test_stop_ends_the_scheduler_while_a_run_is_out(mute_listener):
    port = mute_listener[0]
    runner = ProbeRunner([probe("http", "http://127.0.0.1:%d/" % port, timeout=5.0)], ROOT, workers=1)
    runner.start()
    wait_for(lambda: mute_listener[1], "the probe to connect", 10)
    started = time.monotonic()
    runner.stop()
    assert time.monotonic() - started < 2.0 and runner.latest() == []


def test_a_systemctl_that_hangs_is_killed_at_the_timeout(tmp_path):
    from hostdiag.sources.probes import check_systemd

    hanging = tmp_path / "systemctl"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    started = time.monotonic()
    outcome = check_systemd("ssh.service", 0.2, systemctl=str(hanging))
    assert (outcome.ok, outcome.error) == (False, "timeout") and time.monotonic() - started < 5
    assert check_systemd("ssh.service", 1, systemctl=str(tmp_path / "missing")).error == "systemd"
