"""Markdown tables and the three goals from a pytest-benchmark JSON file.

Usage::

    python -m pytest benchmarks -q --benchmark-json=bench.json
    python benchmarks/report.py bench.json

Medians are per call, in the run's pytest-benchmark timer (wall time unless
``--benchmark-timer=time.process_time``); CPU figures come from each benchmark's
``extra_info["cpu_us_per_call"]`` (see test_bench_snapshot.py).
"""

import json
import sys

RAW = "raw_read"
COMPILED = "read+compiled"
PURE = "read+pure"
PSUTIL = "psutil"
COMPILED_ONLY = "compiled parse only"
PURE_ONLY = "pure parse only"
NETLINK_FLOOR = "raw_read + raw netlink dumps"
NETLINK_DECODED = NETLINK_FLOOR + " decoded by hostdiag's row parsers"

# Goal (1): the snapshot may cost at most this many times the raw read of its
# files. The floor it is held to makes every kernel call collect() makes: the
# file reads, its other file-system calls and, with netlink, the four dumps.
GOAL_RAW_RATIO = 1.5
RAW_NO_NETLINK = "raw_read (no-netlink set)"
FLOOR_NO_NETLINK = "raw_read + fs syscalls (no-netlink set)"
FLOOR_NETLINK = "raw_read + fs syscalls + raw netlink dumps"
PAIRED_GROUP = "goal 1, paired"


def _us(seconds):
    return "–" if seconds is None else "%.1f" % (seconds * 1e6)


def _ratio(num, den):
    return "–" if num is None or not den else "%.2f" % (num / den)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load(path):
    with open(path) as f:
        doc = json.load(f)
    medians, info = {}, {}
    for bench in doc["benchmarks"]:
        variant = bench["extra_info"].get("variant", bench["name"])
        medians.setdefault(bench["group"], {})[variant] = bench["stats"]["median"]
        info.setdefault(bench["group"], {})[variant] = bench["extra_info"]
    return doc, medians, info


def parser_section(medians, info):
    rows = []
    for group in sorted(g for g in medians if g.startswith("parse ")):
        m = medians[group]
        any_info = next(iter(info[group].values()))
        psutil_cell = _us(m.get(PSUTIL)) if PSUTIL in m else "none¹"
        rows.append((
            "`%s` (%s B)" % (any_info["file"], any_info.get("bytes", "?")),
            _us(m.get(RAW)), _us(m.get(COMPILED)), _us(m.get(PURE)), psutil_cell,
            _us(m.get(COMPILED_ONLY)), _us(m.get(PURE_ONLY)),
            _ratio(m.get(COMPILED), m.get(RAW)), _ratio(m.get(PURE), m.get(COMPILED)),
            _ratio(m.get(PSUTIL), m.get(COMPILED)),
        ))
    return _table(("file", "raw read", "read+compiled", "read+pure", "psutil", "compiled parse only",
                   "pure parse only", "compiled/raw", "pure/compiled", "psutil/compiled"), rows)


def paired_section(info):
    rows = [(e["variant"], "%.2f" % e["ratio_median"], "%.2f–%.2f" % (e["ratio_q1"], e["ratio_q3"]),
             "%.1f" % e["collect_us_median"], "%.1f" % e["floor_us_median"], e["rounds"])
            for _v, e in sorted(info.get(PAIRED_GROUP, {}).items())]
    return _table(("collector", "collect() ÷ floor, median of rounds", "quartiles",
                   "collect() µs (median round)", "floor µs (median round)", "rounds"), rows)


def snapshot_section(medians, timer):
    m = medians.get("system snapshot", {})
    rows = [(variant, _us(s), _ratio(s, m.get(RAW)))
            for variant, s in sorted(m.items(), key=lambda kv: kv[1])]
    return _table(("variant", "median µs (%s)" % timer, "÷ raw read"), rows)


def sections_section(medians):
    rows = []
    for group in sorted(g for g in medians if g.startswith("section ")):
        m = medians[group]
        rows.append((group[len("section "):], _us(m.get(RAW)), _us(m.get(NETLINK_FLOOR)),
                     _us(m.get(NETLINK_DECODED)), _us(m.get("source")),
                     _ratio(m.get("source"), m.get(RAW))))
    return _table(("source", "raw read of its files (+ its fs calls)", "+ raw netlink dumps",
                   "+ decoded by hostdiag's row parsers", "source", "source/raw"), rows)


