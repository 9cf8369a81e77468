"""A whole system snapshot against its floor, psutil and node_exporter, in one run.

Group ``system snapshot`` (pytest-benchmark medians per call; wall time by
default, CPU time with ``--benchmark-timer=time.process_time``):

* ``raw_read`` / ``raw_read (no-netlink set)``: open + read to EOF + close of
  exactly the files ``SystemCollector.collect()`` reads (with and without
  netlink) in a steady-state sample, recorded once at setup by wrapping
  ``HostRoot.read`` (see ``record_footprint``);
* ``raw_read + fs syscalls`` / ``... (no-netlink set)``: the same, plus
  replaying every other file-system call collect() makes (stat(), statvfs()
  of each filesystem, listdir() of /sys/class/net without netlink, uname()):
  the floor of goal (1) without netlink;
* ``raw_read + fs syscalls + raw netlink dumps``: plus the four rtnetlink dumps
  on a plain socket, received to NLMSG_DONE and not decoded: all the kernel
  work of one snapshot with the least Python around it, the floor of goal (1)
  with netlink;
* ``HostRoot.read of the same files``: our reader instead of the floor's;
* group ``goal 1, paired``: collect() and its floor alternated in rounds (see
  ``test_goal1_paired``), the ratio goal (1) is judged on;
* ``collect() netlink`` / ``collect() no netlink``: ``SystemCollector(root,
  use_netlink=...).collect()`` with the live (compiled) parsers;
* ``collect() netlink, pure parsers``: the same with every compiled parser swapped
  for its pure twin;
* ``psutil set``: psutil's nearest set of calls (listed in ``psutil_snapshot``);
* ``node_exporter scrape, ENCODING (client side)``: one GET of /metrics from our
  own prometheus-node-exporter, default collectors, with Accept-Encoding
  identity (urllib's default) or gzip (what Prometheus sends).

CPU per call (the goal that compares with node_exporter): our side is this
process's CPU time (``time.process_time``: user + system, all threads) over N
calls; node_exporter's is the utime + stime delta of its /proc/<pid>/stat over
N sequential scrapes, divided by N. Both go to ``extra_info["cpu_us_per_call"]``
and to the table printed at the end of the session.

Groups ``section NAME``: each source of collect() alone (the collector's own
source object, with what it keeps between samples) against the replay of the
file reads and other file-system calls it makes (for network, also against the
raw netlink dumps, bare and decoded by hostdiag's own row parsers: the live
twins, compiled unless HOSTDIAG_PURE is set), to show where a snapshot's cost goes.
"""

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from statistics import median

import pytest

psutil = pytest.importorskip("psutil")

from benchsupport import RAW, RESULTS, live_description  # noqa: E402

from hostdiag.sampler.system import SystemCollector  # noqa: E402
from hostdiag import parsers  # noqa: E402
from hostdiag.parsers import proctext, rtnetlink  # noqa: E402
from hostdiag.sources.problems import Problems  # noqa: E402

GROUP = "system snapshot"
# Calls per CPU measurement. Ours are measured in ns (process_time); node_exporter's
# in clock ticks (10 ms at USER_HZ 100), hence enough scrapes to make a tick small.
COLLECT_CPU_CALLS = int(os.environ.get("BENCH_COLLECT_CALLS", "200"))
SCRAPES = int(os.environ.get("BENCH_SCRAPES", "100"))
WARMUP = 5
# Goal (1) measured paired: rounds, and calls of collect() and of its floor per round.
PAIRED_GROUP = "goal 1, paired"
PAIRED_ROUNDS = int(os.environ.get("BENCH_PAIRED_ROUNDS", "60"))
PAIRED_CALLS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")
NODE_EXPORTER_HINT = "apt-get install prometheus-node-exporter"


# ---------------------------------------------------------------- what collect() touches

class Footprint:
    """The host calls one collect() makes: files read, stat()s, statvfs()s,
    listdir()s and uname()s."""

    def __init__(self):
        self.files = []
        self.stats = []
        self.statvfs = []
        self.listdirs = []
        self.unames = 0

    def describe(self):
        return {"files": len(self.files), "stat_calls": len(self.stats),
                "statvfs_calls": len(self.statvfs), "listdir_calls": len(self.listdirs),
                "uname_calls": self.unames}


