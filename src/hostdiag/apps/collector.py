"""`diag collector`: pull every configured agent's snapshots into the local store.

One puller thread per agent speaks the protocol (docs/protocol.md) through
:class:`~hostdiag.transport.client.AgentClient`; one writer thread owns the
store (:mod:`hostdiag.store.sqlite`) and commits what the pullers hand it
through a bounded queue, so a slow disk slows the pullers (and the agents
drop them as slow clients; they come back and resume) but never grows memory.
The main thread only waits for signals, which only enqueue a word.

Per agent, each connection:

1. ``info``: the agent id, its boots and each boot's oldest and newest seq.
2. Where to resume: the store's newest seq per (agent id, boot), or the
   puller's own cursor after a reconnect (records still in the queue count).
3. Backfill with paged ``range`` requests, boot by boot, from the next seq
   up to the agent's newest: what the agent no longer has is reported by it
   (``range_end.gone``) and recorded as a gap with its exact seqs, after a
   second look, so that a record written while the first reply was built is
   fetched rather than called lost.
4. ``subscribe`` from the next seq of the current boot: records as they are
   taken; a ``gone`` notice is checked the same way and recorded.
5. On a disconnect, an agent restart or silence for longer than
   ``max(10 s, 5 x agent interval)``: reconnect with exponential backoff
   (``collector.poll_interval`` doubling up to 60 s, with jitter) and resume
   at step 1. Nothing is skipped and nothing is stored twice: the store's
   key (host, agent id, boot id, seq) is unique.

Status per agent (state, lag in seconds and in seqs, bytes and records
received, gaps, errors) is written to the store's ``status`` table every
``collector.poll_interval`` (at most every 5 s), when retention
(``collector.host_max_bytes``, ``collector.host_max_age``) is applied too, and
printed by ``diag collector --status``.

Exit codes (:mod:`hostdiag.apps.common`): 0 stopped by a signal (or
``--once`` pulled every agent); 1 could not do the job (store locked or
unusable, an agent failed with ``--once``, no store for ``--status``); 2 bad
usage or configuration (one line naming the key); 70 an internal error.
"""

import json
import logging
import os
import queue
import random
import signal
import socket
import sys
import threading
import time

from hostdiag.apps.common import (
    EXIT_FAILED, EXIT_OK, ArgumentParser, CommandFailed, UsageError, client_address, read_token, run_command,
    setup_logging,
)
from hostdiag.store.sqlite import CollectorStore, StoreError

log = logging.getLogger("hostdiag.collector")

QUEUE_MAX_ITEMS = 2000
BATCH_MAX_ITEMS = 500
CONNECT_TIMEOUT_S = 10.0
BACKOFF_CAP_S = 60.0
MIN_IDLE_TIMEOUT_S = 10.0
IDLE_INTERVALS = 5
RANGE_PAGE = 200
# How long the pullers get to finish once told to stop, and the writer to drain.
STOP_GRACE_S = 10.0


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
        self.address = client_address(entry.address, entry.tls_ca)
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

    def _connect(self):
        from hostdiag.transport.client import AgentClient

        return AgentClient.connect(self.address, token=self.token, timeout=CONNECT_TIMEOUT_S,
                                   cafile=self.entry.tls_ca)

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
            self._count_bytes(client)
        raise ConnectionError("the subscription ended")

    def cursor(self, agent_id):
        found = self.cursors.get(agent_id)
        if found is None:
            if self._reader is None:
                self._reader = CollectorStore(self.collector.store_dir, readonly=True)
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
        self.collector.put(("record", self.agent_name, agent_id, record.boot_id, record.seq, record.wall_ns, payload))
        cursor.note_record(record.boot_id, record.seq, record.wall_ns)
        self.status.add(records_received=1)
        if cursor.last == (record.boot_id, record.seq, record.wall_ns):
            self.status.update(boot_id=record.boot_id, newest_seq=record.seq, newest_wall_ns=record.wall_ns)


