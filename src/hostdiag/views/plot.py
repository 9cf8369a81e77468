"""A range of history as people read it: a sar-style table per metric,
CSV, Unicode sparklines and a small SVG chart.

Each takes a range document (apps.history): {"source", "from_ns", "to_ns",
"every_s", "metrics": [{"path", "buckets", "summary"}]}, the buckets and
summary of :mod:`hostdiag.derive.buckets`.
"""

import datetime
from xml.sax.saxutils import escape, quoteattr

from hostdiag.views.timefmt import NS, format_span, format_time

SPARKS = "▁▂▃▄▅▆▇█"

#: Sparkline characters per line before it wraps (a label column is added).
SPARK_WIDTH = 60

SVG_WIDTH, SVG_HEIGHT, SVG_MARGIN = 640, 200, 40
_SVG_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def _clock(ns, with_date, subsecond=False):
    """Local time of day (with the date for ranges of a day or more, with
    milliseconds for buckets under a second)."""
    moment = datetime.datetime.fromtimestamp(ns / NS).astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    return text + (".%03d" % (moment.microsecond // 1000) if subsecond else "")


def number(value):
    """A value as the table prints it: 2 decimals, none past 100000; "-" for None."""
    if value is None:
        return "-"
    if float(value).is_integer() or abs(value) >= 100000:
        return "%.0f" % value
    return "%.2f" % value


def _with_date(document):
    return document["to_ns"] - document["from_ns"] >= 86400 * NS


def render_range_table(document):
    """One sar-style block per metric: a row per bucket (its start time, the
    last value in it, min, avg, max and the number of samples), then the
    summary of the whole range; an empty bucket shows "-"."""
    with_date = _with_date(document)
    lines = ["range %s .. %s, every %s" % (format_time(document["from_ns"]), format_time(document["to_ns"]),
                                          format_span(document["every_s"]))]
    subsecond = document["every_s"] < 1
    time_width = (19 if with_date else 8) + (4 if subsecond else 0)
    for metric in document["metrics"]:
        lines.append("")
        lines.append(metric["path"])
        lines.append("%-*s  %14s %14s %14s %14s %4s" % (time_width, "TIME", "VALUE", "MIN", "AVG", "MAX", "N"))
        for bucket in metric["buckets"]:
            lines.append("%-*s  %14s %14s %14s %14s %4d" % (
                time_width, _clock(bucket["start_ns"], with_date, subsecond), number(bucket["value"]),
                number(bucket["min"]), number(bucket["avg"]), number(bucket["max"]), bucket["samples"]))
        total = metric["summary"]
        lines.append("%-*s  %14s %14s %14s %14s %4d" % (time_width, "Summary", "", number(total["min"]),
                                                       number(total["avg"]), number(total["max"]),
                                                       total["samples"]))
    return "\n".join(lines) + "\n"


def render_range_csv(document):
    """CSV, one row per metric and bucket: time (ISO-8601), epoch_s, metric,
    value, min, avg, max, samples; empty fields for empty buckets."""
    rows = ["time,epoch_s,metric,value,min,avg,max,samples"]
    for metric in document["metrics"]:
        for bucket in metric["buckets"]:
            fields = [format_time(bucket["start_ns"]), "%.3f" % (bucket["start_ns"] / NS), metric["path"]]
            fields += ["" if bucket[k] is None else repr(bucket[k]) for k in ("value", "min", "avg", "max")]
            fields.append(str(bucket["samples"]))
            rows.append(",".join('"%s"' % f.replace('"', '""') if "," in f or '"' in f else f for f in fields))
    return "\n".join(rows) + "\n"


def sparkline(values, low=None, high=None):
    """One character per value, ▁ (``low``) to █ (``high``); a space for None.
    ``low``/``high`` default to the least and greatest value."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low = min(known) if low is None else low
    high = max(known) if high is None else high
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARKS[0])
        else:
            index = int((value - low) / span * (len(SPARKS) - 1) + 0.5)
            out.append(SPARKS[max(0, min(len(SPARKS) - 1, index))])
    return "".join(out)


def render_range_plot(document):
    """A sparkline of each metric's bucket averages, SPARK_WIDTH buckets a
    line, each line under the time its first bucket starts; the range of
    values on the metric's line."""
    with_date = _with_date(document)
    lines = []
    for metric in document["metrics"]:
        total = metric["summary"]
        lines.append("%s  min %s  avg %s  max %s  (%d samples, every %s)" % (
            metric["path"], number(total["min"]), number(total["avg"]), number(total["max"]), total["samples"],
            format_span(document["every_s"])))
        buckets = metric["buckets"]
        for start in range(0, len(buckets), SPARK_WIDTH):
            chunk = buckets[start:start + SPARK_WIDTH]
            lines.append("  %s |%s|" % (_clock(chunk[0]["start_ns"], with_date),
                                        sparkline([b["avg"] for b in chunk], total["min"], total["max"])))
    return "\n".join(lines) + "\n"


def render_range_svg(document):
    """A small line chart as SVG text: one polyline per metric (scaled to its
    own min..max, so metrics of different units share the chart), the times
    of both ends and each metric's range in the legend."""
    width, height, margin = SVG_WIDTH, SVG_HEIGHT, SVG_MARGIN
    legend_height = 16 * len(document["metrics"])
    total_height = height + legend_height
    span_ns = max(1, document["to_ns"] - document["from_ns"])
    parts = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
             % (width, total_height, width, total_height),
             '<rect x="0" y="0" width="%d" height="%d" fill="white"/>' % (width, total_height),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (margin, height - margin, width - margin,
                                                                        height - margin),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (margin, margin / 2, margin, height - margin),
             '<text x="%d" y="%d" font-size="11" font-family="sans-serif">%s</text>'
             % (margin, height - margin + 14, escape(format_time(document["from_ns"]))),
             '<text x="%d" y="%d" font-size="11" font-family="sans-serif" text-anchor="end">%s</text>'
             % (width - margin, height - margin + 14, escape(format_time(document["to_ns"])))]
    plot_w, plot_h = width - 2 * margin, height - 1.5 * margin
    for i, metric in enumerate(document["metrics"]):
        colour = _SVG_COLOURS[i % len(_SVG_COLOURS)]
        total = metric["summary"]
        low, high = total["min"], total["max"]
        points = []
        for bucket in metric["buckets"]:
            if bucket["avg"] is None:
                continue
            x = margin + (bucket["start_ns"] - document["from_ns"]) / span_ns * plot_w
            fraction = 0.5 if high == low else (bucket["avg"] - low) / (high - low)
            y = height - margin - fraction * plot_h
            points.append("%.1f,%.1f" % (x, y))
        if points:
            parts.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points=%s/>'
                         % (colour, quoteattr(" ".join(points))))
        parts.append('<text x="%d" y="%d" font-size="12" font-family="sans-serif" fill="%s">%s</text>' % (
            margin, height + 16 * i + 4, colour,
            escape("%s  %s .. %s" % (metric["path"], number(low), number(high)))))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
