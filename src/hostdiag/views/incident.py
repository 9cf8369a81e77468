"""Incident reports: a bundle (store/incidents.py) made into what, when, why
and how users were affected, as plain data (:func:`incident_document`, the
JSON form) and as Markdown (:func:`render_markdown`); and the list of
incidents (:func:`render_list`).

* **what**: the findings of the incident's samples, grouped by cause (the
  first culprit of a finding, else its subject, else its rule);
* **when**: start, detection, end and resolution, and a timeline of the
  findings that appeared and cleared;
* **why**: the top culprit (the cause of the crit finding that held longest)
  with its evidence, and the diff (derive/diff.py) between the last sample
  before the start and the sample that detected the incident;
* **how users were affected**: per probe, the checks during the incident,
  their availability and latency, and the share of the SLO's error budget
  the failures consumed: failures / allowed failures over the SLO window,
  where allowed = (1 - target) x window / the probe's interval;
* plots: Unicode sparklines of the key series from the first record of the
  bundle to the last, at most :data:`PLOT_WIDTH` characters, and the same
  series as an SVG line chart (:func:`render_svg`);
* a postmortem section to fill in (root cause, actions), blameless.

Units: nanoseconds since the epoch (``*_ns``), seconds (``*_s``),
milliseconds (``*_ms``), percent (``*_pct``).
"""

import math
from collections import namedtuple

from hostdiag.derive.buckets import bucketize
from hostdiag.derive.buckets import summary as bucket_summary
from hostdiag.derive.diff import diff_moments, measures
from hostdiag.derive.rates import derive_rates
from hostdiag.encode.wire import decode_msgpack
from hostdiag.findings import culprit_text, evaluate, filesystem_usage
from hostdiag.findings.incidents import SIGNAL_SLO, slo_by_probe
from hostdiag.model.snapshot import Snapshot
from hostdiag.store.incidents import BundleError, record_payload
from hostdiag.views.diff import value_text
from hostdiag.views.plot import render_range_svg, sparkline
from hostdiag.views.timefmt import format_span, format_time

NS = 1_000_000_000
PLOT_WIDTH = 60
TIMELINE_MAX = 40          # timeline events shown; the rest are counted
DIFF_ROWS = 8              # counter changes shown under "why"...
DIFF_CANDIDATES = 200      # ...chosen among this many of the biggest, the culprit's own first
DEFAULT_SLO_WINDOW_S = 30 * 86400.0
SVG_BUCKETS = 200          # points of a line in the SVG chart, at most

Rec = namedtuple("Rec", "boot_id seq wall_ns snapshot")


class _Moment:
    """A record with its typed snapshot, rates and findings (what derive/diff.py needs)."""

    def __init__(self, record, previous):
        self.record = record
        self.snapshot = Snapshot.from_dict(record.snapshot)
        self.previous_snapshot = None
        if previous is not None and previous.boot_id == record.boot_id:
            self.previous_snapshot = Snapshot.from_dict(previous.snapshot)
        self.rates = derive_rates(self.previous_snapshot, self.snapshot) if self.previous_snapshot else None
        self.findings = evaluate(self.snapshot, self.rates, self.previous_snapshot)


def bundle_records(body):
    """(the body's records as :data:`Rec`, oldest first, how many were skipped as damaged)."""
    out, skipped = [], 0
    for entry in body.get("records") or ():
        try:
            snapshot = decode_msgpack(record_payload(entry))
            Snapshot.from_dict(snapshot)  # a record the views could not read counts as damaged
            out.append(Rec(entry[0], entry[1], entry[2], snapshot))
        except (BundleError, ValueError, IndexError, TypeError):
            skipped += 1
    return out, skipped


def _end_ns(summary, records):
    end = summary.get("end_ns")
    if end is None:
        end = records[-1].wall_ns if records else summary.get("detected_ns")
    return end


def _cause(found):
    culprits = found.get("culprits") or ()
    if culprits:
        first = culprits[0]
        if first.get("kind") in ("connection", "listener"):
            return "%s %s" % (first.get("kind"), first.get("local")), culprit_text(first)
        return "process %s[%s]" % (first.get("comm"), first.get("pid")), culprit_text(first)
    if found.get("subject"):
        return str(found["subject"]), str(found["subject"])
    return "host", "the host as a whole"


