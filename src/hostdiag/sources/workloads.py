"""Workload attribution: a cgroup path → the systemd unit, container or pod it belongs to.

:func:`classify` reads nothing: it matches the path's components against the
patterns of docs/cgroups.md (one table, tested with recorded paths in
tests/test_workloads.py). :class:`WorkloadResolver` adds the names the host
keeps on disk under its root, without a network call:

docker      ``var/lib/docker/containers/<id>/config.v2.json`` ("Name")
podman,     ``var/lib/containers/storage/<driver>-containers/containers.json``
CRI-O       (containers/storage, rootful; "names")
Kubernetes  ``var/log/pods/<namespace>_<name>_<uid>/`` (the kubelet's log
            directory per pod), else ``var/lib/kubelet/pods/<uid>/``: the
            namespace from the service-account volume's ``namespace`` file
            and the name from the pod's ``etc-hosts`` (its own hostname line)

containerd outside Kubernetes keeps its names in a bolt database: not covered.

A workload is a dict with the keys ``kind`` (unit, scope, slice, user,
container, pod or other), ``name``, ``id`` (the container's 64-hex id or the
pod's UID), ``short_id`` (12 characters), ``runtime`` (docker, containerd,
cri-o, podman, lxc, cri when a Kubernetes cgroupfs path does not say which,
or None), ``pod_uid``, ``qos`` (guaranteed, burstable, besteffort),
``namespace`` (Kubernetes), ``unit`` (the innermost systemd unit or scope on
the path) and ``uid`` (from ``user@UID.service`` or ``user-UID.slice``).
"""

import json
import os
import re

from hostdiag.sources.hostroot import MALFORMED, MISSING, SourceError

SOURCE = "workloads"
KINDS = ("unit", "scope", "slice", "user", "container", "pod", "other")

_HEX64 = r"([0-9a-f]{64})"
# (regular expression on one path component, runtime): the container patterns,
# tried on each component from the innermost out. The conmon scopes of podman
# and CRI-O are attributed to their container (the same id).
CONTAINER_PATTERNS = (
    (re.compile(r"docker-%s\.scope" % _HEX64), "docker"),
    (re.compile(r"cri-containerd-%s\.scope" % _HEX64), "containerd"),
    (re.compile(r"crio-(?:conmon-)?%s(?:\.scope)?" % _HEX64), "cri-o"),
    (re.compile(r"libpod-(?:conmon-)?%s(?:\.scope)?" % _HEX64), "podman"),
)
_BARE_ID = re.compile(_HEX64)
# A bare 64-hex component's runtime is told by its parent component.
BARE_ID_PARENTS = {"docker": "docker", "libpod_parent": "podman"}
_LXC = re.compile(r"lxc\.payload\.(.+)")
# Kubernetes pods: the cgroupfs driver (pod<uid with dashes>, under
# kubepods[/burstable|/besteffort]) and the systemd driver
# (kubepods[-burstable|-besteffort]-pod<uid with underscores>.slice).
_POD_CGROUPFS = re.compile(r"pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_POD_SYSTEMD = re.compile(
    r"kubepods(?:-(burstable|besteffort))?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice")
_QOS_CGROUPFS = {"burstable": "burstable", "besteffort": "besteffort"}
_USER_SERVICE = re.compile(r"user@(\d+)\.service")
_USER_SLICE = re.compile(r"user-(\d+)\.slice")
_UNIT = re.compile(r".+\.(service|scope|slice|socket|mount|swap)")
_UNIT_KIND = {"service": "unit", "socket": "unit", "mount": "unit", "swap": "unit",
              "scope": "scope", "slice": "slice"}


def _workload(kind, name):
    return {"kind": kind, "name": name, "id": None, "short_id": None, "runtime": None,
            "pod_uid": None, "qos": None, "namespace": None, "unit": None, "uid": None}


