"""The agent's server: asyncio listeners on a Unix socket (default) and,
opt-in, TCP with a token and optional TLS, serving the history and the live
stream of snapshots (docs/protocol.md).

It runs its event loop in a thread of its own. The sampler hands it each new
record with :meth:`AgentServer.publish`, which only schedules work on that
loop: a slow or hostile client can cost the server's thread some time, but it
can never block sampling, and a client whose unsent output passes its send
buffer limit is dropped instead of buffering without bound.
"""

import asyncio
import collections
import grp
import hmac
import logging
import os
import socket
import stat
import threading
import time

from hostdiag import __version__
from hostdiag.encode.delta import delta as make_delta
from hostdiag.encode.delta import prior_keys
from hostdiag.model.snapshot import SCHEMA_VERSION
from hostdiag.transport import protocol as P
from hostdiag.transport.framing import FrameDecoder, decode_document, encode_frame, encode_frame_with_document
from hostdiag.transport.protocol import Error, ProtocolError

log = logging.getLogger("hostdiag.apps.agent.server")

# Records fetched from the history per step of a backfill or range.
_CHUNK = 32
# Requests a client may have queued before the server stops reading from it.
_QUEUE_PAUSE = 32
_QUEUE_RESUME = 8
# How long a dropped client's last bytes (its error frame) may take to flush.
_CLOSE_GRACE_S = 2.0
_MAX_ID_CHARS = 64
# The history numbers the records of every boot from 1.
FIRST_SEQ = 1


class Limits:
    """The server's per-client bounds; see docs/protocol.md, "Limits"."""

    def __init__(self, max_clients=64, send_buffer_bytes=4 * 1024 * 1024, read_timeout=30.0,
                 max_frame_bytes=P.DEFAULT_MAX_FRAME_BYTES, full_every=P.DEFAULT_FULL_EVERY):
        self.max_clients = int(max_clients)
        self.send_buffer_bytes = int(send_buffer_bytes)
        self.read_timeout = float(read_timeout)
        self.max_frame_bytes = max(int(max_frame_bytes), P.MIN_FRAME_BYTES)
        self.full_every = min(max(int(full_every), 1), P.MAX_FULL_EVERY)

    def as_dict(self):
        return {
            "max_clients": self.max_clients,
            "send_buffer_bytes": self.send_buffer_bytes,
            "read_timeout_s": self.read_timeout,
            "max_frame_bytes": self.max_frame_bytes,
            "max_request_bytes": P.MAX_REQUEST_BYTES,
            "max_page": P.MAX_PAGE,
            "full_every": self.full_every,
        }


class Listener:
    """Where to listen. ``kind`` is "unix" or "tcp"; TCP needs a token."""

    def __init__(self, kind, path=None, mode=0o660, group=None, host=None, port=None,
                 token=None, ssl_context=None):
        if kind == "tcp" and not token:
            raise ValueError("a TCP listener needs a token")
        self.kind = kind
        self.path = path
        self.mode = mode
        self.group = group
        self.host = host
        self.port = port
        self.token = token
        self.ssl_context = ssl_context

    def describe(self):
        if self.kind == "unix":
            return "unix:%s" % self.path
        return "%s://%s:%d" % ("tls" if self.ssl_context else "tcp", self.host, self.port)


class _Sent:
    """The last snapshot sent on a subscription: the base of the next delta."""

    __slots__ = ("boot_id", "seq", "snapshot")

    def __init__(self, boot_id, seq, snapshot):
        self.boot_id = boot_id
        self.seq = seq
        self.snapshot = snapshot


