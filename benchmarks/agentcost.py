"""What the running agent costs, measured from outside (issue 14).

Used by ``test_bench_agent_cost.py`` and by hand::

    python benchmarks/agentcost.py --load --samples 60 --interval 0.5 --table-every 5
    python benchmarks/agentcost.py --load --profile /tmp/agent.prof --samples 120 --table-every 5

Pieces:

* :class:`AgentUnderTest`: a real ``diag agent`` process (``python -c`` of
  ``main_agent``, as tests/agentproc.py starts one) in a temporary directory
  with its own settings file, spool and socket, started, warmed up and stopped.
* :func:`measure_agent`: the agent's own CPU per sample over a window of
  samples that leaves out its start-up. The window is counted in the agent's
  own ``samples`` (its info reply), and its CPU is the delta of utime + stime
  in /proc/PID/stat (all threads, clock ticks) over the window, with the
  scheduler's run time of every thread (/proc/PID/task/*/schedstat, ns) as a
  finer second clock. Also VmHWM and VmRSS, and the spool bytes written per
  sample (the segment files' sizes before and after the window).
* :class:`SampleFloor`: the raw reads the agent's sample cannot avoid, done
  in this process with the least Python: the system snapshot's files, fs calls
  and rtnetlink dumps (``test_bench_snapshot``'s footprint recorder and
  floors), every /proc/PID stat + status + io (+ the fact files of the refresh
  slice: ``test_bench_processes.RawReadFloor``) and the socket table's
  sock_diag dumps (``test_bench_sockets.NetlinkFloor``).
* :func:`measure_atop`: ``atop -w FILE SECONDS`` for a number of its own
  intervals, its CPU measured the same way.

Only CPU counts here: wall time on the shared 2-vCPU machine is mostly time
spent waiting for a CPU. Nothing is asserted about time.
"""

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

AGENT_MAIN = "import sys; from hostdiag.apps.agent import main_agent; sys.exit(main_agent(sys.argv[1:]))"
# The agent under cProfile with the sampling thread's CPU clock as the timer,
# so that the waits between samples cost nothing and the shares are of CPU.
PROFILED_AGENT_MAIN = (
    "import cProfile, sys, time; from hostdiag.apps.agent import main_agent\n"
    "profile = cProfile.Profile(time.thread_time)\n"
    "profile.enable()\n"
    "try:\n"
    "    code = main_agent(sys.argv[1:])\n"
    "finally:\n"
    "    profile.disable()\n"
    "    profile.dump_stats(%r)\n"
    "sys.exit(code)\n")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_DEADLINE_S = 120.0
# Samples left out before the window opens: the first table sample reads every
# process's cmdline, cgroup and oom_score_adj and fills the caches.
DEFAULT_WARMUP_SAMPLES = 12


def process_cpu_ticks(pid):
    """utime + stime of a whole process (all its threads), in clock ticks."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return int(fields[11]) + int(fields[12])


def process_run_ns(pid):
    """Nanoseconds on a CPU of every thread of ``pid`` (schedstat's first
    field): the same CPU as utime + stime, without the 10 ms tick."""
    total = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path, "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile: its time is in the process's stat
    return total


def process_memory(pid):
    """{"VmHWM": bytes, "VmRSS": bytes} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid, "rb") as f:
        for line in f:
            name, _, value = line.partition(b":")
            if name in (b"VmHWM", b"VmRSS"):
                out[name.decode()] = int(value.split()[0]) * 1024
    return out


def count_pids():
    """Processes on the host now: other work that starts processes meanwhile
    makes the tables larger, so each run reports it."""
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def dir_bytes(path):
    total = 0
    for name in glob.glob(os.path.join(path, "*")):
        try:
            total += os.path.getsize(name)
        except OSError:
            continue
    return total