def record_footprint(collect, root, monkeypatch):
    """Run ``collect()`` once with HostRoot.read, os.stat, os.statvfs,
    os.listdir and os.uname wrapped. Run it on a collector that has already
    taken a sample, so that what it records is a steady-state sample: what a
    collector reads once (kernel identity) or every N samples (os-release,
    pid and thread limits, nf_conntrack_max) is not in it, and collect() does
    not read it either in the median sample."""
    footprint = Footprint()
    read = root.read
    real_stat = os.stat
    real_statvfs = os.statvfs
    real_listdir = os.listdir
    real_uname = os.uname

    def recording_read(path, cap=None):
        footprint.files.append(path)
        return read(path, cap)

    def recording_stat(path, *args, **kwargs):
        footprint.stats.append((path, args, kwargs))
        return real_stat(path, *args, **kwargs)

    def recording_statvfs(path):
        footprint.statvfs.append(path)
        return real_statvfs(path)

    def recording_listdir(path="."):
        footprint.listdirs.append(path)
        return real_listdir(path)

    def recording_uname():
        footprint.unames += 1
        return real_uname()

    with monkeypatch.context() as patch:
        patch.setattr(root, "read", recording_read)
        patch.setattr(os, "stat", recording_stat)
        patch.setattr(os, "statvfs", recording_statvfs)
        patch.setattr(os, "listdir", recording_listdir)
        patch.setattr(os, "uname", recording_uname)
        collect()
    return footprint


def raw_read(path):
    """The floor of one file: open, read to EOF, close; no error mapping, no
    size cap. Asked sizes as HostRoot.read asks them (16 KiB, 16 KiB again
    for the read that finds EOF, then 256 KiB), so that the floor pays the
    kernel exactly what collect() pays: a /proc/sys file zeroes the asked
    size on every read, the one that returns nothing too. (benchsupport's
    ``raw_read``, the parser groups' floor, asks 256 KiB from the second read.)"""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        want = 16 * 1024
        while True:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            want = 16 * 1024 if len(chunks) == 1 else 256 * 1024
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_all(paths):
    for path in paths:
        try:
            raw_read(path)
        except OSError:
            # collect() meets the same missing file and records it; the floor
            # pays the same failed open().
            continue


def replay_syscalls(footprint):
    """The file reads, then every other file-system call collect() made."""
    read_all(footprint.files)
    for path, args, kwargs in footprint.stats:
        try:
            os.stat(path, *args, **kwargs)
        except OSError:
            continue
    for call, paths in ((os.statvfs, footprint.statvfs), (os.listdir, footprint.listdirs)):
        for path in paths:
            try:
                call(path)
            except OSError:
                # Unmounted since the recording (other processes' tests mount
                # and unmount): it fails in collect() too, which records it.
                continue
    for _ in range(footprint.unames):
        os.uname()


# ---------------------------------------------------------------- the netlink floor

_NLMSG = struct.Struct("=IHHII")
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_DUMP_FLAGS = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
# The four dumps collect() asks for, each with a zeroed family header
# (ifinfomsg 16 bytes, ifaddrmsg 8, rtmsg 12, ndmsg 12), AF_UNSPEC.
NETLINK_DUMPS = (("RTM_GETLINK", 18, 16), ("RTM_GETADDR", 22, 8),
                 ("RTM_GETROUTE", 26, 12), ("RTM_GETNEIGH", 30, 12))


