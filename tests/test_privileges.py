"""The agent's sources as the unit runs them: as the system user hostdiag with
exactly the unit's AmbientCapabilities (read from the unit file), applied by
setpriv as systemd would, and once with none of them as the control.

What docs/security.md promises the capabilities buy is checked on a real
target: a process of another user (nobody) holding a TCP connection on
loopback, and a tmpfs mounted below a directory only root may search. What
the capabilities must not buy is checked too: writing outside the state and
runtime directories.

The interpreter must be reachable by the user without any capability (the
control run has none). A system Python is; one under /root is not, and then
each run happens in a private mount namespace that opens the way to it (see
``python_for_user``).
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from hostdiag.sources.privileges import (
    CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG, CAPABILITY_NAMES, FD_COUNT_BY_STAT, Privileges,
    parse_capability_mask, parse_kernel_version, unseen,
)
from agentproc import wait_for
from servicehelpers import REPO, SOURCE_TREE, unit_directives

USER = "hostdiag"
UNIT = os.path.join(REPO, "systemd", "hostdiag-agent.service")
NOBODY = 65534
KERNEL = parse_kernel_version(os.uname().release.encode())


def _unit_capabilities():
    with open(UNIT) as unit:
        directives = unit_directives(unit.read())
    return " ".join(directives["AmbientCapabilities"]).split()


def _unsearchable_ancestor(path):
    """The topmost directory above ``path`` that others may not search, or None."""
    found = None
    path = os.path.dirname(os.path.realpath(path))
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            found = path
        path = os.path.dirname(path)
    return found


@pytest.fixture(scope="module")
def service_user():
    created = False
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", USER], check=True)
        entry = pwd.getpwnam(USER)
        created = True
    try:
        yield entry
    finally:
        if created:
            subprocess.run(["userdel", USER], check=True)


@pytest.fixture(scope="module")
def python_for_user():
    """A command prefix that lets the user run this interpreter: nothing for a
    system Python; for one below a directory others may not search (/root),
    a private mount namespace where that directory is an empty tmpfs of mode
    0755 with the interpreter's tree bind-mounted back at the same path."""
    hidden = _unsearchable_ancestor(sys.prefix)
    if hidden is None:
        yield []
        return
    tree = os.path.join(hidden, os.path.relpath(os.path.realpath(sys.prefix), hidden).split(os.sep)[0])
    stage = tempfile.mkdtemp(prefix="hostdiag-test-python-", dir="/usr/local/lib")
    try:
        yield ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$1" "$3" && mount -t tmpfs -o mode=0755 hostdiag-test "$2" && mkdir -p "$1" '
               '&& mount --bind "$3" "$1" && shift 3 && exec "$@"', "sh", tree, hidden, stage]
    finally:
        os.rmdir(stage)


@pytest.fixture(scope="module")
def target():
    """A process of another user with a TCP connection on loopback: (pid, inode of its socket)."""
    code = ("import socket, sys\n"
            "listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen()\n"
            "client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()\n"
            "print(client.getsockname()[1], flush=True); sys.stdin.read()\n")
    child = subprocess.Popen(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                              sys.executable, "-c", code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        inode = None
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and int(fields[7]) == NOBODY:
                inode = int(fields[9])
        assert inode, "the target's socket is not in /proc/net/tcp"
        yield child.pid, inode
    finally:
        child.kill()
        child.wait()


@pytest.fixture(scope="module")
def hidden_mount():
    """A tmpfs below a directory of mode 0700 owned by root."""
    parent = tempfile.mkdtemp(prefix="hd-hidden-", dir="/var/tmp")
    point = os.path.join(parent, "mnt")
    os.mkdir(point)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hostdiag-test", point], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", point], check=True)
        shutil.rmtree(parent)


@pytest.fixture(scope="module")
def state_dirs(service_user):
    """The service's state and runtime directories, owned by it; and a root-owned
    directory beside them that it must not write to."""
    base = tempfile.mkdtemp(prefix="hd-priv-", dir="/var/tmp")
    os.chmod(base, 0o755)
    dirs = {name: os.path.join(base, name) for name in ("state", "runtime", "rootowned")}
    for name, path in dirs.items():
        os.mkdir(path, 0o750 if name != "rootowned" else 0o755)
        if name != "rootowned":
            os.chown(path, service_user.pw_uid, service_user.pw_gid)
    try:
        yield dirs
    finally:
        shutil.rmtree(base)


def _service_command(python_for_user, service_user, capabilities, argv):
    """This interpreter with ``argv``, as the service user holding exactly
    ``capabilities`` (inheritable, ambient and bounding), as systemd sets them."""
    caps = ",".join(["-all"] + ["+" + name.lower()[4:] for name in capabilities])
    return python_for_user + [
        "setpriv", "--reuid=%d" % service_user.pw_uid, "--regid=%d" % service_user.pw_gid, "--init-groups",
        "--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, "--no-new-privs",
        sys.executable] + argv


SERVICE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_TREE, "LANG": "C.UTF-8"}


