"""Workload attribution: each pattern of docs/cgroups.md against recorded cgroup paths,
and the names read from recorded runtime state under a host root."""

import json
import os

import pytest

from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems
from hostdiag.sources.workloads import WorkloadResolver, classify

ID = "3f4e7a9c1b2d8e6f0a5c4b3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
ID2 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_ = UID.replace("-", "_")

# (recorded path, expected fields). Paths as /proc/PID/cgroup shows them on
# hosts running each runtime and cgroup driver.
RECORDED = [
    # systemd
    ("/system.slice/nginx.service",
     {"kind": "unit", "name": "nginx.service", "unit": "nginx.service"}),
    ("/system.slice/system-getty.slice/getty@tty1.service",
     {"kind": "unit", "name": "getty@tty1.service"}),
    ("/user.slice/user-1000.slice/user@1000.service",
     {"kind": "user", "name": "user@1000.service", "uid": 1000}),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
     {"kind": "unit", "name": "dbus.service", "uid": 1000}),
    ("/user.slice/user-1000.slice/session-3.scope",
     {"kind": "scope", "name": "session-3.scope", "uid": 1000}),
    ("/system.slice", {"kind": "slice", "name": "system.slice"}),
    ("/init.scope", {"kind": "scope", "name": "init.scope"}),
    ("/system.slice/var-lib-docker.mount", {"kind": "unit", "name": "var-lib-docker.mount"}),
    # docker: cgroupfs and systemd drivers
    ("/docker/" + ID, {"kind": "container", "runtime": "docker", "id": ID, "short_id": ID[:12]}),
    ("/system.slice/docker-%s.scope" % ID,
     {"kind": "container", "runtime": "docker", "id": ID, "unit": "docker-%s.scope" % ID}),
    # containerd (Kubernetes, both drivers)
    ("/kubepods/burstable/pod%s/%s" % (UID, ID),
     {"kind": "container", "runtime": "cri", "id": ID, "pod_uid": UID, "qos": "burstable"}),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope" % (UID_, ID),
     {"kind": "container", "runtime": "containerd", "id": ID, "pod_uid": UID, "qos": "burstable"}),
    # CRI-O, container and its conmon
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/crio-%s.scope" % (UID_, ID),
     {"kind": "container", "runtime": "cri-o", "id": ID, "pod_uid": UID, "qos": "besteffort"}),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/crio-conmon-%s.scope" % (UID_, ID),
     {"kind": "container", "runtime": "cri-o", "id": ID}),
    ("/kubepods/besteffort/pod%s/crio-%s" % (UID, ID),
     {"kind": "container", "runtime": "cri-o", "pod_uid": UID, "qos": "besteffort"}),
    # podman: systemd (root and rootless), cgroupfs, conmon, nested "container" leaf
    ("/machine.slice/libpod-%s.scope" % ID, {"kind": "container", "runtime": "podman", "id": ID}),
    ("/machine.slice/libpod-%s.scope/container" % ID, {"kind": "container", "runtime": "podman", "id": ID}),
    ("/machine.slice/libpod-conmon-%s.scope" % ID, {"kind": "container", "runtime": "podman", "id": ID}),
    ("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-%s.scope" % ID,
     {"kind": "container", "runtime": "podman", "id": ID, "uid": 1000}),
    ("/libpod_parent/libpod-%s" % ID, {"kind": "container", "runtime": "podman", "id": ID}),
    ("/libpod_parent/" + ID, {"kind": "container", "runtime": "podman", "id": ID}),
    # Kubernetes pods: guaranteed (directly under kubepods), burstable, besteffort
    ("/kubepods/pod" + UID, {"kind": "pod", "id": UID, "pod_uid": UID, "qos": "guaranteed"}),
    ("/kubepods/burstable/pod" + UID, {"kind": "pod", "pod_uid": UID, "qos": "burstable"}),
    ("/kubepods.slice/kubepods-pod%s.slice" % UID_,
     {"kind": "pod", "pod_uid": UID, "qos": "guaranteed", "unit": "kubepods.slice"}),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice" % UID_,
     {"kind": "pod", "pod_uid": UID, "qos": "besteffort"}),
    ("/kubepods.slice/kubepods-besteffort.slice", {"kind": "slice", "name": "kubepods-besteffort.slice"}),
    # LXC
    ("/lxc.payload.web1", {"kind": "container", "runtime": "lxc", "name": "web1"}),
    ("/lxc/web1", {"kind": "container", "runtime": "lxc", "name": "web1"}),
    # neither
    ("/", {"kind": "other", "name": "/"}),
    ("/process_api/d424119e6aaa31851c67920db64b7f7e", {"kind": "other"}),
    ("/" + ID2[:63], {"kind": "other"}),
]