class _Connection(asyncio.Protocol):
    """One client: a frame decoder, a request queue served in order by one
    task, and at most one subscription."""

    def __init__(self, server, listener):
        self.server = server
        self.listener = listener
        self.transport = None
        self.peer = "?"
        self.decoder = FrameDecoder(P.MAX_REQUEST_BYTES)
        self.greeted = False
        self.closing = False
        self.eof = False
        self.queue = collections.deque()
        self.queue_event = asyncio.Event()
        self.reading_paused = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.worker = None
        self.read_timer = None
        # Subscription state: mode is None, "backfill" or "live".
        self.mode = None
        self.stream = None
        self.next_seq = None
        self.boot_id = None
        self.last_sent = None
        self.prior = {}  # top-level key -> (seq, newest non-null value sent)
        self.frames_since_full = 0
        self.full_every = server.limits.full_every
        self.want_full = False
        self.largest_frame = 0

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = "%s:%s" % peer[:2] if isinstance(peer, tuple) else (self.listener.describe())
        limits = self.server.limits
        high = max(limits.send_buffer_bytes // 2, 1)
        transport.set_write_buffer_limits(high=high, low=high // 2)
        if not self.server.admit(self):
            self.fail(Error.TOO_MANY_CLIENTS, "the agent serves at most %d clients" % limits.max_clients)
            return
        self.worker = asyncio.ensure_future(self._serve())
        self._arm_read_timer()

    def data_received(self, data):
        if self.closing:
            return
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(exc.code, exc.message)
            return
        for message in messages:
            if self.closing:
                return
            self._accept(message)
        self._arm_read_timer()

    def eof_received(self):
        """The client closed its side: answer what it asked, then close (a
        subscription goes on until the client goes away)."""
        self.eof = True
        self._cancel_read_timer()
        if self.closing:
            return False
        if self.decoder.partial:
            self.fail(Error.BAD_FRAME, "the stream ended inside a frame")
            return True
        if not self.greeted:
            self.closing = True
            self.transport.close()
            return True
        self.queue_event.set()
        return True

    def connection_lost(self, exc):
        self.closing = True
        self._cancel_read_timer()
        for task in (self.worker, self.stream):
            if task is not None:
                task.cancel()
        self.writable.set()
        self.queue_event.set()
        self.server.forget(self)

    def pause_writing(self):
        self.writable.clear()

    def resume_writing(self):
        self.writable.set()

    # -- reading -----------------------------------------------------------

    def _arm_read_timer(self):
        """A read timer runs while the hello is awaited or a frame is half read."""
        self._cancel_read_timer()
        if self.closing or self.reading_paused or self.eof:
            return
        if not self.greeted or self.decoder.partial:
            self.read_timer = asyncio.get_running_loop().call_later(
                self.server.limits.read_timeout, self._read_timed_out)

    def _cancel_read_timer(self):
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self):
        self.read_timer = None
        what = "a frame left unfinished" if self.greeted else "no hello"
        self.fail(Error.READ_TIMEOUT, "%s for %.1f s" % (what, self.server.limits.read_timeout))

    def _accept(self, message):
        """Route one decoded request: the hello and subscription controls at
        once, everything else through the queue, in order."""
        kind = message["type"]
        request_id = message.get("id")
        if request_id is not None and not _valid_id(request_id):
            self.send_error(Error.BAD_REQUEST, "id must be an int or a str of at most %d characters"
                            % _MAX_ID_CHARS)
            return
        if not self.greeted:
            if kind != P.HELLO:
                self.fail(Error.HELLO_REQUIRED, "the first frame must be a hello, not %r" % kind[:40])
                return
            self._hello(message)
            return
        if self.mode is not None:
            self._control(message)
            return
        self.queue.append(message)
        self.queue_event.set()
        if len(self.queue) >= _QUEUE_PAUSE and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _dequeued(self):
        if self.reading_paused and len(self.queue) <= _QUEUE_RESUME and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()
            self._arm_read_timer()

    # -- writing -----------------------------------------------------------

    def send(self, frame):
        if self.closing:
            return
        self.largest_frame = max(self.largest_frame, len(frame))
        self.transport.write(frame)
        self.server.stats["frames_sent"] += 1
        self.server.stats["bytes_sent"] += len(frame)

    def send_message(self, message):
        self.send(encode_frame(message))

    def send_error(self, code, message, request_id=None):
        self.server.stats["errors_sent"] += 1
        self.send(encode_frame(P.error_message(code, message, request_id)))

    def fail(self, code, message):
        """Send an error frame (best effort) and close."""
        if self.closing:
            return
        log.info("client %s: %s: %s", self.peer, Error.NAMES[code], message)
        if code == Error.SLOW_CLIENT:
            self.server.stats["clients_dropped"] += 1
        self.send_error(code, message)
        self.closing = True
        self._cancel_read_timer()
        for task in (self.worker, self.stream):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.transport.close()
        # close() waits for the buffer to flush; a client that reads nothing
        # would hold it forever.
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, self.transport.abort)

    async def drain(self):
        """Wait until the client has read enough of what it was sent; a client
        that reads nothing for read_timeout seconds is dropped."""
        if self.writable.is_set():
            return
        try:
            await asyncio.wait_for(self.writable.wait(), self.server.limits.read_timeout)
        except asyncio.TimeoutError:
            self.fail(Error.SLOW_CLIENT, "read nothing for %.1f s" % self.server.limits.read_timeout)
        if self.closing:
            raise asyncio.CancelledError()

    # -- requests ----------------------------------------------------------

    async def _serve(self):
        while not self.closing:
            if not self.queue:
                if self.eof and self.mode is None:
                    self.closing = True
                    self.transport.close()
                    return
                self.queue_event.clear()
                await self.queue_event.wait()
                continue
            message = self.queue.popleft()
            self._dequeued()
            kind = message["type"]
            request_id = message.get("id")
            handler = {
                P.INFO: self._info, P.LATEST: self._latest, P.RANGE: self._range,
                P.SUBSCRIBE: self._subscribe, P.PING: self._ping,
            }.get(kind)
            try:
                if self.mode is not None:
                    self._control(message)
                elif handler is not None:
                    await handler(message, request_id)
                elif kind in (P.FULL, P.UNSUBSCRIBE):
                    self.send_error(Error.OUT_OF_ORDER, "%r without a subscription" % kind, request_id)
                elif kind == P.HELLO:
                    self.send_error(Error.OUT_OF_ORDER, "hello was already done", request_id)
                else:
                    self.send_error(Error.UNKNOWN_TYPE, "unknown request type %r" % kind[:40], request_id)
            except _BadRequest as exc:
                self.send_error(Error.BAD_REQUEST, str(exc), request_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one request failed; the session goes on
                log.exception("client %s: request %r failed", self.peer, kind[:40])
                self.send_error(Error.INTERNAL, "%s: %s" % (type(exc).__name__, exc), request_id)

    def _hello(self, message):
        request_id = message.get("id")
        offered = message.get("versions", [message.get("version", P.PROTOCOL_VERSION)])
        if type(offered) is not list or not all(type(v) is int for v in offered):
            self.fail(Error.UNSUPPORTED_VERSION, "hello versions must be a list of ints")
            return
        common = set(offered) & set(P.SUPPORTED_VERSIONS)
        if not common:
            self.fail(Error.UNSUPPORTED_VERSION, "the client offers versions %s, this agent speaks %s"
                      % (offered[:8], list(P.SUPPORTED_VERSIONS)))
            return
        if self.listener.token is not None:
            token = message.get("token")
            if type(token) is not str or not hmac.compare_digest(
                    token.encode("utf-8", "surrogatepass"), self.listener.token.encode("utf-8")):
                self.fail(Error.AUTH_FAILED, "a valid token is required on this listener")
                return
        self.greeted = True
        caps = list(P.CAPABILITIES)
        if self.listener.token is not None:
            caps.append(P.CAP_TOKEN)
        if self.listener.ssl_context is not None:
            caps.append(P.CAP_TLS)
        info = self.server.history_info()
        reply = {
            "type": P.HELLO,
            "version": max(common),
            "versions": list(P.SUPPORTED_VERSIONS),
            "schema_version": SCHEMA_VERSION,
            "capabilities": caps,
            "server": "hostdiag/%s" % __version__,
            "agent_id": info.get("agent_id"),
            "boot_id": info.get("boot_id"),
            "limits": self.server.limits.as_dict(),
        }
        if request_id is not None:
            reply["id"] = request_id
        self.send_message(reply)

    async def _ping(self, message, request_id):
        self.send_message(_with_id({"type": P.PONG}, request_id))

    async def _info(self, message, request_id):
        self.send_message(_with_id(self.server.info(), request_id))

    async def _latest(self, message, request_id):
        record = self.server.history_call("latest")
        if record is None:
            self.send_error(Error.NOT_FOUND, "no record has been taken yet", request_id)
            return
        self.send_record(record, request_id)

    def send_record(self, record, request_id):
        head = {"type": P.RECORD, "boot_id": record.boot_id, "seq": record.seq, "wall_ns": record.wall_ns}
        try:
            frame = encode_frame_with_document(_with_id(head, request_id), "snapshot", record.payload,
                                               self.server.limits.max_frame_bytes)
        except ProtocolError as exc:
            self.send_error(Error.RECORD_TOO_LARGE, "record %s/%d: %s" % (record.boot_id, record.seq,
                                                                          exc.message), request_id)
            return
        self.send(frame)

    async def _range(self, message, request_id):
        boot_id = _opt(message, "boot_id", str)
        from_seq = _opt(message, "from_seq", int, minimum=0)
        to_seq = _opt(message, "to_seq", int, minimum=0)
        from_ns = _opt(message, "from_ns", int)
        to_ns = _opt(message, "to_ns", int)
        limit = _opt(message, "limit", int, minimum=1)
        limit = P.DEFAULT_PAGE if limit is None else min(limit, P.MAX_PAGE)
        info = self.server.history_info()
        boot_id = boot_id or info.get("boot_id")
        boot = self.server.boot_entry(boot_id, info)
        if boot is None:
            self.send_error(Error.NOT_FOUND, "boot %s is not kept" % boot_id, request_id)
            return
        # Gaps are judged against the newest seq when the request began: a
        # record the sampler adds meanwhile is not missing.
        newest = boot.get("newest_seq")
        by_time = from_ns is not None or to_ns is not None
        sent = 0
        gone = []
        expected = None if by_time else from_seq
        cursor = from_seq
        last = None
        more = False
        while sent < limit:
            want = min(_CHUNK, limit - sent)
            records = self.server.history_call(
                "range", start_seq=cursor, end_seq=to_seq, start_ns=from_ns, end_ns=to_ns,
                limit=want + 1, boot_id=boot_id)
            for record in records[:want]:
                if expected is not None and record.seq > expected:
                    gone.append({"from_seq": expected, "to_seq": record.seq - 1})
                self.send_record(record, request_id)
                last = record.seq
                expected = last + 1
                sent += 1
                await self.drain()
            more = len(records) > want
            if not more:
                break
            cursor = last + 1
            await asyncio.sleep(0)
        info = self.server.history_info()
        boot = self.server.boot_entry(boot_id, info) or boot
        end = {
            "type": P.RANGE_END, "boot_id": boot_id, "count": sent, "more": more,
            "next_seq": (last + 1) if more else None,
            "oldest_seq": boot.get("oldest_seq"), "newest_seq": boot.get("newest_seq"),
        }
        if not more and not by_time and expected is not None:
            stop = newest if to_seq is None or newest is None else min(to_seq, newest)
            if stop is not None and expected <= stop:
                gone.append({"from_seq": expected, "to_seq": stop})
        if gone:
            end["gone"] = gone
        self.send_message(_with_id(end, request_id))

    async def _subscribe(self, message, request_id):
        boot_id = _opt(message, "boot_id", str)
        from_seq = _opt(message, "from_seq", int, minimum=0)
        full_every = _opt(message, "full_every", int, minimum=1)
        if boot_id is not None and from_seq is None:
            raise _BadRequest("boot_id needs from_seq")
        info = self.server.history_info()
        current = info.get("boot_id")
        self.full_every = (self.server.limits.full_every if full_every is None
                           else min(full_every, P.MAX_FULL_EVERY))
        self.last_sent = None
        self.prior = {}
        self.frames_since_full = 0
        self.want_full = False
        newest = self.server.newest_seq(info)
        reply = {"type": P.SUBSCRIBED, "boot_id": current, "full_every": self.full_every,
                 "oldest_seq": info.get("oldest_seq"), "newest_seq": newest}
        if from_seq is None:
            self.mode = "live"
            self.boot_id = current
            self.next_seq = (newest + 1) if newest is not None else None
            reply["next_seq"] = self.next_seq
            self.send_message(_with_id(reply, request_id))
            return
        reply["next_seq"] = from_seq
        reply["from_boot_id"] = boot_id or current
        self.send_message(_with_id(reply, request_id))
        self.mode = "backfill"
        self.stream = asyncio.ensure_future(self._backfill(boot_id or current, from_seq, info))

    def _control(self, message):
        """A request while subscribed: only full, ping and unsubscribe are valid."""
        kind = message["type"]
        request_id = message.get("id")
        if kind == P.FULL:
            self.want_full = True
        elif kind == P.PING:
            self.send_message(_with_id({"type": P.PONG}, request_id))
        elif kind == P.UNSUBSCRIBE:
            if self.stream is not None:
                self.stream.cancel()
                self.stream = None
            self.mode = None
            self.send_message(_with_id({"type": P.UNSUBSCRIBED}, request_id))
        else:
            self.send_error(Error.OUT_OF_ORDER, "%r during a subscription (only full, ping, unsubscribe)"
                            % kind[:40], request_id)

    # -- the subscription stream -------------------------------------------

    async def _backfill(self, boot_id, from_seq, info):
        """Stored records from (boot_id, from_seq) on, across later boots,
        then the live stream."""
        try:
            boots = info.get("boots") or []
            ids = [b.get("boot_id") for b in boots]
            current = info.get("boot_id")
            if boot_id == current:
                order = [current]
            elif boot_id in ids:
                order = ids[ids.index(boot_id):]
            else:
                self.send_gone(boot_id, from_seq, None, "boot_not_kept")
                order = ids
                from_seq = FIRST_SEQ
            if current not in order:
                order.append(current)
            for position, boot in enumerate(order):
                # Seqs count from FIRST_SEQ in every boot: what a later boot
                # no longer has before its oldest record is exactly known.
                start = from_seq if position == 0 else FIRST_SEQ
                await self._backfill_boot(boot, start, is_current=(boot == current))
            self.mode = "live"
            self.boot_id = current
            self.stream = None
        except asyncio.CancelledError:
            pass

    async def _backfill_boot(self, boot_id, start, is_current):
        server = self.server
        expected = start
        cursor = start
        while not self.closing:
            records = server.history_call("range", start_seq=cursor, limit=_CHUNK, boot_id=boot_id)
            for record in records:
                if record.seq > expected:
                    self.send_gone(boot_id, expected, record.seq - 1, "not_kept")
                try:
                    snapshot = decode_document(record.payload)
                except ProtocolError:
                    self.send_gone(boot_id, record.seq, record.seq, "unreadable")
                else:
                    self.send_stream(record, snapshot)
                expected = record.seq + 1
                await self.drain()
                await asyncio.sleep(0)
            if records:
                cursor = records[-1].seq + 1
                continue
            # Nothing stored from the cursor on.
            if is_current:
                # Every later record will be published. No await between the
                # empty read and the switch to live: the next publish() finds
                # this client with the right next_seq (a seq the history
                # skipped shows there as a gap, and is reported then).
                self.next_seq = expected
                return
            entry = server.boot_entry(boot_id, server.history_info()) or {}
            newest = entry.get("newest_seq")
            if newest is not None and expected <= newest:
                self.send_gone(boot_id, expected, newest, "not_kept")
            return

    def send_gone(self, boot_id, from_seq, to_seq, reason):
        info = self.server.history_info()
        entry = self.server.boot_entry(boot_id, info) or {}
        self.send_message({"type": P.GONE, "boot_id": boot_id, "from_seq": from_seq, "to_seq": to_seq,
                           "oldest_seq": entry.get("oldest_seq"), "reason": reason})

    def send_stream(self, record, snapshot):
        """One subscription frame: a delta against the last one sent, or whole."""
        server = self.server
        base = self.last_sent
        full = (self.want_full or base is None or base.boot_id != record.boot_id
                or self.frames_since_full + 1 >= self.full_every)
        frame = None
        if not full:
            frame = server.delta_frame(base, record, snapshot, self.prior)
        if frame is None:
            frame = server.full_frame(record)
            full = True
        if frame is None:
            self.send_gone(record.boot_id, record.seq, record.seq, "too_large")
            return
        self.send(frame)
        self.last_sent = _Sent(record.boot_id, record.seq, snapshot)
        for key, value in snapshot.items():
            if value is not None:
                self.prior[key] = (record.seq, value)
        self.frames_since_full = 0 if full else self.frames_since_full + 1
        if full:
            self.want_full = False

    def offer_live(self, record, snapshot):
        """A new record from the sampler: sent unless this client is too far behind."""
        if self.mode != "live" or self.closing:
            return
        if self.next_seq is not None and record.seq < self.next_seq and record.boot_id == self.boot_id:
            return
        if self.next_seq is not None and record.seq > self.next_seq and record.boot_id == self.boot_id:
            # The history has records this client has not had: fetch them first.
            self.mode = "backfill"
            self.stream = asyncio.ensure_future(self._backfill(self.boot_id, self.next_seq,
                                                               self.server.history_info()))
            return
        # One frame may always be on its way whatever its size: a client is
        # behind when more than that and its send buffer are still unread.
        pending = self.transport.get_write_buffer_size()
        limit = self.server.limits.send_buffer_bytes + self.largest_frame
        if pending > limit:
            self.fail(Error.SLOW_CLIENT, "%d bytes unread, over the %d byte send buffer plus a %d byte frame"
                      % (pending, self.server.limits.send_buffer_bytes, self.largest_frame))
            return
        self.send_stream(record, snapshot)
        self.next_seq = record.seq + 1
        self.boot_id = record.boot_id


class _BadRequest(Exception):
    pass


def _valid_id(value):
    return type(value) is int or (type(value) is str and len(value) <= _MAX_ID_CHARS)


def _with_id(message, request_id):
    if request_id is not None:
        message["id"] = request_id
    return message


def _opt(message, name, kind, minimum=None):
    value = message.get(name)
    if value is None:
        return None
    if type(value) is not kind:
        raise _BadRequest("%s must be %s" % (name, kind.__name__))
    if minimum is not None and value < minimum:
        raise _BadRequest("%s must be >= %d" % (name, minimum))
    if kind is int and not -(1 << 63) <= value < (1 << 64):
        raise _BadRequest("%s is out of range" % name)
    if kind is str and len(value) > 256:
        raise _BadRequest("%s is too long" % name)
    return value


class AgentServer:
    """The listeners and clients of one agent.

    ``history`` is the agent's history (thread-safe: the sampler appends to it
    while this server reads). ``describe`` returns the agent's own part of an
    ``info`` reply (host identity, self-report); it is called on the server's
    thread and must only read.
    """

    def __init__(self, history, listeners, limits=None, describe=None):
        self.history = history
        self.listeners = list(listeners)
        self.limits = limits or Limits()
        self.describe = describe or (lambda: {})
        self.loop = None
        self.thread = None
        self.connections = set()
        self.servers = []
        self.stats = collections.Counter()
        self._newest = None            # (boot_id, seq) of the newest published record
        self._frames = collections.OrderedDict()
        self._ready = threading.Event()
        self._start_error = None

    # -- lifecycle (any thread) --------------------------------------------

    def start(self):
        """Bind every listener and serve in a new thread; raises OSError when
        a listener cannot be bound."""
        self.thread = threading.Thread(target=self._run, name="hostdiag-server", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self.thread.join()
            raise self._start_error

    def publish(self, record, snapshot):
        """Hand a new record (and its snapshot as a dict) to the clients."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._on_record, record, snapshot)
            except RuntimeError:
                pass  # the loop closed between the check and the call: stopping

    def set_limits(self, limits):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(setattr, self, "limits", limits)

    def client_count(self):
        return len(self.connections)

    def stop(self, timeout=5.0):
        """Tell every client the agent is stopping, close the listeners and the
        socket file, and end the thread."""
        loop = self.loop
        if loop is None or self.thread is None:
            return
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown()))
        except RuntimeError:
            pass
        self.thread.join(timeout)

    # -- the server thread -------------------------------------------------

    def _run(self):
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind())
        except (OSError, ValueError) as exc:
            self._start_error = exc
            self._ready.set()
            loop.run_until_complete(self._close_listeners())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self):
        loop = asyncio.get_running_loop()
        backlog = max(128, min(self.limits.max_clients, 4096))
        for listener in self.listeners:
            def factory(listener=listener):
                return _Connection(self, listener)
            if listener.kind == "unix":
                sock = _bind_unix(listener.path, listener.mode, listener.group)
                server = await loop.create_unix_server(factory, sock=sock, backlog=backlog)
            else:
                server = await loop.create_server(
                    factory, host=listener.host, port=listener.port, backlog=backlog,
                    ssl=listener.ssl_context, reuse_address=True,
                    ssl_handshake_timeout=self.limits.read_timeout if listener.ssl_context else None)
                if not listener.port:
                    listener.port = server.sockets[0].getsockname()[1]
            self.servers.append(server)
            log.info("listening on %s", listener.describe())

    async def _close_listeners(self):
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        for listener in self.listeners:
            if listener.kind == "unix" and listener.path:
                _unlink_socket(listener.path)

    async def _shutdown(self):
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.fail(Error.SHUTTING_DOWN, "the agent is stopping")
        deadline = time.monotonic() + _CLOSE_GRACE_S
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.transport.abort()
        await self._close_listeners()
        asyncio.get_running_loop().stop()

    def admit(self, conn):
        if len(self.connections) >= self.limits.max_clients:
            self.stats["clients_refused"] += 1
            return False
        self.connections.add(conn)
        self.stats["clients_total"] += 1
        return True

    def forget(self, conn):
        self.connections.discard(conn)

    # -- history access ----------------------------------------------------

    def history_call(self, name, *args, **kwargs):
        return getattr(self.history, name)(*args, **kwargs)

    def history_info(self):
        return self.history.info()

    def boot_entry(self, boot_id, info):
        for entry in info.get("boots") or ():
            if entry.get("boot_id") == boot_id:
                return entry
        if boot_id == info.get("boot_id"):
            return {"boot_id": boot_id, "oldest_seq": info.get("oldest_seq"),
                    "newest_seq": info.get("newest_seq")}
        return None

    def newest_seq(self, info, boot_id=None):
        """The newest seq of a boot (the current one by default), published or stored."""
        boot_id = boot_id or info.get("boot_id")
        candidates = []
        entry = self.boot_entry(boot_id, info)
        if entry and entry.get("newest_seq") is not None:
            candidates.append(entry["newest_seq"])
        if self._newest is not None and self._newest[0] == boot_id:
            candidates.append(self._newest[1])
        return max(candidates) if candidates else None

    def info(self):
        info = dict(self.history_info())
        info["gaps"] = [{"boot_id": g["boot_id"], "from_seq": g["start_seq"], "to_seq": g["end_seq"]}
                        for g in self.history.gaps()]
        info.update(self.describe())
        info["type"] = P.INFO
        info["protocol_version"] = P.PROTOCOL_VERSION
        info["schema_version"] = SCHEMA_VERSION
        info["server"] = {
            "version": __version__,
            "listeners": [listener.describe() for listener in self.listeners],
            "limits": self.limits.as_dict(),
            "clients": len(self.connections),
            "subscribers": sum(1 for c in self.connections if c.mode is not None),
            **{k: self.stats[k] for k in ("clients_total", "clients_refused", "clients_dropped",
                                           "frames_sent", "bytes_sent", "errors_sent")},
        }
        return info

    # -- frames shared between clients -------------------------------------

    def _cache(self, key, make):
        frame = self._frames.get(key)
        if frame is None and key not in self._frames:
            frame = make()
            self._frames[key] = frame
            while len(self._frames) > 16:
                self._frames.popitem(last=False)
        return frame

    def full_frame(self, record):
        """The whole-snapshot subscription frame of a record, or None when too large."""
        def make():
            head = {"type": P.SNAPSHOT, "boot_id": record.boot_id, "seq": record.seq,
                    "wall_ns": record.wall_ns}
            try:
                return encode_frame_with_document(head, "snapshot", record.payload,
                                                  self.limits.max_frame_bytes)
            except ProtocolError:
                return None
        return self._cache(("full", record.boot_id, record.seq), make)

    def delta_frame(self, base, record, snapshot, prior):
        """The delta frame from ``base`` to ``record``, or None when it would
        not fit. ``prior``: {key: (seq, value)}, the newest non-null values the
        client holds, for the keys null in the base."""
        usable = {key: entry for key, entry in prior.items()
                  if base.snapshot.get(key) is None and snapshot.get(key) is not None}

        def make():
            change = make_delta(base.snapshot, snapshot, {k: v for k, (_, v) in usable.items()})
            message = {"type": P.DELTA, "boot_id": record.boot_id, "seq": record.seq,
                       "wall_ns": record.wall_ns, "base_seq": base.seq, "delta": change}
            used = prior_keys(change)
            if used:
                message["prior"] = {key: usable[key][0] for key in used}
            try:
                return encode_frame(message, self.limits.max_frame_bytes)
            except ProtocolError:
                return None
        key = ("delta", record.boot_id, base.seq, record.seq,
               tuple(sorted((k, seq) for k, (seq, _) in usable.items())))
        return self._cache(key, make)

    def _on_record(self, record, snapshot):
        self._newest = (record.boot_id, record.seq)
        for conn in list(self.connections):
            conn.offer_live(record, snapshot)


def _bind_unix(path, mode, group):
    """A listening-ready Unix socket at ``path`` with ``mode`` and ``group``.

    A stale socket file (nobody accepting) is replaced; a live one is an error:
    another agent is serving there."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        except OSError as exc:
            raise OSError("cannot check the socket %s: %s" % (path, exc.strerror or exc)) from None
        else:
            raise OSError("another process is serving on %s" % path)
        finally:
            probe.close()
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not str(group).isdigit() else int(group)
        except KeyError:
            raise ValueError("server.unix_group: no group named %r" % group) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    try:
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
    except OSError:
        sock.close()
        _unlink_socket(path)
        raise
    sock.setblocking(False)
    return sock


def _unlink_socket(path):
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
