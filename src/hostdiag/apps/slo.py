"""`diag slo`: the availability probes' SLOs, from the newest sample of an
agent (over its socket, docs/protocol.md) or of a collector's store: the
``slo`` and ``probes`` sections the agent put in it (docs/availability.md).

Exit codes (:mod:`hostdiag.apps.common`): 0 shown (also when the sample has
no probes); 1 the agent cannot be reached or holds no sample; 2 bad usage.
"""

import json

from hostdiag.apps.common import ArgumentParser, CommandFailed
from hostdiag.apps.history import _run
from hostdiag.apps.history_readers import add_source_options

# Larger than any wall-clock time: "the newest record".
_NEWEST = 2 ** 63 - 1


def slo_document(history, record):
    """The JSON document of `diag slo --format json`."""
    snapshot = record.snapshot or {}
    return {"source": history.describe(), "record": {"boot_id": record.boot_id, "seq": record.seq,
                                                     "wall_ns": record.wall_ns},
            "probes": snapshot.get("probes") or [], "slo": snapshot.get("slo") or []}


def main_slo(argv):
    """`diag slo [--format text|json] [--agent ADDRESS]`: the exit code."""
    def build():
        parser = ArgumentParser(prog="diag slo",
                                description="Availability, error budget and burn rates of the agent's probes, "
                                            "from its newest sample.")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        add_source_options(parser)
        return parser

    def act(args, history):
        from hostdiag.views.slo import render_slo

        record = history.at_or_before(_NEWEST)
        if record is None:
            raise CommandFailed("%s holds no sample yet" % history.label())
        document = slo_document(history, record)
        if args.format == "json":
            return json.dumps(document, indent=2) + "\n"
        return render_slo(history.label(), document["record"], document["probes"], document["slo"])

    return _run("diag slo", argv, build, act)
