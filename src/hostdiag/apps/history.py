"""`diag show`, `diag diff` and `diag history`: the past of a host, from its
agent's socket or from a collector's store.

    diag show --at TIME [--window N]      the `diag` report of a past moment
    diag diff A B                         what changed between two moments
    diag history                          what is kept: boots, ranges, gaps
    diag history --metric PATH            one metric over a range, a row per bucket

A moment is the record nearest at or before TIME, and the record N seconds
before it (default: the record just before it) for the rates; the report is
the same text `diag` prints live (findings, rates, sections). TIME is read
by :mod:`hostdiag.apps.timespec`; where history comes from, by
:func:`hostdiag.apps.history_readers.open_history`. This module only wires
the commands: readers, :mod:`hostdiag.derive.diff` and the views.

Exit codes (:mod:`hostdiag.apps.common`): 0 done; 1 could not do it (no
agent, no store, nothing kept at that time); 2 bad usage or configuration,
one line.
"""

import json
import os
import re
import sys
import time
from math import ceil

from hostdiag.apps.common import EXIT_OK, ArgumentParser, CommandFailed, UsageError, run_command
from hostdiag.apps.history_readers import (add_source_options, find_moment, open_history, table_records,
                                           time_gaps, typed_snapshot)
from hostdiag.apps.terminal import add_screen_options, report_width
from hostdiag.apps.timespec import NS, parse_span, parse_time
from hostdiag.derive.buckets import (MAX_BUCKETS, RATES_PREFIX, bucket_count, bucketize, metric_value,
                                     numeric_paths)
from hostdiag.derive.buckets import summary as bucket_summary
from hostdiag.derive.diff import DIFF_TOP, diff_moments
from hostdiag.findings import filesystem_usage
from hostdiag.views.diff import render_diff
from hostdiag.views.history import render_history, render_show
from hostdiag.views.plot import render_range_csv, render_range_plot, render_range_svg, render_range_table
from hostdiag.views.timefmt import format_time


def _want_color(fmt):
    return fmt == "text" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def show_document(history, moment):
    return {"source": history.describe(), **moment.summary(), "snapshot": moment.record.snapshot,
            "rates": moment.rates, "findings": moment.findings}


def compute_diff(history, moment_a, moment_b, top=DIFF_TOP):
    """The whole diff as plain data: where and when, then the changes."""
    return {"source": history.describe(), "a": moment_a.summary(), "b": moment_b.summary(),
            **diff_moments(moment_a, moment_b, table_records(history, moment_a.record),
                           table_records(history, moment_b.record), filesystem_usage, top)}


def history_document(history, from_ns=None, to_ns=None):
    """Boots, seq gaps, what is kept and, when ``from_ns`` is given, the time
    gaps from ``from_ns`` to ``to_ns`` (default now)."""
    boots = history.boots(counts=True) if history.kind == "agent" else history.boots()
    document = {"source": history.describe(), "boots": boots, "gaps": history.gaps(),
                "retention": history.retention()}
    if from_ns is not None:
        to_ns = time.time_ns() if to_ns is None else to_ns
        gaps, interval = time_gaps(history, from_ns, to_ns)
        document.update(time_gaps=gaps, interval_s=interval, from_ns=from_ns, to_ns=to_ns)
    return document


#: Rows of a --metric table when --every is not given.
DEFAULT_ROWS = 60


def range_document(history, paths, from_ns, to_ns, every_s):
    """Each metric path over the records kept from ``from_ns`` to ``to_ns``,
    in buckets of ``every_s`` seconds (derive.buckets). Rates, when a path
    asks for them, are those between consecutive records of one boot. Every
    record is read once. UsageError naming a path no record has a number at."""
    from hostdiag.derive.rates import derive_rates
    from hostdiag.model.snapshot import Snapshot

    want_rates = any(path.startswith(RATES_PREFIX) for path in paths)
    samples = {path: [] for path in paths}
    previous = previous_typed = None
    last = last_rates = None
    for record in history.records_between(from_ns, to_ns):
        rates = None
        if want_rates:
            typed = typed_snapshot(Snapshot, record)
            if previous is not None and previous.boot_id == record.boot_id:
                rates = derive_rates(previous_typed, typed)
            previous, previous_typed = record, typed
        for path in paths:
            samples[path].append((record.wall_ns, metric_value(record.snapshot, rates, path)))
        last, last_rates = record, rates if rates is not None else last_rates
    if last is None:
        raise CommandFailed("%s keeps nothing from %s to %s" % (history.label(), format_time(from_ns),
                                                               format_time(to_ns)))
    metrics = []
    for path in paths:
        if all(value is None for _, value in samples[path]):
            raise UsageError(_no_metric(path, last.snapshot, last_rates))
        buckets = bucketize(samples[path], from_ns, to_ns, every_s)
        metrics.append({"path": path, "buckets": buckets, "summary": bucket_summary(buckets)})
    return {"source": history.describe(), "from_ns": from_ns, "to_ns": to_ns, "every_s": every_s,
            "metrics": metrics}


