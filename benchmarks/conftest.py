"""Shared fixtures of the benchmark suite and its end-of-run summary.

The suite compares, in one run, our compiled parsers, their pure-Python twins,
psutil and the raw-read floor (reading the same bytes and nothing else). Each
benchmark states its group and its ``variant`` in ``extra_info``; at the end of
the session the terminal summary prints every group's medians as ratios, and
the CPU-per-snapshot table of ``test_bench_snapshot.py``.

Timing lives in benchmarks/ only: tests/ has no timing asserts.
"""

import pytest

from hostdiag.sources.hostroot import HostRoot

from hostdiag import parsers as live_parsers
from hostdiag.parsers import proctext

from benchsupport import (
    COMPILED, COMPILED_ONLY, PSUTIL, PURE, PURE_ONLY, RAW, RESULTS, compiled_twin, live_description,
)


def pytest_report_header(config):
    import hostdiag

    return "hostdiag under test: %s; parsers %s" % (hostdiag.__file__, live_description())


@pytest.fixture(scope="session")
def results():
    return RESULTS


@pytest.fixture
def bench(benchmark):
    """pytest-benchmark's fixture, whose median is kept for the summary."""
    yield benchmark
    RESULTS.record(benchmark)


@pytest.fixture(scope="session")
def host_root():
    root = HostRoot()
    if not root.looks_like_procfs():
        pytest.skip("no procfs at /proc: benchmarks need a live Linux host")
    return root


@pytest.fixture(scope="session")
def compiled_parsers():
    """hostdiag._proctext, or a skip saying why it is not there."""
    return compiled_twin("proctext")


@pytest.fixture(scope="session")
def pure_parsers():
    return proctext


def _ratio(num, den):
    if num is None or den is None or den == 0:
        return "n/a"
    return "%.2f" % (num / den)


def _us(seconds):
    return "n/a" if seconds is None else "%.1f" % (seconds * 1e6)


def parser_ratio_rows(results):
    """One row per parser group: medians in µs and the three ratios the README reports."""
    rows = []
    for group in sorted(g for g in results.medians if g.startswith("parse ")):
        m = results.medians[group]
        rows.append((
            group,
            _us(m.get(RAW)), _us(m.get(COMPILED)), _us(m.get(PURE)),
            _us(m.get(PSUTIL)) if m.get(PSUTIL) is not None else "none *",
            _us(m.get(COMPILED_ONLY)), _us(m.get(PURE_ONLY)),
            _ratio(m.get(COMPILED), m.get(RAW)),
            _ratio(m.get(PURE), m.get(COMPILED)),
            _ratio(m.get(PSUTIL), m.get(COMPILED)),
        ))
    return rows


def _table(tr, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, header))
    tr.write_line(line)
    tr.write_line("-" * len(line))
    for row in rows:
        tr.write_line("  ".join("%-*s" % (w, str(c)) for w, c in zip(widths, row)))


# After pytest-benchmark's own tables, so that the ratios close the report.
@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    res = RESULTS
    if not res.medians and not res.cpu:
        return
    tr.write_sep("=", "hostdiag benchmark summary (medians, µs per call)")
    if live_parsers.implementation() != "compiled":
        tr.write_line("WARNING: collect() ran on the parsers %s: the snapshot figures "
                      "are not those of the compiled build" % live_description())
    rows = parser_ratio_rows(res)
    if rows:
        _table(tr, ("group", "raw", "read+compiled", "read+pure", "psutil",
                    "compiled only", "pure only", "compiled/raw", "pure/compiled",
                    "psutil/compiled"), rows)
        for group in sorted(res.notes):
            tr.write_line("* %s: %s" % (group, res.notes[group]))
    sections = sorted(g for g in res.medians if g.startswith("section "))
    if sections:
        tr.write_line("")
        floor = "raw_read + raw netlink dumps"
        decoded = floor + " decoded by hostdiag's row parsers"
        _table(tr, ("collect() source", "raw read of its files µs", "+ raw netlink dumps µs",
                    "+ decoded µs", "source µs", "source/raw", "source/(raw+netlink)"),
               [(g[len("section "):], _us(res.medians[g].get(RAW)),
                 _us(res.medians[g].get(floor)) if floor in res.medians[g] else "-",
                 _us(res.medians[g].get(decoded)) if decoded in res.medians[g] else "-",
                 _us(res.medians[g].get("source")),
                 _ratio(res.medians[g].get("source"), res.medians[g].get(RAW)),
                 _ratio(res.medians[g].get("source"), res.medians[g].get(floor))
                 if floor in res.medians[g] else "-")
                for g in sections])
    other = [g for g in sorted(res.medians)
             if not g.startswith(("parse ", "section ")) and g != "goal 1, paired"]
    for group in other:
        tr.write_line("")
        m = res.medians[group]
        base = m.get(RAW)
        _table(tr, ("%s: variant" % group, "median µs", "÷ raw read"),
               [(v, _us(s), _ratio(s, base)) for v, s in sorted(m.items(), key=lambda kv: kv[1])])
    if res.paired:
        tr.write_line("")
        tr.write_sep("-", "goal (1), paired: collect() ÷ its floor, alternated in rounds (CPU time)")
        _table(tr, ("collector", "median ratio", "quartiles", "collect() µs", "floor µs", "rounds"),
               [(kind, "%.2f" % p["ratio_median"], "%.2f–%.2f" % (p["ratio_q1"], p["ratio_q3"]),
                 "%.1f" % p["collect_us_median"], "%.1f" % p["floor_us_median"], p["rounds"])
                for kind, p in sorted(res.paired.items())])
    if res.cpu:
        tr.write_line("")
        tr.write_sep("-", "CPU per snapshot / scrape (process CPU time, user+system)")
        base = res.cpu.get("snapshot (netlink)", {}).get("cpu_s")
        _table(tr, ("what", "CPU µs per call", "calls", "÷ our snapshot (netlink)", "note"),
               [(label, _us(e["cpu_s"]), e["n"], _ratio(e["cpu_s"], base), e.get("note", ""))
                for label, e in sorted(res.cpu.items(), key=lambda kv: kv[1]["cpu_s"])])
