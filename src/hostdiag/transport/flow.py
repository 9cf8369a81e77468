"""Flow control of the agent's server, per client: the limits, the send
buffer and the slow-client rule, the read timeouts, and the request queue
that stops reading from a client that pipelines too far ahead
(docs/protocol.md, "Limits").

:class:`FlowControlledConnection` is the asyncio side of one client: it turns
bytes into requests and requests into a queue, and frames into writes that
never block. What the requests mean is the business of its subclass
(handlers.py).
"""

import asyncio
import collections
import logging

from hostdiag.transport import protocol as P
from hostdiag.transport.framing import FrameDecoder, encode_frame
from hostdiag.transport.protocol import Error, ProtocolError

log = logging.getLogger("hostdiag.apps.agent.server")

# Requests a client may have queued before the server stops reading from it.
QUEUE_PAUSE = 32
QUEUE_RESUME = 8
# How long a dropped client's last bytes (its error frame) may take to flush, in seconds.
CLOSE_GRACE_S = 2.0
# While waiting on a client's full send buffer, how often to look whether it
# read anything (seconds): the granularity of the read-timeout clock.
_PROGRESS_CHECK_S = 0.1


class Limits:
    """The server's per-client bounds; see docs/protocol.md, "Limits".

    Values are taken as given, never clamped: what the hello reports is what
    is in force. One out of its range (protocol.py) raises ValueError; the
    settings (apps/config.py) check the same ranges first.
    """

    def __init__(self, max_clients=64, send_buffer_bytes=4 * 1024 * 1024, read_timeout=30.0,
                 max_frame_bytes=P.DEFAULT_MAX_FRAME_BYTES, full_every=P.DEFAULT_FULL_EVERY):
        if not P.MIN_FRAME_BYTES <= int(max_frame_bytes) <= P.MAX_FRAME_BYTES:
            raise ValueError("max_frame_bytes must be between %d and %d, got %r"
                             % (P.MIN_FRAME_BYTES, P.MAX_FRAME_BYTES, max_frame_bytes))
        if not 1 <= int(full_every) <= P.MAX_FULL_EVERY:
            raise ValueError("full_every must be between 1 and %d, got %r" % (P.MAX_FULL_EVERY, full_every))
        self.max_clients = int(max_clients)
        self.send_buffer_bytes = int(send_buffer_bytes)
        self.read_timeout = float(read_timeout)
        self.max_frame_bytes = int(max_frame_bytes)
        self.full_every = int(full_every)

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


class FlowControlledConnection(asyncio.Protocol):
    """One client's bytes in and out, within the server's limits.

    A subclass implements :meth:`accept` (route one decoded request; the
    hello comes here before anything is queued) and :meth:`serve` (the task
    that works through :attr:`queue`), and may add its own tasks to
    :meth:`tasks` so that closing cancels them.
    """

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
        self.abort_timer = None  # ends a close that waits on a client that does not read
        self.largest_frame = 0

    def accept(self, message):
        raise NotImplementedError

    async def serve(self):
        raise NotImplementedError

    def tasks(self):
        """The tasks serving this client, cancelled when it closes."""
        return (self.worker,)

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
        self.worker = asyncio.ensure_future(self.serve())
        self.arm_read_timer()

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
            self.accept(message)
        self.arm_read_timer()

    def eof_received(self):
        """The client closed its side: answer what it asked, then close (a
        subscription goes on until the client goes away)."""
        self.eof = True
        self.cancel_read_timer()
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
        self.cancel_read_timer()
        if self.abort_timer is not None:
            # The transport is gone: aborting it now would touch a closed loop handle.
            self.abort_timer.cancel()
            self.abort_timer = None
        for task in self.tasks():
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

    def arm_read_timer(self):
        """A read timer runs while the hello is awaited or a frame is half read."""
        self.cancel_read_timer()
        if self.closing or self.reading_paused or self.eof:
            return
        if not self.greeted or self.decoder.partial:
            self.read_timer = asyncio.get_running_loop().call_later(
                self.server.limits.read_timeout, self._read_timed_out)

    def cancel_read_timer(self):
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self):
        self.read_timer = None
        what = "a frame left unfinished" if self.greeted else "no hello"
        self.fail(Error.READ_TIMEOUT, "%s for %.1f s" % (what, self.server.limits.read_timeout))

    def enqueue(self, message):
        """Queue a request for :meth:`serve`; stop reading while too many wait."""
        self.queue.append(message)
        self.queue_event.set()
        if len(self.queue) >= QUEUE_PAUSE and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def dequeued(self):
        """Called after taking a request off the queue: read again once it is short."""
        if self.reading_paused and len(self.queue) <= QUEUE_RESUME and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()
            self.arm_read_timer()

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

    def fail(self, code, message, grace_s=CLOSE_GRACE_S):
        """Send an error frame (best effort) and close, waiting at most
        ``grace_s`` seconds for the client to read what is still buffered."""
        if self.closing:
            return
        log.info("client %s: %s: %s", self.peer, Error.NAMES[code], message)
        if code == Error.SLOW_CLIENT:
            self.server.stats["clients_dropped"] += 1
        self.send_error(code, message)
        self.close_after_flush(grace_s)

    def close_after_flush(self, grace_s=CLOSE_GRACE_S):
        """Close once the client has read what is buffered, or after ``grace_s``
        seconds (0: at once): close() alone waits for the buffer to flush, and
        a client that reads nothing would hold it for ever."""
        if self.closing:
            return
        self.closing = True
        self.cancel_read_timer()
        for task in self.tasks():
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if grace_s <= 0:
            self.transport.abort()
            return
        self.transport.close()
        self.abort_timer = asyncio.get_running_loop().call_later(grace_s, self.transport.abort)

    async def drain(self):
        """Wait until the client has read enough of what it was sent.

        The read-timeout clock runs while the server waits: it starts when
        the send buffer is full (the kernel takes no more for this client) and
        starts again whenever bytes leave it. A client that lets it reach
        read_timeout is dropped at once (``slow_client``; it reads nothing, so
        no grace for its error frame)."""
        timeout = self.server.limits.read_timeout
        loop = asyncio.get_running_loop()
        pending = self.transport.get_write_buffer_size()
        deadline = loop.time() + timeout
        while not self.writable.is_set() and not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.fail(Error.SLOW_CLIENT, "read nothing for %.1f s" % timeout, grace_s=0)
                break
            try:
                await asyncio.wait_for(self.writable.wait(), min(remaining, _PROGRESS_CHECK_S))
            except asyncio.TimeoutError:
                now_pending = self.transport.get_write_buffer_size()
                if now_pending < pending:
                    deadline = loop.time() + timeout
                pending = now_pending
        if self.closing:
            raise asyncio.CancelledError()

    def too_far_behind(self):
        """Drop this client (``slow_client``) when more than its send buffer and
        one frame are unread; True when it was dropped. One frame may always be
        on its way whatever its size."""
        pending = self.transport.get_write_buffer_size()
        limit = self.server.limits.send_buffer_bytes + self.largest_frame
        if pending <= limit:
            return False
        self.fail(Error.SLOW_CLIENT, "%d bytes unread, over the %d byte send buffer plus a %d byte frame"
                  % (pending, self.server.limits.send_buffer_bytes, self.largest_frame))
        return True
