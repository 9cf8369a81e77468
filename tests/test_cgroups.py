"""The cgroup table on real cgroups: made by the tests under every hierarchy
this machine mounts (v1 controllers plus the unified tree), with real
processes moved in. Every cgroup is removed and every process killed in a
finally block. Recorded v2 trees (tests/fixtures/cgroup-v2-*) cover what this
machine cannot show: a pure v2 host with its controllers."""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from hostdiag.parsers import live_cgroup
from hostdiag.parsers.cgroup import parse_cgroup_mounts
from hostdiag.parsers.procpid import parse_cgroup
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems
from hostdiag.sources.workloads import WorkloadResolver

from cgroupscenes import BURNER, DEADLINE_S, FORK_LOOP, HOG, bases, child, made_cgroup
from cgroupscenes import go as _go, join as _join, write as _write

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

if os.geteuid() != 0:
    pytest.skip("making cgroups needs root", allow_module_level=True)


@pytest.fixture(scope="module")
def live():
    table = CgroupTable(HostRoot())
    problems = Problems()
    table.hierarchies = table.probe(problems)
    if not table.hierarchies:
        pytest.skip("no cgroup hierarchy mounted: %s" % problems.all())
    return table


def _row(table, path):
    problems = Problems()
    section = table.collect(problems)
    rows = [row for row in section["cgroups"] if row["path"] == path]
    assert len(rows) == 1, (path, [r["path"] for r in section["cgroups"]][:50])
    return rows[0], section, problems


