"""Fleet load: many simulated agents against one real `diag collector` (issue 13, "Scale, measured").

Three commands (``python benchmarks/fleetload.py COMMAND --help``):

``record``  takes a history of this host with the real sampler (``Sampler.sample``, as the
            agent takes it: the system sections every ``--interval`` seconds, the process,
            socket and cgroup tables every ``--table-every``-th sample) and writes the
            snapshots' msgpack bytes to one file (zlib-compressed msgpack: a header map
            and the list of payloads). Each snapshot carries the findings the agent judges
            of it, as the agent stores them (``--without-findings``: none, as an older
            agent's, which the collector evaluates itself).
``serve``   (started by ``run``) serves a share of the simulated agents from one process,
            all on one asyncio loop: each is the agent's own server code
            (transport/server.py, ``AgentServer.serve_here``) on its own TCP port on
            127.0.0.1 with a token, over a :class:`ReplayHistory` with its own agent id and
            boot id, taking a new record every interval (the recording replayed in a loop,
            each record with a fresh seq and wall time; phases spread over the interval).
``run``     starts the ``serve`` processes, one real collector process (SQLite or
            ClickHouse store), and measures, over a window after every agent is live:
            the collector's CPU time (utime + stime of its process, /proc/PID/stat), the
            lag of every record (the time the tool first sees it in the store minus the
            record's wall time, polled every POLL_S: an upper bound by at most POLL_S), the
            store's bytes per agent-day, and for ClickHouse the INSERT queries per second
            (``system.events``). Then it stops the agents' sampling, waits for the
            collector to store each agent's newest seq, and checks every agent's stored
            seqs: 1..newest, each once. One JSON document on stdout.

Replaying instead of sampling keeps the tool cheap enough to host a thousand agents: a
record's payload is the recorded bytes (shared by all agents), and the subscription's
delta frame reuses a change computed once per recorded sample (``StoredChange``, as the
real agent hands its history's change to the server). Every agent serves the same
snapshot contents under its own identity (agent id, boot id, seq, wall time in the
frames); the collector does all of its work (decode, apply the delta, store) per agent.

Bounds: a ``serve`` process hosts at most ``MAX_AGENTS_PER_PROCESS`` agents (each costs a
listening socket, the collector's connection and a second one while it backfills: the
open-files limit is 20,000 per process here); each agent keeps its newest ``KEEP_RECORDS``
records (a ``range`` or a subscription's backfill further back is answered as not kept).
"""

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import zlib

import msgpack

from hostdiag.encode.delta import apply, delta, next_prior
from hostdiag.encode.wire import decode_msgpack, encode_msgpack
from hostdiag.store.history import Record, StoredChange

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDING_FORMAT = "hostdiag-fleetload-recording/1"
MAX_AGENTS_PER_PROCESS = 2000
KEEP_RECORDS = 600
# How often `run` looks for new records in the store, in seconds (the lag's resolution).
POLL_S = 0.5
# How long `run` waits for the agents to listen and stop, for every agent to be live before the
# window, and for the collector to catch up at the end (the last two: --warm-deadline, --drain-deadline).
SETTLE_DEADLINE_S = 300.0
# An agent is live once a record it took at most this many seconds before is in the store.
WARM_LAG_S = 5.0
TOKEN = "fleetload-token"
COLLECTOR_MAIN = ("import sys; from hostdiag.apps.collector import main_collector; "
                  "sys.exit(main_collector(sys.argv[1:]))")
# The collector under cProfile, every thread (cProfile alone sees the main thread only,
# and the collector's threads override run(): each thread's bootstrap is wrapped), timed
# by each thread's CPU time (a wall clock would charge a function for the time its
# thread waits for the GIL); argv[1] is the output file, the rest the collector's arguments.
PROFILED_COLLECTOR_MAIN = """
import cProfile, pstats, sys, threading, time
from hostdiag.apps.collector import main_collector
profiles = []
bootstrap = threading.Thread._bootstrap_inner
def profiled_bootstrap(self):
    profile = cProfile.Profile(time.thread_time)
    profiles.append(profile)
    profile.enable()
    try:
        bootstrap(self)
    finally:
        profile.disable()
threading.Thread._bootstrap_inner = profiled_bootstrap
main = cProfile.Profile(time.thread_time)
main.enable()
try:
    code = main_collector(sys.argv[2:])
finally:
    main.disable()
    stats = pstats.Stats(main)
    for profile in profiles:
        stats.add(profile)
    stats.dump_stats(sys.argv[1])
sys.exit(code)
"""