def _no_metric(path, snapshot, rates):
    """The one-line error for a path with no number, with close paths."""
    if path.startswith(RATES_PREFIX):
        known = [RATES_PREFIX + p for p in numeric_paths(rates or {})]
    else:
        known = numeric_paths(snapshot)
    leaf = path.rsplit(".", 1)[-1].lower()
    close = [p for p in known if p.lower().endswith("." + leaf) or p.lower() == leaf][:4]
    hint = ("; did you mean %s?" % ", ".join(close)) if close else (
        "; paths look like rates.cpu.total.busy_pct or memory.meminfo.MemAvailable")
    return "--metric %s: no record in the range has a number there%s" % (path, hint)


def _write_file(path, text):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise CommandFailed("--svg %s: %s" % (path, exc.strerror or exc)) from None


def _seconds(option):
    """An argparse type: seconds more than 0 for ``option``, errors naming it."""
    def read(text):
        try:
            value = parse_span(text)
        except ValueError:
            raise UsageError("%s: must be seconds or a duration like 30s or 5m, got %r" % (option, text)) from None
        if value <= 0:
            raise UsageError("%s: must be more than 0 seconds, got %r" % (option, text))
        return value
    return read


_window = _seconds("--window")


def time_option(option, text, now_ns):
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise UsageError("%s: %s" % (option, exc)) from None


def _emit(text):
    sys.stdout.write(text)
    sys.stdout.flush()


#: How far back `diag history` reads records for time gaps by default: each
#: record is read (the agent sends it whole), so an hour at 10 s is 360.
DEFAULT_GAPS_FROM = "-1h"

_RELATIVE_ARG = re.compile(r"^-[0-9.]")


def protect_relative(argv):
    """argparse reads "-10m" as an unknown option; with a leading space it
    reads it as a value (argparse never takes an argument containing a space
    for an option), and parse_time strips the space."""
    return [" " + arg if _RELATIVE_ARG.match(arg) else arg for arg in argv]


def _run(prog, argv, build, act, check=None):
    """Parse, check the arguments (``check(args)``, before any connection),
    open the history, act; the exit code, errors as one line."""
    def body():
        from hostdiag.transport.protocol import ProtocolError

        args = build().parse_args(protect_relative(argv))
        if check is not None:
            check(args)
        history = open_history(args)
        try:
            _emit(act(args, history))
        except (OSError, ProtocolError) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            raise CommandFailed("%s: %s" % (history.label(), getattr(exc, "strerror", None) or exc)) from None
        finally:
            history.close()
        return EXIT_OK

    return run_command(prog, body)


def _json(document):
    return json.dumps(document, indent=2, default=str) + "\n"


def main_show(argv):
    """`diag show --at TIME [--window N] [--format text|json]`: the exit code."""
    def build():
        parser = ArgumentParser(prog="diag show", description="The diag report of a past moment.")
        parser.add_argument("--at", default="now", metavar="TIME",
                            help="ISO-8601, epoch seconds, or relative like -10m (default now)")
        parser.add_argument("--window", type=_window, default=None, metavar="N",
                            help="rates over the N seconds before the record (default: from the record before)")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        add_screen_options(parser)
        add_source_options(parser)
        return parser

    def check(args):
        args.asked_ns = time_option("--at", args.at, time.time_ns())

    def act(args, history):
        moment = find_moment(history, args.asked_ns, args.window)
        if args.format == "json":
            return _json(show_document(history, moment))
        return render_show(history.label(), moment, color=_want_color(args.format),
                           width=report_width(args, sys.stdout), full=args.full)

    return _run("diag show", argv, build, act, check)


