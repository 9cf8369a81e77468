"""The requests of the agent protocol and the subscription stream, for one
client: hello, ping, info, latest, range, subscribe (with its backlog and the
live stream), full and unsubscribe (docs/protocol.md, "Requests and replies",
"Subscriptions").

A :class:`ClientSession` reads its history through the server object
(server.py) and its bytes through :class:`FlowControlledConnection` (flow.py).
"""

import asyncio
import hmac
import uuid

from hostdiag import __version__
from hostdiag.model.snapshot import SCHEMA_VERSION
from hostdiag.transport import protocol as P
from hostdiag.transport.flow import FlowControlledConnection, log
from hostdiag.transport.framing import decode_document, encode_frame, encode_frame_with_document
from hostdiag.transport.protocol import Error, ProtocolError

# Records fetched from the history per step of a backfill or range: the
# history's lock is held while they are rebuilt, and the sampler's append
# waits for that lock.
_CHUNK = 8
_MAX_ID_CHARS = 64
FIRST_SEQ = P.FIRST_SEQ


class _Sent:
    """The last snapshot sent on a subscription: the base of the next delta."""

    __slots__ = ("boot_id", "seq", "snapshot")

    def __init__(self, boot_id, seq, snapshot):
        self.boot_id = boot_id
        self.seq = seq
        self.snapshot = snapshot