# -- recording ----------------------------------------------------------------

def record_history(path, samples, interval_s=1.0, table_every=5, extra_processes=0, findings=True):
    """Take ``samples`` snapshots of this host, ``interval_s`` apart, the tables on every
    ``table_every``-th (the agent's rule), and write them to ``path``; their sizes in bytes.
    ``extra_processes``: that many ``sleep`` processes run meanwhile (a server's process
    count, with short command lines), killed and reaped before returning. ``findings``:
    each snapshot carries the findings the agent judges of it (its ``findings`` section),
    else none (an older agent's records: the collector evaluates them)."""
    from hostdiag.derive.rates import derive_rates
    from hostdiag.findings import evaluate
    from hostdiag.findings.stream import findings_section
    from hostdiag.sampler import Sampler
    from hostdiag.sources.hostroot import HostRoot

    payloads = []
    sleepers = []
    try:
        for _ in range(extra_processes):
            sleepers.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL))
        with Sampler(HostRoot()) as sampler:
            started = time.monotonic()
            previous = previous_tables = None
            for tick in range(samples):
                with_tables = (tick + 1) % table_every == 0
                taken = sampler.sample(tables=with_tables)
                snapshot = taken.to_dict()
                if findings:  # as the agent judges a sample (apps/agent.py, Agent.judge)
                    base = previous_tables if with_tables else previous
                    found = evaluate(taken, derive_rates(base, taken) if base is not None else None, base)
                    snapshot["findings"] = findings_section(found)
                    previous = taken
                    previous_tables = taken if with_tables else previous_tables
                payloads.append(encode_msgpack(snapshot))
                time.sleep(max(0.0, started + (tick + 1) * interval_s - time.monotonic()))
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    header = {"format": RECORDING_FORMAT, "interval_s": interval_s, "table_every": table_every,
              "recorded_ns": time.time_ns(), "host": os.uname().nodename, "extra_processes": extra_processes,
              "findings": findings}
    data = zlib.compress(msgpack.packb({"header": header, "payloads": payloads}, use_bin_type=True), 6)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return [len(p) for p in payloads]


class Recording:
    """The recorded payloads, their documents, and per sample the change from the sample
    before it (cyclically: the first one's base is the last), computed once for all agents."""

    def __init__(self, path):
        try:
            with open(path, "rb") as f:
                loaded = msgpack.unpackb(zlib.decompress(f.read()), raw=False)
        except (OSError, zlib.error, ValueError) as exc:
            raise SystemExit("fleetload: cannot read the recording %s: %s" % (path, exc)) from None
        if not isinstance(loaded, dict) or (loaded.get("header") or {}).get("format") != RECORDING_FORMAT:
            raise SystemExit("fleetload: %s is not a %s file" % (path, RECORDING_FORMAT))
        self.header = loaded["header"]
        self.payloads = [bytes(p) for p in loaded["payloads"]]
        if len(self.payloads) < 2:
            raise SystemExit("fleetload: %s holds fewer than 2 samples" % path)
        self.docs = [decode_msgpack(p) for p in self.payloads]
        count = len(self.docs)
        # The prior (newest non-null value of each key) in the steady state of the loop:
        # one lap to fill it, the second to keep it per sample.
        prior = {}
        for doc in self.docs:
            prior = next_prior(prior, doc)
        self.priors = []
        for doc in self.docs:
            prior = next_prior(prior, doc)
            self.priors.append(prior)
        self.changes = []
        for index in range(count):
            base, base_prior = self.docs[index - 1], self.priors[index - 1]
            change = delta(base, self.docs[index], base_prior)
            exact = encode_msgpack(apply(change, base, base_prior)) == self.payloads[index]
            # A change that does not rebuild the payload exactly is not offered: the
            # server then computes the frame itself, as it does for the real agent.
            self.changes.append((change, base, base_prior) if exact else None)