def cpu_section(info):
    snap = info.get("system snapshot", {})
    rows = []
    base = snap.get("collect() netlink", {}).get("cpu_us_per_call")
    for variant, extra in sorted(snap.items(), key=lambda kv: kv[1].get("cpu_us_per_call", 1e99)):
        cpu = extra.get("cpu_us_per_call")
        if cpu is None:
            continue
        label = variant.replace("(client side)", "(node_exporter's own CPU)")
        rows.append((label, "%.1f" % cpu, extra.get("cpu_calls", "?"),
                     "%.2f" % (cpu / base) if base else "–"))
    return _table(("what", "CPU µs per call", "calls", "÷ collect() netlink"), rows)


def goals(medians, info):
    snap = medians.get("system snapshot", {})
    snap_cpu = {v: e.get("cpu_us_per_call") for v, e in info.get("system snapshot", {}).items()}
    paired = {e["variant"].split(",")[0][len("collect() "):]: e
              for e in info.get(PAIRED_GROUP, {}).values()}
    lines = []
    for kind, files, floor in (("netlink", RAW, FLOOR_NETLINK), ("no netlink", RAW_NO_NETLINK, FLOOR_NO_NETLINK)):
        ours = snap["collect() %s" % kind]
        ratio = ours / snap[floor]
        cpu_ratio = snap_cpu["collect() %s" % kind] / snap_cpu[floor]
        line = ("(1) collect() %s against its floor (%s): %.2f× in the medians, %.2f× in the CPU loops"
                % (kind, floor, ratio, cpu_ratio))
        pair = paired.get(kind)
        if pair is not None:
            # The paired rounds see the same load on both sides: the verdict uses them.
            verdict = pair["ratio_median"] <= GOAL_RAW_RATIO
            line += (", %.2f× paired (median of %d rounds, quartiles %.2f–%.2f)"
                     % (pair["ratio_median"], pair["rounds"], pair["ratio_q1"], pair["ratio_q3"]))
        else:
            verdict = max(ratio, cpu_ratio) <= GOAL_RAW_RATIO
        lines.append(line + " (goal ≤ %.1f×): %s; %.2f× the file reads alone"
                     % (GOAL_RAW_RATIO, "met" if verdict else "NOT met", ours / snap[files]))
    for group in sorted(g for g in medians if g.startswith("parse ")):
        m = medians[group]
        if PSUTIL in m and COMPILED in m:
            lines.append("(2) %s: read+compiled %s µs vs psutil %s µs: %s"
                         % (group, _us(m[COMPILED]), _us(m[PSUTIL]),
                            "met" if m[COMPILED] < m[PSUTIL] else "NOT met"))
    cpu = info.get("system snapshot", {})
    ours = cpu.get("collect() netlink", {}).get("cpu_us_per_call")
    for variant, extra in cpu.items():
        if variant.startswith("node_exporter") and ours is not None:
            theirs = extra["cpu_us_per_call"]
            lines.append("(3) collect() netlink %.0f µs CPU vs %s %.0f µs CPU per scrape (%.2f×): %s"
                         % (ours, variant.replace(" (client side)", ""), theirs, theirs / ours,
                            "met" if ours < theirs else "NOT met"))
    return "\n".join("- " + line for line in lines)


def main(path):
    doc, medians, info = load(path)
    machine = doc.get("machine_info", {})
    timers = {b["options"].get("timer") for b in doc["benchmarks"]}
    timer = ", ".join(sorted(str(t) for t in timers))
    print("Run: %s, Python %s, %s, pytest-benchmark %s, timer %s\n" % (
        doc.get("datetime"), machine.get("python_version"), machine.get("release"),
        doc.get("version"), timer))
    print("## Parsers (median µs per call)\n")
    print(parser_section(medians, info))
    print("\n¹ no psutil equivalent for this file.\n")
    print("## System snapshot\n")
    print(snapshot_section(medians, timer))
    if info.get(PAIRED_GROUP):
        print("\n## Goal (1), paired rounds (CPU time)\n")
        print(paired_section(info))
    print("\n## CPU per snapshot / scrape\n")
    print(cpu_section(info))
    print("\n## Sources of collect() (median µs)\n")
    print(sections_section(medians))
    print("\n## Goals\n")
    print(goals(medians, info))


if __name__ == "__main__":
    main(sys.argv[1])
