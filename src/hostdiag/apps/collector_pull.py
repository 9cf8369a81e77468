"""The collector's pullers: one thread per agent that connects, backfills,
subscribes and resumes (steps 1-5 of :mod:`hostdiag.apps.collector`), and
what it knows of its agent (:class:`AgentStatus`, :class:`Cursor`).

A :class:`Puller` hands records, gaps and host names to its collector's
``put`` (a bounded queue the writer drains) and stops when the collector's
``stop_event`` is set.
"""

import logging
import random
import socket
import threading
import time

from hostdiag.apps.common import client_address
from hostdiag.store.collector_store import open_collector_store
from hostdiag.store.history import StoredChange

log = logging.getLogger("hostdiag.collector")

CONNECT_TIMEOUT_S = 10.0
BACKOFF_CAP_S = 60.0
MIN_IDLE_TIMEOUT_S = 10.0
IDLE_INTERVALS = 5
RANGE_PAGE = 200


class Stopping(Exception):
    """The collector is stopping: a puller leaves its session."""


# -- per-agent state ----------------------------------------------------------

class AgentStatus:
    """What the collector knows of one agent; written by its puller, read by
    the writer (a copy under the lock) for the status table."""

    def __init__(self, name, address):
        self._lock = threading.Lock()
        self.values = {
            "address": address, "state": "starting", "agent_id": None, "hostname": None, "boot_id": None,
            "newest_seq": None, "newest_wall_ns": None, "agent_newest_seq": None,
            "records_received": 0, "records_stored": 0, "duplicates": 0, "bytes_received": 0,
            "gaps": 0, "gap_records": 0, "errors": 0, "last_error": None, "last_error_ns": None,
            "connects": 0, "connected_since_ns": None, "retry_at_ns": None,
        }
        self.name = name

    def update(self, **values):
        with self._lock:
            self.values.update(values)

    def raise_to(self, key, value):
        """Set ``key`` to ``value`` unless it already holds more."""
        with self._lock:
            if value is not None and (self.values.get(key) is None or value > self.values[key]):
                self.values[key] = value

    def add(self, **counts):
        with self._lock:
            for key, n in counts.items():
                self.values[key] += n

    def error(self, message):
        with self._lock:
            self.values["errors"] += 1
            self.values["last_error"] = message
            self.values["last_error_ns"] = time.time_ns()

    def snapshot(self, now_ns=None):
        """The status with the lags: ``lag_s`` is how old the newest record
        received is (None before the first); ``lag_seqs`` how many seqs of the
        agent's current boot the collector does not have yet."""
        with self._lock:
            out = dict(self.values)
        now_ns = time.time_ns() if now_ns is None else now_ns
        wall = out.get("newest_wall_ns")
        out["lag_s"] = None if wall is None else max(0.0, (now_ns - wall) / 1e9)
        newest, agent_newest = out.get("newest_seq"), out.get("agent_newest_seq")
        out["lag_seqs"] = (None if agent_newest is None else
                           max(0, agent_newest - (newest or 0)) if out.get("boot_id") == out.get("agent_boot_id")
                           else None)
        return out


class Cursor:
    """What the collector has of one agent (stored, queued, or noted gone)."""

    def __init__(self, accounted, closed, last):
        self.accounted = dict(accounted)  # boot id -> highest seq accounted for
        self.closed = set(closed)
        self.last = last  # (boot_id, seq, wall_ns) of the newest record, or None

    def next_seq(self, boot_id):
        return self.accounted.get(boot_id, 0) + 1

    def note_record(self, boot_id, seq, wall_ns):
        if seq > self.accounted.get(boot_id, 0):
            self.accounted[boot_id] = seq
        if self.last is None or wall_ns >= self.last[2]:
            self.last = (boot_id, seq, wall_ns)

    def note_gone(self, boot_id, from_seq, to_seq):
        if to_seq is None:
            self.closed.add(boot_id)
            to_seq = from_seq - 1
        if to_seq > self.accounted.get(boot_id, 0):
            self.accounted[boot_id] = to_seq


class Backoff:
    """Exponential backoff with jitter: first ``base`` seconds, doubling to ``cap``."""

    def __init__(self, base, cap=BACKOFF_CAP_S, rng=random.random):
        self.base = max(0.05, base)
        self.cap = max(cap, self.base)
        self.attempt = 0
        self._rng = rng

    def reset(self):
        self.attempt = 0

    def next(self):
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return delay * (0.8 + 0.4 * self._rng())


# -- the puller ---------------------------------------------------------------