class ReplayHistory:
    """The part of the agent's History (store/history.py) that its server reads, over the
    recording: ``append`` takes the next recorded sample under a fresh seq and wall time."""

    def __init__(self, recording, agent_id, boot_id, keep=KEEP_RECORDS):
        self.recording = recording
        self.agent_id = agent_id
        self.boot_id = boot_id
        self.records = collections.deque(maxlen=keep)
        self.next_seq = 1

    def append(self, wall_ns):
        """(Record, its snapshot, its StoredChange or None) of the next sample."""
        seq = self.next_seq
        self.next_seq += 1
        index = (seq - 1) % len(self.recording.payloads)
        record = Record(self.boot_id, seq, wall_ns, self.recording.payloads[index])
        self.records.append(record)
        found = self.recording.changes[index] if seq > 1 else None
        stored = None if found is None else StoredChange(seq, seq - 1, found[1], found[0], found[2])
        return record, self.recording.docs[index], stored

    def info(self):
        oldest = self.records[0] if self.records else None
        newest = self.records[-1] if self.records else None
        boots = []
        if oldest is not None:
            boots.append({"boot_id": self.boot_id, "oldest_seq": oldest.seq, "newest_seq": newest.seq,
                          "oldest_wall_ns": oldest.wall_ns, "newest_wall_ns": newest.wall_ns})
        return {"agent_id": self.agent_id, "boot_id": self.boot_id,
                "oldest_seq": oldest and oldest.seq, "newest_seq": newest and newest.seq,
                "oldest_wall_ns": oldest and oldest.wall_ns, "newest_wall_ns": newest and newest.wall_ns,
                "next_seq": self.next_seq, "boots": boots}

    def range(self, start_seq=None, end_seq=None, start_ns=None, end_ns=None, limit=100, boot_id=None):
        if boot_id not in (None, self.boot_id) or not self.records:
            return []
        first = self.records[0].seq
        out = []
        for position in range(max(0, (start_seq or first) - first), len(self.records)):
            record = self.records[position]
            if end_seq is not None and record.seq > end_seq:
                break
            if (start_ns is not None and record.wall_ns < start_ns) or (end_ns is not None and record.wall_ns > end_ns):
                continue
            out.append(record)
            if limit is not None and len(out) >= limit:
                break
        return out

    def latest(self):
        return self.records[-1] if self.records else None

    def damaged(self, boot_id, start_seq, end_seq):
        return []

    def gaps(self):
        return []


# -- serving ------------------------------------------------------------------

class SimulatedAgents:
    """``names`` agents in this process, on one event loop."""

    def __init__(self, recording, names, interval_s):
        self.recording = recording
        self.names = names
        self.interval_s = interval_s
        self.servers = {}
        self.histories = {}
        self.sampling = True
        self.late_s = []  # how late each record was taken against its schedule, seconds

    async def start(self):
        from hostdiag.transport.flow import Limits
        from hostdiag.transport.listeners import Listener
        from hostdiag.transport.server import AgentServer

        for name in self.names:
            history = ReplayHistory(self.recording, str(uuid.uuid4()), str(uuid.uuid4()))
            listener = Listener("tcp", host="127.0.0.1", port=0, token=TOKEN)
            describe = {"host": {"hostname": name}, "interval_s": self.interval_s,
                        "table_every": self.recording.header.get("table_every")}
            server = AgentServer(history, [listener], Limits(max_clients=8), describe=lambda d=describe: d)
            await server.serve_here()
            self.servers[name] = server
            self.histories[name] = history
        loop = asyncio.get_running_loop()
        start = loop.time() + self.interval_s
        for position, name in enumerate(self.names):
            phase = self.interval_s * position / len(self.names)
            loop.call_at(start + phase, self.tick, name, start + phase)

    def addresses(self):
        return [{"name": name, "address": "tcp:127.0.0.1:%d" % self.servers[name].listeners[0].port,
                 "agent_id": self.histories[name].agent_id, "boot_id": self.histories[name].boot_id}
                for name in self.names]

    def tick(self, name, due):
        if not self.sampling:
            return
        loop = asyncio.get_running_loop()
        self.late_s.append(loop.time() - due)
        record, snapshot, stored = self.histories[name].append(time.time_ns())
        self.servers[name].publish(record, snapshot, stored)
        loop.call_at(due + self.interval_s, self.tick, name, due + self.interval_s)

    def newest(self):
        return {name: history.next_seq - 1 for name, history in self.histories.items()}

    async def close(self):
        for server in self.servers.values():
            await server.close_here()


