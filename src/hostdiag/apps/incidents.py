"""`diag incidents` and `diag incident ID`: the incidents an agent tracked
(docs/incidents.md), from the agent's socket or from a collector's store.

    diag incidents [--format text|json]             id, start, end, duration, title, severity
    diag incident ID [--format markdown|json] [--svg FILE]
                                                    the report: what, when, why, how users were affected

Where they are read from is chosen by the options of `diag show`
(:func:`hostdiag.apps.history_readers.add_source_options`): ``--store DIR``
(every host, or ``--host H``), ``--agent ADDRESS``, else the agent of the
settings. The report is built here from the bundle (views/incident.py), so
the same bundle gives the same report wherever it is read.

Exit codes (:mod:`hostdiag.apps.common`): 0 done; 1 no agent, no store, no
such incident, or a damaged bundle (one line); 2 bad usage.
"""

import json
import os
import sys

from hostdiag.apps.common import EXIT_OK, ArgumentParser, CommandFailed, UsageError, run_command
from hostdiag.apps.history_readers import add_source_options, agent_from_options, source_config

# Summaries `diag incidents` asks an agent for (the protocol's most).
LIST_LIMIT = 1000


class AgentIncidents:
    """The incidents of one agent, over its socket (docs/protocol.md: incidents, incident)."""

    def __init__(self, history):
        self.history = history

    def label(self):
        return self.history.label()

    def source(self):
        return self.history.describe()

    def list(self):
        reply = self.history.client.incidents(limit=LIST_LIMIT)
        if reply.get("enabled") is False:
            sys.stderr.write("diag incidents: note: the agent tracks no incidents (incidents.enabled = false)\n")
        return reply.get("incidents") or []

    def bundle(self, incident_id):
        return self.history.client.incident(incident_id)

    def close(self):
        self.history.close()


class StoreIncidents:
    """The incidents a collector pulled into its store, of every host or of one."""

    def __init__(self, store, host):
        self.store = store
        self.host = host

    def label(self):
        return "store %s%s" % (self.store.directory, " host %s" % self.host if self.host else "")

    def source(self):
        return {"source": "store", "store": self.store.directory, "host": self.host}

    def list(self):
        return self.store.incidents(self.host)

    def bundle(self, incident_id):
        found = self.store.incident_bundle(self.host, incident_id)
        if len(found) > 1:
            raise UsageError("incident %s is kept for hosts %s: name one with --host"
                             % (incident_id, ", ".join(sorted(host for host, _ in found))))
        return found[0][1] if found else None

    def close(self):
        self.store.close()


def open_incidents(args):
    """The incidents the options name (see the module doc)."""
    from hostdiag.store.collector_store import StoreError, is_url, open_collector_store

    config = source_config(args, "sources")
    if args.store or args.host:
        location = args.store or config.collector.store
        location = location if is_url(location) else os.path.abspath(location)
        try:
            store = open_collector_store(location, readonly=True)
            host = store.resolve_host(args.host) if args.host else None
        except StoreError as exc:
            raise CommandFailed(str(exc)) from None
        return StoreIncidents(store, host)
    return AgentIncidents(agent_from_options(args, config))


def _run(prog, argv, build, act):
    def body():
        from hostdiag.transport.protocol import ProtocolError

        args = build().parse_args(argv)
        source = open_incidents(args)
        try:
            text = act(args, source)
        except (OSError, ProtocolError) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            raise CommandFailed("%s: %s" % (source.label(), getattr(exc, "strerror", None) or exc)) from None
        finally:
            source.close()
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK

    return run_command(prog, body)


def _write_text(path, text):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise CommandFailed("--svg %s: %s" % (path, exc.strerror or exc)) from None


def main_incidents(argv):
    def build():
        parser = ArgumentParser(prog="diag incidents",
                                description="The incidents an agent tracked: id, start, end, duration, title, "
                                            "severity; newest first.")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        add_source_options(parser)
        return parser

    def act(args, source):
        from hostdiag.views.incident import render_list

        summaries = source.list()
        if args.format == "json":
            return json.dumps({"source": source.source(), "incidents": summaries}, indent=2, default=str) + "\n"
        return render_list(summaries, source.label())

    return _run("diag incidents", list(argv), build, act)


def main_incident(argv):
    def build():
        parser = ArgumentParser(prog="diag incident",
                                description="The report of one incident: what, when, why, how users were "
                                            "affected, and a postmortem to fill in.")
        parser.add_argument("id", metavar="ID", help="the incident's id (`diag incidents` lists them)")
        parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
        parser.add_argument("--svg", metavar="FILE", help="also write the plots as an SVG line chart to FILE")
        add_source_options(parser)
        return parser

    def act(args, source):
        from hostdiag.store.incidents import BundleError, decode_bundle
        from hostdiag.views.incident import incident_document, render_markdown, render_svg

        data = source.bundle(args.id)
        if data is None:
            raise CommandFailed("%s keeps no incident %s (`diag incidents` lists those it has)"
                                % (source.label(), args.id))
        try:
            summary, body = decode_bundle(data)
        except BundleError as exc:
            raise CommandFailed("incident %s: the bundle is damaged: %s" % (args.id, exc)) from None
        document = incident_document(summary, body, source.source(), series=bool(args.svg))
        if args.svg:
            try:
                chart = render_svg(document)
            except ValueError as exc:
                raise CommandFailed("--svg: %s" % exc) from None
            _write_text(args.svg, chart)
            for plot in document["plots"]:
                del plot["points"]
        if args.format == "json":
            return json.dumps(document, indent=2, default=str) + "\n"
        return render_markdown(document)

    return _run("diag incident", list(argv), build, act)