@pytest.mark.parametrize("path,expected", RECORDED, ids=[p for p, _ in RECORDED])
def test_recorded_path(path, expected):
    workload = classify(path)
    assert {key: workload[key] for key in expected} == expected


def test_every_workload_has_the_same_keys():
    keys = {tuple(sorted(classify(path))) for path, _ in RECORDED}
    assert len(keys) == 1


def test_a_pod_uid_needs_kubepods_above_it():
    workload = classify("/system.slice/pod" + UID)
    assert (workload["kind"], workload["name"], workload["pod_uid"]) == ("slice", "system.slice", None)


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(data)


@pytest.fixture
def host(tmp_path):
    """A recorded host root with docker, containers/storage and kubelet state."""
    rootfs = tmp_path
    _write(str(rootfs / "var/lib/docker/containers" / ID / "config.v2.json"),
           json.dumps({"ID": ID, "Name": "/web-frontend", "State": {"Running": True}}))
    _write(str(rootfs / "var/lib/containers/storage/overlay-containers/containers.json"),
           json.dumps([{"id": ID2, "names": ["k8s_app_api-7d9f_shop_%s_0" % UID], "image": "x"}]))
    os.makedirs(str(rootfs / "var/log/pods" / ("shop_api-7d9f_%s" % UID)))
    other = "11111111-2222-3333-4444-555555555555"
    _write(str(rootfs / "var/lib/kubelet/pods" / other / "etc-hosts"),
           "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.1.2.3\tbatch-job-x\n")
    projected = rootfs / "var/lib/kubelet/pods" / other / "volumes/kubernetes.io~projected"
    _write(str(projected / "kube-api-access-abcde/namespace"), "jobs")
    return HostRoot(rootfs=str(rootfs)), other


def test_names_from_runtime_state(host):
    root, other = host
    resolver = WorkloadResolver(root)
    problems = Problems()
    paths = ["/docker/" + ID,
             "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/crio-%s.scope" % (UID_, ID2),
             "/kubepods/besteffort/pod" + UID,
             "/kubepods/besteffort/pod" + other,
             "/system.slice/docker-%s.scope" % ID2]
    found = resolver.resolve_all(paths + [None], problems)
    assert found[paths[0]]["name"] == "web-frontend"
    assert found[paths[1]]["name"] == "k8s_app_api-7d9f_shop_%s_0" % UID
    assert found[paths[1]]["namespace"] == "shop"
    assert (found[paths[2]]["namespace"], found[paths[2]]["name"]) == ("shop", "api-7d9f")
    assert (found[paths[3]]["namespace"], found[paths[3]]["name"]) == ("jobs", "batch-job-x")
    # No docker state for this id: no name, and not a problem.
    assert found[paths[4]]["name"] is None
    assert problems.all() == []


def test_unreadable_runtime_state_is_one_problem(host):
    root, _ = host
    _write(root.host("var/lib/docker/containers", ID2, "config.v2.json"), "{not json")
    problems = Problems()
    workload = WorkloadResolver(root).resolve("/docker/" + ID2, problems)
    assert workload["name"] is None
    assert [(e["kind"], e["path"].endswith("config.v2.json")) for e in problems.all()] == [("malformed", True)]


def test_names_are_read_again_after_a_refresh(host):
    root, _ = host
    resolver = WorkloadResolver(root, refresh_every=2)
    path = "/docker/" + ID
    problems = Problems()
    assert resolver.resolve_all([path], problems)[path]["name"] == "web-frontend"
    _write(root.host("var/lib/docker/containers", ID, "config.v2.json"), json.dumps({"Name": "/renamed"}))
    assert resolver.resolve_all([path], problems)[path]["name"] == "renamed"
