"""`diag agent`: the daemon that samples on a fixed schedule, keeps the history
and serves it (docs/protocol.md).

The main thread is the sampler and the only actor: signal handlers only put a
word in a queue, and the wait for the next tick is a wait on that queue, so a
SIGTERM or SIGHUP is acted on at once between samples and never during one.
The server runs its event loop in a thread of its own and receives each new
record from the sampler; nothing it does can hold a sample back.

Schedule: tick k is due at start + k x interval on the monotonic clock. A
collection that overruns its budget is logged and counted; ticks whose time
has passed are skipped (and counted), never taken late in a burst, so samples
never pile up and the schedule never drifts. The process and socket tables
are taken on every ``agent.table_every``-th tick (the Nth, 2Nth...); the
records between have ``processes``, ``sockets`` and ``cgroups`` null, and
``agent.tables_seq`` names the newest record that has them.

Exit codes (:mod:`hostdiag.apps.common`): 0 stopped by a signal; 1 could not
start (socket in use, spool locked, unusable TLS files); 2 bad usage or
configuration, an unreadable token file included (one line naming the key);
70 an internal error.
"""

import gc
import logging
import os
import queue
import signal
import socket
import sys
import time

from hostdiag import __version__
from hostdiag.apps.common import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArgumentParser, UsageError, add_root_options, host_root, read_token,
    run_command, setup_logging,
)

log = logging.getLogger("hostdiag.apps.agent")

# STATUS= for systemd is refreshed every this many ticks.
_STATUS_EVERY = 10


class StartError(Exception):
    """The agent cannot start: one line, exit 1."""


def build_parser():
    parser = ArgumentParser(prog="diag agent",
                            description="Sample this host on a fixed schedule, keep its history and serve it.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default $HOSTDIAG_CONFIG)")
    parser.add_argument("--interval", metavar="SECONDS", help="seconds between samples (agent.interval)")
    parser.add_argument("--spool-dir", metavar="DIR", help="on-disk history directory (spool.dir)")
    parser.add_argument("--unix-path", metavar="PATH", help="the Unix socket (server.unix_path)")
    parser.add_argument("--tcp-listen", metavar="HOST:PORT",
                        help="also listen on TCP there (tcp.listen, sets tcp.enabled)")
    parser.add_argument("--foreground", action="store_true",
                        help="log for a terminal (timestamps) instead of for journald (priority prefixes)")
    add_root_options(parser)
    return parser


def overrides_from(args):
    return {
        "agent.interval": args.interval,
        "spool.dir": args.spool_dir,
        "server.unix_path": args.unix_path,
        "tcp.listen": args.tcp_listen,
        "tcp.enabled": True if args.tcp_listen else None,
    }


class SdNotify:
    """sd_notify(3) over $NOTIFY_SOCKET; does nothing outside systemd."""

    def __init__(self, env=os.environ):
        address = env.get("NOTIFY_SOCKET")
        self.sock = None
        if not address:
            return
        if address[0] == "@":
            address = "\0" + address[1:]
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.connect(address)
        except OSError as exc:
            log.warning("NOTIFY_SOCKET %s unusable: %s", env.get("NOTIFY_SOCKET"), exc.strerror or exc)
            self.close()

    def notify(self, *states):
        if self.sock is None:
            return
        try:
            self.sock.send("\n".join(states).encode("utf-8", "replace"))
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc.strerror or exc)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Durations:
    """Last, mean and max of a series of durations, in seconds."""

    def __init__(self):
        self.count = 0
        self.total = 0.0
        self.last = None
        self.max = None

    def add(self, seconds):
        self.count += 1
        self.total += seconds
        self.last = seconds
        self.max = seconds if self.max is None else max(self.max, seconds)

    def as_dict(self):
        return {"last": self.last, "avg": self.total / self.count if self.count else None, "max": self.max}


def read_self_usage(self_root):
    """This process's CPU (user and system clock ticks since it started) and
    resident set (bytes), from /proc/self under ``self_root``; None when unreadable."""
    from hostdiag.sources.hostroot import SourceError

    try:
        stat = self_root.read_proc("self", "stat")
        statm = self_root.read_proc("self", "statm")
    except SourceError as exc:
        log.debug("self usage unreadable: %s", exc)
        return None
    fields = stat.rpartition(b")")[2].split()
    pages = statm.split()
    if len(fields) < 13 or len(pages) < 2:
        return None
    try:
        return {"utime_ticks": int(fields[11]), "stime_ticks": int(fields[12]),
                "rss_bytes": int(pages[1]) * os.sysconf("SC_PAGE_SIZE")}
    except ValueError:
        return None


