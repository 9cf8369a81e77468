"""The agent's server: the object that owns the event loop, the listeners and
the clients, serving the history and the live stream of snapshots
(docs/protocol.md).

It runs its event loop in a thread of its own. The sampler hands it each new
record with :meth:`AgentServer.publish`, which only schedules work on that
loop: a slow or hostile client can cost the server's thread some time, but it
can never block sampling, and a client whose unsent output passes its send
buffer limit is dropped instead of buffering without bound.

The parts: listeners.py binds, flow.py holds the per-client limits and
buffers, handlers.py answers the requests of one client.
"""

import asyncio
import collections
import contextlib
import logging
import threading
import time

from hostdiag import __version__
from hostdiag.encode.delta import delta as make_delta
from hostdiag.encode.delta import prior_keys
from hostdiag.model.snapshot import SCHEMA_VERSION
from hostdiag.transport import protocol as P
from hostdiag.transport.flow import CLOSE_GRACE_S, Limits
from hostdiag.transport.framing import encode_frame, encode_frame_with_document
from hostdiag.transport.handlers import ClientSession
from hostdiag.transport.listeners import open_listener, unlink_socket
from hostdiag.transport.protocol import Error, ProtocolError

log = logging.getLogger("hostdiag.apps.agent.server")

# Encoded subscription frames kept for the next client that needs the same one.
_FRAME_CACHE = 16
# The longest the server defers its work to a sample in progress, in seconds:
# past it (a sample far over its budget) clients are served again.
_MAX_DEFER_S = 2.0


class AgentServer:
    """The listeners and clients of one agent.

    ``history`` is the agent's history (thread-safe: the sampler appends to it
    while this server reads). ``describe`` returns the agent's own part of an
    ``info`` reply (host identity, self-report); it is called on the server's
    thread and must only read. ``incidents``: the agent's incident bundles
    (``list()``, ``read(id)``, thread-safe; store/incidents.py), or None.
    """

    def __init__(self, history, listeners, limits=None, describe=None, incidents=None):
        self.history = history
        self.incidents = incidents
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
        self._sampling_now = threading.Event()  # set by the sampler's thread while it samples
        self._sampler_idle = None  # an asyncio.Event on the server's loop: set when no sample runs

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

    async def serve_here(self):
        """Bind every listener on the running event loop and serve on it,
        without a thread of its own: for one process that hosts many servers
        on one loop (the fleet load tool, benchmarks/fleetload.py). Raises
        OSError when a listener cannot be bound; end it with :meth:`close_here`."""
        self.loop = asyncio.get_running_loop()
        self._sampler_idle = asyncio.Event()
        self._sampler_idle.set()
        await self._bind()

    async def close_here(self):
        """End a server that :meth:`serve_here` started: drop its clients at
        once and close its listeners."""
        for conn in list(self.connections):
            conn.transport.abort()
        await self._close_listeners()

    def publish(self, record, snapshot, stored=None):
        """Hand a new record (and its snapshot as a dict) to the clients.
        ``stored``: how the history stored it (``History.newest_change``), or
        None; a subscriber's delta frame reuses that change when it has the
        same base, instead of computing its own."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._on_record, record, snapshot, stored)
            except RuntimeError:
                pass  # the loop closed between the check and the call: stopping

    @contextlib.contextmanager
    def sampling(self):
        """Wrap each sample (the sampler's thread): meanwhile the server's
        thread starts no request, history read or frame encoding, so that the
        sample has the interpreter to itself (sampling never waits on serving;
        docs/protocol.md, "Limits")."""
        self._sampling_now.set()
        try:
            yield
        finally:
            self._sampling_now.clear()
            loop, idle = self.loop, self._sampler_idle
            if loop is not None and idle is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(idle.set)
                except RuntimeError:
                    pass  # the loop closed meanwhile: stopping

    async def yield_to_sampler(self):
        """Called between units of work (a request, a record read or sent):
        wait while a sample is being taken (at most _MAX_DEFER_S), else give
        the loop one turn."""
        if not self._sampling_now.is_set():
            await asyncio.sleep(0)
            return
        self._sampler_idle.clear()
        if not self._sampling_now.is_set():
            return  # it ended in between (its idle.set() may already have run)
        try:
            await asyncio.wait_for(self._sampler_idle.wait(), _MAX_DEFER_S)
        except asyncio.TimeoutError:
            pass  # a sample far over its budget: serve anyway rather than starve the clients

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
        self._sampler_idle = asyncio.Event()
        self._sampler_idle.set()
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
                return ClientSession(self, listener)
            server = await open_listener(loop, listener, factory, backlog, self.limits.read_timeout)
            self.servers.append(server)
            log.info("listening on %s", listener.describe())

    async def _close_listeners(self):
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        for listener in self.listeners:
            if listener.kind == "unix" and listener.path:
                unlink_socket(listener.path)

    async def _shutdown(self):
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.fail(Error.SHUTTING_DOWN, "the agent is stopping")
        deadline = time.monotonic() + CLOSE_GRACE_S
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

    def missing(self, boot_id, from_seq, to_seq):
        """Records from_seq..to_seq of a boot, none of them kept, as
        [{"from_seq", "to_seq", "reason"}] in order: "corrupt" for the
        stretches lost to damage, "not_kept" for the rest."""
        pieces = []
        cursor = from_seq
        for start, end in self.history.damaged(boot_id, from_seq, to_seq):
            if start > cursor:
                pieces.append({"from_seq": cursor, "to_seq": start - 1, "reason": "not_kept"})
            pieces.append({"from_seq": start, "to_seq": end, "reason": "corrupt"})
            cursor = end + 1
        if cursor <= to_seq:
            pieces.append({"from_seq": cursor, "to_seq": to_seq, "reason": "not_kept"})
        return pieces

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
            while len(self._frames) > _FRAME_CACHE:
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

    def delta_frame(self, base, record, snapshot, prior, stored=None):
        """The delta frame from ``base`` to ``record``, or None when it would
        not fit. ``prior``: {key: (seq, value)}, the newest non-null values the
        client holds, for the keys null in the base. ``stored``: the history's
        change to ``record`` (see :meth:`publish`), or None."""
        usable = {key: entry for key, entry in prior.items()
                  if base.snapshot.get(key) is None and snapshot.get(key) is not None}

        def make():
            change = _reusable(stored, base, usable)
            if change is None:
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

    def _on_record(self, record, snapshot, stored):
        self._newest = (record.boot_id, record.seq)
        for conn in list(self.connections):
            conn.offer_live(record, snapshot, stored)


def _reusable(stored, base, usable):
    """The history's change (``stored``) when a client holding ``base`` and
    the prior values ``usable`` rebuilds the record from it exactly: it starts
    from this very base document, and each prior value it names is the one
    the client holds (the same object). Else None: the frame is computed."""
    if stored is None or stored.base_seq != base.seq or stored.base is not base.snapshot:
        return None
    for key in prior_keys(stored.change):
        held = usable.get(key)
        if held is None or held[1] is not stored.prior.get(key):
            return None
    return stored.change
