"""The `diag` command: the composition root that wires sources, model, derive,
encode and views together.

Exit codes are those of :mod:`hostdiag.apps.common`: 1 here is an unwritable
``--output`` or a broken build in `diag version`; 2 bad usage or a root that
does not exist or is not a procfs.
"""

import argparse
import os
import platform
import sys
import time

from hostdiag import __version__
from hostdiag.apps.common import (
    EXIT_FAILED, EXIT_OK, ArgumentParser, CommandFailed, add_root_options, host_root, run_command,
)
from hostdiag.apps.terminal import add_screen_options, report_width

COMMANDS = ("report", "version")
# The history `diag` asks the local agent for (the rules over history: a
# memory leak): HISTORY_POINTS samples with the process table, spread evenly
# over the last HISTORY_WINDOW_S. The agent must answer within
# HISTORY_TIMEOUT_S, and the fetch stops after HISTORY_BUDGET_S with what it
# has, so that the report stays quick; of each record only the process
# identities and RSS are kept. The agent takes its tables every
# `table_every`-th sample (at most HISTORY_MAX_SPAN records are read to
# find one).
DEFAULT_AGENT = "unix:/run/hostdiag/agent.sock"
HISTORY_WINDOW_S = 300
HISTORY_POINTS = 15
HISTORY_TIMEOUT_S = 0.5
HISTORY_BUDGET_S = 2.0
HISTORY_MAX_SPAN = 60
# Commands with parsers of their own: `diag NAME ARGS` runs module.function(ARGS).
DELEGATED = {
    "agent": ("hostdiag.apps.agent", "main_agent"),
    "collector": ("hostdiag.apps.collector", "main_collector"),
    "show": ("hostdiag.apps.history", "main_show"),
    "diff": ("hostdiag.apps.history", "main_diff"),
    "history": ("hostdiag.apps.history", "main_history"),
    "fleet": ("hostdiag.apps.fleet", "main_fleet"),
    "top": ("hostdiag.apps.top", "main_top"),
    "replay": ("hostdiag.apps.replay", "main_replay"),
    "service": ("hostdiag.apps.service", "main_service"),
    "slo": ("hostdiag.apps.slo", "main_slo"),
    "incidents": ("hostdiag.apps.incidents", "main_incidents"),
    "incident": ("hostdiag.apps.incidents", "main_incident"),
}


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds, got %r" % text) from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds, got %s" % text)
    return value


COMMAND_SUMMARIES = (
    ("report", "two snapshots an interval apart, one screen (the default)"),
    ("version", "versions and which parser implementation is live"),
    ("agent", "run the sampling agent with its history and server"),
    ("collector", "pull snapshots from agents into a local store"),
    ("show", "the report for a past moment, from an agent or a collector store"),
    ("diff", "what changed between two moments"),
    ("history", "what history is kept: ranges, gaps and boots"),
    ("fleet", "across a collector store's hosts: hosts, findings, top processes or connections"),
    ("top", "the host live, full screen: findings, CPU, memory, disks, network, processes"),
    ("replay", "step through history on the top screen, a sample or a minute at a time"),
    ("service", "install or remove the agent as a systemd service (--dry-run, --root DIR)"),
    ("slo", "availability, error budget and burn rates of the agent's probes"),
    ("incidents", "the incidents the agent tracked: id, start, end, duration, title, severity"),
    ("incident", "one incident's report in Markdown or JSON: what, when, why, how users were affected"),
)


REPORT_DESCRIPTION = ("Linux host diagnostics: two snapshots of the kernel's accounting an interval apart, "
                      "and what is saturated, erroring or dying.")