def main_diff(argv):
    """`diag diff A B`: the exit code."""
    def build():
        parser = ArgumentParser(prog="diag diff", description="What changed between two moments.")
        parser.add_argument("a", metavar="A", help="the earlier moment (a TIME, as for diag show --at)")
        parser.add_argument("b", metavar="B", nargs="?", default="now", help="the later moment (default now)")
        parser.add_argument("--window", type=_window, default=None, metavar="N",
                            help="rates at each moment over N seconds (default: from the record before)")
        parser.add_argument("--top", type=int, default=DIFF_TOP, metavar="N", help="counters shown (default 15)")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        add_source_options(parser)
        return parser

    def check(args):
        now = time.time_ns()
        args.asked_a, args.asked_b = time_option("A", args.a, now), time_option("B", args.b, now)
        if args.asked_a > args.asked_b:
            raise UsageError("A (%s, %s) is after B (%s, %s): give the earlier moment first"
                             % (args.a.strip(), format_time(args.asked_a), args.b.strip(), format_time(args.asked_b)))
        if args.top < 1:
            raise UsageError("--top: must be at least 1")

    def act(args, history):
        moment_a = find_moment(history, args.asked_a, args.window)
        moment_b = find_moment(history, args.asked_b, args.window)
        diff = compute_diff(history, moment_a, moment_b, args.top)
        if args.format == "json":
            return _json(diff)
        return render_diff(diff)

    return _run("diag diff", argv, build, act, check)


def main_history(argv):
    """`diag history`: the exit code."""
    def build():
        parser = ArgumentParser(prog="diag history", description="What history is kept: boots, ranges, gaps.")
        parser.add_argument("--from", dest="since", default=DEFAULT_GAPS_FROM, metavar="TIME",
                            help="the range read for time gaps or --metric rows starts at TIME (default %s; "
                            "every record from then is read)" % DEFAULT_GAPS_FROM)
        parser.add_argument("--to", dest="until", default="now", metavar="TIME",
                            help="... and ends at TIME (default now)")
        parser.add_argument("--metric", action="append", metavar="PATH",
                            help="print this metric over the range instead, as a table (repeat for more). "
                            "PATH is dotted: rates.cpu.total.busy_pct, rates.disks.vda.util_pct, "
                            "rates.network.links.eth0.rx_bits_per_s (the rates between records), or a key "
                            "of the snapshot: memory.meminfo.MemAvailable, pressure.cpu.some.avg10; "
                            "a list element by its name (disks.vda.sectors_read) or index")
        parser.add_argument("--every", type=_seconds("--every"), default=None, metavar="N",
                            help="one row per N seconds or a duration like 1m (default: about %d rows)"
                            % DEFAULT_ROWS)
        parser.add_argument("--plot", action="store_true", help="with --metric: Unicode sparklines, not a table")
        parser.add_argument("--svg", metavar="FILE", help="with --metric: also write a line chart to FILE (SVG)")
        parser.add_argument("--format", choices=("text", "json", "csv"), default="text",
                            help="csv only with --metric")
        add_source_options(parser)
        return parser

    def check(args):
        now = time.time_ns()
        args.from_ns, args.to_ns = time_option("--from", args.since, now), time_option("--to", args.until, now)
        if args.from_ns > args.to_ns:
            raise UsageError("--from (%s) is after --to (%s)" % (format_time(args.from_ns), format_time(args.to_ns)))
        if not args.metric and (args.plot or args.svg or args.every is not None or args.format == "csv"):
            raise UsageError("--every, --plot, --svg and --format csv go with --metric PATH")
        if args.metric:
            span_s = (args.to_ns - args.from_ns) / NS
            args.every_s = args.every if args.every is not None else max(1.0, float(ceil(span_s / DEFAULT_ROWS)))
            if bucket_count(args.from_ns, args.to_ns, args.every_s) > MAX_BUCKETS:
                raise UsageError("--every %gs makes more than %d rows from %s to %s: give a wider one"
                                 % (args.every_s, MAX_BUCKETS, format_time(args.from_ns), format_time(args.to_ns)))

    def act(args, history):
        if args.metric:
            document = range_document(history, args.metric, args.from_ns, args.to_ns, args.every_s)
            if args.svg:
                _write_file(args.svg, render_range_svg(document))
            if args.format == "json":
                return _json(document)
            if args.format == "csv":
                return render_range_csv(document)
            return render_range_plot(document) if args.plot else render_range_table(document)
        document = history_document(history, args.from_ns, args.to_ns)
        if args.format == "json":
            return _json(document)
        return render_history(document)

    return _run("diag history", argv, build, act, check)
