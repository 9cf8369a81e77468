"""The WORKLOADS pane of `diag top`: on a real frame of this host when it has
a cgroup table, and on a frame with known cgroups for the ranking and the
columns."""

from hostdiag.apps.top import HostFrames
from hostdiag.sources.hostroot import HostRoot
from hostdiag.views.top import MAX_WORKLOADS, TopState, render_screen


def _frame(cgroups, cpu):
    rows = [{"path": "/", "memory": {"current": 8 << 30}}] + [
        {"path": path, "memory": {"current": memory, "max": limit}} for path, memory, limit in cgroups]
    workloads = {"/system.slice/web.service": {"kind": "unit", "name": "web.service"},
                 "/system.slice": {"kind": "slice", "name": "system.slice"},
                 "/docker/" + "ab" * 32: {"kind": "container", "name": "shop", "id": "ab" * 32}}
    return {"snapshot": {"meta": {}, "cgroups": {"cgroups": rows, "workloads": workloads}},
            "rates": {"cgroups": {path: {"cpu_pct": pct, "throttled_periods_pct": 30.0 if pct > 40 else 0.0}
                                  for path, pct in cpu.items()}}}


def test_the_pane_ranks_workloads_by_cpu_and_skips_slices_and_the_root():
    frame = _frame([("/system.slice", 900 << 20, None), ("/system.slice/web.service", 300 << 20, 512 << 20),
                    ("/docker/" + "ab" * 32, 100 << 20, None), ("/user.slice/x.scope", 10 << 20, None),
                    ("/a.scope", 1 << 20, None), ("/b.scope", 1 << 20, None)],
                   {"/system.slice": 90.0, "/system.slice/web.service": 50.0, "/docker/" + "ab" * 32: 70.0,
                    "/user.slice/x.scope": 1.0})
    lines = render_screen(frame, TopState(1.0), 80, 40)
    start = lines.index("WORKLOADS  7 cgroups, top by cpu")
    pane = lines[start + 1:start + 1 + MAX_WORKLOADS]
    assert [line.split()[:4] for line in pane] == [["container", "shop", "cpu", "70.0%"],
                                                   ["web.service", "cpu", "50.0%", "mem"],
                                                   ["/user.slice/x.scope", "cpu", "1.0%", "mem"]]
    assert pane[1].endswith("mem 300.0M of 512.0M  throttled 30.0%")
    assert all(len(line) <= 80 for line in lines)
    # A short screen keeps its process rows: no pane.
    assert not any(line.startswith("WORKLOADS") for line in render_screen(frame, TopState(1.0), 80, 20))


def test_no_pane_without_a_cgroup_table():
    lines = render_screen({"snapshot": {"meta": {}}, "rates": None}, TopState(1.0), 80, 40)
    assert not any(line.startswith("WORKLOADS") for line in lines)


def test_the_pane_on_a_real_frame():
    frames = HostFrames(HostRoot(), netlink=True)
    try:
        frames()
        frame = frames()
    finally:
        frames.close()
    lines = render_screen(frame, TopState(1.0), 80, 40)
    has_table = frame["snapshot"]["cgroups"] is not None
    assert any(line.startswith("WORKLOADS  %d cgroups" % len(frame["snapshot"]["cgroups"]["cgroups"]))
               for line in lines) if has_table else not any(line.startswith("WORKLOADS") for line in lines)