def what_section(timeline, start_ns, end_ns):
    """The findings of the samples from start to end, grouped by cause:
    [{"cause", "culprit", "severity", "findings": [{"id", "severity", "title",
    "subject", "samples", "first_ns", "last_ns", "evidence", "threshold"}]}],
    crit first, then by the samples the longest crit finding held (a warning
    that lasted does not lift a cause above one whose crit finding did)."""
    groups = {}
    during = [e for e in timeline if start_ns <= e.get("wall_ns", 0) <= end_ns]
    for entry in during:
        for found in entry.get("findings") or ():
            cause, culprit = _cause(found)
            group = groups.setdefault(cause, {"cause": cause, "culprit": culprit, "findings": {}})
            key = (found.get("id"), found.get("subject"))
            row = group["findings"].get(key)
            if row is None:
                row = group["findings"][key] = {"id": found.get("id"), "severity": found.get("severity"),
                                                "subject": found.get("subject"), "samples": 0,
                                                "first_ns": entry["wall_ns"]}
            row.update(title=found.get("title"), evidence=found.get("evidence") or {},
                       threshold=found.get("threshold"), last_ns=entry["wall_ns"])
            row["samples"] += 1
            if found.get("severity") == "crit":
                row["severity"] = "crit"
    out = []
    for group in groups.values():
        rows = sorted(group["findings"].values(), key=lambda r: (r["severity"] != "crit", -r["samples"]))
        out.append({"cause": group["cause"], "culprit": group["culprit"],
                    "severity": "crit" if any(r["severity"] == "crit" for r in rows) else "warn",
                    "findings": rows})
    out.sort(key=lambda g: (g["severity"] != "crit", -max(r["samples"] for r in g["findings"]
                                                          if r["severity"] == g["severity"])))
    return out, len(during)


def timeline_events(summary, timeline, end_ns):
    """[{"at_ns", "event"}]: the incident's milestones and each finding's
    appearance and clearing, in time order; at most :data:`TIMELINE_MAX`
    (the count of those left out is the second value)."""
    events = [{"at_ns": summary.get("start_ns"), "event": "start: first of %s samples in a row with a crit "
               "finding or an SLO burn alert" % summary.get("open_after")},
              {"at_ns": summary.get("detected_ns"), "event": "detected: the incident opened"}]
    if summary.get("end_ns") is not None:
        events.append({"at_ns": summary["end_ns"], "event": "end: first sample with neither"})
    if summary.get("resolved_ns") is not None:
        events.append({"at_ns": summary["resolved_ns"], "event": "resolved (%s)" % summary.get("end_reason")})
    active = {}
    for entry in timeline:
        now = {(f.get("id"), f.get("subject")): f for f in entry.get("findings") or ()}
        for key, found in now.items():
            if key not in active:
                events.append({"at_ns": entry["wall_ns"], "event": "appeared %s: %s" % (
                    str(found.get("severity")).upper(), found.get("title"))})
        for key, found in active.items():
            if key not in now:
                events.append({"at_ns": entry["wall_ns"], "event": "cleared %s" % found.get("title")})
        active = now
    events = [e for e in events if e["at_ns"] is not None]
    events.sort(key=lambda e: e["at_ns"])
    left_out = max(0, len(events) - TIMELINE_MAX)
    return events[:TIMELINE_MAX], left_out


def _tables_at(records, index):
    """(the newest record with the process table at or before ``index``, the one before it)."""
    found = [r for r in records[:index + 1] if isinstance(r.snapshot.get("processes"), dict)]
    current = found[-1] if found else None
    previous = found[-2] if len(found) > 1 else None
    return current, previous