class RawNetlink:
    """The floor under collect()'s netlink part: the same four rtnetlink dumps
    on a plain socket, each received to NLMSG_DONE. With ``parsers`` (message
    type -> hostdiag's own row parser) each reply is also decoded the way
    hostdiag.sources.rtnetlink decodes it, without pyroute2 or asyncio around it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def dump(self, msg_type, header_size, parse_one=None):
        self.seq += 1
        length = _NLMSG.size + header_size
        self.sock.send(_NLMSG.pack(length, msg_type, _DUMP_FLAGS, self.seq, 0) + bytes(header_size))
        rows = []
        while True:
            data = self.sock.recv(1 << 16)
            pos, size = 0, len(data)
            while pos + _NLMSG.size <= size:
                msg_len, mtype, _flags, seq, _pid = _NLMSG.unpack_from(data, pos)
                if msg_len < _NLMSG.size:
                    raise OSError("netlink: bad message length %d" % msg_len)
                if seq == self.seq:
                    if mtype == _NLMSG_DONE:
                        return rows
                    if mtype == _NLMSG_ERROR:
                        raise OSError("netlink: error reply to message type %d" % msg_type)
                    if parse_one is None:
                        rows.append(mtype)
                    else:
                        row = parse_one(data, pos + _NLMSG.size, min(pos + msg_len, size))
                        if row:
                            rows.append(row)
                pos += (msg_len + 3) & ~3

    def dump_all(self, parsers=None):
        return [self.dump(msg_type, size, parsers[msg_type] if parsers else None)
                for _name, msg_type, size in NETLINK_DUMPS]


def hostdiag_row_parsers():
    """The live per-message rtnetlink decoders of hostdiag.parsers, by request type."""
    return {18: parsers.parse_link, 22: parsers.parse_address,
            26: parsers.parse_route, 30: parsers.parse_neighbour}


# ---------------------------------------------------------------- CPU accounting

def cpu_per_call(fn, calls):
    """Seconds of this process's CPU (user + system) per call of ``fn``."""
    for _ in range(WARMUP):
        fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def process_cpu_seconds(pid):
    """utime + stime of a whole process (all its threads) from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    # Fields 14 and 15 of proc(5), counted from 3 here (state is field 3).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def record_cpu(bench, label, cpu_s, calls, note=""):
    bench.extra_info["cpu_us_per_call"] = round(cpu_s * 1e6, 1)
    bench.extra_info["cpu_calls"] = calls
    RESULTS.cpu[label] = {"cpu_s": cpu_s, "n": calls, "note": note}


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def collectors(host_root):
    """{"netlink": collector, "no netlink": collector}, closed at the end."""
    if not host_root.live:
        pytest.skip("the snapshot benchmarks need the live host roots")
    made = {
        "netlink": SystemCollector(host_root, use_netlink=True),
        "no netlink": SystemCollector(host_root, use_netlink=False),
    }
    yield made
    for collector in made.values():
        collector.close()


@pytest.fixture(scope="module")
def footprints(collectors):
    """What each collector's collect() reads and probes in a steady-state
    sample (the second), recorded once."""
    for collector in collectors.values():
        collector.collect()
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {
            kind: record_footprint(collector.collect, collector.root, monkeypatch)
            for kind, collector in collectors.items()
        }


@pytest.fixture(scope="module")
def raw_netlink(host_root):
    try:
        link = RawNetlink()
    except OSError as exc:
        pytest.skip("no rtnetlink socket: %s" % exc)
    yield link
    link.close()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def node_exporter(request):
    """Our own prometheus-node-exporter on 127.0.0.1:<free port>, default
    collectors; terminated (then killed if it lingers) when the module ends."""
    binary = next(filter(None, map(shutil.which, NODE_EXPORTER_NAMES)), None)
    if binary is None:
        pytest.skip("prometheus-node-exporter is not installed (%s)" % NODE_EXPORTER_HINT)
    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [binary, "--web.listen-address=127.0.0.1:%d" % port],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )

    def stop():
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    request.addfinalizer(stop)
    url = "http://127.0.0.1:%d/metrics" % port
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail("node_exporter exited with %s:\n%s"
                        % (proc.returncode, log.read().decode("utf-8", "replace")[-2000:]))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("node_exporter did not answer on %s within 20 s" % url)
            time.sleep(0.1)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return {
        "pid": proc.pid, "url": url, "binary": binary,
        "version": (version.stdout or version.stderr).splitlines()[0],
        "metrics_lines": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "body_bytes": len(body),
    }


# ---------------------------------------------------------------- psutil's nearest set

def psutil_snapshot():
    """psutil's nearest set to one system snapshot."""
    return (
        psutil.cpu_times(percpu=True),
        psutil.cpu_stats(),
        psutil.getloadavg(),
        psutil.virtual_memory(),
        psutil.swap_memory(),
        psutil.disk_io_counters(perdisk=True),
        [psutil.disk_usage(part.mountpoint) for part in psutil.disk_partitions()],
        psutil.net_io_counters(pernic=True),
        psutil.net_if_stats(),
        psutil.net_if_addrs(),
        psutil.boot_time(),
    )


