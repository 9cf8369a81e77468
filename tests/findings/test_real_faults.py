"""Real faults on this machine; the FIRST finding names the cause and its culprit.

CPU burners, a steady leak (next to a process that grows once), D state
under a throttled blkio cgroup on a loop device, a zombie flood, a listener
that never accepts, a process at its fd limit, a user at its process limit,
and a full and an inode-exhausted loop filesystem. Each scene is real (child
processes, sockets, loop devices, cgroups); each waits for the kernel by
polling with a deadline.

The scenes judged on one snapshot (gauge rules) and the CPU burners use
every rule; those over a pair of snapshots use faultscenes.RULES_UNDER_TEST
(this machine is shared with other suites that trip the host-wide rules).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import pytest

from cgroupscenes import DEADLINE_S, made_cgroup, write
from faultscenes import MIB, RULES_UNDER_TEST, poll
from hostdiag.derive import derive_rates
from hostdiag.findings import evaluate, rules as R, socket_inodes_named
from hostdiag.sampler import Sampler
from hostdiag.sources.cgroups import CgroupTable
from hostdiag.sources.hostroot import HostRoot
from hostdiag.sources.problems import Problems

if os.geteuid() != 0:
    pytest.skip("the faults need root (cgroups, loop devices, setuid)", allow_module_level=True)

@contextmanager
def child(code, **popen):
    """A Python child running ``code``; at the end its stdin is closed, which
    tells it to clean up (reap what it forked) and exit; killed if it does not."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def _state(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def one_snapshot(tables=True):
    """The findings of one snapshot (gauge rules), with the owners of the sockets they name."""
    with Sampler(HostRoot(), tables=tables) as sampler:
        snapshot = sampler.sample(kmsg=True)
        if snapshot.sockets is not None:
            sampler.add_socket_owners(snapshot, socket_inodes_named(snapshot, None))
    return evaluate(snapshot)


# --- CPU ---------------------------------------------------------------------

def _cgroup_table():
    table = CgroupTable(HostRoot())
    table.hierarchies = table.probe(Problems())
    return table


def test_cpu_burners_are_named_once_with_their_symptoms():
    # The burners and `diag` share a CPU cgroup weighted far above the
    # neighbours' (cpu.shares; cpu.weight on cgroup2), `diag` at a higher
    # priority inside it: the neighbours' load neither hides the burners nor
    # slows the report.
    table = _cgroup_table()
    with made_cgroup(table, ("cpu",)) as (path, dirs):
        weight = ("cpu.shares", 262144) if os.path.exists(os.path.join(dirs["cpu"], "cpu.shares")) \
            else ("cpu.weight", 10000)
        write(os.path.join(dirs["cpu"], weight[0]), weight[1])

        def enter():
            write(os.path.join(dirs["cpu"], "cgroup.procs"), os.getpid())

        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=enter)
                   for _ in range(2)]
        try:
            for burner in burners:
                poll(lambda: int(_state(burner.pid)[11]) > 0, "the burner to run")
            done = subprocess.run(["nice", "-n", "-20", sys.executable, "-m", "hostdiag", "--interval", "1",
                                   "--format", "json", "--no-history"], preexec_fn=enter,
                                  capture_output=True, timeout=DEADLINE_S, check=True)
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
    first = json.loads(done.stdout)["findings"][0]
    assert first["id"] == "process_cpu", first
    assert first["culprits"][0]["pid"] in {b.pid for b in burners}
    assert first["culprits"][0]["cpu_pct"] >= 50
    symptoms = {s["id"] for s in first["symptoms"]}
    assert symptoms and symptoms <= {"cpu_busy", "cpu_one_busy", "psi_cpu_some", "load_high"}
    assert first["look_next"].startswith("`top -p PID`")


# --- memory --------------------------------------------------------------------

# Grows 2 MiB every 16 ms (about 120 MiB/s) until told to stop, touching what it allocates.
LEAKER = ("import sys, threading, time\n"
          "held, stop = [], threading.Event()\n"
          "threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()\n"
          "while not stop.is_set() and len(held) < 1024:\n"
          "    held.append(b'x' * (2 << 20)); time.sleep(0.016)\n"
          "sys.stdin.readline()\n")
# Takes 96 MiB at once when told, then holds it.
JUMPER = "import sys\nsys.stdin.readline()\nheld = b'x' * (96 << 20)\nprint(1, flush=True)\nsys.stdin.readline()\n"