def load_tls(cert, key, client_ca):
    from hostdiag.transport.listeners import server_tls_context

    try:
        return server_tls_context(cert, key, client_ca)
    except ValueError as exc:
        raise StartError(str(exc)) from None


def socket_directory_mode(socket_mode):
    """The mode of the directory the agent makes for its socket: search
    access for the classes the socket's own mode lets connect, no more."""
    mode = 0o700
    if socket_mode & 0o070:
        mode |= 0o050
    if socket_mode & 0o007:
        mode |= 0o005
    return mode


def make_socket_directory(path, socket_mode, group):
    """Make the directory of the socket ``path`` when it is missing: that
    directory only (the runtime directory, /run/hostdiag by default), with
    :func:`socket_directory_mode` and the socket's ``group``. A missing
    directory above it is a StartError: the agent does not build trees."""
    import grp

    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    if not os.path.isdir(parent):
        raise StartError("server.unix_path: %s is not a directory; the agent creates only the socket's own "
                         "directory (%s), in one that exists" % (parent, directory))
    mode = socket_directory_mode(socket_mode)
    try:
        gid = -1 if not group else int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise StartError("server.unix_group: no group named %r" % group) from None
    try:
        os.mkdir(directory, mode)
        os.chmod(directory, mode)  # mkdir's mode passes through the umask
        if gid != -1:
            os.chown(directory, -1, gid)
    except FileExistsError:
        return
    except OSError as exc:
        raise StartError("server.unix_path: cannot create %s: %s" % (directory, exc.strerror or exc)) from None
    log.info("created %s (mode %03o) for the socket", directory, mode)


def start_metrics(config):
    """The /metrics endpoint of docs/metrics.md, serving in a thread of its own."""
    from hostdiag.apps.config import parse_host_port
    from hostdiag.transport.metrics_http import MetricsLimits, MetricsServer

    m = config.metrics
    try:
        server = MetricsServer(parse_host_port(m.listen),
                               MetricsLimits(m.max_connections, m.max_request_bytes, m.timeout),
                               allow_remote=m.allow_remote)
    except (OSError, ValueError) as exc:
        raise StartError("metrics.listen %s: %s" % (m.listen, getattr(exc, "strerror", None) or exc)) from None
    server.start()
    return server


def listeners_from(config):
    from hostdiag.apps.config import parse_host_port
    from hostdiag.transport.listeners import Listener

    server = config.server
    make_socket_directory(server.unix_path, server.unix_mode, server.unix_group)
    listeners = [Listener("unix", path=server.unix_path, mode=server.unix_mode, group=server.unix_group)]
    if config.tcp.enabled:
        host, port = parse_host_port(config.tcp.listen)
        context = (load_tls(config.tcp.tls_cert, config.tcp.tls_key, config.tcp.tls_client_ca)
                   if config.tcp.tls_cert else None)
        listeners.append(Listener("tcp", host=host, port=port, ssl_context=context,
                                  token=read_token(config.tcp.token_file, "tcp.token_file")))
    return listeners


def limits_from(config):
    from hostdiag.transport.flow import Limits

    s = config.server
    return Limits(max_clients=s.max_clients, send_buffer_bytes=s.send_buffer_bytes,
                  read_timeout=s.read_timeout, max_frame_bytes=s.max_frame_bytes, full_every=s.full_every)


# Settings a SIGHUP applies at once; the others need a restart.
RELOADABLE = ("agent.interval", "agent.table_every", "agent.budget", "agent.budget_ratio",
              "server.max_clients", "server.send_buffer_bytes", "server.read_timeout",
              "server.max_frame_bytes", "server.full_every")