def _run_as_service(python_for_user, service_user, capabilities, argv):
    return subprocess.run(_service_command(python_for_user, service_user, capabilities, argv),
                          capture_output=True, text=True, env=SERVICE_ENV, cwd="/", timeout=300)


PROBE = r"""
import errno, json, os, sys
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems
from hostdiag.sources.sock_diag import SocketTable
from hostdiag.sources.proc_pid_fd import map_pids
from hostdiag.sources.privileges import privilege_lines

inode, dirs = int(sys.argv[1]), sys.argv[2:]
problems = Problems()
writes = {}
for directory in dirs:
    try:
        with open(os.path.join(directory, "probe"), "w"):
            pass
        writes[directory] = "ok"
    except OSError as exc:
        writes[directory] = errno.errorcode[exc.errno]
with SocketTable(HostRoot()) as table:
    tcp_info = [s["tcp_info"] for s in table.sockets([inode], problems) if s["tcp_info"]]
print(json.dumps({
    "tcp_info": tcp_info,
    "problems": problems.entries,
    "owners": {str(k): v for k, v in map_pids(HostRoot(), [inode], problems).items()},
    "writes": writes,
    "privileges": privilege_lines(HostRoot()),
}))
"""


def _observe(python_for_user, service_user, capabilities, target, hidden_mount, state_dirs):
    pid, inode = target
    report = _run_as_service(python_for_user, service_user, capabilities,
                             ["-m", "hostdiag", "report", "--format", "json", "--interval", "0"])
    assert report.returncode == 0, report.stderr
    snapshot = json.loads(report.stdout)["snapshot"]
    writable = [state_dirs["state"], state_dirs["runtime"], state_dirs["rootowned"], "/etc", "/usr/local/lib",
                "/var/lib", "/"]
    probe = _run_as_service(python_for_user, service_user, capabilities,
                            ["-c", PROBE, str(inode)] + writable)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    process = next(p for p in snapshot["processes"]["processes"] if p["pid"] == pid)
    mount = next(m for m in snapshot["filesystems"] if m["mountpoint"] == hidden_mount)
    return {
        "io": process["read_bytes"] is not None and process["write_bytes"] is not None,
        "fd_count": process["fd_count"],
        "cmdline": process["cmdline"] is not None and "socket" in " ".join(process["cmdline"]),
        "denied": sorted(process["denied"]),
        "tcp_info": seen["tcp_info"],
        "problems": seen["problems"],
        "kmsg": snapshot["kernel"]["kmsg"] is not None,
        "statvfs": mount["size_bytes"],
        "owners": seen["owners"],
        "writes": seen["writes"],
        "privileges": seen["privileges"],
        "errors": snapshot["meta"]["errors"],
    }


def test_the_unit_grants_only_capabilities_the_document_explains():
    assert set(_unit_capabilities()) <= set(CAPABILITY_NAMES.values())


def test_with_the_units_capabilities_every_promised_section_is_there(
        python_for_user, service_user, target, hidden_mount, state_dirs):
    seen = _observe(python_for_user, service_user, _unit_capabilities(), target, hidden_mount, state_dirs)
    pid, inode = target
    assert seen["io"] and seen["cmdline"] and seen["denied"] == []
    assert seen["fd_count"] >= 5  # stdin, stdout and its three sockets
    assert len(seen["tcp_info"]) == 1
    assert [owner["pid"] for owner in seen["owners"][str(inode)]] == [pid]
    assert seen["statvfs"] == 1024 * 1024
    assert seen["kmsg"], seen["errors"]
    assert seen["privileges"][1] == "cannot see: nothing the agent reads", seen["privileges"]
    # Only its own directories are writable: the capabilities read, they never write.
    assert seen["writes"] == {
        state_dirs["state"]: "ok", state_dirs["runtime"]: "ok", state_dirs["rootowned"]: "EACCES",
        "/etc": "EACCES", "/usr/local/lib": "EACCES", "/var/lib": "EACCES", "/": "EACCES"}


def test_without_capabilities_the_agent_still_runs_and_says_what_is_denied(
        python_for_user, service_user, target, hidden_mount, state_dirs):
    seen = _observe(python_for_user, service_user, [], target, hidden_mount, state_dirs)
    pid, inode = target
    assert not seen["io"] and seen["cmdline"]
    # From Linux 6.2 the fd count is stat()'s st_size of /proc/PID/fd, which needs
    # no capability; before, the directory is listed and that is denied.
    if KERNEL >= FD_COUNT_BY_STAT:
        assert seen["fd_count"] >= 5 and seen["denied"] == ["io"]
    else:
        assert seen["fd_count"] is None and seen["denied"] == ["fd", "io"]
    # sock_diag needs no capability: the socket and its tcp_info are still there.
    assert len(seen["tcp_info"]) == 1, seen["problems"]
    assert seen["owners"] == {}
    assert seen["statvfs"] is None
    kinds = {(e["source"], e["kind"]) for e in seen["errors"]}
    assert ("filesystems", "access_denied") in kinds, seen["errors"]
    with open("/proc/sys/kernel/dmesg_restrict") as restrict:
        if restrict.read().strip() == "1":
            assert not seen["kmsg"] and ("kernel", "access_denied") in kinds, seen["errors"]
    assert seen["privileges"][0].endswith("capabilities none")
    unseen = "\n".join(seen["privileges"][2:])
    for needed in ("CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"):
        assert needed in unseen


