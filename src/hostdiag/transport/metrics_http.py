"""A small bounded HTTP/1.1 server for Prometheus: ``GET /metrics`` and ``GET /``.

It serves the newest sample handed to :meth:`MetricsServer.publish`; a scrape
never reads /proc. The exposition (:mod:`hostdiag.encode.prometheus`) is
encoded at the first scrape after a new sample, once per format (text 0.0.4 or
OpenMetrics, chosen by the ``Accept`` header) and compression (gzip when
``Accept-Encoding`` allows it), and reused by later scrapes of the same sample.
What the exposition needs of the process and socket tables (histograms, top
processes: a pass over every socket and process) is summarized by
:meth:`~MetricsServer.publish`, on the publisher's thread, once per new table
(the agent takes tables every N-th sample), so a scrape costs about what the
system sections do.

One thread runs a ``selectors`` loop over non-blocking sockets; the sampler
only swaps one reference in :meth:`publish`, so a slow or hostile client can
cost this thread time but can never hold a sample back. Every limit is in
:class:`MetricsLimits` (docs/metrics.md, "The endpoint"):

- at most ``max_connections`` connections at once; one more is accepted and
  closed at once (counted as ``rejected{reason="connections"}``);
- a request head (request line and headers) of at most ``max_request_bytes``,
  else ``431`` and close; requests with a body are refused (``400``);
- a request must arrive whole within ``timeout`` seconds of the connection
  opening or of the previous response being sent, and a response must be
  sent whole within ``timeout`` seconds, else the connection is closed;
- only ``GET`` (``405`` otherwise), only ``/metrics`` and ``/`` (``404``);
- one request at a time per connection: a pipelined request waits, unread
  beyond the head limit, until the previous response has gone;
- the encoded bodies kept: at most four (two formats, plain or gzip), all of
  the newest sample;
- when accept() fails (out of file descriptors), accepting stops for
  ``_ACCEPT_PAUSE_S`` instead of spinning on a listening socket that stays
  readable.
"""

import errno
import gzip
import ipaddress
import logging
import selectors
import socket
import threading
import time

from hostdiag.encode.prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode_metrics, summarize_tables

log = logging.getLogger("hostdiag.transport.metrics_http")

# gzip level 1: about 7x smaller on our exposition, at a fraction of level 6's CPU.
GZIP_LEVEL = 1
_RECV_BYTES = 65536
# What a client may still send after a response that closes, discarded, before the close.
_DRAIN_BYTES = 65536
# How long accepting stops after accept() fails (out of file descriptors).
_ACCEPT_PAUSE_S = 1.0
_INDEX = (b"<html><head><title>hostdiag</title></head><body><h1>hostdiag agent</h1>"
          b"<p><a href=\"/metrics\">/metrics</a></p></body></html>\n")


class MetricsLimits:
    """The endpoint's bounds (docs/metrics.md, "The endpoint")."""

    def __init__(self, max_connections=16, max_request_bytes=8192, timeout=10.0):
        self.max_connections = int(max_connections)
        self.max_request_bytes = int(max_request_bytes)
        self.timeout = float(timeout)


def is_loopback(host):
    """True for a loopback address (127.0.0.0/8, ::1) or "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_socket(host, port, backlog=64):
    """A non-blocking TCP socket listening on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Latest:
    """What :meth:`MetricsServer.publish` handed over, and its encodings."""

    __slots__ = ("generation", "snapshot", "rates", "findings", "tables", "bodies")

    def __init__(self, generation, snapshot, rates, findings, tables):
        self.generation = generation
        self.snapshot = snapshot
        self.rates = rates
        self.findings = findings
        self.tables = tables  # summarize_tables() of the snapshot's tables
        self.bodies = {}  # (openmetrics, gzip) -> body bytes


class _Connection:
    __slots__ = ("sock", "peer", "inbox", "outbox", "deadline", "close_after", "drained")

    def __init__(self, sock, peer, deadline):
        self.sock = sock
        self.peer = peer
        self.inbox = bytearray()
        self.outbox = None  # memoryview of the response still to send, or None
        self.deadline = deadline
        self.close_after = False
        self.drained = None  # bytes discarded since the response that closes; None before it