class Agent:
    """The daemon. :meth:`run` returns the exit code."""

    def __init__(self, config, root, config_path=None, overrides=None, env=os.environ):
        from hostdiag.sources.hostroot import HostRoot

        self.config = config
        self.root = root
        self.config_path = config_path
        self.overrides = overrides or {}
        self.env = env
        self.self_root = HostRoot()  # the agent's own /proc/self, whatever root it samples
        self.control = queue.SimpleQueue()
        self.notifier = SdNotify(env)
        self.started_wall_ns = time.time_ns()
        self.started_mono = time.monotonic()
        self.samples = 0
        self.tables_seq = None
        self.overruns = 0
        self.missed_ticks = 0
        self.errors = 0
        self.durations = Durations()
        self.table_durations = Durations()
        self.history = None
        self.server = None
        self.metrics = None
        self.incidents = None
        self.previous = None
        self.previous_tables = None
        self.sampler = None
        self.availability = None
        self.last_seq = None
        self.spool_degraded = None
        self.host = {}
        self.info_extra = {}

    # -- signals -----------------------------------------------------------

    def install_signals(self):
        put = self.control.put  # SimpleQueue.put is reentrant: safe in a handler
        signal.signal(signal.SIGTERM, lambda signum, frame: put("stop"))
        signal.signal(signal.SIGINT, lambda signum, frame: put("stop"))
        signal.signal(signal.SIGHUP, lambda signum, frame: put("reload"))

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        from hostdiag.apps.availability import Availability
        from hostdiag.sampler import Sampler
        from hostdiag.store import History, SpoolError
        from hostdiag.transport.server import AgentServer

        boot_id = self.host_boot_id()
        try:
            self.history = History.from_config(self.config, boot_id=boot_id)
        except SpoolError as exc:
            raise StartError("spool.dir: %s" % exc) from None
        except OSError as exc:
            raise StartError("spool.dir: %s: %s" % (self.config.spool.dir, exc.strerror or exc)) from None
        for problem in self.history.info().get("problems") or ():
            log.warning("history: %s", problem)
        self.sampler = Sampler(self.root, cgroup_depth=self.config.agent.cgroup_depth,
                               max_cgroups=self.config.agent.max_cgroups,
                               max_netns=self.config.agent.max_netns)
        self.availability = Availability(self.config, self.root)
        self.availability.start()
        if self.config.incidents.enabled:
            from hostdiag.apps.incident_recorder import IncidentRecorder

            self.incidents = IncidentRecorder(self.config, self.history, lambda: self.host)
        self.server = AgentServer(self.history, listeners_from(self.config), limits_from(self.config),
                                  describe=self.describe, incidents=self.incidents and self.incidents.store)
        try:
            self.server.start()
        except (OSError, ValueError) as exc:
            raise StartError("server: %s" % (getattr(exc, "strerror", None) or exc)) from None
        if self.config.metrics.enabled:
            self.metrics = start_metrics(self.config)
        # What exists now (the modules, pyroute2's among them, the sources, the
        # spool's index) lives as long as the agent: out of the cyclic
        # collector's sight, its full collections walk only what the samples
        # make (1.3-1.8 ms a sample down to 0.6 at 1,000 processes;
        # benchmarks/README.md).
        # Frozen objects are still freed when their last reference goes.
        gc.collect()
        gc.freeze()
        info = self.history.info()
        log.info("hostdiag agent %s started: agent %s, boot %s, next seq %s, interval %gs, tables every %d",
                 __version__, info["agent_id"], info["boot_id"], info.get("next_seq"),
                 self.config.agent.interval, self.config.agent.table_every)

    def host_boot_id(self):
        from hostdiag.sources.hostroot import SourceError

        try:
            raw = self.root.read_proc("sys", "kernel", "random", "boot_id")
        except SourceError as exc:
            log.warning("no boot id (%s): this run counts as a boot of its own", exc)
            return None
        return raw.decode("ascii", "replace").strip() or None

    def close(self):
        self.notifier.notify("STOPPING=1")
        if self.server is not None:
            self.server.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.sampler is not None:
            self.sampler.close()
        if self.availability is not None:
            self.availability.stop()
        if self.incidents is not None:
            self.incidents.close()
        if self.history is not None:
            self.history.close()
        self.notifier.close()

    def run(self):
        self.install_signals()
        try:
            self.start()
            self.loop()
        except StartError as exc:
            log.error("cannot start: %s", exc)
            return EXIT_FAILED
        except UsageError as exc:
            log.error("cannot start: %s", exc)
            return EXIT_USAGE
        finally:
            self.close()
        log.info("stopped after %d samples", self.samples)
        return EXIT_OK

    # -- the main loop -----------------------------------------------------

    def loop(self):
        anchor = time.monotonic()
        tick = 0
        ready = False
        while True:
            interval = self.config.agent.interval
            due = anchor + tick * interval
            command = self.wait_until(due)
            if command == "stop":
                log.info("stopping")
                return
            if command == "reload":
                if self.reload():
                    anchor, tick = time.monotonic(), 0
                continue
            late = time.monotonic() - due
            if late >= interval:
                skipped = int(late // interval)
                self.missed_ticks += skipped
                tick += skipped
                log.warning("%d tick(s) skipped: the agent was %.3f s late", skipped, late)
            # Tables on ticks N-1, 2N-1...: the first sample, which readiness
            # waits for, is the cheap one.
            with_tables = (tick + 1) % self.config.agent.table_every == 0
            with self.server.sampling():  # the server defers its work meanwhile
                sampled = self.sample(with_tables)
            if sampled and not ready:
                ready = True
                self.notifier.notify("READY=1", "STATUS=%s" % self.status())
            tick += 1
            self.notifier.notify("WATCHDOG=1")
            if ready and self.samples % _STATUS_EVERY == 0:
                self.notifier.notify("STATUS=%s" % self.status())

    def wait_until(self, due):
        """The next control command, or None once ``due`` (monotonic) has come."""
        remaining = due - time.monotonic()
        try:
            if remaining > 0:
                return self.control.get(timeout=remaining)
            return self.control.get_nowait()
        except queue.Empty:
            return None

    def status(self):
        info = self.info_extra
        return "seq %s, %d clients, %d overruns, %d errors" % (
            self.last_seq, info.get("clients", 0), self.overruns, self.errors)

    def reload(self):
        """Apply the settings file again; True when the schedule changed."""
        from hostdiag.apps.config import ConfigError, load_config

        try:
            new = load_config(self.config_path, self.env, self.overrides)
        except ConfigError as exc:
            log.error("reload refused, settings unchanged: %s", exc)
            return False
        old = self.config
        later = [name for name in _names() if name not in RELOADABLE and new[name] != old[name]
                 and not name.startswith("collector.")]
        if later:
            log.warning("reload: %s take effect at the next restart", ", ".join(later))
        self.config = _merge(old, new)
        self.server.set_limits(limits_from(self.config))
        changed = any(new[name] != old[name] for name in ("agent.interval", "agent.table_every"))
        log.info("reloaded %s", self.config_path or "settings")
        return changed

    # -- one sample --------------------------------------------------------

    def sample(self, with_tables):
        """Take, store and publish one snapshot; False when it failed."""
        from hostdiag.encode.wire import encode_msgpack
        from hostdiag.findings.stream import findings_section
        from hostdiag.store import Record

        started = time.monotonic()
        try:
            taken = self.sampler.sample(tables=with_tables)
            snapshot = taken.to_dict()
            if with_tables:
                # The table part: the tables, then the namespaces found from them.
                self.table_durations.add(self.sampler.table_seconds + (self.sampler.netns_seconds or 0.0))
            snapshot["agent"] = self.self_report(with_tables)
            snapshot["probes"], snapshot["slo"] = self.availability.sections(snapshot["meta"]["wall_ns"])
            rates, found = self.judge(taken, with_tables)
            # Judged once, here, and stored: the collector takes these
            # instead of running the rules again (findings/stream.py).
            snapshot["findings"] = None if found is None else findings_section(found)
            payload = encode_msgpack(snapshot)
            wall_ns = snapshot["meta"]["wall_ns"]
            seq = self.history.append(wall_ns, payload, snapshot)
            stored = self.history.newest_change(seq)
        except Exception:  # noqa: BLE001 - a failed sample is logged and counted; the next tick tries again
            self.errors += 1
            log.exception("sample failed")
            return False
        record = Record(self.history.boot_id, seq, wall_ns, payload)
        self.server.publish(record, snapshot, stored)
        if self.metrics is not None:
            self.metrics.publish(snapshot, rates, found or [])
        if self.incidents is not None and found is not None:  # a failed judgement says nothing either way
            self.incidents.observe(record, snapshot, found)
        self.samples += 1
        if with_tables:
            self.tables_seq = seq
        duration = time.monotonic() - started
        self.durations.add(duration)
        self.last_seq = seq
        budget = self.config.agent.budget
        if duration > budget:
            self.overruns += 1
            log.warning("sample %d took %.3f s, over its %.3f s budget", seq, duration, budget)
        self.note_spool(snapshot["agent"]["spool"])
        meta = snapshot["meta"]
        self.host = {"hostname": meta.get("hostname"), "kernel": meta.get("kernel"),
                     "boot_id": meta.get("boot_id")}
        # What info says about the agent: this sample's report, brought up to date.
        self.info_extra = dict(snapshot["agent"], samples=self.samples, sample_s=self.durations.as_dict(),
                               overruns=self.overruns, errors=self.errors, last_seq=seq)
        return True

    def judge(self, taken, with_tables):
        """(rates, findings) of the sample, for its ``findings`` section,
        /metrics and the incidents. A sample with tables is compared with the
        previous one that had them, so that the per-process rates span whole
        table intervals. Findings None: a rule failed (logged and counted; the
        sample is stored without them, and the collector judges it)."""
        from hostdiag.derive.rates import derive_rates
        from hostdiag.findings import evaluate

        base = self.previous_tables if with_tables else self.previous
        try:
            rates = derive_rates(base, taken) if base is not None else None
            found = evaluate(taken, rates, base)
        except Exception:  # noqa: BLE001 - a failing rule must not cost the sample itself
            self.errors += 1
            log.exception("findings failed")
            rates = found = None
        self.previous = taken
        if with_tables:
            self.previous_tables = taken
        return rates, found

    def note_spool(self, spool):
        """Say when the spool stops writing (the history goes on in memory) and when it recovers."""
        degraded = None if spool is None else spool.get("degraded")
        if degraded and not self.spool_degraded:
            log.warning("spool degraded, keeping history in memory only: %s", degraded)
        elif self.spool_degraded and not degraded:
            log.info("spool writing again")
        self.spool_degraded = degraded

    def self_report(self, with_tables):
        """The snapshot's ``agent`` section: the agent's own cost and health
        up to the previous sample (this one is not over yet)."""
        usage = read_self_usage(self.self_root)
        history = self.history.info()
        spool = history.get("spool")
        server_stats = self.server.stats if self.server is not None else {}
        config = self.config
        return {
            "version": __version__,
            "pid": os.getpid(),
            "agent_id": history.get("agent_id"),
            "started_wall_ns": self.started_wall_ns,
            "uptime_s": time.monotonic() - self.started_mono,
            "interval_s": config.agent.interval,
            "table_every": config.agent.table_every,
            "budget_s": config.agent.budget,
            "tables": with_tables,
            "tables_seq": self.tables_seq,
            "cpu": None if usage is None else {"utime_ticks": usage["utime_ticks"],
                                               "stime_ticks": usage["stime_ticks"]},
            "rss_bytes": None if usage is None else usage["rss_bytes"],
            "samples": self.samples,
            "sample_s": self.durations.as_dict(),
            "table_s": self.table_durations.as_dict(),
            "overruns": self.overruns,
            "missed_ticks": self.missed_ticks,
            "errors": self.errors,
            "clients": self.server.client_count() if self.server is not None else 0,
            "clients_dropped": server_stats.get("clients_dropped", 0),
            "spool": None if spool is None else {
                "bytes": spool.get("bytes"),
                "records": spool.get("records"),
                "degraded": spool.get("degraded"),
                "last_error": spool.get("last_error"),
            },
            "ring": history.get("ring"),
            "probes": self.availability.stats() if self.availability is not None else None,
            "incidents": self.incidents.marker() if self.incidents is not None else None,
        }

    def describe(self):
        """The agent's part of an info reply (called on the server's thread:
        it reads attributes the sampler replaces whole, never mutates)."""
        return {
            "host": dict(self.host, proc_root=self.root.proc_root, sys_root=self.root.sys_root,
                         live=self.root.live),
            "interval_s": self.config.agent.interval,
            "table_every": self.config.agent.table_every,
            "agent": self.info_extra,
        }


def _names():
    from hostdiag.apps.config import SETTINGS

    return [s.name for s in SETTINGS]


def _merge(old, new):
    """``new`` for the reloadable settings, ``old`` for the others."""
    from hostdiag.apps.config import Config

    values = {name: (new[name] if name in RELOADABLE else old[name]) for name in _names()}
    sources = {name: (new.source(name) if name in RELOADABLE else old.source(name)) for name in _names()}
    return Config(values, sources, new.path)


def main_agent(argv=None):
    """`diag agent ...`: parse the options, load the settings, run; the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("diag agent", lambda: _run(argv))


def _run(argv):
    from hostdiag.apps.config import load_config

    args = build_parser().parse_args(argv)
    overrides = overrides_from(args)
    config = load_config(args.config, os.environ, overrides)
    root = host_root(args)
    setup_logging(args.foreground)
    return Agent(config, root, args.config, overrides).run()


if __name__ == "__main__":
    sys.exit(main_agent())