def why_section(summary, records, what):
    """The top culprit with its evidence, and the diff from before to during."""
    top = None
    for group in what:
        for row in group["findings"]:
            if top is None or (row["severity"] == "crit", row["samples"]) > (top[1]["severity"] == "crit",
                                                                            top[1]["samples"]):
                top = (group, row)
    out = {"culprit": None, "diff": None}
    if top is not None:
        group, row = top
        out["culprit"] = {"cause": group["cause"], "culprit": group["culprit"], "finding": row["id"],
                          "title": row["title"], "evidence": row["evidence"], "threshold": row["threshold"],
                          "samples": row["samples"]}
    start = summary.get("start_ns")
    before = [i for i, r in enumerate(records) if r.wall_ns < start]
    during = [i for i, r in enumerate(records) if r.seq == summary.get("detected_seq")] or \
        [i for i, r in enumerate(records) if r.wall_ns >= start]
    if not before or not during:
        out["diff_missing"] = "no record before the start in the bundle (incidents.before = 0)" if not before \
            else "no record of the incident in the bundle"
        return out
    a, b = before[-1], during[0]
    moment_a = _Moment(records[a], records[a - 1] if a > 0 else None)
    moment_b = _Moment(records[b], records[b - 1] if b > 0 else None)
    diff = diff_moments(moment_a, moment_b, _tables_at(records, a), _tables_at(records, b), filesystem_usage,
                        top=DIFF_CANDIDATES)
    subject = (out["culprit"] or {}).get("cause")
    # The culprit's own measures first (a full disk's used_pct), then the biggest changes.
    mine = [row for row in diff["counters"] if subject and ".%s." % subject in row["path"]]
    diff["counters"] = (mine + [row for row in diff["counters"] if row not in mine])[:DIFF_ROWS]
    diff["a"] = {"seq": records[a].seq, "wall_ns": records[a].wall_ns}
    diff["b"] = {"seq": records[b].seq, "wall_ns": records[b].wall_ns}
    out["diff"] = diff
    return out


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _target_fraction(target):
    if not isinstance(target, (int, float)) or isinstance(target, bool):
        return None
    fraction = target / 100.0 if target > 1 else float(target)
    return fraction if 0 < fraction < 1 else None


def _median(values):
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _percentile(values, pct):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(math.ceil(pct / 100.0 * len(ordered))) - 1)]


def users_section(probes, slo, start_ns, end_ns):
    """Per probe: checks, failures, availability and latency during the
    incident (and availability before it), and the error budget consumed."""
    by_name = {}
    seen = set()
    for result in probes:
        name, at = result.get("name"), result.get("at_ns")
        if not isinstance(name, str) or not isinstance(at, int) or (name, at) in seen:
            continue
        seen.add((name, at))
        by_name.setdefault(name, []).append(result)
    out = []
    for name in sorted(by_name):
        results = sorted(by_name[name], key=lambda r: r["at_ns"])
        during = [r for r in results if start_ns <= r["at_ns"] <= end_ns]
        before = [r for r in results if r["at_ns"] < start_ns]
        failures = [r for r in during if r.get("ok") is not True]
        latencies = [r["latency_ms"] for r in during if r.get("ok") is True
                     and isinstance(r.get("latency_ms"), (int, float))]
        errors = {}
        for r in failures:
            errors[r.get("error") or "failed"] = errors.get(r.get("error") or "failed", 0) + 1
        steps = [(b["at_ns"] - a["at_ns"]) / NS for a, b in zip(results, results[1:]) if b["at_ns"] > a["at_ns"]]
        interval = _median(steps)
        state = slo_by_probe(slo).get(name) or {}
        target_given = state.get("target_percent", state.get("target"))
        target = _target_fraction(target_given)
        window = state.get("window_s") if _number(state.get("window_s")) else DEFAULT_SLO_WINDOW_S
        total = state.get("total_30d") if isinstance(state.get("total_30d"), int) and state["total_30d"] > 0 \
            else None
        budget = None
        if target is not None and (total or interval):
            # The results the window holds: counted by the agent, else as many as the interval fits.
            events = total if total else window / interval
            allowed = (1 - target) * events
            budget = {"target": target_given, "window_s": window, "interval_s": interval,
                      "window_results": events, "counted": bool(total),
                      "allowed_failures": allowed, "failures": len(failures),
                      "consumed_pct": 100.0 * len(failures) / allowed if allowed > 0 else None,
                      "budget_left": state.get("budget_left")}
        out.append({
            "name": name, "kind": results[-1].get("kind"), "target": results[-1].get("target"),
            "checks": len(during), "failures": len(failures),
            "availability_pct": 100.0 * (len(during) - len(failures)) / len(during) if during else None,
            "availability_before_pct": (100.0 * sum(1 for r in before if r.get("ok") is True) / len(before)
                                        if before else None),
            "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
                           "max": max(latencies) if latencies else None},
            "errors": errors, "budget": budget,
            "series": [(r["at_ns"], r.get("ok") is True, r.get("latency_ms")) for r in results],
        })
    return out


