"""The `diag` command: the composition root that wires sources, model, derive,
encode and views together.

Exit codes: 0 success; 1 the command could not do its job (unwritable output,
broken build in `diag version`); 2 bad usage or a root that is not a procfs;
70 an internal error (reported in one line; HOSTDIAG_DEBUG=1 shows the trace);
130 interrupted.
"""

import argparse
import os
import platform
import sys
import time

from hostdiag import __version__
from hostdiag.apps.common import report_internal_error

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

COMMANDS = ("report", "version")
# Commands with parsers of their own: `diag NAME ARGS` runs module.function(ARGS).
DELEGATED = {
    "agent": ("hostdiag.apps.agent", "main_agent"),
    "collector": ("hostdiag.apps.collector", "main_collector"),
    "show": ("hostdiag.apps.history", "main_show"),
    "diff": ("hostdiag.apps.history", "main_diff"),
    "history": ("hostdiag.apps.history", "main_history"),
}


class UsageError(Exception):
    """Bad arguments or an unusable root: one line, exit 2."""


class CommandFailed(Exception):
    """The command could not do its job: one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds, got %r" % text) from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds, got %s" % text)
    return value


def _add_root_options(parser):
    group = parser.add_argument_group("host roots")
    group.add_argument("--proc-root", default="/proc", metavar="DIR",
                       help="where the host's procfs is mounted (default /proc)")
    group.add_argument("--sys-root", default="/sys", metavar="DIR",
                       help="where the host's sysfs is mounted (default /sys)")
    group.add_argument("--rootfs", default="/", metavar="DIR",
                       help="the host's root filesystem, for os-release and /dev/kmsg (default /)")


def build_parser():
    parser = _Parser(prog="diag", description="Linux host diagnostics. With no command: `diag report`.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary in (
        ("agent", "run the sampling agent with its history and server"),
        ("collector", "pull snapshots from agents into a local store"),
        ("show", "the report for a past moment, from an agent or a collector store"),
        ("diff", "what changed between two moments"),
        ("history", "what history is kept: ranges, gaps and boots"),
    ):
        sub.add_parser(name, help=summary, add_help=False)

    report = sub.add_parser("report", help="two snapshots an interval apart, one screen (default)")
    report.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                        help="seconds between the two snapshots; 0 takes one snapshot, no rates (default 1)")
    report.add_argument("--format", choices=("text", "json", "msgpack"), default="text")
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    report.add_argument("--no-netlink", action="store_true",
                        help="read links and sockets from /proc/net instead of netlink")
    report.add_argument("--no-tables", action="store_true",
                        help="skip the process and socket tables (their sections are null)")
    _add_root_options(report)

    version = sub.add_parser("version", help="versions and which parser implementation is live")
    _add_root_options(version)
    return parser


def parse_args(argv):
    argv = list(argv)
    if not argv or (argv[0] not in COMMANDS + tuple(DELEGATED) and argv[0] not in ("-h", "--help")):
        argv.insert(0, "report")
    return build_parser().parse_args(argv)


def _root(args):
    from hostdiag.sources.hostroot import HostRoot

    root = HostRoot(args.proc_root, args.sys_root, args.rootfs)
    if not root.looks_like_procfs():
        raise UsageError("%s is not a procfs (it has no stat and meminfo)" % root.proc_root)
    return root


def cmd_version(args, out):
    from hostdiag import parsers

    root = _root(args)
    try:
        kernel = root.read_proc("sys", "kernel", "osrelease").decode("utf-8", "replace").strip()
    except Exception as exc:  # noqa: BLE001 - reported in the output, not swallowed
        kernel = "unknown (%s)" % exc
    lines = [
        "hostdiag %s" % __version__,
        "python %s (%s)" % (platform.python_version(), platform.python_implementation()),
        "kernel %s" % kernel,
        "parsers %s" % parsers.implementation(),
    ]
    for module, (impl, reason) in sorted(parsers.TWINS.items()):
        lines.append("  %s: %s (%s)" % (module, impl, reason))
    broken = parsers.implementation() != "compiled" and not parsers.pure_forced()
    if broken:
        lines.append("WARNING: the compiled parsers failed to load; this build is broken")
    out.write(("\n".join(lines) + "\n").encode())
    return EXIT_FAILED if broken else EXIT_OK


def cmd_report(args, out):
    from hostdiag.sampler.system import SystemCollector
    from hostdiag.derive.rates import derive_rates
    from hostdiag.encode.wire import encode_json, encode_msgpack
    from hostdiag.findings.rules import evaluate
    from hostdiag.views.report import render_text

    root = _root(args)
    with SystemCollector(root, use_netlink=not args.no_netlink) as collector, \
            _tables(root, args) as tables:
        if args.interval > 0:
            previous = _sample(collector, tables)
            time.sleep(max(0.0, args.interval - (time.monotonic_ns() - previous.meta.mono_ns) / 1e9))
            current = _sample(collector, tables, kmsg=True)
            rates = derive_rates(previous, current)
        else:
            current = _sample(collector, tables, kmsg=True)
            rates = None
        _add_socket_owners(tables, current, rates)
    findings = evaluate(current, rates)
    if args.format == "text":
        color = args.output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        payload = render_text(current, rates, findings, color=color).encode()
    else:
        document = {
            "schema_version": current.meta.schema_version,
            "interval_s": args.interval,
            "snapshot": current.to_dict(),
            "rates": rates,
            "findings": findings,
        }
        payload = encode_json(document) if args.format == "json" else encode_msgpack(document)
    if args.output:
        _write_file(args.output, payload)
    else:
        out.write(payload)
    return EXIT_OK


def _tables(root, args):
    """The process and socket tables, or a stand-in that collects nothing (--no-tables)."""
    if args.no_tables:
        import contextlib

        return contextlib.nullcontext()
    from hostdiag.sampler.tables import TableCollector

    return TableCollector(root, netlink=not args.no_netlink)


def _sample(collector, tables, kmsg=False):
    """One snapshot: the tables (if any) first, then the system sections, whose
    start dates the snapshot (see hostdiag.sampler.tables)."""
    if tables is None:
        return collector.collect(kmsg=kmsg)
    from hostdiag.sampler.tables import attach
    from hostdiag.sources.problems import Problems

    problems = Problems()
    processes, sockets = tables.collect(problems)
    return attach(collector.collect(kmsg=kmsg), processes, sockets, problems)


def _add_socket_owners(tables, snapshot, rates):
    """The processes holding the sockets the report will show, as
    ``snapshot.sockets["owners"]``: found on demand, for those sockets only."""
    if tables is None or snapshot.sockets is None:
        return
    from hostdiag.sampler.tables import add_errors
    from hostdiag.sources.problems import Problems
    from hostdiag.views.report import socket_inodes_shown

    problems = Problems()
    snapshot.sockets["owners"] = tables.owners(socket_inodes_shown(snapshot, rates), problems)
    add_errors(snapshot, problems)


def _write_file(path, payload):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as cleanup:
            raise CommandFailed("cannot write %s: %s (and %s)" % (path, exc.strerror, cleanup.strerror))
        raise CommandFailed("cannot write %s: %s" % (path, exc.strerror or exc)) from None


HANDLERS = {"report": cmd_report, "version": cmd_version}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = sys.stdout.buffer
    try:
        if argv and argv[0] in DELEGATED:
            import importlib

            module, function = DELEGATED[argv[0]]
            return getattr(importlib.import_module(module), function)(list(argv[1:]))
        args = parse_args(argv)
        return HANDLERS[args.command](args, out)
    except UsageError as exc:
        sys.stderr.write("diag: error: %s\n" % exc)
        return EXIT_USAGE
    except CommandFailed as exc:
        sys.stderr.write("diag: %s\n" % exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (diag | head); nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a trace
        report_internal_error("diag", exc)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