PSUTIL_SET = ("cpu_times(percpu=True), cpu_stats(), getloadavg(), virtual_memory(), "
              "swap_memory(), disk_io_counters(perdisk=True), disk_partitions() + "
              "disk_usage() each, net_io_counters(pernic=True), net_if_stats(), "
              "net_if_addrs(), boot_time()")


# ---------------------------------------------------------------- the snapshot group

def _snapshot_info(bench, variant):
    bench.group = GROUP
    bench.extra_info["variant"] = variant
    bench.extra_info["parsers"] = live_description()


@pytest.mark.parametrize("kind", ["netlink", "no netlink"])
def test_raw_read_floor(bench, footprints, kind):
    footprint = footprints[kind]
    variant = RAW if kind == "netlink" else "raw_read (no-netlink set)"
    _snapshot_info(bench, variant)
    bench.extra_info["files"] = footprint.files
    record_cpu(bench, "raw read of collect()'s files (%s)" % kind,
               cpu_per_call(lambda: read_all(footprint.files), COLLECT_CPU_CALLS),
               COLLECT_CPU_CALLS, "%d files" % len(footprint.files))
    bench(read_all, footprint.files)


@pytest.mark.parametrize("kind", ["netlink", "no netlink"])
def test_raw_read_and_fs_syscalls(bench, footprints, kind):
    """The whole floor of collect() without netlink: every file read and every
    other file-system call it makes (goal 1's base for that variant)."""
    footprint = footprints[kind]
    variant = "raw_read + fs syscalls" + ("" if kind == "netlink" else " (no-netlink set)")
    _snapshot_info(bench, variant)
    bench.extra_info.update(footprint.describe())
    if kind == "no netlink":
        record_cpu(bench, "raw floor, no-netlink set", cpu_per_call(lambda: replay_syscalls(footprint),
                                                                    COLLECT_CPU_CALLS),
                   COLLECT_CPU_CALLS, "files + stat + statvfs + listdir + uname")
    bench(replay_syscalls, footprint)


def test_full_syscall_floor(bench, footprints, raw_netlink, request):
    """Files, stat()s, statvfs()s and the four netlink dumps: everything the
    kernel does for collect(), with the least Python around it."""
    footprint = footprints["netlink"]
    _snapshot_info(bench, "raw_read + fs syscalls + raw netlink dumps")
    bench.extra_info.update(footprint.describe())
    bench.extra_info["netlink_messages"] = dict(
        zip((name for name, _type, _size in NETLINK_DUMPS), map(len, raw_netlink.dump_all())))
    floor = _floor_of("netlink", footprint, request)

    record_cpu(bench, "raw floor incl. netlink dumps", cpu_per_call(floor, COLLECT_CPU_CALLS),
               COLLECT_CPU_CALLS, "files + stat + statvfs + uname + 4 rtnetlink dumps, undecoded")
    bench(floor)


def _floor_of(kind, footprint, request):
    """The floor of goal (1) for one collector: every kernel call its collect() makes."""
    if kind == "no netlink":
        return lambda: replay_syscalls(footprint)
    raw_netlink = request.getfixturevalue("raw_netlink")

    def floor():
        replay_syscalls(footprint)
        raw_netlink.dump_all()

    return floor


