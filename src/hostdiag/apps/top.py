"""`diag top`: the live screen (:mod:`hostdiag.views.top`), fed by this
host's own sampler or by an agent's newest records.

    diag top [--interval S]                 sample this host every S seconds
    diag top --agent unix:PATH              follow an agent (it samples; we only read)
    diag top --once [--width N]             print one screen and exit (no terminal needed)

Reading the host: two samples an interval apart give the first rates, as
`diag` does. Following an agent: each frame is the agent's newest record with
the rates from the record before it and the process table of the nearest
record that has one (the agent takes tables every few records), found as
`diag show` finds a moment; nothing is sampled here.

Exit codes (:mod:`hostdiag.apps.common`): 0 done; 1 the agent cannot be
reached; 2 bad usage, one line.
"""

import sys
import time

from hostdiag.apps.common import EXIT_OK, ArgumentParser, UsageError, add_root_options, host_root, run_command
from hostdiag.views.top import INTERVALS, SORTS, TopState, render_screen, run_screen

DEFAULT_INTERVAL_S = 1.0

#: Lines of the --once screen by default: one 80x40 terminal.
ONCE_HEIGHT = 40


class HostFrames:
    """Frames from this host: a sample each call, the rates and findings
    from the one before."""

    def __init__(self, root, netlink):
        from hostdiag.sampler import Sampler

        self.sampler = Sampler(root, netlink=netlink, tables=True)
        self.previous = None

    def __call__(self):
        from hostdiag.derive.rates import derive_rates
        from hostdiag.findings import evaluate

        current = self.sampler.sample()
        rates = derive_rates(self.previous, current) if self.previous is not None else None
        findings = evaluate(current, rates, self.previous)
        self.previous = current
        return {"snapshot": current.to_dict(), "rates": rates, "findings": findings, "source": "this host",
                "note": None if rates is not None else "rates from the next sample"}

    def close(self):
        self.sampler.close()


class AgentFrames:
    """Frames from an agent: its newest record as a `diag show` moment. The
    frame is built again only when the agent has a newer record."""

    def __init__(self, history):
        self.history = history
        self.shown = None
        self.frame = None

    def __call__(self):
        from hostdiag.transport.protocol import ProtocolError

        try:
            return self._newest()
        except (OSError, ProtocolError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return dict(self.frame or {"source": self.history.label()},
                        note="cannot read the agent (%s); showing the last frame" % reason)

    def _newest(self):
        from hostdiag.apps.history_readers import find_moment

        self.history.info = self.history.client.info()
        newest = (self.history.info.get("boot_id"), self.history.info.get("newest_seq"))
        if newest[1] is None:
            return {"source": self.history.label(), "note": "the agent has no record yet"}
        if newest != self.shown:
            moment = find_moment(self.history, time.time_ns())
            self.frame = {"snapshot": moment.snapshot.to_dict(), "rates": moment.rates,
                          "findings": moment.findings, "source": "%s seq %d" % (self.history.label(),
                                                                                moment.record.seq),
                          "note": _moment_note(moment)}
            self.shown = newest
        return self.frame

    def close(self):
        self.history.close()


def _moment_note(moment):
    if moment.tables is None:
        return None
    return "processes from seq %d, %.1fs %s" % (
        moment.tables.seq, abs(moment.tables.wall_ns - moment.record.wall_ns) / 1e9,
        "before" if moment.tables.wall_ns <= moment.record.wall_ns else "after")


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        raise UsageError("--interval: must be a number of seconds, got %r" % text) from None
    if not INTERVALS[0] <= value <= INTERVALS[-1]:
        raise UsageError("--interval: must be %g to %g seconds, got %r" % (INTERVALS[0], INTERVALS[-1], text))
    return value


def _size(option):
    def read(text):
        if not text.isdigit() or int(text) < 20:
            raise UsageError("%s: must be a whole number of at least 20, got %r" % (option, text))
        return int(text)
    return read


def build_parser():
    parser = ArgumentParser(prog="diag top", description="The host live: findings, CPU, memory, disks, network "
                            "and the top processes, refreshed every interval. Keys: c cpu, m mem, i io, "
                            "f faults (sort); / filter by name or user; space pause; + - interval; q quit.")
    parser.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL_S, metavar="S",
                        help="seconds between frames (default %g)" % DEFAULT_INTERVAL_S)
    parser.add_argument("--sort", choices=[name for name, _ in SORTS.values()], default="cpu",
                        help="the first sort of the processes (default cpu)")
    parser.add_argument("--filter", default="", metavar="TEXT", help="only processes whose name or user holds TEXT")
    parser.add_argument("--once", action="store_true",
                        help="print one screen (after two samples) and exit; no terminal needed")
    parser.add_argument("--width", type=_size("--width"), default=80, metavar="N", help="with --once (default 80)")
    parser.add_argument("--height", type=_size("--height"), default=ONCE_HEIGHT, metavar="N",
                        help="with --once (default %d)" % ONCE_HEIGHT)
    parser.add_argument("--no-netlink", action="store_true", help="read links from /proc/net, not netlink")
    group = parser.add_argument_group("following an agent instead of sampling")
    group.add_argument("--agent", metavar="ADDRESS", help="unix:PATH or tcp:HOST:PORT")
    group.add_argument("--token-file", metavar="FILE", help="token for a tcp: agent")
    group.add_argument("--tls-ca", metavar="FILE", help="CA to check a TLS agent's certificate")
    add_root_options(parser)
    return parser


def _frames(args):
    if args.agent:
        from hostdiag.apps.common import client_address
        from hostdiag.apps.history_readers import connect_agent

        return AgentFrames(connect_agent(client_address(args.agent, args.tls_ca), args.token_file, args.tls_ca,
                                         None))
    return HostFrames(host_root(args), netlink=not args.no_netlink)


def main_top(argv):
    """`diag top`: the exit code."""
    def body():
        args = build_parser().parse_args(argv)
        if not args.once and not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError("the live screen needs a terminal; --once prints one screen")
        state = TopState(args.interval, sort=next(k for k, (name, _) in SORTS.items() if name == args.sort))
        state.filter = args.filter
        frames = _frames(args)
        try:
            if args.once:
                frame = frames()
                if frame.get("rates") is None and isinstance(frames, HostFrames):
                    time.sleep(args.interval)
                    frame = frames()
                sys.stdout.write("\n".join(render_screen(frame, state, args.width, args.height)) + "\n")
            else:
                run_screen(frames, state)
        finally:
            frames.close()
        return EXIT_OK

    return run_command("diag top", body)