def _describe(exc):
    """One line for a failure: the OS's words for an OSError, the message otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return text
    return "%s: %s" % (type(exc).__name__, text)


# -- the writer ---------------------------------------------------------------

class Writer(threading.Thread):
    """Owns the store: commits queued records and gaps in batches, writes the
    status rows and applies retention every ``status_period`` seconds."""

    def __init__(self, store, work, pullers, status_period, stop_event):
        super().__init__(name="hostdiag-store", daemon=True)
        self.store = store
        self.work = work
        self.pullers = pullers
        self.status_period = status_period
        self.stop_event = stop_event
        self.finish = threading.Event()
        self.failed = None
        self.dirty_hosts = set()
        self.stored = {}  # host -> records stored by this process
        self.duplicates = {}

    def run(self):
        next_status = 0.0
        pending = []
        while True:
            if not pending:
                try:
                    pending.append(self.work.get(timeout=min(0.2, self.status_period)))
                    while len(pending) < BATCH_MAX_ITEMS:
                        pending.append(self.work.get_nowait())
                except queue.Empty:
                    pass
            if pending:
                if self.commit(pending):
                    pending = []
                elif self.finish.is_set():
                    log.error("store: %d records and gaps not written: %s", len(pending), self.failed)
                    pending = []
                else:
                    self.finish.wait(min(1.0, self.status_period))
            now = time.monotonic()
            if now >= next_status:
                self.write_status()
                next_status = now + self.status_period
            if self.finish.is_set() and not pending and self.work.empty():
                self.write_status()
                return

    def commit(self, items):
        store = self.store
        counts = {}
        try:
            store.begin()
            for item in items:
                kind = item[0]
                if kind == "record":
                    _, host, agent_id, boot_id, seq, wall_ns, payload = item
                    stored = store.add_record(host, agent_id, boot_id, seq, wall_ns, payload)
                    key = "records_stored" if stored else "duplicates"
                    counts.setdefault(host, {}).setdefault(key, 0)
                    counts[host][key] += 1
                    self.dirty_hosts.add(host)
                elif kind == "gap":
                    _, host, agent_id, boot_id, from_seq, to_seq, reason = item
                    store.add_gap(host, agent_id, boot_id, from_seq, to_seq, reason)
                elif kind == "host":
                    _, host, address, hostname = item
                    store.set_host(host, address, hostname)
            store.commit()
        except Exception as exc:  # noqa: BLE001 - kept and retried; the status says why
            store.rollback()
            self.failed = "%s: %s" % (type(exc).__name__, exc)
            log.error("store: commit failed, will retry: %s", self.failed)
            return False
        self.failed = None
        by_name = {p.agent_name: p for p in self.pullers}
        for host, added in counts.items():
            puller = by_name.get(host)
            if puller is not None:
                puller.status.add(**added)
        return True

    def write_status(self):
        store = self.store
        try:
            store.begin()
            for host in sorted(self.dirty_hosts):
                deleted = store.enforce_retention(host)
                if deleted:
                    log.info("store: retention deleted %d records of %s", deleted, host)
            self.dirty_hosts.clear()
            now = time.time_ns()
            for puller in self.pullers:
                detail = puller.status.snapshot(now)
                if self.failed:
                    detail["store_error"] = self.failed
                state = detail.pop("state")
                store.write_status(puller.agent_name, state, detail)
            store.commit()
        except Exception as exc:  # noqa: BLE001 - status is best effort; the records are what matter
            store.rollback()
            log.error("store: status not written: %s: %s", type(exc).__name__, exc)


# -- the collector ------------------------------------------------------------

class Collector:
    """The pullers, the writer and the signal loop."""

    def __init__(self, config, entries, tokens, once=False):
        self.config = config
        self.store_dir = config.collector.store
        self.poll_interval = config.collector.poll_interval
        self.max_host_bytes = config.collector.host_max_bytes
        self.max_host_age_s = config.collector.host_max_age
        self.once = once
        self.stop_event = threading.Event()
        self.control = queue.SimpleQueue()
        self.work = queue.Queue(QUEUE_MAX_ITEMS)
        self.pullers = [Puller(entry, token, self) for entry, token in zip(entries, tokens)]
        self.store = None
        self.writer = None
        self.writer_died = False

    def put(self, item):
        """Hand an item to the writer; waits while the queue is full (raises
        Stopping when the collector stops meanwhile)."""
        while True:
            try:
                self.work.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.stop_event.is_set():
                    raise Stopping() from None

    def install_signals(self):
        put = self.control.put
        signal.signal(signal.SIGTERM, lambda signum, frame: put("stop"))
        signal.signal(signal.SIGINT, lambda signum, frame: put("stop"))
        signal.signal(signal.SIGHUP, lambda signum, frame: put("reload"))

    def run(self):
        try:
            self.store = CollectorStore(self.store_dir, max_host_bytes=self.max_host_bytes,
                                        max_host_age_s=self.max_host_age_s)
        except StoreError as exc:
            log.error("cannot start: collector.store: %s", exc)
            return EXIT_FAILED
        try:
            for puller in self.pullers:
                self.store.set_host(puller.agent_name, puller.entry.address)
            self.writer = Writer(self.store, self.work, self.pullers, min(self.poll_interval, 5.0), self.stop_event)
            self.writer.start()
            for puller in self.pullers:
                puller.start()
            log.info("collector started: %d agents, store %s", len(self.pullers), self.store_dir)
            self.loop()
        finally:
            self.shutdown()
        if self.writer_died:
            return EXIT_FAILED
        if self.once:
            failed = [p.agent_name for p in self.pullers if not p.succeeded]
            if failed:
                log.error("could not pull from: %s", ", ".join(failed))
                return EXIT_FAILED
        return EXIT_OK

    def loop(self):
        while True:
            try:
                command = self.control.get(timeout=0.2)
            except queue.Empty:
                command = None
            if command == "stop":
                log.info("stopping")
                return
            if command == "reload":
                log.warning("SIGHUP: the collector reads its settings at start only; restart it to apply them")
            if self.once and not any(p.is_alive() for p in self.pullers):
                return
            if not self.writer.is_alive():
                log.error("the store writer stopped")
                self.writer_died = True
                return

    def shutdown(self):
        self.stop_event.set()
        for puller in self.pullers:
            puller.interrupt()
        deadline = time.monotonic() + STOP_GRACE_S
        for puller in self.pullers:
            if puller.is_alive():
                puller.join(max(0.0, deadline - time.monotonic()))
        if self.writer is not None:
            self.writer.finish.set()
            self.writer.join(STOP_GRACE_S)
        if self.store is not None:
            self.store.close()
        stats = {p.agent_name: p.status.snapshot() for p in self.pullers}
        for name, status in stats.items():
            log.info("agent %s: %d records received, %d stored, %d bytes, %d gaps, %d errors", name,
                     status["records_received"], status["records_stored"], status["bytes_received"],
                     status["gaps"], status["errors"])


# -- `diag collector --status` ------------------------------------------------

def _age(ns, now_ns):
    if ns is None:
        return "-"
    seconds = max(0.0, (now_ns - ns) / 1e9)
    return "%.1fs" % seconds if seconds < 120 else "%dm" % (seconds // 60) if seconds < 7200 else "%dh" % (seconds // 3600)


def render_status(rows, hosts, now_ns):
    """The --status table: one line per agent, then its last error if any."""
    if not rows:
        return "no agent status in the store yet\n"
    stored = {h["name"]: h for h in hosts}
    header = ("agent", "state", "seq", "lag", "lag seqs", "records", "received", "stored", "gaps", "errors",
              "updated")
    lines = []
    table = [header]
    for row in rows:
        host = stored.get(row["name"], {})
        lag = row.get("lag_s")
        table.append((
            row["name"], row.get("state") or "?",
            "-" if row.get("newest_seq") is None else str(row["newest_seq"]),
            "-" if lag is None else "%.1fs" % lag,
            "-" if row.get("lag_seqs") is None else str(row["lag_seqs"]),
            str(host.get("records", "-")),
            _bytes(row.get("bytes_received")),
            _bytes(host.get("stored_bytes")),
            str(row.get("gaps", 0)), str(row.get("errors", 0)),
            _age(row.get("updated_ns"), now_ns) + " ago",
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for row in rows:
        if row.get("last_error"):
            lines.append("%s: last error %s ago: %s" % (row["name"], _age(row.get("last_error_ns"), now_ns),
                                                       row["last_error"]))
        if row.get("store_error"):
            lines.append("%s: store error: %s" % (row["name"], row["store_error"]))
    return "\n".join(lines) + "\n"


def _bytes(value):
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return ("%d%s" % (value, unit)) if unit == "B" else "%.1f%s" % (value, unit)
        value /= 1024.0
    return "-"


def show_status(store_dir, fmt, out):
    try:
        store = CollectorStore(store_dir, readonly=True)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    try:
        rows, hosts = store.status(), store.hosts()
    finally:
        store.close()
    now = time.time_ns()
    if fmt == "json":
        by_name = {h["name"]: h for h in hosts}
        document = [dict(row, stored_bytes=by_name.get(row["name"], {}).get("stored_bytes"),
                         records=by_name.get(row["name"], {}).get("records")) for row in rows]
        out.write(json.dumps({"store": store_dir, "now_ns": now, "agents": document}, indent=2) + "\n")
    else:
        out.write(render_status(rows, hosts, now))


# -- entry point --------------------------------------------------------------

def build_parser():
    parser = ArgumentParser(prog="diag collector",
                     description="Pull snapshots from the agents in the config into a local store.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default $HOSTDIAG_CONFIG)")
    parser.add_argument("--store", metavar="DIR", help="the store directory (collector.store)")
    parser.add_argument("--host-max-bytes", metavar="SIZE", default=None,
                        help="bytes kept per host, oldest deleted first (collector.host_max_bytes)")
    parser.add_argument("--host-max-age", metavar="DURATION", default=None,
                        help="age kept per host, against its newest record (collector.host_max_age)")
    parser.add_argument("--once", action="store_true",
                        help="pull what every agent has now, store it and exit")
    parser.add_argument("--status", action="store_true",
                        help="print each agent's state, lag, bytes and errors from the store, and exit")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="for --status")
    parser.add_argument("--foreground", action="store_true", help="log with timestamps (for a terminal)")
    return parser


def overrides_from(args, store):
    """The settings given as options; a bad value is reported with its key, "(command line)"."""
    return {
        "collector.store": store,
        "collector.host_max_bytes": args.host_max_bytes,
        "collector.host_max_age": args.host_max_age,
    }


def main_collector(argv=None):
    """`diag collector ...`: the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("diag collector", lambda: _run(argv))


def _run(argv):
    from hostdiag.apps.config import load_config

    args = build_parser().parse_args(argv)
    store = os.path.abspath(args.store) if args.store else None
    config = load_config(args.config, os.environ, overrides_from(args, store))
    if args.status:
        show_status(config.collector.store, args.format, sys.stdout)
        return EXIT_OK
    entries = config.collector.agents
    if not entries:
        raise UsageError("collector.agents: no agents to pull from (%s)" % config.source("collector.agents"))
    tokens = [None if entry.token_file is None else
              read_token(entry.token_file, "collector.agents[%d].token_file" % i)
              for i, entry in enumerate(entries)]
    setup_logging(args.foreground)
    collector = Collector(config, entries, tokens, once=args.once)
    collector.install_signals()
    return collector.run()


if __name__ == "__main__":
    sys.exit(main_collector())