def _find_pod(parts):
    """(pod uid, qos, index of the pod component) or None."""
    for index, part in enumerate(parts):
        match = _POD_SYSTEMD.fullmatch(part)
        if match is not None:
            return match.group(2).replace("_", "-"), match.group(1) or "guaranteed", index
        match = _POD_CGROUPFS.fullmatch(part)
        if match is not None and any(p == "kubepods" or p.startswith("kubepods") for p in parts[:index]):
            qos = _QOS_CGROUPFS.get(parts[index - 1], "guaranteed") if index else "guaranteed"
            return match.group(1), qos, index
    return None


def _find_container(parts, pod_index):
    """(id or lxc name, runtime) of the innermost container component, or None."""
    for index in range(len(parts) - 1, -1, -1):
        part = parts[index]
        for pattern, runtime in CONTAINER_PATTERNS:
            match = pattern.fullmatch(part)
            if match is not None:
                return match.group(1), runtime
        if _BARE_ID.fullmatch(part):
            parent = parts[index - 1] if index else ""
            if pod_index is not None and index > pod_index:
                return part, "cri"
            return part, BARE_ID_PARENTS.get(parent)
        match = _LXC.fullmatch(part)
        if match is not None:
            return match.group(1), "lxc"
        if index and parts[index - 1] == "lxc":
            return part, "lxc"
    return None


def classify(path):
    """The workload of a cgroup path, from the path alone (names are None for
    containers and pods; :class:`WorkloadResolver` fills them)."""
    parts = [p for p in (path or "").split("/") if p]
    unit = uid = None
    unit_kind = None
    for part in parts:
        match = _USER_SERVICE.fullmatch(part) or _USER_SLICE.fullmatch(part)
        if match is not None:
            uid = int(match.group(1))
        match = _UNIT.fullmatch(part)
        if match is not None and not _POD_SYSTEMD.fullmatch(part):
            unit, unit_kind = part, _UNIT_KIND[match.group(1)]
            if _USER_SERVICE.fullmatch(part):
                unit_kind = "user"
    pod = _find_pod(parts)
    container = _find_container(parts, pod[2] if pod else None)
    if container is not None:
        workload = _workload("container", None)
        ident, runtime = container
        workload["runtime"] = runtime
        if runtime == "lxc":
            workload["name"] = ident
        else:
            workload["id"] = ident
            workload["short_id"] = ident[:12]
    elif pod is not None:
        workload = _workload("pod", None)
        workload["id"] = pod[0]
    elif unit is not None:
        workload = _workload(unit_kind, unit)
    else:
        workload = _workload("other", "/" + "/".join(parts))
    if pod is not None:
        workload["pod_uid"], workload["qos"] = pod[0], pod[1]
    workload["unit"] = unit
    workload["uid"] = uid
    return workload


# Sizes: a docker config.v2.json is a few KiB; containers.json lists every
# container of the storage (about 1 KiB each).
CONFIG_READ_CAP = 1024 * 1024
STORAGE_READ_CAP = 64 * 1024 * 1024
# Paths remembered with their workload; the memo is emptied when full.
MEMO_PATHS = 4096
# resolve_all calls between two refreshes of every name (a container renamed,
# a pod started after its first sample): the memo and the name indexes are
# dropped and read again.
REFRESH_EVERY = 60