def _squeeze(points, first_ns, last_ns, width=PLOT_WIDTH, worst=max):
    """[(at_ns, value)] into at most ``width`` columns over first..last, each
    the ``worst`` of its values (None where it has none)."""
    if not points or last_ns <= first_ns:
        return [v for _, v in points][:width]
    columns = min(width, len(points))
    step = (last_ns - first_ns) / columns
    cells = [[] for _ in range(columns)]
    for at, value in points:
        if value is not None:
            cells[min(columns - 1, max(0, int((at - first_ns) / step)))].append(value)
    return [worst(cell) if cell else None for cell in cells]


def plots_section(records, why, users, summary, end_ns):
    """The key series as sparklines: the measures that changed most from
    before to during, each probe's failures and latency, and where the
    incident was (a bar under its samples)."""
    if not records:
        return []
    first, last = records[0].wall_ns, records[-1].wall_ns
    paths = [row["path"] for row in ((why.get("diff") or {}).get("counters") or ())[:3]]
    series = {path: [] for path in paths}
    previous = None
    for record in records:
        typed = Snapshot.from_dict(record.snapshot)
        rates = None
        if previous is not None and previous[0].boot_id == record.boot_id:
            rates = derive_rates(previous[1], typed)
        values = measures(typed, rates, filesystem_usage)
        for path in paths:
            series[path].append((record.wall_ns, values.get(path)))
        previous = (record, typed)
    out = []
    marks = [(r.wall_ns, 1.0 if summary.get("start_ns") <= r.wall_ns <= end_ns else 0.0) for r in records]
    incident = _squeeze(marks, first, last)
    out.append({"label": "incident", "line": "".join("█" if v else "·" for v in incident), "points": marks})
    for path in paths:
        values = _squeeze(series[path], first, last)
        known = [v for v in values if v is not None]
        out.append({"label": path, "line": sparkline(values), "points": series[path],
                    "low": min(known) if known else None, "high": max(known) if known else None})
    for probe in users:
        in_range = [(at, ok, ms) for at, ok, ms in probe["series"] if first <= at <= last]
        failures = [(at, 0.0 if ok else 1.0) for at, ok, _ in in_range]
        failed = _squeeze(failures, first, last)
        out.append({"label": "probe %s failed" % probe["name"], "points": failures,
                    "line": "".join(" " if v is None else ("✗" if v else "✓") for v in failed)})
        points = [(at, ms) for at, ok, ms in in_range if isinstance(ms, (int, float))]
        latency = _squeeze(points, first, last)
        known = [v for v in latency if v is not None]
        if known:
            out.append({"label": "probe %s latency ms" % probe["name"], "line": sparkline(latency),
                        "points": points, "low": min(known), "high": max(known)})
    return out


def render_svg(document):
    """The plots of an incident document made with ``series=True`` as one SVG
    line chart (views/plot.py), at most :data:`SVG_BUCKETS` points a line."""
    first, last = document["bundle"]["first_ns"], document["bundle"]["last_ns"]
    if first is None or last is None or last <= first:
        raise ValueError("the bundle has fewer than two records: nothing to plot")
    every_s = (last - first) / NS / SVG_BUCKETS
    metrics = []
    for plot in document["plots"]:
        buckets = bucketize(plot["points"], first, last, every_s)
        metrics.append({"path": plot["label"], "buckets": buckets, "summary": bucket_summary(buckets)})
    return render_range_svg({"from_ns": first, "to_ns": last, "every_s": every_s, "metrics": metrics})


