"""`diag history --metric`: the pure bucketing (derive.buckets), the views
(table, CSV, sparklines, SVG), and the command over a real agent, checked
against the records it serves."""

import csv
import io
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET

import pytest

from hostdiag.apps.history import main_history
from hostdiag.derive.buckets import MAX_BUCKETS, bucketize, lookup, metric_value, numeric_paths, summary
from hostdiag.views.plot import SPARKS, render_range_svg, sparkline
from agentproc import AgentProcess

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def test_lookup_by_key_by_list_name_and_by_index():
    data = {"memory": {"meminfo": {"MemAvailable": 5}}, "disks": [{"name": "vda", "sectors_read": 7}],
            "load": [0.5, 1.5], "flag": True, "text": "x"}
    assert lookup(data, "memory.meminfo.MemAvailable") == 5
    assert lookup(data, "disks.vda.sectors_read") == 7
    assert lookup(data, "load.1") == 1.5
    for missing in ("memory.meminfo", "memory.nope.x", "disks.sdb.sectors_read", "load.2", "flag", "text", ""):
        assert lookup(data, missing) is None, missing
    assert metric_value(data, {"cpu": {"busy_pct": 40.0}}, "rates.cpu.busy_pct") == 40.0
    assert metric_value(data, None, "rates.cpu.busy_pct") is None
    assert sorted(numeric_paths(data)) == ["disks.vda.sectors_read", "load.0", "load.1",
                                           "memory.meminfo.MemAvailable"]


def test_bucketize_groups_samples_and_keeps_empty_buckets():
    samples = [(T0 + 0, 1.0), (T0 + NS // 2, 3.0), (T0 + 2 * NS, 10.0), (T0 + 2 * NS + 1, None),
               (T0 - 1, 99.0), (T0 + 4 * NS, 5.0)]
    buckets = bucketize(samples, T0, T0 + 4 * NS, 1)
    assert [b["samples"] for b in buckets] == [2, 0, 1, 1]  # the sample at the end goes to the last bucket
    assert (buckets[0]["value"], buckets[0]["min"], buckets[0]["avg"], buckets[0]["max"]) == (3.0, 1.0, 2.0, 3.0)
    assert buckets[1]["value"] is None and buckets[1]["start_ns"] == T0 + NS
    assert summary(buckets) == {"samples": 4, "min": 1.0, "avg": pytest.approx(19 / 4), "max": 10.0}
    assert summary(bucketize([], T0, T0 + NS, 1))["avg"] is None
    with pytest.raises(ValueError):
        bucketize(samples, T0, T0 + NS, 0)
    with pytest.raises(ValueError):
        bucketize(samples, T0, T0 + (MAX_BUCKETS + 1) * NS, 1)


def test_sparkline_scales_low_to_high_with_blanks():
    assert sparkline([0, 7, None, 3.5]) == SPARKS[0] + SPARKS[-1] + " " + SPARKS[4]
    assert sparkline([2, 2]) == SPARKS[0] * 2
    assert sparkline([None]) == " "


@pytest.fixture(scope="module")
def agent():
    workdir = tempfile.mkdtemp(prefix="hdr-", dir="/tmp")
    process = AgentProcess(workdir)
    try:
        process.start().wait_ready().close()
        process.wait_newest(12)
        with process.client() as client:
            records = list(client.range(from_seq=1))
        yield process, records, workdir
    finally:
        process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _range_args(records):
    return ["--from", str(records[0].wall_ns), "--to", str(records[-1].wall_ns)]


def test_metric_table_json_csv_agree_with_the_records(agent, capsys):
    process, records, _ = agent
    path = "memory.meminfo.MemAvailable"
    expected = [r.snapshot["memory"]["meminfo"]["MemAvailable"] for r in records]
    base = ["--agent", process.address, "--metric", path, "--metric", "rates.cpu.total.busy_pct",
            *_range_args(records), "--every", "0.5"]

    assert main_history([*base, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    memory, busy = document["metrics"]
    assert memory["path"] == path and document["every_s"] == 0.5
    assert sum(b["samples"] for b in memory["buckets"]) == len(records)
    assert (memory["summary"]["min"], memory["summary"]["max"]) == (min(expected), max(expected))
    assert memory["summary"]["avg"] == pytest.approx(sum(expected) / len(expected))
    # Rates need a record before: the first record has none.
    assert busy["summary"]["samples"] == len(records) - 1
    assert 0 <= busy["summary"]["min"] <= busy["summary"]["max"] <= 100

    assert main_history([*base, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["metric"] for r in rows} == {path, "rates.cpu.total.busy_pct"}
    mem_rows = [r for r in rows if r["metric"] == path and r["samples"] != "0"]
    assert sum(int(r["samples"]) for r in mem_rows) == len(records)
    assert min(float(r["min"]) for r in mem_rows) == min(expected)

    assert main_history(base) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines.index(path) + 1
    assert lines[header].split() == ["TIME", "VALUE", "MIN", "AVG", "MAX", "N"]
    summary_line = next(line for line in lines[header:] if line.startswith("Summary"))
    assert summary_line.split()[1:4] == [str(min(expected)), "%.0f" % (sum(expected) / len(expected)),
                                         str(max(expected))]


def test_metric_plot_and_svg(agent, capsys):
    process, records, workdir = agent
    svg_path = os.path.join(workdir, "chart.svg")
    argv = ["--agent", process.address, "--metric", "rates.cpu.total.busy_pct", *_range_args(records),
            "--every", "0.2", "--plot", "--svg", svg_path]
    assert main_history(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("rates.cpu.total.busy_pct  min ")
    assert any(ch in out for ch in SPARKS)

    root = ET.parse(svg_path).getroot()
    svg = "{http://www.w3.org/2000/svg}"
    assert root.tag == svg + "svg"
    (line,) = root.iter(svg + "polyline")
    with open(svg_path) as f:
        written = f.read()
    capsys.readouterr()
    assert main_history([*argv[:-3], "--format", "json"]) == 0
    buckets = json.loads(capsys.readouterr().out)["metrics"][0]["buckets"]
    assert len(line.get("points").split()) == sum(1 for b in buckets if b["samples"])
    assert "rates.cpu.total.busy_pct" in written


def test_svg_of_a_made_up_range_is_well_formed_with_every_point():
    buckets = bucketize([(T0 + i * NS, float(i * i)) for i in range(10)], T0, T0 + 10 * NS, 1)
    document = {"from_ns": T0, "to_ns": T0 + 10 * NS, "every_s": 1,
                "metrics": [{"path": "a<&>b", "buckets": buckets, "summary": summary(buckets)}]}
    root = ET.fromstring(render_range_svg(document).split("\n", 1)[1])
    (line,) = root.iter("{http://www.w3.org/2000/svg}polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 10
    assert points[0][1] > points[-1][1]  # the smallest value is lowest on the chart (SVG y grows down)
    assert any(t.text.startswith("a<&>b") for t in root.iter("{http://www.w3.org/2000/svg}text"))


@pytest.mark.parametrize("argv,words", [
    (["--metric", "rates.cpu.busy_pct"], "did you mean rates.cpu.total.busy_pct"),
    (["--plot"], "go with --metric"),
    (["--metric", "memory.meminfo.MemAvailable", "--every", "0"], "--every: must be more than 0"),
    (["--metric", "memory.meminfo.MemAvailable", "--from", "-30d", "--every", "1"], "more than 10000 rows"),
])
def test_metric_errors_are_one_line(agent, capsys, argv, words):
    process, records, _ = agent
    assert main_history(["--agent", process.address, *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