def _add_report_options(report):
    report.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                        help="seconds between the two snapshots; 0 takes one snapshot, no rates (default 1)")
    report.add_argument("--format", choices=("text", "json", "msgpack"), default="text")
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    add_screen_options(report)
    report.add_argument("--no-netlink", action="store_true",
                        help="read links and sockets from /proc/net instead of netlink")
    report.add_argument("--no-tables", action="store_true",
                        help="skip the process and socket tables (their sections are null)")
    report.add_argument("--agent", default=DEFAULT_AGENT, metavar="ADDRESS",
                        help="the local agent asked for the last %d minutes of history, if it answers within "
                             "%.1f s (default %s)" % (HISTORY_WINDOW_S // 60, HISTORY_TIMEOUT_S, DEFAULT_AGENT))
    report.add_argument("--no-history", action="store_true",
                        help="do not ask the agent for history (the rules over history stay quiet)")
    report.add_argument("--version", action="store_true",
                        help="print the version (the first line of `diag version`) and exit")
    add_root_options(report)


def build_parser():
    """The parser of `diag report` and `diag version` (the other commands
    have parsers of their own, see DELEGATED)."""
    summaries = dict(COMMAND_SUMMARIES)
    parser = ArgumentParser(prog="diag")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    _add_report_options(sub.add_parser("report", prog="diag [report]", help=summaries["report"],
                                       description=REPORT_DESCRIPTION))
    add_root_options(sub.add_parser("version", help=summaries["version"]))
    return parser


def full_help():
    """`diag --help`: the report's usage and options (it is the default
    command), then every command."""
    report = ArgumentParser(prog="diag [report]", description=REPORT_DESCRIPTION)
    _add_report_options(report)
    commands = "\n".join("  %-10s %s" % (name, summary) for name, summary in COMMAND_SUMMARIES)
    return "%s\ncommands:\n%s\n\n`diag COMMAND --help` shows a command's options.\n" % (report.format_help(),
                                                                                        commands)


def parse_args(argv):
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS + tuple(DELEGATED):
        argv.insert(0, "report")
    return build_parser().parse_args(argv)


def version_line():
    return "hostdiag %s" % __version__


def cmd_version(args, out):
    from hostdiag import parsers
    from hostdiag.encode import delta  # noqa: F401  (registers its compiled pair in parsers.TWINS)

    root = host_root(args)
    try:
        kernel = root.read_proc("sys", "kernel", "osrelease").decode("utf-8", "replace").strip()
    except Exception as exc:  # noqa: BLE001 - reported in the output, not swallowed
        kernel = "unknown (%s)" % exc
    lines = [
        version_line(),
        "python %s (%s)" % (platform.python_version(), platform.python_implementation()),
        "kernel %s" % kernel,
        "parsers %s" % parsers.implementation(),
    ]
    for module, (impl, reason) in sorted(parsers.TWINS.items()):
        lines.append("  %s: %s (%s)" % (module, impl, reason))
    from hostdiag.sources.privileges import privilege_lines

    lines.extend(privilege_lines(root))
    broken = parsers.implementation() != "compiled" and not parsers.pure_forced()
    if broken:
        lines.append("WARNING: the compiled parsers failed to load; this build is broken")
    out.write(("\n".join(lines) + "\n").encode())
    return EXIT_FAILED if broken else EXIT_OK


def cmd_report(args, out):
    from hostdiag.derive.rates import derive_rates
    from hostdiag.encode.wire import encode_json, encode_msgpack
    from hostdiag.findings import evaluate
    from hostdiag.sampler import Sampler
    from hostdiag.views.report import render_text
    from hostdiag.views.report_tables import socket_inodes_shown

    root = host_root(args)
    with Sampler(root, netlink=not args.no_netlink, tables=not args.no_tables) as sampler:
        if args.interval > 0:
            previous = sampler.sample()
            time.sleep(max(0.0, args.interval - (time.monotonic_ns() - previous.meta.mono_ns) / 1e9))
            current = sampler.sample(kmsg=True)
            rates = derive_rates(previous, current)
        else:
            current = sampler.sample(kmsg=True)
            previous = rates = None
        if current.sockets is not None:
            sampler.add_socket_owners(current, socket_inodes_shown(current, rates))
    history = None
    if not args.no_history and root.live and current.processes is not None:
        history = agent_history(args.agent, current.meta.boot_id, current.meta.wall_ns)
    findings = evaluate(current, rates, previous, history=history)
    if args.format == "text":
        color = args.output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        width = report_width(args, sys.stdout if args.output is None else None)
        payload = render_text(current, rates, findings, color=color, width=width, full=args.full).encode()
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


def _slim(snapshot):
    """What the rules over history read of a stored snapshot (a plain dict):
    its meta and its processes' identities and RSS; None without a process table."""
    records = (snapshot.get("processes") or {}).get("processes") if isinstance(snapshot, dict) else None
    if not isinstance(records, list):
        return None
    keep = ("pid", "start_time", "rss_bytes")
    return {"meta": snapshot.get("meta"),
            "processes": {"processes": [{k: r.get(k) for k in keep} for r in records if isinstance(r, dict)]}}


def agent_history(address, boot_id, wall_ns):
    """Up to HISTORY_POINTS snapshots of this boot (slimmed, oldest first)
    from the last HISTORY_WINDOW_S that the agent at ``address`` holds; []
    when no agent answers in time. An agent that fails midway leaves what
    was read."""
    from hostdiag.transport.client import AgentClient
    from hostdiag.transport.protocol import ProtocolError

    deadline = time.monotonic() + HISTORY_BUDGET_S
    try:
        client = AgentClient.connect(address, timeout=HISTORY_TIMEOUT_S)
    except (OSError, ValueError, ProtocolError):
        return []
    kept = []

    def budget_left():
        # The short timeout proved the agent answers; a reply may take the rest of the budget.
        left = deadline - time.monotonic()
        client.sock.settimeout(max(left, 0.01))
        return left > 0

    try:
        with client:
            budget_left()
            span = client.info().get("table_every")
            span = span if isinstance(span, int) and 0 < span <= HISTORY_MAX_SPAN else 1
            budget_left()
            first = client.range_page(from_ns=wall_ns - HISTORY_WINDOW_S * 1_000_000_000, boot_id=boot_id,
                                      limit=1)
            if not first.records or not isinstance(first.newest_seq, int):
                return []
            seq, newest = first.records[0].seq, first.newest_seq
            step = max(span, (newest - seq) // HISTORY_POINTS)
            while seq <= newest and budget_left():
                page = client.range_page(from_seq=seq, to_seq=min(seq + span - 1, newest), boot_id=boot_id,
                                         limit=span)
                slim = next((s for s in (_slim(r.snapshot) for r in page.records) if s is not None), None)
                if slim is not None:
                    kept.append(slim)
                seq += step
    except (OSError, ProtocolError):
        pass
    return kept


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module, function = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:])
    return run_command("diag", lambda: _run(argv))


def _run(argv):
    out = sys.stdout.buffer
    if argv and argv[0] in ("-h", "--help"):
        out.write(full_help().encode())
        return EXIT_OK
    args = parse_args(argv)
    if args.command == "report" and args.version:
        out.write((version_line() + "\n").encode())
        return EXIT_OK
    return HANDLERS[args.command](args, out)


if __name__ == "__main__":
    sys.exit(main())