@pytest.mark.parametrize("kind", ["netlink", "no netlink"])
def test_goal1_paired(bench, collectors, footprints, request, kind):
    """collect() against its floor, alternated in short rounds so that both
    meet the same load: on a shared machine the load moves between two
    benchmarks run a minute apart, and with it their CPU times. Each round
    times PAIRED_CALLS calls of each (which goes first alternates) in CPU
    time; the ratio reported is the median of the rounds' ratios."""
    collector = collectors[kind]
    floor = _floor_of(kind, footprints[kind], request)
    ours, base = [], []
    clock = time.process_time

    def one_round():
        first_ours = len(ours) % 2 == 0
        for fn, times in ((collector.collect, ours), (floor, base))[::1 if first_ours else -1]:
            start = clock()
            for _ in range(PAIRED_CALLS):
                fn()
            times.append((clock() - start) / PAIRED_CALLS)

    for _ in range(WARMUP):
        one_round()
    del ours[:], base[:]
    bench.group = PAIRED_GROUP
    bench.extra_info["variant"] = "collect() %s, paired with its floor" % kind
    bench.pedantic(one_round, rounds=PAIRED_ROUNDS, iterations=1)
    ratios = sorted(o / b for o, b in zip(ours, base))
    summary = {
        "ratio_median": round(median(ratios), 3),
        "ratio_q1": round(ratios[len(ratios) // 4], 3),
        "ratio_q3": round(ratios[(3 * len(ratios)) // 4], 3),
        "collect_us_median": round(median(ours) * 1e6, 1),
        "floor_us_median": round(median(base) * 1e6, 1),
        "rounds": len(ratios), "calls_per_round": PAIRED_CALLS,
    }
    bench.extra_info.update(summary)
    RESULTS.paired[kind] = summary


def test_hostroot_read(bench, host_root, footprints):
    """Our reader alone on the same files: what HostRoot.read adds to the floor."""
    files = footprints["netlink"].files
    _snapshot_info(bench, "HostRoot.read of the same files")

    def read_all_hostroot():
        for path in files:
            try:
                host_root.read(path)
            except OSError:
                continue

    bench(read_all_hostroot)


@pytest.mark.parametrize("kind", ["netlink", "no netlink"])
def test_collect(bench, collectors, footprints, kind):
    collector = collectors[kind]
    footprint = footprints[kind]
    _snapshot_info(bench, "collect() %s" % kind)
    snapshot = collector.collect()
    bench.extra_info.update(footprint.describe())
    bench.extra_info.update({
        "netlink": collector.netlink is not None,
        "values": count_values(snapshot.to_dict()),
        "errors": [(e.source, e.path, e.kind) for e in snapshot.meta.errors],
    })
    record_cpu(bench, "snapshot (%s)" % kind, cpu_per_call(collector.collect, COLLECT_CPU_CALLS),
               COLLECT_CPU_CALLS, "SystemCollector.collect(), parsers %s, %d values"
               % (live_description(), bench.extra_info["values"]))
    bench(collector.collect)


def count_values(data):
    """Leaf numbers and strings in plain data: a snapshot's size next to the
    number of samples a node_exporter scrape returns."""
    if isinstance(data, dict):
        return sum(count_values(v) for v in data.values())
    if isinstance(data, (list, tuple)):
        return sum(count_values(v) for v in data)
    return 0 if data is None else 1


def _swap_in_pure_parsers(monkeypatch):
    """Point every hostdiag.sources module's compiled parser names at the pure twins."""
    swapped = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("hostdiag.sources.") or module is None:
            continue
        for pure in (proctext, rtnetlink):
            for parser in dir(pure):
                if not parser.startswith("parse_") or not hasattr(module, parser):
                    continue
                if getattr(module, parser) is not getattr(pure, parser):
                    monkeypatch.setattr(module, parser, getattr(pure, parser))
                    swapped.append("%s.%s" % (name, parser))
    return swapped


def test_collect_pure_parsers(bench, collectors, monkeypatch):
    collector = collectors["netlink"]
    _snapshot_info(bench, "collect() netlink, pure parsers")
    swapped = _swap_in_pure_parsers(monkeypatch)
    bench.extra_info["parsers"] = "pure"
    bench.extra_info["swapped"] = swapped
    record_cpu(bench, "snapshot (netlink), pure parsers",
               cpu_per_call(collector.collect, COLLECT_CPU_CALLS), COLLECT_CPU_CALLS,
               "%d parser bindings swapped" % len(swapped))
    bench(collector.collect)


def test_psutil_set(bench):
    _snapshot_info(bench, "psutil set")
    bench.extra_info["calls"] = PSUTIL_SET
    record_cpu(bench, "psutil set", cpu_per_call(psutil_snapshot, COLLECT_CPU_CALLS),
               COLLECT_CPU_CALLS, "no netlink routes/neighbours, no PSI, no kernel identity")
    bench(psutil_snapshot)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_node_exporter_scrape(bench, node_exporter, encoding):
    """Client-side time of one scrape (pytest-benchmark timer); node_exporter's own CPU per scrape."""
    _snapshot_info(bench, "node_exporter scrape, %s (client side)" % encoding)
    request = urllib.request.Request(node_exporter["url"], headers={"Accept-Encoding": encoding})
    scrapes = 0

    def scrape():
        nonlocal scrapes
        scrapes += 1
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    for _ in range(WARMUP):
        scrape()
    scrapes = 0
    server_before = process_cpu_seconds(node_exporter["pid"])
    client_before = time.process_time()
    bench.pedantic(scrape, rounds=SCRAPES, iterations=1)
    client_cpu = (time.process_time() - client_before) / scrapes
    server_cpu = (process_cpu_seconds(node_exporter["pid"]) - server_before) / scrapes
    bench.extra_info.update({
        "node_exporter": node_exporter["version"], "metrics_samples": node_exporter["metrics_lines"],
        "body_bytes": node_exporter["body_bytes"], "scrapes": scrapes,
        "client_cpu_us_per_scrape": round(client_cpu * 1e6, 1),
    })
    record_cpu(bench, "node_exporter scrape (%s)" % encoding, server_cpu, scrapes,
               "node_exporter's utime+stime; %d samples, client CPU %.0f µs/scrape"
               % (node_exporter["metrics_lines"], client_cpu * 1e6))


# ---------------------------------------------------------------- one source at a time

def _sections(collector):
    """Each source of the collector, as collect() calls it (with what the
    source keeps between samples)."""
    return {
        "cpu": collector.cpu.collect,
        "memory": collector.memory.collect,
        "pressure": collector.pressure.collect,
        "disks": collector.disks.collect,
        "filesystems": collector.filesystems.collect,
        "network": lambda p: collector.network.collect(p, collector.netlink),
        "kernel": collector.kernel.collect,
    }


SECTIONS = ("cpu", "memory", "pressure", "disks", "filesystems", "network", "kernel")


NETLINK_FLOOR = "raw_read + raw netlink dumps"
NETLINK_DECODED = "raw_read + raw netlink dumps decoded by hostdiag's row parsers"
SECTION_CASES = [(section, variant) for section in SECTIONS for variant in (RAW, "source")]
SECTION_CASES += [("network", NETLINK_FLOOR), ("network", NETLINK_DECODED)]


@pytest.mark.parametrize("section, variant", SECTION_CASES)
def test_section(bench, collectors, monkeypatch, request, section, variant):
    collector = collectors["netlink"]
    source = _sections(collector)[section]
    source(Problems())
    footprint = record_footprint(lambda: source(Problems()), collector.root, monkeypatch)
    bench.group = "section " + section
    bench.extra_info.update(footprint.describe())
    bench.extra_info.update({"variant": variant, "files": footprint.files})
    if variant == RAW:
        # The section's floor: its file reads and its other file-system calls.
        bench(replay_syscalls, footprint)
    elif variant in (NETLINK_FLOOR, NETLINK_DECODED):
        raw_netlink = request.getfixturevalue("raw_netlink")
        row_parsers = None
        if variant == NETLINK_DECODED:
            row_parsers = hostdiag_row_parsers()

        def floor():
            replay_syscalls(footprint)
            raw_netlink.dump_all(row_parsers)

        bench(floor)
    else:
        bench(lambda: source(Problems()))