def serve(args):
    """The ``serve`` command: write the agents' addresses to ``--ready`` when all listen;
    once the file ``--ready``.stop exists (looked for every POLL_S) stop sampling and
    write each agent's newest seq to ``--ready``.done; on SIGTERM exit. (A file, not a
    signal: a loop that falls behind may find its signal wake-up pipe full and lose one.)"""
    recording = Recording(args.recording)
    names = ["sim%05d" % n for n in range(args.first, args.first + args.count)]
    agents = SimulatedAgents(recording, names, args.interval)

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await agents.start()
        _write_json(args.ready, agents.addresses())
        while not os.path.exists(args.ready + ".stop"):
            await asyncio.sleep(POLL_S)
        _stop_sampling(agents, args.ready + ".done")
        await stop.wait()
        await agents.close()

    asyncio.run(main())
    return 0


def _stop_sampling(agents, path):
    agents.sampling = False
    late = sorted(agents.late_s)
    _write_json(path, {"newest": agents.newest(), "late_p99_s": _percentile(late, 0.99),
                       "late_max_s": late[-1] if late else None})


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


# -- measuring ----------------------------------------------------------------

def _percentile(ordered, fraction):
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid, kernel_only=False):
    """utime + stime of process ``pid`` (all its threads), or stime alone, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class SqliteProbe:
    """Reads a collector's SQLite store: new records since the last look, and what is kept."""

    def __init__(self, store_dir):
        self.path = os.path.join(store_dir, "collector.sqlite3")
        self.db = None
        self.last_rowid = 0
        self.names = {}

    def _open(self):
        if self.db is None and os.path.exists(self.path):
            self.db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(self.path), uri=True, timeout=10)
        return self.db

    def new_records(self):
        """[(host, seq, wall_ns)] stored since the last call."""
        db = self._open()
        if db is None:
            return []
        try:
            rows = db.execute("SELECT rowid, host_id, seq, wall_ns FROM records WHERE rowid > ? ORDER BY rowid",
                              (self.last_rowid,)).fetchall()
        except sqlite3.OperationalError:
            return []  # the tables are not made yet
        if rows:
            self.last_rowid = rows[-1][0]
        if any(r[1] not in self.names for r in rows):
            self.names = dict(db.execute("SELECT host_id, name FROM hosts").fetchall())
        return [(self.names[host], seq, wall) for _, host, seq, wall in rows]

    def kept(self):
        """{host: (count, distinct seqs, min seq, max seq)}."""
        rows = self._open().execute(
            "SELECT h.name, COUNT(*), COUNT(DISTINCT r.seq), MIN(r.seq), MAX(r.seq) FROM records r "
            "JOIN hosts h ON h.host_id = r.host_id GROUP BY r.boot_key").fetchall()
        return {row[0]: row[1:] for row in rows}

    def stored_bytes(self, since_ns):
        """Compressed bytes of the records taken at or after ``since_ns``, and their count."""
        return self._open().execute("SELECT COALESCE(SUM(stored_bytes), 0), COUNT(*) FROM records "
                                    "WHERE wall_ns >= ?", (since_ns,)).fetchone()

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None


