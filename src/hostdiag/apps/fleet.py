"""`diag fleet`: questions across every host of a collector store.

    diag fleet hosts                                 each host: last seen, lag, findings now
    diag fleet findings --since -1h                  which hosts had which findings, when
    diag fleet top --by cpu|rss|io|retrans --at TIME [--hosts GLOB]
                                                     top processes or connections across hosts

The store is ``--store`` (a ClickHouse URL, ``clickhouse://HOST:PORT/DB``, or
a collector's SQLite store directory), else ``collector.store`` of the
settings. On ClickHouse each question is one SQL query
(store/fleet_clickhouse.py); on SQLite the fallback answers for that
collector's hosts (store/fleet_sqlite.py). docs/fleet.md has the details.

Exit codes (:mod:`hostdiag.apps.common`): 0 done; 1 the store cannot be read
(unreachable, no fleet store there); 2 bad usage (an unknown ``--by``, a
time that cannot be read), one line.
"""

import json
import os
import sys
import time

from hostdiag.apps.common import EXIT_OK, ArgumentParser, CommandFailed, UsageError, run_command
from hostdiag.apps.timespec import parse_span, parse_time
from hostdiag.store.collector_store import StoreError, fleet_queries, is_url, open_collector_store
from hostdiag.store.fleet_clickhouse import MEASURES
from hostdiag.views.fleet import fleet_document, render_findings, render_hosts, render_top

DEFAULT_WITHIN = "1d"
DEFAULT_SINCE = "-1h"
DEFAULT_WINDOW = "60s"
DEFAULT_LIMIT = 20
MAX_LIMIT = 10000


def _limit(text):
    try:
        value = int(text)
    except ValueError:
        raise UsageError("--limit: must be a whole number, got %r" % text) from None
    if not 1 <= value <= MAX_LIMIT:
        raise UsageError("--limit: must be between 1 and %d, got %s" % (MAX_LIMIT, text))
    return value


def build_parser():
    parser = ArgumentParser(prog="diag fleet", description="Questions across every host of a collector store.")
    sub = parser.add_subparsers(dest="question", metavar="QUESTION", parser_class=ArgumentParser)
    sub.required = True

    def common(name, summary):
        question = sub.add_parser(name, help=summary, description=summary)
        question.add_argument("--store", metavar="DIR|URL",
                              help="clickhouse://HOST:PORT/DB or a collector's store directory (collector.store)")
        question.add_argument("--config", metavar="FILE", help="settings: the store (collector.store)")
        question.add_argument("--format", choices=("text", "json"), default="text")
        return question

    hosts = common("hosts", "each host: its newest record, how old it is, and that record's findings")
    hosts.add_argument("--within", metavar="DURATION", default=DEFAULT_WITHIN,
                       help="how far back a host's newest record is looked for (default %s)" % DEFAULT_WITHIN)
    findings = common("findings", "which hosts had which findings, first and last seen")
    findings.add_argument("--since", metavar="TIME", default=DEFAULT_SINCE, help="from (default %s)" % DEFAULT_SINCE)
    findings.add_argument("--until", metavar="TIME", default="now", help="to (default now)")
    findings.add_argument("--hosts", metavar="GLOB", help="only hosts whose name matches (web*, db[12])")
    top = common("top", "the top processes or connections across hosts at one moment")
    # Not argparse choices: an unknown --by is named in one line with the choices.
    top.add_argument("--by", metavar="|".join(MEASURES), required=True,
                     help="cpu, rss, io (processes) or retrans (connections)")
    top.add_argument("--at", metavar="TIME", default="now", help="the moment (default now)")
    top.add_argument("--window", metavar="DURATION", default=DEFAULT_WINDOW,
                     help="each host's newest table sample this long before --at counts (default %s)"
                     % DEFAULT_WINDOW)
    top.add_argument("--hosts", metavar="GLOB", help="only hosts whose name matches (web*, db[12])")
    top.add_argument("--limit", metavar="N", default=str(DEFAULT_LIMIT), help="rows (default %d)" % DEFAULT_LIMIT)
    return parser


def _time(option, text, now_ns):
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise UsageError("%s: %s" % (option, exc)) from None


def _span(option, text):
    try:
        seconds = parse_span(text)
    except ValueError:
        raise UsageError("%s: cannot read the duration %r (give 90, 10m, 1h30m, 2d)" % (option, text)) from None
    if seconds <= 0:
        raise UsageError("%s: must be above zero, got %r" % (option, text))
    return seconds


def _store_location(args):
    if args.store:
        return args.store if is_url(args.store) else os.path.abspath(args.store)
    from hostdiag.apps.config import load_config

    return load_config(args.config, os.environ).collector.store


def answer(args, now_ns):
    """The document of the question ``args`` asks (the rows and what was asked)."""
    if args.question == "top" and args.by not in MEASURES:
        raise UsageError("--by: unknown measure %r (choose from %s)" % (args.by, ", ".join(MEASURES)))
    # Every argument is read before the store is opened: bad usage says so first.
    if args.question == "hosts":
        within = _span("--within", args.within)
    elif args.question == "findings":
        from_ns, to_ns = _time("--since", args.since, now_ns), _time("--until", args.until, now_ns)
        if from_ns > to_ns:
            raise UsageError("--since is after --until")
    else:
        at_ns, window = _time("--at", args.at, now_ns), _span("--window", args.window)
        limit = _limit(args.limit)
    location = _store_location(args)
    try:
        store = open_collector_store(location, readonly=True)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    try:
        queries = fleet_queries(store)
        if args.question == "hosts":
            return fleet_document(location, "hosts", queries.hosts(store, now_ns, within), now_ns=now_ns,
                                  within_s=within)
        if args.question == "findings":
            return fleet_document(location, "findings", queries.findings(store, from_ns, to_ns, args.hosts),
                                  from_ns=from_ns, to_ns=to_ns, hosts=args.hosts)
        return fleet_document(location, "top", queries.top(store, args.by, at_ns, window, args.hosts, limit),
                              by=args.by, at_ns=at_ns, window_s=window, hosts=args.hosts)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        store.close()


def render(document):
    question, rows = document["question"], document["rows"]
    if question == "hosts":
        return render_hosts(rows, document["store"])
    if question == "findings":
        return render_findings(rows, document["from_ns"], document["to_ns"])
    return render_top(rows, document["by"], document["at_ns"], document["window_s"])


def main_fleet(argv=None):
    """`diag fleet ...`: the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("diag fleet", lambda: _run(argv))


def _run(argv):
    args = build_parser().parse_args(argv)
    document = answer(args, time.time_ns())
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render(document))
    return EXIT_OK