def test_a_steady_leak_is_named_and_one_jump_is_not():
    with child(LEAKER) as leaker, child(JUMPER) as jumper, Sampler(HostRoot()) as sampler:
        samples = []
        for i in range(6):
            if i == 3:
                jumper.stdin.write(b"go\n")
                jumper.stdin.flush()
                jumper.stdout.readline()
            samples.append(sampler.sample())
            time.sleep(0.1)
    previous, current = samples[-2], samples[-1]
    rules = RULES_UNDER_TEST + (R.rule_process_rss_growing,)
    # Half a second of growth is no leak (a compiler grows as fast): the
    # window is under rss_leak_window_s.
    found = evaluate(current, derive_rates(previous, current), previous, rules=rules, history=samples[:-1])
    assert "process_rss_leak" not in [f["id"] for f in found]
    assert "process_rss_growing" in [s["id"] for f in found for s in [f] + f.get("symptoms", [])]
    # The same real RSS values as an agent sampling every 30 s would have
    # seen them: 150 s of steady growth is a leak, the one jump is not.
    first_mono = samples[0].meta.mono_ns
    for i, sample in enumerate(samples):
        sample.meta.mono_ns = first_mono + i * 30 * 1_000_000_000
    previous, current = samples[-2], samples[-1]
    found = evaluate(current, derive_rates(previous, current), previous, rules=rules, history=samples[:-1])
    # (Not necessarily first: another test's full filesystem on this shared machine is crit.)
    (leak,) = [f for f in found if f["id"] == "process_rss_leak"]
    leaking = {c["pid"]: c for c in leak["culprits"]}
    assert leaker.pid in leaking and jumper.pid not in leaking
    assert leaking[leaker.pid]["rss_leak_bytes_per_s"] > 40 * MIB / 300
    assert leaking[leaker.pid]["fit_r2"] >= 0.9


# --- processes -----------------------------------------------------------------

ZOMBIE_MAKER = ("import os, sys\n"
                "for _ in range(25):\n"
                "    if os.fork() == 0:\n"
                "        os._exit(0)\n"
                "print(1, flush=True)\n"
                "sys.stdin.readline()\n"
                "for _ in range(25):\n"
                "    os.wait()\n")


def test_a_zombie_flood_names_the_parent():
    with child(ZOMBIE_MAKER) as parent:
        parent.stdout.readline()

        def zombies():
            count = 0
            for name in os.listdir("/proc"):
                if name.isdigit():
                    try:
                        fields = _state(int(name))
                    except OSError:
                        continue
                    count += fields[0] == b"Z" and int(fields[1]) == parent.pid
            return count == 25

        poll(zombies, "25 zombies")
        found = one_snapshot()
    first = found[0]
    assert first["id"] == "procs_zombie", found
    assert first["culprits"][0]["pid"] == parent.pid and first["culprits"][0]["zombies"] == 25


FD_HOG = ("import os, resource, sys\n"
          "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
          "held = []\n"
          "try:\n"
          "    while True:\n"
          "        held.append(os.open('/dev/null', os.O_RDONLY))\n"
          "except OSError:\n"
          "    pass\n"
          "print(len(held), flush=True)\n"
          "sys.stdin.readline()\n")


def test_a_process_at_its_fd_limit_is_the_first_finding():
    with child(FD_HOG) as hog:
        assert int(hog.stdout.readline()) > 0
        found = one_snapshot()
    first = found[0]
    assert (first["id"], first["severity"]) == ("process_fd_limit", "crit"), found
    culprit = first["culprits"][0]
    assert (culprit["pid"], culprit["fd_count"], culprit["fd_limit"]) == (hog.pid, 64, 64)
    assert "64 of 64 fds" in first["title"]


NOBODY = 65534
# As nobody, under RLIMIT_NPROC 40: forks until refused; the children wait on a pipe.
FORKER = ("import os, resource, sys\n"
          "resource.setrlimit(resource.RLIMIT_NPROC, (40, 40))\n"
          "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
          "r, w = os.pipe()\n"
          "made = 0\n"
          "while True:\n"
          "    try:\n"
          "        pid = os.fork()\n"
          "    except BlockingIOError:\n"
          "        break\n"
          "    if pid == 0:\n"
          "        os.close(w); os.read(r, 1); os._exit(0)\n"
          "    made += 1\n"
          "print(made, flush=True)\n"
          "sys.stdin.readline()\n"
          "os.close(w)\n"
          "for _ in range(made):\n"
          "    os.wait()\n") % (NOBODY, NOBODY)


def test_a_user_at_its_process_limit_is_the_first_finding():
    with child(FORKER) as forker:
        made = int(forker.stdout.readline())
        found = one_snapshot()
    first = found[0]
    assert (first["id"], first["severity"]) == ("user_nproc_limit", "crit"), found
    user = first["culprits"][0]
    assert (user["kind"], user["uid"], user["nproc_limit"]) == ("user", NOBODY, 40)
    assert user["tasks"] == made + 1 and made + 1 <= 40


# --- D state under a throttled block cgroup --------------------------------------

