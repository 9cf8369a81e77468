"""The history commands as text: `diag show` (a past moment's report under
a header naming the record) and `diag history` (boots, gaps, what is kept)."""

from hostdiag.views.report import render_text
from hostdiag.views.timefmt import NS, format_span, format_time


def short_boot(boot_id):
    """``boot 1a2b3c4d``: the first 8 characters of a boot id."""
    return "boot %s" % (str(boot_id)[:8] if boot_id else "?")


def render_show(label, moment, color=False):
    """The report of ``moment`` (its snapshot, rates and findings) under two
    lines: which record of the history ``label`` names, and the rates' base."""
    record, previous = moment.record, moment.previous
    line = "history  %s  record %s seq %d at %s (asked %s, %s before)" % (
        label, short_boot(record.boot_id), record.seq, format_time(record.wall_ns),
        format_time(moment.asked_ns), format_span((moment.asked_ns - record.wall_ns) / NS))
    if previous is None:
        rates_line = "rates    none: no earlier record of this boot is kept"
    else:
        rates_line = "rates    from seq %d at %s" % (previous.seq, format_time(previous.wall_ns))
    return line + "\n" + rates_line + "\n" + render_text(moment.snapshot, moment.rates, moment.findings, color=color)


def render_history(document):
    """The boots, gaps and retention of a history document (apps.history)."""
    lines = []
    source = document["source"]
    if source.get("source") == "agent":
        lines.append("history of %s (agent %s) at %s" % (source.get("hostname") or "?", source.get("agent_id"),
                                                         source.get("address")))
    else:
        lines.append("history of %s in the store %s" % (source.get("host"), source.get("store")))
    boots = document["boots"]
    lines.append("BOOTS  %d" % len(boots))
    for boot in boots:
        span = None
        if boot["first_wall_ns"] is not None and boot["last_wall_ns"] is not None:
            span = (boot["last_wall_ns"] - boot["first_wall_ns"]) / NS
        count = boot.get("records")
        lines.append("  %s  seq %s..%s  %s .. %s  (%s%s)%s" % (
            boot["boot_id"], boot["first_seq"], boot["last_seq"], format_time(boot["first_wall_ns"]),
            format_time(boot["last_wall_ns"]), format_span(span),
            "" if count is None else ", %d records" % count, "  current" if boot.get("current") else ""))
    gaps = document["gaps"]
    if gaps is None:
        lines.append("GAPS   not reported by the agent; give --spool DIR (its spool, read-only) to list them")
    else:
        lines.append("GAPS   %d" % len(gaps))
        for gap in gaps:
            size = "" if gap["to_seq"] is None else " (%d records)" % (gap["to_seq"] - gap["from_seq"] + 1)
            lines.append("  %s  seq %s..%s%s  %s" % (gap["boot_id"], gap["from_seq"],
                                                     "end" if gap["to_seq"] is None else gap["to_seq"], size,
                                                     gap.get("reason") or ""))
    retention = document.get("retention")
    if retention:
        lines.append("KEPT   " + "  ".join("%s %s" % (k, v) for k, v in retention.items() if v is not None))
    return "\n".join(lines) + "\n"
