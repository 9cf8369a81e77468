"""The history commands as text: `diag show` (a past moment's report under
a header naming the record) and `diag history` (boots, gaps, what is kept)."""

from hostdiag.derive.gaps import CAUSES
from hostdiag.views.report import render_text
from hostdiag.views.text import DEFAULT_WIDTH, LABEL_WIDTH, SCREEN_LINES, wrap_parts
from hostdiag.views.timefmt import NS, format_span, format_time


def short_boot(boot_id):
    """``boot 1a2b3c4d``: the first 8 characters of a boot id."""
    return "boot %s" % (str(boot_id)[:8] if boot_id else "?")


def render_show(label, moment, color=False, width=DEFAULT_WIDTH, full=False):
    """The report of ``moment`` (its snapshot, rates and findings) in
    ``width`` columns under the lines that say which record of the history
    ``label`` it is, the rates' base, the gap the asked time falls in and
    where the tables come from; the one-screen view keeps its SCREEN_LINES
    with these lines in, unless ``full``."""
    record, previous = moment.record, moment.previous
    # (label, the parts of its text): a part is never split by the width.
    notes = [("history", [label, "record %s seq %d at %s" % (short_boot(record.boot_id), record.seq,
                                                             format_time(record.wall_ns)),
                          "(asked %s, %s before)" % (format_time(moment.asked_ns),
                                                     format_span((moment.asked_ns - record.wall_ns) / NS))])]
    if previous is None:
        notes.append(("rates", ["none: no earlier record of this boot is kept"]))
    else:
        notes.append(("rates", ["from seq %d at %s" % (previous.seq, format_time(previous.wall_ns))]))
    gap = moment.gap
    if gap is not None and "since_ns" in gap:
        notes.append(("GAP", ["no sample since %s" % format_time(gap["since_ns"]),
                              "(%s before the asked time):" % format_span(gap["seconds"]),
                              "the agent is down or stalled;", "this is the newest record"]))
    elif gap is not None:
        notes.append(("GAP", ["the asked time is inside a gap:",
                              "no sample from %s to %s" % (format_time(gap["start_ns"]), format_time(gap["end_ns"])),
                              "(%s, %s);" % (format_span(gap["seconds"]), gap_cause(gap)),
                              "this is the record before it"]))
    tables = moment.tables
    if tables is not None:
        notes.append(("tables", ["processes and sockets from seq %d," % tables.seq, "%s %s this record" % (
            format_span(abs(tables.wall_ns - record.wall_ns) / NS),
            "before" if tables.wall_ns <= record.wall_ns else "after")]))
    elif record.snapshot.get("processes") is None and record.snapshot.get("sockets") is None:
        notes.append(("tables", ["none: no record near this one has the process and socket tables"]))
    lines = []
    for name, parts in notes:
        for i, line in enumerate(wrap_parts(parts, width - LABEL_WIDTH, " ")):
            lines.append(("%-*s%s" % (LABEL_WIDTH, "" if i else name, line)))
    return "\n".join(lines) + "\n" + render_text(moment.snapshot, moment.rates, moment.findings, color=color,
                                                 width=width, full=full, lines=SCREEN_LINES - len(lines))


def gap_cause(gap):
    """The cause of a gap (derive.gaps) in words."""
    return CAUSES.get(gap.get("cause"), gap.get("cause") or "cause unknown")


def size_text(value):
    """1536 -> "1.5 KiB", 64 << 20 -> "64 MiB"; None -> "?"."""
    if value is None:
        return "?"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return ("%d %s" if value == int(value) or unit == "B" else "%.1f %s") % (value, unit)


def _age_limit(seconds):
    if seconds is None:
        return None
    days = seconds / 86400
    if days >= 1 and days == int(days):
        return "%d day%s" % (days, "" if days == 1 else "s")
    return format_span(seconds)


def kept_text(retention):
    """What is kept against the limits, in human units:
    ``ring 41 MiB of 64 MiB, 1200 of 100000 records; spool 3.2 GiB of 4 GiB, 30 days``."""
    parts = []
    if "ring_bytes" in retention:
        ring = "ring %s of %s" % (size_text(retention.get("ring_used_bytes")), size_text(retention["ring_bytes"]))
        if retention.get("ring_records") is not None:
            ring += ", %s of %s records" % ("?" if retention.get("ring_used_records") is None
                                            else retention["ring_used_records"], retention["ring_records"])
        parts.append(ring)
        if retention.get("spool_bytes") is None:
            parts.append("no spool")
        else:
            spool = "spool %s of %s" % (size_text(retention.get("spool_used_bytes")),
                                        size_text(retention["spool_bytes"]))
            age = _age_limit(retention.get("spool_age_s"))
            parts.append(spool + (", %s" % age if age else ""))
    else:
        store = "store %s of %s" % (size_text(retention.get("stored_bytes")), size_text(retention.get("host_bytes")))
        age = _age_limit(retention.get("host_age_s"))
        parts.append(store + (", %s" % age if age else ""))
    return "; ".join(parts)


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
    time_gaps = document.get("time_gaps")
    if time_gaps is not None:
        lines.append("TIME GAPS  %d  (no sample for more than %s, or the clock went back; from %s to %s)" % (
            len(time_gaps), "two intervals" if document.get("interval_s") is None
            else format_span(2 * document["interval_s"]), format_time(document["from_ns"]),
            format_time(document["to_ns"])))
        for gap in time_gaps:
            missing = "" if gap["from_seq"] is None else ", seq %d..%d missing" % (gap["from_seq"], gap["to_seq"])
            if gap["next_boot_id"] == gap["boot_id"]:
                around = "%s seq %d..%d" % (short_boot(gap["boot_id"]), gap["after_seq"], gap["before_seq"])
            else:
                around = "%s seq %d .. %s seq %d" % (short_boot(gap["boot_id"]), gap["after_seq"],
                                                    short_boot(gap["next_boot_id"]), gap["before_seq"])
            lines.append("  %s .. %s  %s  %s%s: %s" % (
                format_time(gap["start_ns"]), format_time(gap["end_ns"]), format_span(gap["seconds"]),
                around, missing, gap_cause(gap)))
    retention = document.get("retention")
    if retention:
        lines.append("KEPT   " + kept_text(retention))
    return "\n".join(lines) + "\n"