@contextmanager
def loop_device(size_mib, directory):
    image = os.path.join(directory, "disk.img")
    with open(image, "wb") as f:
        f.truncate(size_mib * MIB)
    device = subprocess.run(["losetup", "--find", "--show", image], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def test_a_writer_throttled_by_blkio_is_stuck_in_d_state():
    table = _cgroup_table()
    with tempfile.TemporaryDirectory() as directory, loop_device(8, directory) as device, \
            made_cgroup(table, ("blkio",)) as (path, dirs):
        rdev = os.stat(device).st_rdev
        limit = os.path.join(dirs["blkio"], "blkio.throttle.write_bps_device")
        write(limit, "%d:%d 4096" % (os.major(rdev), os.minor(rdev)))
        writer = subprocess.Popen(["dd", "if=/dev/zero", "of=" + device, "bs=64k", "count=4", "oflag=direct"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=lambda: write(os.path.join(dirs["blkio"], "cgroup.procs"), os.getpid()))
        try:
            poll(lambda: _state(writer.pid)[0] == b"D", "the writer in D state")
            with Sampler(HostRoot()) as sampler:
                previous = sampler.sample()
                time.sleep(0.3)
                current = sampler.sample()
        finally:
            writer.kill()
            # Lifting the limit lets the queued writes through: only then can the writer die.
            write(limit, "%d:%d 0" % (os.major(rdev), os.minor(rdev)))
            writer.wait(timeout=DEADLINE_S)
    found = evaluate(current, derive_rates(previous, current), previous, rules=RULES_UNDER_TEST)
    first = found[0]
    assert first["id"] == "procs_d_state", found
    assert first["culprits"][0]["pid"] == writer.pid and first["culprits"][0]["comm"] == "dd"


# --- a listener that never accepts -----------------------------------------------

def test_a_listener_that_never_accepts_is_named_with_its_backlog():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        port = listener.getsockname()[1]
        clients = []
        try:
            for _ in range(4):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(listener.getsockname())
                clients.append(client)
            found = poll(lambda: (lambda f: f if f and f[0]["id"] == "tcp_listener_full" else None)(one_snapshot()),
                         "the accept queue to fill")
        finally:
            for client in clients:
                client.close()
    first = found[0]
    culprit = first["culprits"][0]
    assert culprit["local"] == "127.0.0.1:%d" % port
    assert culprit["backlog_max"] == 2 and culprit["backlog"] >= 2
    assert os.getpid() in [p["pid"] for p in culprit["processes"]]
    with open("/proc/sys/net/core/somaxconn") as f:
        assert first["evidence"]["somaxconn"] == int(f.read())


# --- a full and an inode-exhausted loop filesystem -----------------------------------

@contextmanager
def loop_filesystem(directory, name, inodes):
    """An 8 MiB ext4 on a loop device, mounted at ``directory/name``, no root reserve."""
    image = os.path.join(directory, name + ".img")
    with open(image, "wb") as f:
        f.truncate(8 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(inodes), image], check=True,
                   capture_output=True)
    mountpoint = os.path.join(directory, name)
    os.mkdir(mountpoint)
    subprocess.run(["mount", "-o", "loop", image, mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", mountpoint], check=True)


def _fill_space(mountpoint):
    """Write until the filesystem refuses even a small block."""
    fd = os.open(os.path.join(mountpoint, "fill"), os.O_WRONLY | os.O_CREAT)
    try:
        for size in (MIB, 64 << 10, 4 << 10, 1 << 10):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        try:
            os.fsync(fd)
        except OSError:
            pass
    finally:
        os.close(fd)


def _fill_inodes(mountpoint):
    n = 0
    try:
        while True:
            open(os.path.join(mountpoint, "f%d" % n), "wb").close()
            n += 1
    except OSError:
        pass


def test_a_full_and_an_inode_exhausted_filesystem():
    with tempfile.TemporaryDirectory() as directory, loop_filesystem(directory, "full", 64) as full, \
            loop_filesystem(directory, "inodes", 16) as few:
        _fill_space(full)
        _fill_inodes(few)
        found = one_snapshot(tables=False)
    assert [(f["id"], f["severity"], f["subject"]) for f in found[:2]] == [
        ("fs_space", "crit", full), ("fs_inodes", "crit", few)], found
    assert found[0]["evidence"]["used_pct"] >= 95 and found[1]["evidence"]["used_pct"] >= 95


# --- the kernel log ---------------------------------------------------------------

def test_a_segfault_is_named_from_the_kernel_log():
    try:
        with open("/proc/sys/debug/exception-trace") as f:
            if f.read().strip() == "0":
                pytest.skip("the kernel does not log unhandled signals (debug.exception-trace = 0)")
    except FileNotFoundError:
        pass
    with Sampler(HostRoot(), tables=False) as sampler:
        previous = sampler.sample()
        crash = subprocess.Popen([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"],
                                 stderr=subprocess.DEVNULL)
        assert crash.wait(timeout=DEADLINE_S) == -signal.SIGSEGV
        current = sampler.sample(kmsg=True)
    found = [f for f in evaluate(current, derive_rates(previous, current), previous) if f["id"] == "kernel_segfault"]
    assert found and found[0]["when"] == "now", found
    crashed = next(c for c in found[0]["culprits"] if c["pid"] == crash.pid)
    assert crashed["fault"] == "segfault" and crashed["comm"].startswith("python")