def incident_document(summary, body, source=None, series=False):
    """The whole report as plain data (the JSON form). ``series``: keep each
    plot's points ([wall_ns, value]), for :func:`render_svg`."""
    records, skipped = bundle_records(body)
    timeline = [e for e in body.get("findings") or () if isinstance(e, dict) and isinstance(e.get("wall_ns"), int)]
    start = summary.get("start_ns")
    end = _end_ns(summary, records)
    what, samples = what_section(timeline, start, end)
    why = why_section(summary, records, what)
    users = users_section([p for p in body.get("probes") or () if isinstance(p, dict)], body.get("slo"), start, end)
    events, left_out = timeline_events(summary, timeline, end)
    plots = plots_section(records, why, users, summary, end)
    for probe in users:
        del probe["series"]
    if not series:
        for plot in plots:
            del plot["points"]
    return {
        "source": source, "incident": summary,
        "when": {"start_ns": start, "detected_ns": summary.get("detected_ns"), "end_ns": summary.get("end_ns"),
                 "resolved_ns": summary.get("resolved_ns"), "duration_s": (end - start) / NS if end else None,
                 "detection_delay_s": (summary["detected_ns"] - start) / NS if summary.get("detected_ns") else None,
                 "timeline": events, "timeline_left_out": left_out},
        "what": what, "samples_during": samples, "why": why, "users": users, "plots": plots,
        "bundle": {"records": len(records), "damaged_records": skipped, "truncated": bool(summary.get("truncated")),
                   "first_ns": records[0].wall_ns if records else None,
                   "last_ns": records[-1].wall_ns if records else None},
        "slo_signals": [s for s in summary.get("signals") or () if str(s.get("key", "")).startswith(SIGNAL_SLO)],
    }


def _duration(summary):
    if summary.get("end_ns") is None or summary.get("start_ns") is None:
        return "open"
    return format_span((summary["end_ns"] - summary["start_ns"]) / NS)


def render_list(summaries, where):
    """`diag incidents` as text: one line per incident, newest first."""
    lines = ["incidents  %s  (%d)" % (where, len(summaries))]
    if not summaries:
        lines.append("  none kept")
    else:
        lines.append("  %-22s %-29s %-29s %-9s %-5s %s" % ("ID", "START", "END", "DURATION", "SEV", "TITLE"))
        for s in summaries:
            lines.append("  %-22s %-29s %-29s %-9s %-5s %s" % (
                s.get("id"), format_time(s.get("start_ns")),
                format_time(s.get("end_ns")) if s.get("end_ns") else "(open)", _duration(s),
                str(s.get("severity")), s.get("title")))
    return "\n".join(lines) + "\n"


def _evidence_text(evidence):
    return ", ".join("%s %s" % (key, value_text(key, value)) for key, value in (evidence or {}).items()) or "-"


def _pct(value):
    return "-" if value is None else "%.2f %%" % value


def _ms(value):
    return "-" if value is None else "%.1f ms" % value


