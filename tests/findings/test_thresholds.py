"""The thresholds table is declared once, and docs/findings.md lists exactly it."""

import pathlib
import re

from hostdiag.findings import TABLE, THRESHOLDS, rules
from hostdiag.findings.thresholds import at_least, limit_text, over
from hostdiag.findings import cgroups as cgroup_rules
from hostdiag.findings import events as event_rules
from hostdiag.findings import processes as process_rules
from hostdiag.findings import netns as netns_rules

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "findings.md"


def _documented_thresholds():
    """The rows of the "## Thresholds" table: (name, value, unit, why)."""
    section = DOCS.read_text().split("\n## Thresholds\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.fullmatch(r"\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", line.strip())
        if match:
            rows.append(tuple(cell.strip() for cell in match.groups()))
    return rows


def test_docs_list_exactly_the_declared_thresholds():
    documented = _documented_thresholds()
    declared = [(t.name, t.value, t.unit, t.why) for t in TABLE]
    assert [(n, float(v), u, w) for n, v, u, w in documented] == [
        (n, float(v), u, w) for n, v, u, w in declared]


def test_every_threshold_is_used_by_a_rule():
    source = "".join(pathlib.Path(module.__file__).read_text() for module in (rules, cgroup_rules, event_rules,
                                                                          process_rules, netns_rules))
    unused = [name for name in THRESHOLDS if '"%s"' % name not in source]
    assert unused == []


def test_names_are_unique_and_values_numbers():
    assert len(THRESHOLDS) == len(TABLE)
    assert all(type(t.value) in (int, float) and t.unit and t.why for t in TABLE)


def test_comparisons_and_text():
    assert over(91, "cpu_busy_pct") and not over(90, "cpu_busy_pct")
    assert at_least(95, "fs_used_crit_pct") and not at_least(94.9, "fs_used_crit_pct")
    assert not over(None, "cpu_busy_pct") and not over(True, "cpu_busy_pct")
    assert limit_text("busy", "cpu_busy_pct", unit=" %") == "busy > 90 %"
    assert limit_text("await", "disk_await_ms", op=">=", unit=" ms") == "await >= 50 ms"