class MetricsServer:
    """Serves ``/metrics`` on ``listen``: a listening socket, or a ``(host,
    port)`` to bind (loopback only unless ``allow_remote``). Call
    :meth:`start` for a thread of its own or :meth:`serve_forever` in one you
    own; :meth:`close` stops it and closes every socket."""

    def __init__(self, listen, limits=None, allow_remote=False, encode=encode_metrics):
        if isinstance(listen, socket.socket):
            self.sock = listen
            self.sock.setblocking(False)
        else:
            host, port = listen
            if not allow_remote and not is_loopback(host):
                raise ValueError("%s is not a loopback address (remote scrapes must be allowed explicitly)" % host)
            self.sock = listen_socket(host, port)
        self.limits = limits or MetricsLimits()
        self.encode = encode
        self.latest = None
        self._generation = 0
        self._connections = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._closed = False
        self._thread = None
        self._loop_started = False
        self._loop_done = threading.Event()
        self._accept_paused_until = None  # monotonic time; set while accept() fails (EMFILE)
        self.stats = {"scrapes": {}, "gzipped": 0, "encodes": 0, "rejected": {}, "connections": 0}

    @property
    def address(self):
        """``(host, port)`` actually listened on."""
        return self.sock.getsockname()[:2]

    # -- the sampler's side ---------------------------------------------------

    def publish(self, snapshot, rates=None, findings=()):
        """Make ``snapshot`` (plain dict; not to be mutated afterwards) the one
        served. The tables (processes, sockets, cgroups, namespaces) of a snapshot that lacks them
        (the agent takes them every N-th sample) are carried over from the
        previous one of the same boot, with the process rates derived for
        them, so their series do not come and go. The tables are summarized
        here when they are new (about 1.4 ms for 4,000 sockets and 1,100
        processes), not at each scrape."""
        previous = self.latest
        if previous is not None and _boot(previous.snapshot) == _boot(snapshot):
            carried = {section: previous.snapshot.get(section) for section in TABLE_SECTIONS
                       if snapshot.get(section) is None and previous.snapshot.get(section) is not None}
            if carried:
                snapshot = dict(snapshot, **carried)
                # The process rates go with the process table they were derived for.
                if "processes" in carried and isinstance(previous.rates, dict) and isinstance(rates, dict) \
                        and rates.get("processes") is None:
                    rates = dict(rates, processes=previous.rates.get("processes"))
        if previous is not None and _same_tables(previous, snapshot, rates):
            tables = previous.tables
        else:
            tables = summarize_tables(snapshot, rates)
        self._generation += 1
        self.latest = _Latest(self._generation, snapshot, rates, list(findings or ()), tables)

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="hostdiag-metrics", daemon=True)
        self._loop_started = True  # before the thread runs: a close() right after start() waits for it
        self._thread.start()

    def close(self):
        """Stop the loop, wait for it to end (unless called from it) and
        close every socket; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake_w.send(b"x")
        if self._loop_started and not self._loop_done.is_set() and threading.current_thread() is not self._thread:
            self._loop_done.wait()
        self._teardown()

    def _teardown(self):
        for conn in list(self._connections.values()):
            self._drop(conn)
        for sock in (self.sock, self._wake_r, self._wake_w):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass  # never registered, or registered by a loop that has ended
            sock.close()
        self._selector.close()

    def serve_forever(self):
        """Run the loop until :meth:`close`."""
        self._loop_started = True
        try:
            self._loop()
        finally:
            self._loop_done.set()

    def _loop(self):
        self._selector.register(self.sock, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        while not self._stopping:
            now = time.monotonic()
            if self._accept_paused_until is not None and now >= self._accept_paused_until:
                self._accept_paused_until = None
                self._selector.register(self.sock, selectors.EVENT_READ, None)
            wait = min((c.deadline for c in self._connections.values()), default=now + 1.0) - now
            for key, events in self._selector.select(max(0.0, min(wait, 1.0))):
                if key.fileobj is self.sock:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    return
                else:
                    self._service(key.data, events)
            self._expire(time.monotonic())

    # -- connections ----------------------------------------------------------

    def _accept(self):
        for _ in range(self.limits.max_connections + 1):
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and the like: stop accepting for a second rather than
                # spin on a listening socket that stays readable.
                self._reject("accept_failed")
                log.warning("metrics: accept failed, pausing for %g s: %s", _ACCEPT_PAUSE_S, exc.strerror or exc)
                self._selector.unregister(self.sock)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_S
                return
            if len(self._connections) >= self.limits.max_connections:
                self._reject("connections")
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, peer, time.monotonic() + self.limits.timeout)
            self._connections[sock.fileno()] = conn
            self.stats["connections"] = len(self._connections)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _reject(self, reason):
        rejected = self.stats["rejected"]
        rejected[reason] = rejected.get(reason, 0) + 1

    def _drop(self, conn):
        if self._connections.pop(conn.sock.fileno(), None) is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()
        self.stats["connections"] = len(self._connections)

    def _expire(self, now):
        for conn in [c for c in self._connections.values() if c.deadline <= now]:
            if (conn.inbox or conn.outbox is not None) and conn.drained is None:  # idle or lingering: just ends
                self._reject("timeout")
            self._drop(conn)

    def _service(self, conn, events):
        try:
            if events & selectors.EVENT_WRITE:
                self._send(conn)
            elif events & selectors.EVENT_READ:
                self._receive(conn)
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                log.info("metrics: connection from %s: %s", conn.peer, exc.strerror or exc)
            self._drop(conn)
        except Exception:  # noqa: BLE001 - a defect costs this connection, never the endpoint's thread
            log.exception("metrics: connection from %s failed", conn.peer)
            self._reject("internal_error")
            self._drop(conn)

    def _receive(self, conn):
        if conn.drained is not None:
            self._drain(conn)
            return
        # Never more than one byte past the head limit is held.
        data = conn.sock.recv(max(1, min(_RECV_BYTES, self.limits.max_request_bytes + 1 - len(conn.inbox))))
        if not data:
            self._drop(conn)
            return
        conn.inbox += data
        self._next_requests(conn)

    def _next_requests(self, conn):
        """Answer the requests whole in ``conn.inbox``, one at a time: stop
        when one's response could not be sent at once (the rest waits for
        it) or the connection is closed."""
        while conn.outbox is None and conn.drained is None and conn.sock.fileno() >= 0:
            end = conn.inbox.find(b"\r\n\r\n")
            if end < 0 or end + 4 > self.limits.max_request_bytes:
                if end >= 0 or len(conn.inbox) > self.limits.max_request_bytes:
                    self._reject("too_large")
                    self._respond(conn, 431, "text/plain", b"request head too large\n", close=True)
                return
            head = bytes(conn.inbox[:end])
            del conn.inbox[:end + 4]
            self._answer(conn, head)

    def _answer(self, conn, head):
        try:
            method, target, version, headers = _parse_head(head)
        except ValueError as exc:
            self._reject("bad_request")
            self._respond(conn, 400, "text/plain", ("bad request: %s\n" % exc).encode(), close=True)
            return
        close = version == "HTTP/1.0" or "close" in headers.get("connection", "").lower()
        if headers.get("transfer-encoding") or headers.get("content-length", "0").strip() not in ("", "0"):
            self._reject("bad_request")
            self._respond(conn, 400, "text/plain", b"a request body is not accepted\n", close=True)
            return
        if method != "GET":
            self._reject("method")
            self._respond(conn, 405, "text/plain", b"only GET\n", close=close, extra="Allow: GET\r\n")
            return
        path = target.split("?", 1)[0]
        if path == "/":
            self._respond(conn, 200, "text/html; charset=utf-8", _INDEX, close=close)
        elif path == "/metrics":
            self._metrics(conn, headers, close)
        else:
            self._reject("not_found")
            self._respond(conn, 404, "text/plain", b"not found: try /metrics\n", close=close)

    def _metrics(self, conn, headers, close):
        latest = self.latest
        if latest is None:
            self._respond(conn, 503, "text/plain", b"no sample yet\n", close=close)
            return
        openmetrics = _accepts(headers.get("accept", ""), "application/openmetrics-text")
        compressed = _accepts(headers.get("accept-encoding", ""), "gzip")
        body = latest.bodies.get((openmetrics, compressed))
        if body is None:
            try:
                body = self._encode(latest, openmetrics, compressed)
            except Exception as exc:  # noqa: BLE001 - a snapshot we cannot encode costs this scrape, not the agent
                log.exception("metrics: cannot encode sample %d", latest.generation)
                self._reject("encode_failed")
                self._respond(conn, 500, "text/plain", ("cannot encode: %s\n" % type(exc).__name__).encode(),
                              close=close)
                return
        scrapes = self.stats["scrapes"]
        form = "openmetrics" if openmetrics else "text"
        scrapes[form] = scrapes.get(form, 0) + 1
        self.stats["gzipped"] += compressed
        self._respond(conn, 200, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, body,
                      close=close, extra="Content-Encoding: gzip\r\n" if compressed else "")

    def _encode(self, latest, openmetrics, compressed):
        plain = latest.bodies.get((openmetrics, False))
        if plain is None:
            self.stats["encodes"] += 1
            text = self.encode(latest.snapshot, latest.rates, latest.findings, server_stats=self.stats,
                               openmetrics=openmetrics, tables=latest.tables)
            plain = latest.bodies[(openmetrics, False)] = text.encode("utf-8", "replace")
        if not compressed:
            return plain
        body = latest.bodies[(openmetrics, True)] = gzip.compress(plain, GZIP_LEVEL, mtime=0)
        return body

    def _respond(self, conn, status, content_type, body, close=False, extra=""):
        reason = _REASONS[status]
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nVary: Accept, Accept-Encoding\r\n"
                "%s%s\r\n" % (status, reason, content_type, len(body), extra,
                              "Connection: close\r\n" if close else ""))
        conn.outbox = memoryview(head.encode("ascii") + body)
        conn.close_after = close
        conn.deadline = time.monotonic() + self.limits.timeout
        self._send(conn, resume=False)

    def _send(self, conn, resume=True):
        """Send what the socket takes; once the response is gone, close or
        wait for the next request (answering one already read when
        ``resume``; :meth:`_next_requests` does it otherwise)."""
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        conn.outbox = conn.outbox[sent:]
        if len(conn.outbox):
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        conn.outbox = None
        if conn.close_after:
            self._linger(conn)
            return
        conn.deadline = time.monotonic() + self.limits.timeout
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if resume and conn.inbox:
            self._next_requests(conn)


    def _linger(self, conn):
        """Half-close after a closing response and discard what the client
        still sends until it closes too: closing with unread input would
        make the kernel reset the connection and lose the response."""
        conn.sock.shutdown(socket.SHUT_WR)
        conn.drained = 0
        conn.inbox.clear()
        conn.deadline = time.monotonic() + self.limits.timeout
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def _drain(self, conn):
        data = conn.sock.recv(_RECV_BYTES)
        conn.drained += len(data)
        if not data or conn.drained > _DRAIN_BYTES:
            self._drop(conn)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


# The sections the agent takes every agent.table_every samples, null in between.
TABLE_SECTIONS = ("processes", "sockets", "cgroups", "netns")


def _same_tables(previous, snapshot, rates):
    """True when ``snapshot`` holds the very table objects (and process
    rates) of the previous sample: its summary still holds. The previous
    sample keeps them alive, so identity cannot be a reused id."""
    return (all(previous.snapshot.get(section) is snapshot.get(section) for section in TABLE_SECTIONS)
            and (previous.rates or {}).get("processes") is (rates or {}).get("processes"))


def _boot(snapshot):
    return (snapshot.get("meta") or {}).get("boot_id")


def _parse_head(head):
    """``(method, target, version, {lower-case name: value})`` of a request
    head; ValueError naming what is wrong."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        raise ValueError("undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("malformed request line")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError("malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def _accepts(header, wanted):
    """True when the ``Accept``/``Accept-Encoding`` value ``header`` lists
    ``wanted`` with a q-value above 0."""
    for item in header.split(","):
        fields = item.split(";")
        if fields[0].strip().lower() != wanted:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False