class ClickHouseProbe:
    """Reads the fleet store over HTTP: new records since the last look, what is kept, bytes."""

    def __init__(self, url):
        from hostdiag.store.clickhouse import parse_url

        self.host, self.port, self.database = parse_url(url)
        self.seen = set()
        self.since_ns = 0

    def query(self, sql):
        request = urllib.request.Request("http://%s:%d/?%s" % (self.host, self.port, urllib.parse.urlencode(
            {"query": sql + " FORMAT JSONEachRow", "database": self.database})), data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=60) as reply:
            return [json.loads(line) for line in reply.read().decode().splitlines() if line.strip()]

    def new_records(self):
        """[(host, seq, wall_ns)] stored since the last call, of the records taken at or
        after ``since_ns`` (the table is read again each time: the probe's own cost)."""
        try:
            rows = self.query("SELECT host, seq, wall_ns FROM records WHERE wall_ns >= %d" % self.since_ns)
        except urllib.error.HTTPError:
            return []  # the tables are not made yet
        out = []
        for row in rows:
            key = (row["host"], int(row["seq"]))
            if key not in self.seen:
                self.seen.add(key)
                out.append((key[0], key[1], int(row["wall_ns"])))
        return out

    def kept(self):
        rows = self.query("SELECT host, count() AS n, uniqExact(seq) AS u, min(seq) AS lo, max(seq) AS hi "
                          "FROM records GROUP BY host")
        return {r["host"]: (int(r["n"]), int(r["u"]), int(r["lo"]), int(r["hi"])) for r in rows}

    def count(self):
        return int(self.query("SELECT count() AS n FROM records")[0]["n"])

    def inserts(self):
        rows = self.query("SELECT event, value FROM system.events WHERE event IN ('InsertQuery', 'InsertedRows')")
        found = {r["event"]: int(r["value"]) for r in rows}
        return found.get("InsertQuery", 0), found.get("InsertedRows", 0)

    def table_bytes(self):
        """{table: (bytes on disk, rows)} of the active parts, after merging each table."""
        for table in ("records", "samples", "processes", "sockets"):
            self.query_plain("OPTIMIZE TABLE %s FINAL" % table)
        rows = self.query("SELECT table, sum(bytes_on_disk) AS b, sum(rows) AS r FROM system.parts "
                          "WHERE database = '%s' AND active GROUP BY table" % self.database)
        return {r["table"]: (int(r["b"]), int(r["r"])) for r in rows}

    def query_plain(self, sql):
        request = urllib.request.Request("http://%s:%d/?%s" % (self.host, self.port, urllib.parse.urlencode(
            {"query": sql, "database": self.database})), data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=600) as reply:
            reply.read()

    def close(self):
        pass


def run(args, out=sys.stdout):
    """The ``run`` command; returns the result document (also written to ``out``)."""
    recording = Recording(args.recording)  # a bad file stops the run before anything starts
    workdir = tempfile.mkdtemp(prefix="hd-fleetload-", dir=args.workdir)
    children = []
    servers = []
    try:
        return _emit(_measure(args, recording, workdir, children, servers), out)
    finally:
        for proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _emit(result, out):
    out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    out.flush()
    return result


def _store_location(args, workdir, started):
    """The collector's store: a directory, the given ClickHouse, or a ClickHouse started here."""
    if args.store == "sqlite":
        return os.path.join(workdir, "store")
    if args.clickhouse:
        return args.clickhouse
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from clickhouseproc import ClickHouseServer

    server = ClickHouseServer()
    started.append(server)
    server.start()
    return server.url("fleet")


