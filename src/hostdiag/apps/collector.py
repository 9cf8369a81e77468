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
import zlib
import os
import queue
import signal
import sys
import threading
import time

from hostdiag.apps.collector_pull import Puller, Stopping
from hostdiag.apps.common import (
    EXIT_FAILED, EXIT_OK, ArgumentParser, CommandFailed, UsageError, read_token, run_command, setup_logging,
)
from hostdiag.store.collector_store import StoreError, is_url, open_collector_store
from hostdiag.views.collector_status import render_status, status_document

log = logging.getLogger("hostdiag.collector")

# Records and gaps queued between the pullers and the writer; a full queue
# makes the pullers wait. A record holds its msgpack bytes and the snapshot
# they were encoded from (the writer's store needs the document, and decoding
# the bytes again cost more than anything else it did): about 3.5 times the
# bytes as Python objects, shared in part with the puller's next delta base.
QUEUE_MAX_ITEMS = 2000
# Items committed in one transaction at the most.
BATCH_MAX_ITEMS = 500
# Incident bundles (up to incidents.bundle_max_bytes each) queued for the
# writer at once, over all pullers: a puller waits for a slot to fetch the next.
INCIDENTS_IN_FLIGHT = 4
# How long the pullers get to finish once told to stop, and the writer to drain.
STOP_GRACE_S = 10.0


# -- the writer ---------------------------------------------------------------

class Writer(threading.Thread):
    """Owns the store: commits queued records and gaps in batches, writes the
    status rows and applies retention every ``status_period`` seconds."""

    def __init__(self, store, work, pullers, status_period, stop_event, incident_slots):
        super().__init__(name="hostdiag-store", daemon=True)
        self.incident_slots = incident_slots
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
                    self.release_incidents(pending)
                    pending = []
                elif self.finish.is_set():
                    log.error("store: %d records and gaps not written: %s", len(pending), self.failed)
                    self.release_incidents(pending)
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

    def release_incidents(self, items):
        """Free the slots of the incident bundles among ``items`` (stored or given up)."""
        for item in items:
            if item[0] == "incident":
                self.incident_slots.release()

    def commit(self, items):
        store = self.store
        counts = {}
        try:
            store.begin()
            for item in items:
                kind = item[0]
                if kind == "record":
                    _, host, agent_id, boot_id, seq, wall_ns, payload, doc, change = item
                    stored = store.add_record(host, agent_id, boot_id, seq, wall_ns, payload, doc, change)
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
                elif kind == "incident":
                    _, host, summary, bundle = item
                    store.add_incident(host, summary, bundle)
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
        self.incident_slots = threading.BoundedSemaphore(INCIDENTS_IN_FLIGHT)
        self.pullers = [Puller(entry, token, self) for entry, token in zip(entries, tokens)]
        self.store = None
        self.writer = None
        self.writer_died = False

    def incident_slot(self):
        """Wait for room to queue one more incident bundle (raises Stopping
        when the collector stops meanwhile); the writer frees it once stored."""
        while not self.incident_slots.acquire(timeout=0.5):
            if self.stop_event.is_set():
                raise Stopping()

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
            self.store = open_collector_store(self.store_dir, max_host_bytes=self.max_host_bytes,
                                              max_host_age_s=self.max_host_age_s,
                                              findings=self.config.collector.findings)
        except StoreError as exc:
            log.error("cannot start: collector.store: %s", exc)
            return EXIT_FAILED
        try:
            for puller in self.pullers:
                self.store.set_host(puller.agent_name, puller.entry.address)
            self.writer = Writer(self.store, self.work, self.pullers, min(self.poll_interval, 5.0), self.stop_event,
                                 self.incident_slots)
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

def show_status(store_dir, fmt, out):
    try:
        store = open_collector_store(store_dir, readonly=True)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    try:
        rows, hosts = store.status(), store.hosts()
    finally:
        store.close()
    now = time.time_ns()
    if fmt == "json":
        out.write(json.dumps(status_document(store_dir, rows, hosts, now), indent=2) + "\n")
    else:
        out.write(render_status(rows, hosts, now))


# -- entry point --------------------------------------------------------------

def build_parser():
    parser = ArgumentParser(prog="diag collector",
                     description="Pull snapshots from the agents in the config into a local store.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default $HOSTDIAG_CONFIG)")
    parser.add_argument("--store", metavar="DIR|URL",
                        help="the store: a directory, or clickhouse://HOST:PORT/DB (collector.store)")
    parser.add_argument("--shard", metavar="K/N", default=None,
                        help="pull only the agents of shard K of N, by a hash of their names (collector.shard)")
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


def shard_of(name, count):
    """The shard (1..count) of the agent ``name``: CRC-32 of its UTF-8 name, the
    same in every process and on every machine (Python's hash() is not)."""
    return zlib.crc32(name.encode("utf-8")) % count + 1


def overrides_from(args, store):
    """The settings given as options; a bad value is reported with its key, "(command line)"."""
    return {
        "collector.store": store,
        "collector.host_max_bytes": args.host_max_bytes,
        "collector.host_max_age": args.host_max_age,
        "collector.shard": args.shard,
    }


def main_collector(argv=None):
    """`diag collector ...`: the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("diag collector", lambda: _run(argv))


def _run(argv):
    from hostdiag.apps.config import load_config

    args = build_parser().parse_args(argv)
    store = args.store
    if store and not is_url(store):
        store = os.path.abspath(store)
    config = load_config(args.config, os.environ, overrides_from(args, store))
    if args.status:
        show_status(config.collector.store, args.format, sys.stdout)
        return EXIT_OK
    entries = config.collector.agents
    if not entries:
        raise UsageError("collector.agents: no agents to pull from (%s)" % config.source("collector.agents"))
    shard = config.collector.shard
    entries = [entry for entry in entries if shard_of(entry.name, shard.count) == shard.index]
    if not entries:
        raise UsageError("collector.shard: no agent falls in shard %d/%d (%s)"
                         % (shard.index, shard.count, config.source("collector.shard")))
    tokens = [None if entry.token_file is None else
              read_token(entry.token_file, "collector.agents[%d].token_file" % i)
              for i, entry in enumerate(entries)]
    setup_logging(args.foreground)
    collector = Collector(config, entries, tokens, once=args.once)
    collector.install_signals()
    return collector.run()


if __name__ == "__main__":
    sys.exit(main_collector())
