"""`diag slo` as text: each probe's SLO figures and its latest result, in 80
columns (docs/availability.md)."""

from hostdiag.views.timefmt import NS, format_span, format_time

WIDTH = 80
_HEAD = "%-14s %6s %8s %8s %8s %8s %6s %6s %-6s"


def _percent(fraction, digits=3):
    return "-" if fraction is None else "%.*f%%" % (digits, fraction * 100.0)


def _budget(fraction):
    if fraction is None:
        return "-"
    percent = fraction * 100.0
    return "%.1f%%" % percent if abs(percent) < 1000 else "%.0f%%" % percent


def _burn(rate):
    if rate is None:
        return "-"
    return "%.1f" % rate if rate < 1000 else "%.0f" % rate


def _target(percent):
    return ("%.3f" % percent).rstrip("0").rstrip(".") + "%"


def _cut(text, width):
    return text if len(text) <= width else text[:width - 1] + "…"


def _last(result, sample_ns):
    """``ok 1.2 ms`` or ``refused (connection refused)``, with how long before the sample."""
    if result is None:
        return "no result yet"
    latency = result.get("latency_ms")
    took = "" if latency is None else " %.1f ms" % latency
    text = ("ok" if result.get("ok") else str(result.get("error"))) + took
    at_ns = result.get("at_ns")
    if isinstance(at_ns, int) and isinstance(sample_ns, int):
        text += ", %s before" % format_span((sample_ns - at_ns) / NS)
    if not result.get("ok") and result.get("detail"):
        text += " (%s)" % result["detail"]
    return text


def render_slo(label, record, probes, slos):
    """The text of `diag slo` for the record ``record`` ({seq, wall_ns}) of the
    history ``label`` names, from its ``probes`` and ``slo`` sections (lists or None)."""
    sample_ns = record.get("wall_ns")
    lines = [_cut("SLOs of the probes of %s" % label, WIDTH),
             "from sample %s taken at %s" % (record.get("seq"), format_time(sample_ns))]
    if not slos:
        lines.append("no probes in this sample (the agent's probe.list is empty; docs/availability.md)")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append((_HEAD % ("probe", "target", "avail 1h", "avail 1d", "avail30d", "budget", "burn1h", "burn5m",
                           "alert")).rstrip())
    latest = {r.get("name"): r for r in probes or () if isinstance(r, dict)}
    for slo in slos:
        name = slo.get("name")
        lines.append((_HEAD % (
            _cut(str(name), 14), _target(slo.get("target_percent") or 0), _percent(slo.get("availability_1h")),
            _percent(slo.get("availability_1d")), _percent(slo.get("availability_30d")),
            _budget(slo.get("budget_left")), _burn(slo.get("burn_1h")), _burn(slo.get("burn_5m")),
            slo.get("alert") or "-")).rstrip())
        result = latest.get(name)
        kind = "%s %s" % (result.get("kind"), result.get("target")) if result else ""
        bad = (slo.get("total_30d") or 0) - (slo.get("good_30d") or 0)
        lines.append(_cut("  30d %d of %d bad · last %s · %s" % (bad, slo.get("total_30d") or 0,
                                                                  _last(result, sample_ns), kind), WIDTH))
        if slo.get("alerts"):
            lines.append(_cut("  burn-rate alert: %s" % ", ".join(slo["alerts"]), WIDTH))
    lines.append("")
    lines.append("avail = good ÷ results · budget = 30-day error budget left · burn = spend rate")
    return "\n".join(lines) + "\n"