def _measure(args, recording, workdir, children, started_servers):
    """Start the agents, the store's server if needed and the collector (each added to
    ``children`` / ``started_servers`` for the caller to stop), then observe them."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(
        os.path.abspath(sys.modules["hostdiag"].__file__)))] + [env.get("PYTHONPATH", "")] if p)
    per_process = min(MAX_AGENTS_PER_PROCESS, -(-args.agents // args.serve_processes))
    serving = []
    first = 0
    while first < args.agents:
        count = min(per_process, args.agents - first)
        ready = os.path.join(workdir, "agents-%d.json" % first)
        log = open(os.path.join(workdir, "serve-%d.log" % first), "wb")
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", "--recording", args.recording,
                                 "--first", str(first), "--count", str(count), "--interval", str(args.interval),
                                 "--ready", ready], stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=(lambda: os.nice(args.serve_nice)) if args.serve_nice else None)
        log.close()
        children.append(proc)
        serving.append((proc, ready))
        first += count
    agents = []
    for proc, ready in serving:
        _wait(lambda: os.path.exists(ready), proc, "the simulated agents to listen (%s)" % ready, workdir)
        with open(ready) as f:
            agents.extend(json.load(f))
    token_file = os.path.join(workdir, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    store = _store_location(args, workdir, started_servers)
    config = os.path.join(workdir, "collector.toml")
    with open(config, "w") as f:
        f.write("[collector]\nstore = %s\npoll_interval = %s\n" % (json.dumps(store), args.poll_interval))
        for agent in agents:
            f.write("\n[[collector.agents]]\nname = %s\naddress = %s\ntoken_file = %s\n"
                    % (json.dumps(agent["name"]), json.dumps(agent["address"]), json.dumps(token_file)))
    if args.profile:
        command = [sys.executable, "-c", PROFILED_COLLECTOR_MAIN, os.path.abspath(args.profile)]
    else:
        command = [sys.executable, "-c", COLLECTOR_MAIN]
    collector_log = open(os.path.join(workdir, "collector.log"), "wb")
    nice = args.collector_nice
    collector = subprocess.Popen(command + ["--config", config], stdout=collector_log, stderr=subprocess.STDOUT,
                                 env=env, cwd=workdir, preexec_fn=(lambda: os.nice(nice)) if nice else None)
    collector_log.close()
    children.append(collector)
    probe = ClickHouseProbe(store) if store.startswith("clickhouse://") else SqliteProbe(store)
    try:
        server_pid = started_servers[0].proc.pid if started_servers else None
        return _observe(args, recording, agents, serving, collector, probe, workdir, server_pid)
    finally:
        probe.close()


def _wait(condition, proc, what, workdir, deadline_s=SETTLE_DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise SystemExit("fleetload: a child exited with %s while waiting for %s (logs in %s)"
                             % (proc.returncode, what, workdir))
        if time.monotonic() > deadline:
            raise SystemExit("fleetload: gave up waiting for %s after %d s (logs in %s)" % (what, deadline_s, workdir))
        time.sleep(0.1)


def _observe(args, recording, agents, serving, collector, probe, workdir, server_pid=None):
    """The measured window, then the drain and the check of every agent's seqs.
    ``server_pid``: the ClickHouse server this run started (its CPU is reported too)."""
    names = {a["name"] for a in agents}
    live = set()

    def all_live():
        # Live: a record of the agent taken at most WARM_LAG_S ago is stored.
        now = time.time_ns()
        live.update(host for host, _, wall in probe.new_records() if now - wall <= WARM_LAG_S * 1e9)
        return live >= names

    warm_started = time.monotonic()
    try:
        _wait(all_live, collector, "every agent's records to be stored within %d s" % WARM_LAG_S, workdir,
              deadline_s=args.warm_deadline)
        warmed = True
    except SystemExit:
        warmed = False  # measured anyway: the window then shows a collector that never caught up
    warm_s = time.monotonic() - warm_started
    # The window starts now: records taken before it (the first contact's backfill) do not count.
    window_ns = time.time_ns()
    if isinstance(probe, ClickHouseProbe):
        probe.since_ns = window_ns
        inserts_before = probe.inserts()
        count_before = probe.count()
    cpu_before = cpu_seconds(collector.pid)
    kernel_before = cpu_seconds(collector.pid, kernel_only=True)
    serve_before = sum(cpu_seconds(proc.pid) for proc, _ in serving)
    server_before = cpu_seconds(server_pid) if server_pid else None
    load_before = open("/proc/loadavg").read().split()[:3]
    started = time.monotonic()
    lags = []
    stored = 0  # every record that appeared in the store during the window, older ones included
    while time.monotonic() - started < args.seconds:
        if collector.poll() is not None:
            raise SystemExit("fleetload: the collector exited with %s (log in %s)" % (collector.returncode, workdir))
        time.sleep(POLL_S)
        now = time.time_ns()
        for host, seq, wall in probe.new_records():
            stored += 1
            if wall >= window_ns:
                lags.append((now - wall) / 1e9)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(collector.pid) - cpu_before
    kernel = cpu_seconds(collector.pid, kernel_only=True) - kernel_before
    serve_cpu = sum(cpu_seconds(proc.pid) for proc, _ in serving) - serve_before
    server_cpu = cpu_seconds(server_pid) - server_before if server_pid else None
    window_end_ns = time.time_ns()
    result = {
        "store": args.store, "agents": len(agents), "interval_s": args.interval, "window_s": round(elapsed, 2),
        "collector_nice": args.collector_nice, "serve_nice": args.serve_nice,
        "warmed_up": warmed, "warm_up_s": round(warm_s, 1), "agents_live_at_window_start": len(live),
        "recording": dict(recording.header, samples=len(recording.payloads)),
        "collector_cpu_s": round(cpu, 3),
        "collector_kernel_cpu_s": round(kernel, 3),
        "collector_cores": round(cpu / elapsed, 3),
        "collector_cpu_ms_per_agent_s": round(1000 * cpu / len(agents) / elapsed, 4),
        "agents_cpu_s": round(serve_cpu, 3),
        "clickhouse_server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "records_stored_in_window": stored,
        "collector_cpu_ms_per_record": round(1000 * cpu / stored, 4) if stored else None,
        "records_in_window": len(lags),
        "records_expected_in_window": int(len(agents) * elapsed / args.interval),
        "host_loadavg_before_after": [load_before, open("/proc/loadavg").read().split()[:3]],
        "cpus": os.cpu_count(),
    }
    ordered = sorted(lags)
    result["lag_s"] = {"p50": _round(_percentile(ordered, 0.5)), "p99": _round(_percentile(ordered, 0.99)),
                       "max": _round(ordered[-1] if ordered else None), "resolution": POLL_S}
    if isinstance(probe, ClickHouseProbe):
        # Records taken before the window are not read back by the probe: count them all here.
        stored = probe.count() - count_before
        result["records_stored_in_window"] = stored
        result["collector_cpu_ms_per_record"] = round(1000 * cpu / stored, 4) if stored else None
        after = probe.inserts()
        result["clickhouse_insert_queries_per_s"] = round((after[0] - inserts_before[0]) / elapsed, 2)
        result["clickhouse_inserted_rows_per_s"] = round((after[1] - inserts_before[1]) / elapsed, 1)
    else:
        stored, count = probe.stored_bytes(window_ns)
        result["sqlite_record_bytes_per_agent_day"] = _per_agent_day(stored, count, args.interval)
    # Stop sampling, let the collector catch up, check every agent's seqs.
    newest = {}
    late = []
    for proc, ready in serving:
        with open(ready + ".stop", "w"):
            pass
    for proc, ready in serving:
        _wait(lambda: os.path.exists(ready + ".done"), proc, "the agents to stop sampling", workdir)
        with open(ready + ".done") as f:
            done = json.load(f)
        newest.update(done["newest"])
        late.append(done["late_p99_s"] or 0.0)
    result["agents_sampling_late_p99_s"] = round(max(late), 3)

    def caught_up():
        kept = probe.kept()
        return all(kept.get(name, (0, 0, 0, 0))[3] >= seq for name, seq in newest.items())

    try:
        _wait(caught_up, collector, "the collector to store every agent's newest seq", workdir,
              deadline_s=args.drain_deadline)
    except SystemExit as exc:
        result["drained"] = str(exc)
    else:
        result["drained"] = True
    kept = probe.kept()
    lost = duplicates = behind = 0
    for name, seq in newest.items():
        count, distinct, low, high = kept.get(name, (0, 0, 1, 0))
        # Not stored: a seq missing below the newest stored one (lost), or above it
        # when the collector did not catch up (behind).
        lost += high - distinct + (low - 1)
        behind += seq - high
        duplicates += count - distinct
    result["records_produced"] = sum(newest.values())
    result["records_stored"] = sum(k[0] for k in kept.values())
    result["lost"] = lost
    result["behind"] = behind
    result["duplicates"] = duplicates
    if isinstance(probe, ClickHouseProbe):
        tables = probe.table_bytes()
        records = tables.get("records", (0, 0))[1] or 1
        result["clickhouse_bytes_per_agent_day"] = {
            table: _per_agent_day(size, records, args.interval) for table, (size, _) in sorted(tables.items())}
        result["clickhouse_bytes_per_agent_day"]["total"] = _per_agent_day(
            sum(size for size, _ in tables.values()), records, args.interval)
    collector.send_signal(signal.SIGTERM)
    collector.wait(60)
    if isinstance(probe, SqliteProbe):
        probe.close()
        size = os.path.getsize(probe.path)
        result["sqlite_file_bytes_per_agent_day"] = _per_agent_day(size, result["records_stored"], args.interval)
    result["collector_exit"] = collector.returncode
    result["window_ns"] = [window_ns, window_end_ns]
    return result


def _per_agent_day(size, records, interval_s):
    """Bytes per agent per day from ``size`` bytes over ``records`` records taken every ``interval_s``."""
    if not records:
        return None
    return int(size / records * 86400 / interval_s)


def _round(value):
    return None if value is None else round(value, 3)


# -- entry point --------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="fleetload.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="record a history of this host with the real sampler")
    rec.add_argument("--out", required=True, help="the recording file to write")
    rec.add_argument("--samples", type=int, default=60, help="samples to take (default 60)")
    rec.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    rec.add_argument("--table-every", type=int, default=5, help="the tables every Nth sample (default 5)")
    rec.add_argument("--extra-processes", type=int, default=0,
                     help="run that many sleep processes while recording (default 0)")
    rec.add_argument("--without-findings", action="store_true",
                     help="record as an agent older than the findings section: the collector evaluates each record")
    srv = commands.add_parser("serve", help="(used by run) serve simulated agents")
    srv.add_argument("--recording", required=True)
    srv.add_argument("--first", type=int, required=True)
    srv.add_argument("--count", type=int, required=True)
    srv.add_argument("--interval", type=float, default=1.0)
    srv.add_argument("--ready", required=True)
    go = commands.add_parser("run", help="measure one collector against simulated agents")
    go.add_argument("--recording", required=True)
    go.add_argument("--agents", type=int, default=100)
    go.add_argument("--seconds", type=float, default=60.0, help="the measured window (default 60)")
    go.add_argument("--interval", type=float, default=1.0, help="each agent's sampling interval (default 1)")
    go.add_argument("--store", choices=("sqlite", "clickhouse"), default="sqlite")
    go.add_argument("--clickhouse", metavar="URL", help="a running server's clickhouse://HOST:PORT/DB "
                    "(default: start Debian's clickhouse-server on loopback, as tests/clickhouseproc.py)")
    go.add_argument("--serve-processes", type=int, default=1, help="processes hosting the agents (default 1)")
    go.add_argument("--poll-interval", type=float, default=5.0, help="the collector's poll_interval")
    go.add_argument("--collector-nice", type=int, default=0, metavar="N",
                    help="run the collector at this niceness (-10: ahead of other work on a shared machine)")
    go.add_argument("--serve-nice", type=int, default=0, metavar="N", help="the same for the simulated agents")
    go.add_argument("--profile", metavar="FILE", help="run the collector under cProfile (all threads), stats to FILE")
    go.add_argument("--warm-deadline", type=float, default=SETTLE_DEADLINE_S, metavar="S",
                    help="how long every agent gets to be live (a record at most %d s old stored) before the "
                    "window; past it the window starts anyway (default %d)" % (WARM_LAG_S, SETTLE_DEADLINE_S))
    go.add_argument("--drain-deadline", type=float, default=SETTLE_DEADLINE_S, metavar="S",
                    help="how long the collector gets to store every record once sampling stops (default %d)"
                    % SETTLE_DEADLINE_S)
    go.add_argument("--workdir", default="/tmp", help="where the run's temporary directory goes")
    go.add_argument("--keep", action="store_true", help="keep the run's directory (logs, store)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "record":
        sizes = record_history(args.out, args.samples, args.interval, args.table_every, args.extra_processes,
                               findings=not args.without_findings)
        print("recorded %d samples, %d bytes of msgpack (largest %d) to %s"
              % (len(sizes), sum(sizes), max(sizes), args.out))
        return 0
    if args.command == "serve":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return serve(args)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