def _poll(table, path, condition):
    """The row of ``path`` once ``condition(row)`` holds; fails at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        row = _row(table, path)[0]
        if condition(row):
            return row
        assert time.monotonic() < deadline, "condition not met in %d s: %r" % (DEADLINE_S, row)
        time.sleep(0.05)


def test_limits_and_files_of_a_new_cgroup(live):
    with made_cgroup(live, ("cpu", "cpuacct", "memory", "pids", "blkio")) as (path, dirs):
        _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), 25000)
        _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), 50000)
        _write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), 64 << 20)
        _write(os.path.join(dirs["pids"], "pids.max"), 7)
        row, section, problems = _row(live, path)
        assert section["layout"] in ("legacy", "hybrid")
        assert (row["cpu"]["quota_usec"], row["cpu"]["period_usec"]) == (25000, 50000)
        assert row["memory"]["max"] == 64 << 20
        assert (row["pids"]["current"], row["pids"]["max"], row["pids"]["events_max"]) == (0, 7, 0)
        assert row["cpu"]["usage_usec"] == 0 and row["memory"]["current"] == 0
        assert row["memory"]["stat"]["anon"] == 0 and row["memory"]["events"]["oom_kill"] == 0
        assert [e for e in problems.all() if path in e["path"]] == []


def test_cpu_burner_under_a_quota_is_throttled(live):
    with made_cgroup(live, ("cpu", "cpuacct")) as (path, dirs):
        _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), 10000)
        _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), 1000)
        with child(BURNER) as burner:
            _join(burner, dirs)
            before = _row(live, path)[0]["cpu"]
            _go(burner)
            cpu = _poll(live, path, lambda r: (r["cpu"]["nr_throttled"] or 0) >= 3)["cpu"]
            assert before["nr_throttled"] == 0
            assert cpu["throttled_usec"] > 0
            assert cpu["nr_periods"] >= cpu["nr_throttled"]
            assert cpu["usage_usec"] > before["usage_usec"]


def test_memory_hog_over_its_limit_is_oom_killed(live):
    with made_cgroup(live, ("memory",)) as (path, dirs):
        _write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), 48 << 20)
        with child(HOG) as hog:
            _join(hog, dirs)
            _go(hog)
            hog.wait(timeout=DEADLINE_S)
            assert hog.returncode == -signal.SIGKILL
            memory = _poll(live, path, lambda r: r["memory"]["events"]["oom_kill"] == 1)["memory"]
            assert memory["events"]["max"] > 0        # memory.failcnt: the limit was hit
            assert memory["max"] == 48 << 20


def test_fork_loop_under_pids_max_is_refused(live):
    code = FORK_LOOP
    with made_cgroup(live, ("pids",)) as (path, dirs):
        _write(os.path.join(dirs["pids"], "pids.max"), 5)
        with child(code) as loop:
            _join(loop, dirs)
            _go(loop)
            refused = int(loop.stdout.readline())
            pids = _row(live, path)[0]["pids"]
            _go(loop)                             # let the children go and be reaped
            loop.wait(timeout=DEADLINE_S)
            assert refused == 16                  # 20 forks, 4 children beside the parent
            assert pids == {"current": 5, "max": 5, "events_max": refused}


def test_unified_tree_gives_usage_and_pressure(live):
    with made_cgroup(live, ("unified",), suffix="-v2") as (path, dirs):
        with child(BURNER) as burner:
            _join(burner, dirs)
            _go(burner)
            row = _poll(live, path, lambda r: (r["cpu"]["usage_usec"] or 0) > 20000)
            assert row["pressure"]["cpu"]["some"]["total_us"] is not None
            assert set(row["pressure"]) == {"cpu", "memory", "io"}


class VanishingReader:
    """The live reader, but the first directory read inside ``victims``
    removes them first: the kernel then answers ENOENT, as when a cgroup goes
    between the listing of its parent and its reads."""

    def __init__(self, victims):
        self.victims = [os.fsencode(v) for v in victims]

    def read_dir(self, directory, specs, cap):
        if directory in self.victims:
            for victim in self.victims:
                os.rmdir(victim)
            self.victims = []
        return live_cgroup.read_dir(directory, specs, cap)


def test_a_cgroup_removed_mid_sample_is_skipped_and_counted(live):
    name = "/hd-test-%s" % uuid.uuid4().hex[:10]
    dirs = [base + name for base in bases(live, ("cpu", "memory")).values()]
    for directory in dirs:
        os.mkdir(directory)
    try:
        table = CgroupTable(HostRoot(), reader=VanishingReader(dirs))
        problems = Problems()
        section = table.collect(problems)
        assert name not in [row["path"] for row in section["cgroups"]]
        assert section["vanished"] == 1          # one cgroup, though in two hierarchies
        assert [e for e in problems.all() if name in e["path"]] == []
    finally:
        for directory in dirs:
            if os.path.isdir(directory):
                os.rmdir(directory)


def test_depth_and_count_bounds(live):
    with made_cgroup(live, ("cpu",)) as (path, dirs):
        os.makedirs(dirs["cpu"] + "/a/b/c")
        shallow = CgroupTable(HostRoot(), max_depth=1).collect(Problems())
        paths = [row["path"] for row in shallow["cgroups"]]
        assert path in paths and path + "/a" not in paths
        deep = [row["path"] for row in CgroupTable(HostRoot(), max_depth=4).collect(Problems())["cgroups"]]
        assert path + "/a/b/c" in deep
        capped = CgroupTable(HostRoot(), max_cgroups=2).collect(Problems())
        assert len(capped["cgroups"]) == 2 and capped["cgroups"][0]["path"] == "/"
        assert capped["omitted"] >= 1


def _fixture_table(name):
    # The tree is under root/, not at the top: a fixture directory with a
    # proc/ of its own is taken for a whole host tree by the diag tests.
    base = os.path.join(FIXTURES, name, "root")
    root = HostRoot(proc_root=os.path.join(base, "proc"), sys_root=os.path.join(base, "sys"), rootfs=base)
    return CgroupTable(root, clock_ticks=100), root


def test_recorded_pure_v2_host():
    table, root = _fixture_table("cgroup-v2-systemd")
    problems = Problems()
    section = table.collect(problems)
    assert section["layout"] == "unified"
    controllers = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
    assert section["hierarchies"] == [{"type": "cgroup2", "mount": "/sys/fs/cgroup", "root": "/",
                                       "controllers": controllers}]
    rows = {row["path"]: row for row in section["cgroups"]}
    web = rows["/system.slice/docker-4c1e0e3b8a6f2d9c7b5a3e1f0d2c4b6a8e0f1d3c5b7a9e2f4d6c8b0a1e3f5d7c.scope"]
    assert web["cpu"] == {"usage_usec": 98317211, "user_usec": 61004398, "system_usec": 37312813,
                          "nr_periods": 41233, "nr_throttled": 1822, "throttled_usec": 93781002,
                          "quota_usec": 50000, "period_usec": 100000}
    assert web["memory"]["max"] == 536870912 and web["memory"]["high"] == "max"
    assert web["memory"]["events"] == {"oom": 2, "oom_kill": 2, "high": 0, "max": 1375}
    assert web["memory"]["stat"] == {"anon": 301989888, "file": 104857600, "kernel": 9437184,
                                     "sock": 12288, "shmem": 0, "pgmajfault": 17}
    assert web["io"] == {"259:0": {"rbytes": 7340032, "wbytes": 1167360, "rios": 212, "wios": 45,
                                   "dbytes": 0, "dios": 0}}
    assert web["pids"] == {"current": 12, "max": 4915, "events_max": 0}
    assert web["pressure"]["memory"]["full"]["total_us"] == 1102931
    # The root has no cpu.max, memory.max or pids.*: their groups stay empty.
    assert rows["/"]["pids"] is None and rows["/"]["memory"]["max"] is None
    kinds = {path: WorkloadResolver(root).resolve(path, problems)["kind"] for path in rows}
    assert kinds["/system.slice/nginx.service"] == "unit"
    assert kinds["/user.slice/user-1000.slice/user@1000.service"] == "user"
    assert WorkloadResolver(root).resolve(web["path"], problems)["name"] == "web"
    # No swap accounting here: memory.swap.* are absent beside memory.current,
    # one problem per file; nginx's memory.stat has one truncated line.
    entries = {(e["path"], e["kind"]): e["count"] for e in problems.all()}
    assert entries == {("memory.swap.current", "missing"): 6, ("memory.swap.max", "missing"): 6,
                       ("memory.stat", "malformed"): 1}


def test_recorded_v2_host_without_psi_or_controllers():
    table, _ = _fixture_table("cgroup-v2-nopsi")
    problems = Problems()
    section = table.collect(problems)
    rows = {row["path"]: row for row in section["cgroups"]}
    assert section["layout"] == "unified"
    assert rows["/app.slice"]["pressure"] is None
    assert rows["/app.slice"]["memory"] is None and rows["/app.slice"]["cpu"]["usage_usec"] == 5200
    # A kernel without PSI: each pressure file is one problem, counting the
    # cgroups without it (the root is not counted: many files are never there).
    assert sorted((e["path"], e["kind"], e["count"]) for e in problems.all()) == [
        ("cpu.pressure", "missing", 1), ("io.pressure", "missing", 1), ("memory.pressure", "missing", 1)]


def test_no_cgroup_mounted_is_none_and_one_problem(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n23 1 0:22 / /sys rw - sysfs sysfs rw\n")
    problems = Problems()
    section = CgroupTable(HostRoot(proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"),
                                   rootfs=str(tmp_path))).collect(problems)
    assert section is None
    assert [e["kind"] for e in problems.all()] == ["missing"]


@pytest.mark.skipif(not (shutil.which("podman") and shutil.which("runc")), reason="podman and runc not installed")
def test_podman_container_is_attributed_with_its_name(live, tmp_path):
    # crun refuses a hybrid host whose unified tree holds a controller
    # (hugetlb here); runc accepts it. This machine's hard RLIMIT_NPROC and
    # NOFILE are below podman's defaults and there is no CAP_SYS_RESOURCE, so
    # the limits are given.
    name = "hd-test-%s" % uuid.uuid4().hex[:10]
    image = "hd-test-image"
    podman = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    # podman makes /libpod_parent (and /libpod_parent/conmon for its monitor
    # processes) in every hierarchy and leaves them; the test
    # removes what it made (the image too).
    (mounts, sysfs), _ = parse_cgroup_mounts(live.root.read_proc("self", "mountinfo"))
    parents = [live.host_path(m["mount"], sysfs) + "/libpod_parent" for m in mounts]
    parents = [p for p in parents if not os.path.isdir(p)]
    imported = False
    if subprocess.run(podman + ["image", "exists", image]).returncode != 0:
        rootfs = tmp_path / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        busybox = shutil.which("busybox")
        if busybox is None:
            pytest.skip("no busybox to build the test image from (apt-get install busybox-static)")
        shutil.copy(busybox, rootfs / "bin" / "busybox")
        os.symlink("busybox", rootfs / "bin" / "sleep")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(podman + ["import", "-", image], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
        imported = True
    try:
        run = subprocess.run(podman + ["run", "-d", "--name", name, "--network", "none",
                                       "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                       image, "/bin/sleep", "300"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        ident = run.stdout.strip().splitlines()[-1]
        pid = subprocess.run(podman + ["inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                             text=True, check=True).stdout.strip()
        root = HostRoot()
        path, _ = parse_cgroup(root.read_proc(pid, "cgroup"))
        assert path == "/libpod_parent/libpod-%s" % ident
        problems = Problems()
        workload = WorkloadResolver(root).resolve(path, problems)
        assert (workload["kind"], workload["runtime"], workload["id"], workload["short_id"], workload["name"]) == \
            ("container", "podman", ident, ident[:12], name)
        assert problems.all() == []
        row = _row(CgroupTable(root), path)[0]
        assert row["pids"]["current"] >= 1
    finally:
        subprocess.run(podman + ["rm", "-f", "-t", "0", name], capture_output=True)
        if imported:
            subprocess.run(podman + ["rmi", image], capture_output=True)
        for parent in parents:
            if os.path.isdir(parent):
                for sub, _, _ in sorted(os.walk(parent), key=lambda w: -len(w[0])):
                    os.rmdir(sub)