def test_the_agent_runs_as_the_service_user_and_writes_only_its_directories(
        python_for_user, service_user, target, state_dirs):
    """The agent itself, as the unit runs it: it serves records holding another
    user's I/O counters, and its files are in its state and runtime directories."""
    pid, _ = target
    spool = os.path.join(state_dirs["state"], "spool")
    sock = os.path.join(state_dirs["runtime"], "agent.sock")
    command = _service_command(python_for_user, service_user, _unit_capabilities(), [
        "-m", "hostdiag", "agent", "--foreground", "--interval", "1", "--spool-dir", spool, "--unix-path", sock])
    env = dict(SERVICE_ENV, HOSTDIAG_AGENT_TABLE_EVERY="1")
    log_path = os.path.join(state_dirs["rootowned"], "agent.log")
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(command, env=env, cwd="/", stdout=log, stderr=subprocess.STDOUT)
    try:
        def served():
            if agent.poll() is not None:
                raise AssertionError("the agent exited with %s:\n%s" % (agent.returncode, open(log_path).read()))
            shown = subprocess.run([sys.executable, "-m", "hostdiag", "show", "--format", "json",
                                    "--agent", "unix:" + sock], capture_output=True, text=True,
                                   env=dict(os.environ, PYTHONPATH=SOURCE_TREE), timeout=120)
            if shown.returncode:
                return None
            processes = ((json.loads(shown.stdout)["snapshot"].get("processes") or {}).get("processes")) or ()
            return next((p for p in processes if p["pid"] == pid), None)
        record = wait_for(served, "the agent to serve a record with the process table", deadline_s=120,
                          step_s=0.5)
        assert record["read_bytes"] is not None and record["denied"] == []
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert agent.returncode == 0, open(log_path).read()
    owned = []
    for directory in (state_dirs["state"], state_dirs["runtime"]):
        for parent, dirs, files in os.walk(directory):
            owned += [os.stat(os.path.join(parent, name)).st_uid for name in dirs + files]
    assert os.listdir(spool) and set(owned) == {service_user.pw_uid}


@pytest.mark.parametrize("status, expected", [
    (b"Name:\tx\nCapEff:\t0000000000000000\n", frozenset()),
    (b"CapEff:\t0000000400080004\n", frozenset({2, 19, 34})),
    (b"CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n", frozenset(range(41))),
    (b"", None),                                  # empty
    (b"Name:\tx\nCapInh:\t0\n", None),             # no CapEff line
    (b"CapEff:\tzz\n", None),                     # not hexadecimal
    (b"CapEff:\n", None),                         # truncated
    (b"CapEff:\t" + b"f" * 4000 + b"\n", frozenset(range(16000))),  # very long
])
def test_parse_capability_mask(status, expected):
    assert parse_capability_mask(status) == expected


@pytest.mark.parametrize("release, expected", [
    (b"6.18.44-fc-v1147\n", (6, 18)), (b"6.2.0\n", (6, 2)), (b"5.10-rc1", (5, 10)),
    (b"", None), (b"6", None), (b"x.y", None),
])
def test_parse_kernel_version(release, expected):
    assert parse_kernel_version(release) == expected


def _needs(privileges):
    return [line.rsplit("needs ", 1)[1] for line in unseen(privileges)]


def test_unseen_names_what_each_missing_capability_hides():
    everything = frozenset({CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG})
    assert unseen(Privileges(995, everything, 1, (6, 18))) == []
    assert _needs(Privileges(995, frozenset(), 0, (6, 18))) == [
        "CAP_DAC_READ_SEARCH", "CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE"]
    # Before 6.2 the fd count needs the directory listed.
    assert _needs(Privileges(995, frozenset({CAP_SYS_PTRACE, CAP_SYSLOG}), 1, (5, 15)))[0] == "CAP_DAC_READ_SEARCH"
    assert "fd counts" in unseen(Privileges(995, frozenset({CAP_SYSLOG}), 1, (5, 15)))[0]
    # CAP_SYS_PTRACE alone opens nothing: /proc/PID/io is also mode 0400.
    assert len(unseen(Privileges(995, frozenset({CAP_SYS_PTRACE, CAP_SYSLOG}), 1, (6, 18)))) == 3
    assert _needs(Privileges(995, frozenset({CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE}), 1, (6, 18))) == ["CAP_SYSLOG"]
    assert unseen(Privileges(995, frozenset({CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE}), 0, (6, 18))) == []
    assert unseen(Privileges(995, None, 1, (6, 18))) == ["unknown: /proc/self/status gave no capability mask"]