class ClientSession(FlowControlledConnection):
    """One client: a request queue served in order by one task, and at most
    one subscription."""

    def __init__(self, server, listener):
        super().__init__(server, listener)
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

    def tasks(self):
        return (self.worker, self.stream)

    def accept(self, message):
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
        self.enqueue(message)

    # -- requests ----------------------------------------------------------

    async def serve(self):
        while not self.closing:
            if not self.queue:
                if self.eof:
                    # Every request sent before the EOF is answered; a
                    # subscription ends with it (docs/protocol.md, "Closing").
                    self.close_after_flush(self.server.limits.read_timeout)
                    return
                self.queue_event.clear()
                await self.queue_event.wait()
                continue
            await self.server.yield_to_sampler()
            if self.closing:
                return
            message = self.queue.popleft()
            self.dequeued()
            kind = message["type"]
            request_id = message.get("id")
            handler = {
                P.INFO: self._info, P.LATEST: self._latest, P.RANGE: self._range,
                P.SUBSCRIBE: self._subscribe, P.PING: self._ping,
                P.INCIDENTS: self._incidents, P.INCIDENT: self._incident,
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
        frame = self.record_frame(record, request_id)
        if frame is None:
            self.send_error(Error.RECORD_TOO_LARGE, "record %s/%d does not fit in %d bytes"
                            % (record.boot_id, record.seq, self.server.limits.max_frame_bytes), request_id)
            return
        self.send(frame)

    async def _incidents(self, message, request_id):
        """The newest ``limit`` incident summaries, as many as fit in one frame."""
        limit = _opt(message, "limit", int, minimum=1)
        limit = P.DEFAULT_INCIDENTS_LISTED if limit is None else min(limit, P.MAX_INCIDENTS_LISTED)
        store = self.server.incidents
        summaries = store.list() if store is not None else []
        count = min(limit, len(summaries))
        while True:
            reply = {"type": P.INCIDENTS, "incidents": summaries[:count], "total": len(summaries),
                     "more": count < len(summaries), "enabled": store is not None}
            try:
                frame = encode_frame(_with_id(reply, request_id), self.server.limits.max_frame_bytes)
            except ProtocolError:
                count //= 2  # summaries are small: a frame holds hundreds; halve until it fits
                continue
            self.send(frame)
            return

    async def _incident(self, message, request_id):
        incident_id = _opt(message, "incident", str)
        if incident_id is None or not 0 < len(incident_id) <= P.MAX_INCIDENT_ID_CHARS:
            raise _BadRequest("incident must be an incident id (a str of 1 to %d characters)"
                              % P.MAX_INCIDENT_ID_CHARS)
        store = self.server.incidents
        await self.server.yield_to_sampler()
        data = store.read(incident_id) if store is not None else None
        if data is None:
            self.send_error(Error.NOT_FOUND, "no incident %r is kept" % incident_id[:P.MAX_INCIDENT_ID_CHARS],
                            request_id)
            return
        try:
            frame = encode_frame(_with_id({"type": P.INCIDENT, "incident": incident_id, "bundle": data},
                                          request_id), self.server.limits.max_frame_bytes)
        except ProtocolError:
            self.send_error(Error.RECORD_TOO_LARGE, "the bundle of incident %s (%d bytes) does not fit in %d bytes"
                            % (incident_id, len(data), self.server.limits.max_frame_bytes), request_id)
            return
        self.send(frame)
        await self.drain()

    def record_frame(self, record, request_id):
        """The ``record`` frame of a stored record, or None when it does not fit in max_frame_bytes."""
        head = {"type": P.RECORD, "boot_id": record.boot_id, "seq": record.seq, "wall_ns": record.wall_ns}
        try:
            return encode_frame_with_document(_with_id(head, request_id), "snapshot", record.payload,
                                              self.server.limits.max_frame_bytes)
        except ProtocolError:
            return None

    async def _range(self, message, request_id):
        boot_id = _boot_id(message)
        from_seq = _opt(message, "from_seq", int, minimum=FIRST_SEQ)
        to_seq = _opt(message, "to_seq", int, minimum=FIRST_SEQ)
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
        too_large = []
        expected = None if by_time else from_seq
        cursor = from_seq
        last = None
        more = False
        while sent < limit:
            want = min(_CHUNK, limit - sent)
            await self.server.yield_to_sampler()
            records = self.server.history_call(
                "range", start_seq=cursor, end_seq=to_seq, start_ns=from_ns, end_ns=to_ns,
                limit=want + 1, boot_id=boot_id)
            for record in records[:want]:
                if expected is not None and record.seq > expected:
                    gone.extend(self.server.missing(boot_id, expected, record.seq - 1))
                last = record.seq
                expected = last + 1
                frame = self.record_frame(record, request_id)
                if frame is None:
                    # Not sent, listed in range_end; the range goes on.
                    too_large.append(record.seq)
                    continue
                self.send(frame)
                sent += 1
                await self.drain()
            more = len(records) > want
            if not more:
                break
            cursor = last + 1
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
                gone.extend(self.server.missing(boot_id, expected, stop))
        if gone:
            end["gone"] = gone
        if too_large:
            end["too_large"] = too_large
        self.send_message(_with_id(end, request_id))

    async def _subscribe(self, message, request_id):
        boot_id = _boot_id(message)
        from_seq = _opt(message, "from_seq", int, minimum=FIRST_SEQ)
        full_every = _opt(message, "full_every", int, minimum=1, maximum=P.MAX_FULL_EVERY)
        if boot_id is not None and from_seq is None:
            raise _BadRequest("boot_id needs from_seq")
        info = self.server.history_info()
        current = info.get("boot_id")
        self.full_every = self.server.limits.full_every if full_every is None else full_every
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
            await server.yield_to_sampler()
            records = server.history_call("range", start_seq=cursor, limit=_CHUNK, boot_id=boot_id)
            for record in records:
                if record.seq > expected:
                    self.send_missing(boot_id, expected, record.seq - 1)
                try:
                    snapshot = decode_document(record.payload)
                except ProtocolError:
                    self.send_gone(boot_id, record.seq, record.seq, "corrupt")
                else:
                    self.send_stream(record, snapshot)
                expected = record.seq + 1
                await self.drain()
                await server.yield_to_sampler()
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
                self.send_missing(boot_id, expected, newest)
            return

    def send_missing(self, boot_id, from_seq, to_seq):
        """One gone frame per stretch of from_seq..to_seq missing for one reason."""
        for piece in self.server.missing(boot_id, from_seq, to_seq):
            self.send_gone(boot_id, piece["from_seq"], piece["to_seq"], piece["reason"])

    def send_gone(self, boot_id, from_seq, to_seq, reason):
        info = self.server.history_info()
        entry = self.server.boot_entry(boot_id, info) or {}
        self.send_message({"type": P.GONE, "boot_id": boot_id, "from_seq": from_seq, "to_seq": to_seq,
                           "oldest_seq": entry.get("oldest_seq"), "reason": reason})

    def send_stream(self, record, snapshot, stored=None):
        """One subscription frame: a delta against the last one sent, or whole
        (``stored``: the history's change to it, see ``Server.publish``)."""
        server = self.server
        base = self.last_sent
        full = (self.want_full or base is None or base.boot_id != record.boot_id
                or self.frames_since_full + 1 >= self.full_every)
        frame = None
        if not full:
            frame = server.delta_frame(base, record, snapshot, self.prior, stored)
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

    def offer_live(self, record, snapshot, stored=None):
        """A new record from the sampler: sent unless this client is too far
        behind (``stored``: the history's change to it, see ``Server.publish``)."""
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
        if self.too_far_behind():
            return
        self.send_stream(record, snapshot, stored)
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


def _opt(message, name, kind, minimum=None, maximum=None):
    value = message.get(name)
    if value is None:
        return None
    if type(value) is not kind:
        raise _BadRequest("%s must be %s" % (name, kind.__name__))
    if minimum is not None and value < minimum:
        raise _BadRequest("%s must be >= %d" % (name, minimum))
    if maximum is not None and value > maximum:
        raise _BadRequest("%s must be <= %d" % (name, maximum))
    if kind is int and not -(1 << 63) <= value < (1 << 64):
        raise _BadRequest("%s is out of range" % name)
    if kind is str and len(value) > 256:
        raise _BadRequest("%s is too long" % name)
    return value


def _boot_id(message):
    """The request's boot_id: absent, or a lowercase hyphenated UUID. Any other
    text can name no boot: a bad request, not a boot that is not found."""
    value = _opt(message, "boot_id", str)
    if value is None:
        return None
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = None
    if canonical != value:
        raise _BadRequest("boot_id must be a lowercase hyphenated UUID, got %r" % value[:40])
    return value