class AgentUnderTest:
    """One ``diag agent`` with its own directory; a context manager."""

    def __init__(self, interval, table_every, env=None, profile_to=None, extra_settings=""):
        self.dir = tempfile.mkdtemp(prefix="hd-cost-", dir="/tmp")
        self.sock = os.path.join(self.dir, "agent.sock")
        self.spool = os.path.join(self.dir, "spool")
        self.config = os.path.join(self.dir, "agent.toml")
        self.interval = interval
        self.table_every = table_every
        with open(self.config, "w") as f:
            f.write('[agent]\ninterval = %r\ntable_every = %d\nbudget = %r\n'
                    '[spool]\ndir = "%s"\n[server]\nunix_path = "%s"\n%s'
                    % (interval, table_every, interval, self.spool, self.sock, extra_settings))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("HOSTDIAG_") or k == "HOSTDIAG_PURE"}
        self.env.update(env or {})
        self.profile_to = profile_to
        self.proc = None
        self.log = None

    def start(self):
        argv = [sys.executable]
        argv += ["-c", PROFILED_AGENT_MAIN % (self.profile_to,) if self.profile_to else AGENT_MAIN]
        argv += ["--config", self.config, "--foreground"]
        self.log = open(os.path.join(self.dir, "agent.log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.dir)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def info(self):
        from hostdiag.transport.client import AgentClient

        with AgentClient.connect("unix:" + self.sock, timeout=30) as client:
            return client.info()

    def samples(self):
        """The agent's own count of samples taken, or None before it serves."""
        from hostdiag.transport.protocol import ProtocolError

        if self.proc.poll() is not None:
            raise RuntimeError("the agent exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
        try:
            return self.info().get("agent", {}).get("samples")
        except (OSError, ProtocolError):
            return None

    def wait_samples(self, count, deadline_s):
        """Until the agent has taken ``count`` samples; the count it reports.
        Sleeps for the samples still due, then polls every 0.2 s (each info
        request costs the agent a little; a few per window)."""
        deadline = time.monotonic() + deadline_s
        while True:
            taken = self.samples() or 0
            if taken >= count:
                return taken
            if time.monotonic() > deadline:
                raise RuntimeError("the agent took %d of %d samples in %.0f s:\n%s"
                                   % (taken, count, deadline_s, self.log_tail()))
            time.sleep(max(0.2, (count - taken - 1) * self.interval))

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "agent.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Subscriber:
    """A client subscribed to the agent in a thread of this process, reading
    every frame (the agent then encodes a delta frame per sample)."""

    def __init__(self, agent):
        from hostdiag.transport.client import AgentClient

        self.client = AgentClient.connect("unix:" + agent.sock, timeout=30)
        self.frames = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for _ in self.client.subscribe(idle_timeout=60):
                self.frames += 1
        except (OSError, ValueError):
            return  # the agent stopped or the socket closed: the measurement is over

    def close(self):
        self.client.close()
        self.thread.join(10)


def measure_agent(interval, table_every, samples, warmup=DEFAULT_WARMUP_SAMPLES, subscribe=False):
    """Run an agent, leave out ``warmup`` samples, then measure ``samples``:
    a dict of CPU seconds per sample (ticks and schedstat), RSS and spool bytes."""
    with AgentUnderTest(interval, table_every) as agent:
        agent.wait_samples(1, START_DEADLINE_S)
        subscriber = Subscriber(agent) if subscribe else None
        try:
            first = agent.wait_samples(warmup, START_DEADLINE_S)
            pids0 = count_pids()
            ticks0, ns0, spool0 = process_cpu_ticks(agent.pid), process_run_ns(agent.pid), dir_bytes(agent.spool)
            wall0 = time.monotonic()
            last = agent.wait_samples(first + samples, START_DEADLINE_S + samples * interval * 4)
            ticks1, ns1, spool1 = process_cpu_ticks(agent.pid), process_run_ns(agent.pid), dir_bytes(agent.spool)
            wall1 = time.monotonic()
            memory = process_memory(agent.pid)
            pids1 = count_pids()
            info = agent.info()
        finally:
            if subscriber is not None:
                subscriber.close()
    taken = last - first
    extra = info.get("agent", {})
    return {
        "interval_s": interval,
        "table_every": table_every,
        "samples": taken,
        "cpu_s_per_sample": (ticks1 - ticks0) / CLOCK_TICKS / taken,
        "run_s_per_sample": (ns1 - ns0) / 1e9 / taken,
        "wall_s": wall1 - wall0,
        "vm_hwm_bytes": memory.get("VmHWM"),
        "vm_rss_bytes": memory.get("VmRSS"),
        "spool_bytes_per_sample": (spool1 - spool0) / taken,
        "host_pids": (pids0, pids1),
        "overruns": extra.get("overruns"),
        "missed_ticks": extra.get("missed_ticks"),
    }


def measure_atop(seconds, warmup_s=3, interval_s=1):
    """``atop -w FILE interval_s`` for ``seconds`` of its intervals after a
    warm-up: CPU seconds per atop sample; None when atop is not installed."""
    atop = shutil.which("atop")
    if atop is None:
        return None
    workdir = tempfile.mkdtemp(prefix="hd-atop-", dir="/tmp")
    raw = os.path.join(workdir, "atop.raw")
    proc = subprocess.Popen([atop, "-w", raw, str(interval_s)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(warmup_s)
        if proc.poll() is not None:
            raise RuntimeError("atop exited with %s" % proc.returncode)
        ticks0, ns0, raw0 = process_cpu_ticks(proc.pid), process_run_ns(proc.pid), dir_bytes(workdir)
        wall0 = time.monotonic()
        time.sleep(seconds)
        ticks1, ns1, raw1 = process_cpu_ticks(proc.pid), process_run_ns(proc.pid), dir_bytes(workdir)
        wall1 = time.monotonic()
        memory = process_memory(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    taken = (wall1 - wall0) / interval_s
    return {
        "interval_s": interval_s,
        "samples": taken,
        "cpu_s_per_sample": (ticks1 - ticks0) / CLOCK_TICKS / taken,
        "run_s_per_sample": (ns1 - ns0) / 1e9 / taken,
        "vm_hwm_bytes": memory.get("VmHWM"),
        "vm_rss_bytes": memory.get("VmRSS"),
        "spool_bytes_per_sample": (raw1 - raw0) / taken,
    }


class SampleFloor:
    """The raw reads of one agent sample, in this process, with no parsing.

    ``system()``: the files, fs calls and the four rtnetlink dumps of a
    steady-state system snapshot (recorded from a real SystemCollector);
    ``tables()``: the process table's reads (stat, status, io, fd stat of
    every pid; the fact files of the refresh slice) and the socket table's
    sock_diag dumps, received and not decoded."""

    def __init__(self):
        from hostdiag.sampler.system import SystemCollector
        from hostdiag.sources.hostroot import HostRoot
        from hostdiag.sources.sock_diag import SocketTable
        from test_bench_processes import RawReadFloor
        from test_bench_snapshot import RawNetlink
        from test_bench_sockets import NetlinkFloor

        root = HostRoot()
        with SystemCollector(root) as collector:
            collector.collect()
            self.footprint = _record_footprint(collector.collect, root)
        self.netlink = RawNetlink()
        self.processes = RawReadFloor(root)
        self.socket_table = SocketTable(root)
        self.sockets = NetlinkFloor(self.socket_table)

    def system(self):
        from test_bench_snapshot import replay_syscalls

        replay_syscalls(self.footprint)
        self.netlink.dump_all()

    def tables(self):
        self.processes.sample()
        self.sockets.sample()

    def close(self):
        self.netlink.close()
        self.socket_table.close()

    def measure(self, rounds):
        """CPU seconds (process_time) per call of ``system`` and ``tables``, the
        two alternated ``rounds`` times; medians."""
        from statistics import median

        cost = {"system": [], "tables": []}
        for i in range(rounds):
            for name in (("system", "tables") if i % 2 else ("tables", "system")):
                call = getattr(self, name)
                started = time.process_time()
                call()
                cost[name].append(time.process_time() - started)
        return {name: median(values) for name, values in cost.items()}


def _record_footprint(collect, root):
    """test_bench_snapshot.record_footprint without pytest's monkeypatch."""
    import test_bench_snapshot

    class Patch:
        def __init__(self):
            self.undo = []

        def setattr(self, target, name, value):
            self.undo.append((target, name, getattr(target, name), name in vars(target)))
            setattr(target, name, value)

        def context(self):
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            for target, name, value, own in reversed(self.undo):
                if own:
                    setattr(target, name, value)
                else:
                    delattr(target, name)

    return test_bench_snapshot.record_footprint(collect, root, Patch())


def step_costs(samples, table_every, interval):
    """CPU seconds per sample of each step of the agent's sample, replayed in
    this process with the agent's own pieces on the live host: what each
    costs on average over ``samples`` samples, tables every ``table_every``.

    Steps as ``Agent.sample`` and ``History.append`` take them: the system
    collection, ``Snapshot.to_dict``, the two tables, the msgpack encoding of
    the record; then the history's work, one step at a time (the agent
    hands it the map it encoded, so nothing decodes the payload again): the delta from the previous record
    (``encode.delta.delta``), applying it back and encoding the result (the
    byte-for-byte check), compressing the frame (zlib 6, as the history
    does), and, apart, the whole ``History.append`` (these steps plus the
    ring and the spool write); ``self report`` is ``History.info`` and
    /proc/self, once per sample as the agent does them. The steps are timed
    one by one with ``time.process_time`` (this process does nothing else);
    the sum is close to the agent's own CPU per sample without its server
    and scheduling. ``rates + findings`` is ``Agent.judge`` (incidents on,
    the default): the rates against the previous sample, or against the
    previous one with tables for a table sample, and the findings."""
    import zlib

    from hostdiag.derive.rates import derive_rates
    from hostdiag.encode.delta import apply, delta
    from hostdiag.encode.wire import encode_msgpack
    from hostdiag.findings import evaluate
    from hostdiag.sampler.system import SystemCollector
    from hostdiag.sources.hostroot import HostRoot
    from hostdiag.sources.problems import Problems
    from hostdiag.sources.proc_pid import ProcessTable
    from hostdiag.sources.sock_diag import SocketTable
    from hostdiag.store import History

    root = HostRoot()
    spool = tempfile.mkdtemp(prefix="hd-steps-", dir="/tmp")
    costs = {}
    clock = time.process_time

    def timed(step, call, *args):
        started = clock()
        result = call(*args)
        costs[step] = costs.get(step, 0.0) + clock() - started
        return result

    collector = SystemCollector(root)
    processes = ProcessTable(root)
    sockets = SocketTable(root)
    history = History(spool, spool_fsync_interval_s=5.0)
    previous = prior = None
    judged = judged_tables = None  # Agent.judge's previous and previous_tables

    def judge(base, taken):
        evaluate(taken, derive_rates(base, taken) if base is not None else None, base)

    try:
        for tick in range(DEFAULT_WARMUP_SAMPLES + samples):
            if tick == DEFAULT_WARMUP_SAMPLES:
                costs = {}
            with_tables = (tick + 1) % table_every == 0
            if with_tables:
                problems = Problems()
                sockets_section = timed("socket table", sockets.collect, problems)
                processes_section = timed("process table", processes.scan, problems)
            taken = timed("system collection", collector.collect)
            if with_tables:
                taken.processes, taken.sockets = processes_section, sockets_section
            snapshot = timed("Snapshot.to_dict", taken.to_dict)
            timed("rates + findings (Agent.judge)", judge, judged_tables if with_tables else judged, taken)
            judged = taken
            if with_tables:
                judged_tables = taken
            timed("self report (History.info, /proc/self)", _self_report, history, root)
            payload = timed("encode_msgpack(snapshot)", encode_msgpack, snapshot)
            doc = snapshot  # the agent hands its map to the history: nothing decodes the payload
            if previous is not None:
                change = timed("history: delta()", delta, previous, doc, prior)
                rebuilt = timed("history: apply() the delta", apply, change, previous, prior)
                timed("history: encode the rebuilt record", encode_msgpack, rebuilt)
                timed("history: zlib 6 of the delta frame", zlib.compress, encode_msgpack({"d": change}), 6)
            timed("History.append, whole", history.append, snapshot["meta"]["wall_ns"], payload, snapshot)
            prior = dict(prior or {}, **{k: v for k, v in doc.items() if v is not None})
            previous = doc
            time.sleep(interval)
    finally:
        history.close()
        sockets.close()
        collector.close()
        shutil.rmtree(spool, ignore_errors=True)
    return {step: total / samples for step, total in costs.items()}


def _self_report(history, root):
    history.info()
    root.read_proc("self", "stat")
    root.read_proc("self", "statm")


def floor_per_sample(floor, table_every):
    """CPU seconds of the raw reads of an average sample when the tables are
    taken every ``table_every`` samples (None: never)."""
    return floor["system"] + (floor["tables"] / table_every if table_every else 0.0)


def profile_agent(args):
    """The agent under cProfile for ``args.samples`` samples after the warm-up;
    the profile covers the whole run (start-up included: its share is printed
    by function, so a reader can leave it out)."""
    import pstats

    path = os.path.abspath(args.profile)
    with AgentUnderTest(args.interval, args.table_every, profile_to=path) as agent:
        agent.wait_samples(DEFAULT_WARMUP_SAMPLES + args.samples, START_DEADLINE_S + args.samples * args.interval * 8)
        agent.proc.send_signal(signal.SIGTERM)
        agent.proc.wait(60)
    stats = pstats.Stats(path)
    total = stats.total_tt
    sys.stdout.write("total profiled CPU %.2f s over about %d samples\n"
                     % (total, DEFAULT_WARMUP_SAMPLES + args.samples))
    for order in ("tottime", "cumulative"):
        sys.stdout.write("\n-- by %s (share of the total)\n" % order)
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2 if order == "tottime" else 3], reverse=True)
        for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in rows[:args.top]:
            value = tottime if order == "tottime" else cumtime
            sys.stdout.write("%6.1f%%  %8.3f s  %9d  %s:%d(%s)\n" % (
                100 * value / total, value, calls, os.path.relpath(filename, HERE + "/..")
                if filename.startswith("/") else filename, line, name))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--table-every", type=int, default=5)
    parser.add_argument("--subscribe", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the agent under cProfile (its sampling thread) and write the "
                             "profile to FILE; print the top functions")
    parser.add_argument("--top", type=int, default=25, help="functions printed with --profile")
    parser.add_argument("--steps", action="store_true",
                        help="replay the agent's sample in this process and print each step's CPU")
    parser.add_argument("--load", action="store_true",
                        help="hold 1,000 extra processes and 2,000 loopback connections meanwhile")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.load:
            from connload import ConnLoad
            from procload import ProcessLoad

            stack.enter_context(ProcessLoad(1000))
            stack.enter_context(ConnLoad(2000, per_child=1000))
        if args.profile:
            return profile_agent(args)
        if args.steps:
            steps = step_costs(args.samples, args.table_every, args.interval)
            total = sum(v for k, v in steps.items() if not k.startswith("history:"))
            for step, cost in sorted(steps.items(), key=lambda kv: -kv[1]):
                sys.stdout.write("%8.2f ms  %5.1f%%  %s\n" % (cost * 1e3, 100 * cost / total, step))
            sys.stdout.write("%8.2f ms          sum of the steps the agent takes (history: steps are "
                             "parts of History.append)\n" % (total * 1e3))
            return 0
        result = measure_agent(args.interval, args.table_every, args.samples, subscribe=args.subscribe)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