class WorkloadResolver:
    """Workloads with names, for one :class:`HostRoot`.

    Each sample calls :meth:`resolve_all` for the cgroup paths it holds.
    Results are memoised by path (at most ``MEMO_PATHS``) and the name
    sources are read once per ``REFRESH_EVERY`` calls, when a path first
    needs them. A name source that is absent is normal (no docker on this
    host); any other failure is one problem.
    """

    def __init__(self, root, refresh_every=REFRESH_EVERY):
        self.root = root
        self.refresh_every = refresh_every
        self._calls = 0
        self._forget()

    def _forget(self):
        self._memo = {}
        self._storage = None  # container id → name, from containers/storage
        self._pods = None     # pod uid → (namespace, name), from var/log/pods
        self._docker = {}     # container id → name or None

    def _read_json(self, path, cap, problems):
        try:
            data = self.root.read(path, cap)
        except SourceError as exc:
            if exc.kind != MISSING:
                problems.add(SOURCE, exc.path, exc.kind, exc.message)
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            problems.add(SOURCE, path, MALFORMED, "not JSON: %s" % exc)
            return None

    def _storage_names(self, problems):
        if self._storage is not None:
            return self._storage
        base = self.root.host("var/lib/containers/storage")
        names = {}
        try:
            drivers = sorted(d for d in os.listdir(base) if d.endswith("-containers"))
        except OSError:
            drivers = []
        for driver in drivers:
            listed = self._read_json(os.path.join(base, driver, "containers.json"), STORAGE_READ_CAP, problems)
            if not isinstance(listed, list):
                continue
            for entry in listed:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    given = entry.get("names")
                    if isinstance(given, list) and given and isinstance(given[0], str):
                        names[entry["id"]] = given[0]
        self._storage = names
        return names

    def _docker_name(self, ident, problems):
        if ident not in self._docker:
            config = self._read_json(self.root.host("var/lib/docker/containers", ident, "config.v2.json"),
                                     CONFIG_READ_CAP, problems)
            name = config.get("Name") if isinstance(config, dict) else None
            self._docker[ident] = name.lstrip("/") if isinstance(name, str) else None
        return self._docker[ident]

    def _pod_names(self):
        """{uid: (namespace, name)} from the kubelet's var/log/pods/<ns>_<name>_<uid>
        (namespaces and UIDs hold no "_"; a pod name neither, being a DNS name)."""
        if self._pods is None:
            pods = {}
            try:
                entries = os.listdir(self.root.host("var/log/pods"))
            except OSError:
                entries = []
            for entry in entries:
                parts = entry.split("_")
                if len(parts) == 3 and all(parts):
                    pods[parts[2]] = (parts[0], parts[1])
            self._pods = pods
        return self._pods

    def _kubelet_pod(self, uid):
        """(namespace, name) from ``var/lib/kubelet/pods/<uid>``, either may be None."""
        base = self.root.host("var/lib/kubelet/pods", uid)
        namespace = name = None
        volumes = os.path.join(base, "volumes", "kubernetes.io~projected")
        try:
            projected = sorted(os.listdir(volumes))
        except OSError:
            projected = []
        for volume in projected:
            try:
                namespace = self.root.read(os.path.join(volumes, volume, "namespace"), 256).decode(
                    "utf-8", "replace").strip() or None
            except SourceError:
                continue
            break
        try:
            hosts = self.root.read(os.path.join(base, "etc-hosts"), 64 * 1024)
        except SourceError:
            hosts = b""
        # The kubelet writes the pod's own line last: "<pod IP>\t<hostname>".
        for line in reversed(hosts.decode("utf-8", "replace").splitlines()):
            tokens = line.split()
            if len(tokens) >= 2 and not line.startswith("#"):
                name = tokens[1]
                break
        return namespace, name

    def _name(self, workload, problems):
        runtime = workload["runtime"]
        if workload["kind"] == "container" and workload["id"] is not None:
            if runtime in ("docker", "cri"):
                workload["name"] = self._docker_name(workload["id"], problems)
            if workload["name"] is None and runtime in ("podman", "cri-o", "cri"):
                workload["name"] = self._storage_names(problems).get(workload["id"])
        uid = workload["pod_uid"]
        if uid is not None:
            found = self._pod_names().get(uid)
            if found is None:
                found = self._kubelet_pod(uid)
            workload["namespace"] = found[0]
            if workload["kind"] == "pod":
                workload["name"] = found[1]

    def resolve(self, path, problems):
        """The workload of ``path`` with the names found on disk."""
        workload = self._memo.get(path)
        if workload is None:
            workload = classify(path)
            self._name(workload, problems)
            if len(self._memo) >= MEMO_PATHS:
                self._memo.clear()
            self._memo[path] = workload
        return dict(workload)

    def resolve_all(self, paths, problems):
        """{path: workload} for every distinct path in ``paths`` (None skipped)."""
        self._calls += 1
        if self._calls % self.refresh_every == 0:
            self._forget()
        return {path: self.resolve(path, problems) for path in set(paths) if path is not None}