def render_markdown(document):
    """The report in Markdown: what, when, why, how users were affected,
    plots, and the postmortem to fill in."""
    s = document["incident"]
    when = document["when"]
    out = ["# Incident %s: %s" % (s.get("id"), s.get("title")), ""]
    out += ["| | |", "|---|---|",
            "| host | %s |" % (s.get("hostname") or "?"),
            "| severity | %s |" % s.get("severity"),
            "| state | %s%s |" % (s.get("state"), " (%s)" % s["end_reason"] if s.get("end_reason") else ""),
            "| start | %s |" % format_time(when["start_ns"]),
            "| detected | %s (%s after the start) |" % (format_time(when["detected_ns"]),
                                                       format_span(when["detection_delay_s"])),
            "| end | %s |" % (format_time(when["end_ns"]) if when["end_ns"] else "still open"),
            "| duration | %s |" % (format_span(when["duration_s"]) if when["end_ns"] else
                                   "%s so far" % format_span(when["duration_s"])),
            ""]
    out += ["## What", ""]
    if not document["what"]:
        out.append("No findings were recorded during the incident (an SLO burn alert opened it).")
    for group in document["what"]:
        named = "" if group["culprit"] == group["cause"] else ": %s" % group["culprit"]
        out.append("- **%s** (%s)%s" % (group["cause"], group["severity"].upper(), named))
        for row in group["findings"]:
            out.append("  - %s `%s` in %d samples, %s to %s: %s" % (
                str(row["severity"]).upper(), row["id"], row["samples"], format_time(row["first_ns"]),
                format_time(row["last_ns"]), row["title"]))
    out += ["", "## When", ""]
    for event in when["timeline"]:
        out.append("- %s %s" % (format_time(event["at_ns"]), event["event"]))
    if when["timeline_left_out"]:
        out.append("- ... and %d more events" % when["timeline_left_out"])
    why = document["why"]
    out += ["", "## Why", ""]
    culprit = why.get("culprit")
    if culprit is None:
        out.append("No culprit: no finding held during the incident.")
    else:
        out.append("Top culprit: **%s**, behind `%s` for %d samples: %s." % (
            culprit["culprit"], culprit["finding"], culprit["samples"], culprit["title"]))
        out.append("")
        out.append("Evidence: %s (threshold: %s)." % (_evidence_text(culprit["evidence"]), culprit["threshold"]))
    diff = why.get("diff")
    out.append("")
    if diff is None:
        out.append("What changed: %s." % why.get("diff_missing", "unknown"))
    else:
        out.append("What changed from seq %d (before, %s) to seq %d (detection, %s):" % (
            diff["a"]["seq"], format_time(diff["a"]["wall_ns"]), diff["b"]["seq"], format_time(diff["b"]["wall_ns"])))
        out.append("")
        for label, key in (("appeared", "appeared"), ("cleared", "cleared")):
            for found in diff["findings"][key]:
                out.append("- finding %s: %s" % (label, found.get("title")))
        if diff["counters"]:
            out += ["", "| measure | before | during | change |", "|---|---|---|---|"]
            for row in diff["counters"]:
                change = "from 0" if row["relative"] is None else "%+.0f %%" % (100.0 * row["relative"])
                out.append("| `%s` | %s | %s | %s |" % (row["path"], value_text(row["path"], row["a"]),
                                                       value_text(row["path"], row["b"]), change))
        processes = diff.get("processes")
        if processes:
            for label in ("started", "exited"):
                if processes[label]:
                    out.append("- processes %s: %s" % (label, ", ".join(
                        "%s[%d]" % (p["comm"], p["pid"]) for p in processes[label])))
    out += ["", "## How users were affected", ""]
    users = document["users"]
    if not users:
        out.append("No probe results in the bundle: no probes are configured (docs/availability.md).")
    else:
        out += ["| probe | checks | failed | availability during | before | latency p50 / p95 / max | errors |",
                "|---|---|---|---|---|---|---|"]
        for p in users:
            latency = p["latency_ms"]
            out.append("| %s (%s %s) | %d | %d | %s | %s | %s / %s / %s | %s |" % (
                p["name"], p.get("kind") or "?", p.get("target") or "", p["checks"], p["failures"],
                _pct(p["availability_pct"]), _pct(p["availability_before_pct"]), _ms(latency["p50"]),
                _ms(latency["p95"]), _ms(latency["max"]),
                ", ".join("%s x%d" % (k, v) for k, v in sorted(p["errors"].items())) or "-"))
        out.append("")
        for p in users:
            budget = p["budget"]
            if budget is None:
                out.append("- %s: no SLO target known, no error budget figure." % p["name"])
            else:
                basis = ("%d results the agent counted in it" % budget["window_results"] if budget["counted"]
                         else "one check every %.1f s" % budget["interval_s"])
                out.append("- %s: %d failed checks of %.1f allowed over the %s SLO window (target %s, %s): "
                           "**%.2f %% of the error budget** consumed." % (
                               p["name"], budget["failures"], budget["allowed_failures"],
                               format_span(budget["window_s"]), budget["target"], basis,
                               budget["consumed_pct"] or 0.0))
    out += ["", "## Plots", "", "The bundle from %s to %s, at most %d columns (each the worst of its samples):" % (
        format_time(document["bundle"]["first_ns"]), format_time(document["bundle"]["last_ns"]), PLOT_WIDTH),
        "", "```"]
    width = max((len(p["label"]) for p in document["plots"]), default=10)
    for plot in document["plots"]:
        scale = ""
        if plot.get("low") is not None:
            scale = "  %s .. %s" % (value_text(plot["label"], plot["low"]), value_text(plot["label"], plot["high"]))
        out.append("%-*s %s%s" % (width, plot["label"], plot["line"], scale))
    out += ["```", ""]
    bundle = document["bundle"]
    note = "%d records" % bundle["records"]
    if bundle["damaged_records"]:
        note += ", %d damaged and skipped" % bundle["damaged_records"]
    if bundle["truncated"]:
        note += "; the bundle reached incidents.bundle_max_bytes and stopped growing"
    out += ["Bundle: %s." % note, ""]
    out += ["## Postmortem (to fill in; blameless)", "",
            "- **Summary**: ", "- **Root cause**: ", "- **Trigger**: ", "- **Resolution**: ",
            "- **What went well / what did not**: ", "",
            "| action | owner | due |", "|---|---|---|", "| | | |", ""]
    return "\n".join(out)