class Puller(threading.Thread):
    """One agent: connect, backfill, subscribe, and again after any failure."""

    def __init__(self, entry, token, collector):
        super().__init__(name="hostdiag-pull-%s" % entry.name, daemon=True)
        self.entry = entry
        self.agent_name = entry.name
        self.address = client_address(entry.address, entry.tls_ca, entry.tls_cert)
        self.ssl_context = self._tls_context() if self.address.startswith("tls://") else None
        self.token = token
        self.collector = collector
        self.status = AgentStatus(entry.name, entry.address)
        self.cursors = {}  # agent id -> Cursor
        self.backoff = Backoff(collector.poll_interval)
        self.succeeded = False
        self._client = None
        self._client_lock = threading.Lock()
        self._bytes_done = 0
        self._reader = None  # a read-only store of this thread, for resume points
        self.current_boot = None  # the agent's boot, as its last info said
        self.incidents_held = None  # incident id -> _incident_version of the bundle stored
        self.incidents_marker = None  # the agent's incidents marker when they were last synced

    # -- lifecycle -----------------------------------------------------------

    def run(self):
        try:
            self._run()
        finally:
            if self.status.snapshot()["state"] not in ("done", "failed"):
                self.status.update(state="stopped", connected_since_ns=None)
            if self._reader is not None:
                self._reader.close()

    def _run(self):
        stop = self.collector.stop_event
        while not stop.is_set():
            try:
                self.session()
                if self.collector.once:
                    self.succeeded = True
                    self.status.update(state="done")
                    return
            except Stopping:
                return
            except Exception as exc:  # noqa: BLE001 - any failure of one agent: noted, retried
                if stop.is_set():
                    return
                message = _describe(exc)
                self.status.error(message)
                log.warning("agent %s (%s): %s", self.agent_name, self.entry.address, message)
                if self.collector.once:
                    self.status.update(state="failed")
                    return
            finally:
                self._drop_client()
            delay = self.backoff.next()
            self.status.update(state="backoff", connected_since_ns=None,
                               retry_at_ns=time.time_ns() + int(delay * 1e9))
            stop.wait(delay)

    def interrupt(self):
        """Unblock a read in progress (called from another thread)."""
        with self._client_lock:
            client = self._client
        if client is not None:
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                # Already closed or never connected: the read is not blocked then.
                pass

    def _tls_context(self):
        """The TLS settings for this agent, loaded once at start: a file that
        cannot be read is a usage error then, not a reconnect loop."""
        from hostdiag.apps.common import UsageError
        from hostdiag.transport.client import client_tls_context

        try:
            return client_tls_context(self.entry.tls_ca, self.entry.tls_cert, self.entry.tls_key)
        except ValueError as exc:
            raise UsageError("collector.agents (%s): %s" % (self.entry.name, exc)) from None

    def _connect(self):
        from hostdiag.transport.client import AgentClient

        return AgentClient.connect(self.address, token=self.token, timeout=CONNECT_TIMEOUT_S,
                                   ssl_context=self.ssl_context)

    def _drop_client(self):
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            self._bytes_done += client.bytes_received
            client.close()

    def _check_stop(self):
        if self.collector.stop_event.is_set():
            raise Stopping()

    def _count_bytes(self, client):
        self.status.update(bytes_received=self._bytes_done + client.bytes_received)

    # -- one connection ------------------------------------------------------

    def session(self):
        from hostdiag.transport.client import Gone

        self.status.update(state="connecting", retry_at_ns=None)
        client = self._connect()
        with self._client_lock:
            self._client = client
        self._check_stop()
        info = client.info()
        agent_id = str(info.get("agent_id"))
        current = self.current_boot = info.get("boot_id")
        hostname = (info.get("host") or {}).get("hostname")
        self.status.add(connects=1)
        self.status.update(state="backfill", agent_id=agent_id, hostname=hostname, agent_boot_id=current,
                           agent_newest_seq=info.get("newest_seq"), connected_since_ns=time.time_ns())
        self.collector.put(("host", self.agent_name, self.entry.address, hostname))
        cursor = self.cursor(agent_id)
        self.backfill(client, agent_id, info, cursor)
        self.sync_incidents(client)
        self._count_bytes(client)
        if self.collector.once:
            return
        interval = info.get("interval_s") or 1.0
        idle = max(MIN_IDLE_TIMEOUT_S, IDLE_INTERVALS * float(interval))
        subscription = client.subscribe(from_seq=cursor.next_seq(current), boot_id=current, idle_timeout=idle)
        newest = subscription.reply.get("newest_seq")
        if newest is not None:
            self.status.update(agent_newest_seq=newest)
        self.status.update(state="live")
        self.backoff.reset()
        for item in subscription:
            self._check_stop()
            if isinstance(item, Gone):
                self.missing(None, agent_id, cursor, item.boot_id, item.from_seq, item.to_seq, item.reason)
            else:
                if item.boot_id == current:
                    self.status.raise_to("agent_newest_seq", item.seq)
                self.deliver(agent_id, cursor, item, verify_with=None)
                self._incidents_moved(item.snapshot)
            self._count_bytes(client)
        raise ConnectionError("the subscription ended")

    # -- incident bundles ----------------------------------------------------

    def _incidents_moved(self, snapshot):
        """Sync the incidents over a second connection when the agent section
        of a record says its bundles changed (the subscription's connection
        serves nothing else meanwhile). A failure is noted; records go on."""
        agent = snapshot.get("agent") if isinstance(snapshot, dict) else None
        marker = agent.get("incidents") if isinstance(agent, dict) else None
        if not isinstance(marker, dict):
            return
        key = (agent.get("started_wall_ns"), marker.get("changes"))
        if key == self.incidents_marker:
            return
        try:
            side = self._connect()
            try:
                self.sync_incidents(side)
            finally:
                side.close()
        except Exception as exc:  # noqa: BLE001 - bundles are fetched again at the next change or connection
            message = "incidents: %s" % _describe(exc)
            self.status.error(message)
            log.warning("agent %s: %s", self.agent_name, message)
            return
        self.incidents_marker = key

    def sync_incidents(self, client):
        """Fetch every bundle the agent lists that the store lacks or holds in
        an older version, and queue it for the store. An agent whose hello
        does not offer the ``incidents`` capability (an older version) is left alone."""
        from hostdiag.store.incidents import BundleError, decode_summary
        from hostdiag.transport import protocol as P

        if "incidents" not in (client.server.get("capabilities") or ()):
            return

        if self.incidents_held is None:
            if self._reader is None:
                self._reader = open_collector_store(self.collector.store_dir, readonly=True)
            self.incidents_held = {s["id"]: _incident_version(s) for s in self._reader.incidents(self.agent_name)}
        reply = client.incidents(limit=P.MAX_INCIDENTS_LISTED)
        for listed in reply.get("incidents") or ():
            incident_id = listed.get("id")
            if not isinstance(incident_id, str) or self.incidents_held.get(incident_id) == _incident_version(listed):
                continue
            self.collector.incident_slot()
            queued = False
            try:
                bundle = client.incident(incident_id)
                if bundle is None:
                    continue  # evicted by the agent since it listed it
                try:
                    summary = decode_summary(bundle)
                except BundleError as exc:
                    log.warning("agent %s: incident %s skipped: %s", self.agent_name, incident_id, exc)
                    continue
                self.collector.put(("incident", self.agent_name, summary, bundle))
                queued = True
            finally:
                if not queued:
                    self.collector.incident_slots.release()
            self.incidents_held[incident_id] = _incident_version(summary)

    def cursor(self, agent_id):
        found = self.cursors.get(agent_id)
        if found is None:
            if self._reader is None:
                self._reader = open_collector_store(self.collector.store_dir, readonly=True)
            accounted, closed, last = self._reader.resume_points(self.agent_name, agent_id)
            found = self.cursors[agent_id] = Cursor(accounted, closed, last)
            if last is not None:
                self.status.update(boot_id=last[0], newest_seq=last[1], newest_wall_ns=last[2])
        return found

    def backfill(self, client, agent_id, info, cursor):
        """Everything the agent has that the cursor does not, boot by boot."""
        boots = sorted(info.get("boots") or (), key=lambda b: (b.get("oldest_wall_ns") or 0))
        current = info.get("boot_id")
        kept = {b.get("boot_id") for b in boots}
        first_contact = cursor.last is None and not cursor.accounted
        if cursor.last is not None and cursor.last[0] not in kept and cursor.last[0] != current \
                and cursor.last[0] not in cursor.closed:
            # The boot we were following is gone from the agent entirely.
            self.gap(agent_id, cursor, cursor.last[0], cursor.next_seq(cursor.last[0]), None, "boot_not_kept")
        for boot in boots:
            boot_id = boot.get("boot_id")
            if boot_id in cursor.closed:
                continue
            if boot_id in cursor.accounted:
                start = cursor.next_seq(boot_id)
            elif first_contact:
                start = boot.get("oldest_seq") or 1
            elif cursor.last is None or (boot.get("oldest_wall_ns") or 0) > cursor.last[2] or boot_id == current:
                start = 1  # a boot that began after our newest record: all of it, gaps included
            else:
                continue  # older than anything this collector ever had of the agent
            newest = boot.get("newest_seq")
            if newest is None or start > newest:
                continue
            self.pull_range(client, agent_id, cursor, boot_id, start, None)

    def pull_range(self, client, agent_id, cursor, boot_id, start, stop_seq, confirm=True):
        """Records ``start..stop_seq`` (None: to the newest) of one boot, paged."""
        from hostdiag.transport.protocol import Error, ProtocolError

        seq = start
        while True:
            self._check_stop()
            try:
                page = client.range_page(from_seq=seq, to_seq=stop_seq, boot_id=boot_id, limit=RANGE_PAGE)
            except ProtocolError as exc:
                if exc.code == Error.NOT_FOUND:
                    self.gap(agent_id, cursor, boot_id, seq, stop_seq, "boot_not_kept")
                    return
                raise
            if boot_id == self.current_boot:
                self.status.raise_to("agent_newest_seq", page.newest_seq)
            gone = sorted((g.from_seq, g.to_seq) for g in page.gone if g.from_seq is not None)
            records = list(page.records)
            # Deliver in seq order, each gap where it falls.
            for record in records:
                while gone and gone[0][0] < record.seq:
                    self._gone(client if confirm else None, agent_id, cursor, boot_id, *gone.pop(0), confirm=confirm)
                self.deliver(agent_id, cursor, record, verify_with=client, force=not confirm)
            for item in gone:
                self._gone(client if confirm else None, agent_id, cursor, boot_id, *item, confirm=confirm)
            self._count_bytes(client)
            if not page.more or page.next_seq is None:
                return
            seq = page.next_seq

    def _gone(self, client, agent_id, cursor, boot_id, from_seq, to_seq, confirm):
        if confirm:
            self.missing(client, agent_id, cursor, boot_id, from_seq, to_seq, "not_kept")
        else:
            self.gap(agent_id, cursor, boot_id, from_seq, to_seq, "not_kept")

    def missing(self, client, agent_id, cursor, boot_id, from_seq, to_seq, reason):
        """The agent says ``from_seq..to_seq`` are gone: ask again for exactly
        those (on ``client``, else a connection of its own), store what does
        exist and record a gap for what the agent confirms is gone."""
        if to_seq is None or from_seq is None:
            self.gap(agent_id, cursor, boot_id, from_seq or 1, None, reason)
            return
        if to_seq < from_seq:
            return
        own = None
        try:
            if client is None:
                own = client = self._connect()
            self.pull_range(client, agent_id, cursor, boot_id, from_seq, to_seq, confirm=False)
        except Stopping:
            raise
        except Exception as exc:  # noqa: BLE001 - the second look failed: trust the first answer
            log.info("agent %s: could not check the gone records %s..%s: %s", self.agent_name, from_seq, to_seq,
                     _describe(exc))
            self.gap(agent_id, cursor, boot_id, from_seq, to_seq, reason)
        finally:
            if own is not None:
                self._bytes_done += own.bytes_received
                own.close()
        cursor.note_gone(boot_id, from_seq, to_seq)

    def gap(self, agent_id, cursor, boot_id, from_seq, to_seq, reason):
        log.warning("agent %s: boot %s seq %s..%s gone at the agent (%s)", self.agent_name, boot_id, from_seq,
                    "end" if to_seq is None else to_seq, reason)
        self.collector.put(("gap", self.agent_name, agent_id, boot_id, from_seq, to_seq, reason))
        cursor.note_gone(boot_id, from_seq, to_seq)
        self.status.add(gaps=1, gap_records=0 if to_seq is None else to_seq - from_seq + 1)

    def deliver(self, agent_id, cursor, record, verify_with, force=False):
        """Queue one record for the store. A record the cursor already has is
        dropped (and counted) unless ``force``; a jump over seqs no gone
        notice explained is checked with the agent first."""
        from hostdiag.encode.wire import encode_msgpack

        accounted = cursor.accounted.get(record.boot_id)
        if not force:
            if accounted is not None and record.seq <= accounted:
                self.status.add(duplicates=1)
                return
            expected = accounted + 1 if accounted is not None else None
            if expected is not None and record.seq > expected:
                self.missing(verify_with, agent_id, cursor, record.boot_id, expected, record.seq - 1, "skipped")
        payload = encode_msgpack(record.snapshot)
        # The snapshot goes with its bytes, and the delta it was built with: the
        # store takes the snapshot as the next delta's base instead of decoding the
        # bytes again, and the delta as its frame when it has the same base
        # (nothing changes them afterwards: the subscription's next delta builds
        # a new map).
        change = None
        if record.change is not None:
            change = StoredChange(record.seq, record.base_seq, record.base, record.change, record.prior)
        self.collector.put(("record", self.agent_name, agent_id, record.boot_id, record.seq, record.wall_ns, payload,
                            record.snapshot, change))
        cursor.note_record(record.boot_id, record.seq, record.wall_ns)
        self.status.add(records_received=1)
        if cursor.last == (record.boot_id, record.seq, record.wall_ns):
            self.status.update(boot_id=record.boot_id, newest_seq=record.seq, newest_wall_ns=record.wall_ns)


def _incident_version(summary):
    """What tells two versions of one incident's bundle apart."""
    return (summary.get("state"), summary.get("end_ns"), summary.get("records"), summary.get("truncated"))


def _describe(exc):
    """One line for a failure: the OS's words for an OSError, the message otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return text
    return "%s: %s" % (type(exc).__name__, text)
