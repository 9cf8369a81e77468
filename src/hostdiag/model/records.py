"""The records of the snapshot's tables, each field declared once: name, type,
unit and one-line meaning.

A process, a TCP socket row, a listener, a link, a disk, a filesystem, a
probe result and a probe's SLO summary travel as plain data: dicts keyed by
these names (a TCP socket as a row in ``tcp_table``, an array in field
order, the names once in ``tcp_table.fields``). Plain data was chosen by measurement
(benchmarks/test_bench_records.py, benchmarks/README.md): the encoders,
the store and the rates take it as it is. The declaration is the authority:
tests hold the sampler's live records, the parsers' field lists and
docs/snapshot.md's tables to it.

Types: ``int``, ``float``, ``str``, ``bool``, ``list of str``, ``list of int`` and ``object``
(a dict); any field may also be null (unknown, not given by this kernel or
source, or access denied). An empty unit means none (a name, an id, a flag).
"""

from collections import namedtuple

Field = namedtuple("Field", "name type unit meaning")

# Python types a field's value may have, per declared type (None aside).
VALUE_TYPES = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list of str": (list,),
    "list of int": (list,),
    "object": (dict,),
}


class Record:
    """One record kind: its ``kind`` name and its fields, in the order the
    sources insert them (and a ``tcp_table`` row holds them)."""

    def __init__(self, kind, fields):
        self.kind = kind
        self.fields = tuple(Field(*f) for f in fields)
        self.names = tuple(f.name for f in self.fields)
        if len(set(self.names)) != len(self.names):
            raise ValueError("%s declares a field twice" % kind)
        unknown = [f.name for f in self.fields if f.type not in VALUE_TYPES]
        if unknown:
            raise ValueError("%s: unknown type of %s" % (kind, ", ".join(unknown)))

    def __repr__(self):
        return "Record(%r, %d fields)" % (self.kind, len(self.fields))


PROCESS = Record("process", (
    ("pid", "int", "", "process id (of the thread group)"),
    ("ppid", "int", "", "parent's process id"),
    ("comm", "str", "", "the kernel's 15-character name (`stat`)"),
    ("cmdline", "list of str", "",
     "the arguments, with secrets redacted ([redaction.md](redaction.md)); empty for kernel threads and zombies"),
    ("state", "str", "", "the state letter, as in `counts.by_state`"),
    ("uid", "int", "", "effective uid"),
    ("user", "str", "", "the effective uid's user name (null when the host has none)"),
    ("start_time", "int", "ticks (USER_HZ) after boot", "with `pid`, the identity: a reused pid is a new process"),
    ("kernel_thread", "bool", "", "a kernel thread (PF_KTHREAD)"),
    ("utime", "int", "ticks (USER_HZ)", "CPU time in user mode since the process started"),
    ("stime", "int", "ticks (USER_HZ)", "CPU time in kernel mode since the process started"),
    ("minflt", "int", "faults", "minor page faults since the process started"),
    ("majflt", "int", "faults", "major (I/O) page faults since the process started"),
    ("num_threads", "int", "threads", "threads now"),
    ("nice", "int", "", "nice value, -20 … 19"),
    ("priority", "int", "", "the kernel's priority (`stat`): 20 + nice for normal tasks"),
    ("rss_bytes", "int", "bytes", "resident set size now"),
    ("vsize_bytes", "int", "bytes", "virtual size now"),
    ("delayacct_blkio_ticks", "int", "ticks (USER_HZ)", "time waited for block I/O (0 without delay accounting)"),
    ("voluntary_ctxt_switches", "int", "switches", "voluntary context switches since the process started (`status`)"),
    ("nonvoluntary_ctxt_switches", "int", "switches",
     "involuntary context switches since the process started (`status`)"),
    ("read_bytes", "int", "bytes", "storage bytes read since the process started (`io`); null when denied"),
    ("write_bytes", "int", "bytes", "storage bytes written since the process started (`io`); null when denied"),
    ("fd_count", "int", "descriptors",
     "open file descriptors now; null where not collected (kernels before 6.2) or denied"),
    ("cgroup", "str", "",
     "the cgroup path (the v2 path when the process is in the unified tree, else a v1 controller's)"),
    ("oom_score_adj", "int", "", "-1000 … 1000"),
    ("denied", "list of str", "",
     "the groups access was denied for (`status`, `io`, `fd`, `cmdline`, `cgroup`, `oom_score_adj`); "
     "their fields are null"),
))

TCP_SOCKET_ROW = Record("tcp socket row", (
    ("family", "str", "", "`inet` or `inet6`"),
    ("state", "str", "", "the TCP state (`ESTABLISHED`, `LISTEN`, …)"),
    ("local", "str", "", "local address"),
    ("local_port", "int", "", "local port"),
    ("remote", "str", "", "remote address"),
    ("remote_port", "int", "", "remote port"),
    ("rqueue", "int", "bytes", "receive queue; for a listener, the accept queue in use"),
    ("wqueue", "int", "bytes", "send queue; for a listener, the accept queue's limit"),
    ("uid", "int", "", "the socket's owner uid"),
    ("inode", "int", "", "the socket's inode (0 for a socket not yet accepted)"),
    ("rtt", "int", "µs", "smoothed round-trip time (tcp_info)"),
    ("total_retrans", "int", "segments", "segments retransmitted since the connection opened (tcp_info)"),
    ("bytes_acked", "int", "bytes", "bytes the peer acknowledged (tcp_info)"),
    ("drops", "int", "packets", "packets dropped on the socket (sk_meminfo)"),
))

LISTENER = Record("listener", (
    ("family", "str", "", "`inet` or `inet6`"),
    ("local", "str", "", "local address"),
    ("local_port", "int", "", "local port"),
    ("inode", "int", "", "the socket's inode"),
    ("backlog", "int", "connections", "the accept queue in use"),
    ("backlog_max", "int", "connections", "its limit, the listen backlog; null from procfs"),
))

LINK = Record("link", (
    ("name", "str", "", "interface name"),
    ("index", "int", "", "interface index; null in the procfs fallback"),
    ("kind", "str", "",
     "the rtnetlink link kind (`veth`, `bridge`, …); null for physical NICs and in the procfs fallback"),
    ("operstate", "str", "", "operational state (`up`, `down`, `unknown`, …)"),
    ("mtu", "int", "bytes", "the link's MTU"),
    ("address", "str", "", "the link-layer address"),
    ("carrier", "int", "", "1 when the carrier is up, 0 when down"),
    ("carrier_changes", "int", "changes", "carrier up/down changes since the link was created"),
    ("master", "int", "", "the index of the bridge or bond it is enslaved to, else null"),
    ("stats", "object", "bytes and packets",
     "the `rtnl_link_stats64` counters by name (`rx_bytes`, `rx_packets`, `rx_errors`, `rx_dropped`, "
     "`tx_*`, …) since the link was created; the procfs fallback has the subset `/proc/net/dev` prints"),
))

DISK = Record("disk", (
    ("major", "int", "", "device major number"),
    ("minor", "int", "", "device minor number"),
    ("name", "str", "", "kernel name"),
    ("reads_completed", "int", "I/Os", "reads completed since boot"),
    ("reads_merged", "int", "I/Os", "adjacent reads merged"),
    ("sectors_read", "int", "512-byte sectors", "always 512 bytes, whatever the device's sector size"),
    ("read_time_ms", "int", "ms", "time spent by all reads (summed over concurrent I/Os)"),
    ("writes_completed", "int", "I/Os", "writes completed since boot"),
    ("writes_merged", "int", "I/Os", "adjacent writes merged"),
    ("sectors_written", "int", "512-byte sectors", "always 512 bytes, whatever the device's sector size"),
    ("write_time_ms", "int", "ms", "time spent by all writes (summed over concurrent I/Os)"),
    ("ios_in_progress", "int", "I/Os", "in flight now (a gauge)"),
    ("io_time_ms", "int", "ms", "time the device had at least one I/O in flight"),
    ("weighted_io_time_ms", "int", "ms", "time × I/Os in flight; its rate is the average queue size"),
    ("discards_completed", "int", "I/Os", "discards completed; kernel ≥ 4.18 (18 columns), else null"),
    ("discards_merged", "int", "I/Os", "adjacent discards merged; kernel ≥ 4.18, else null"),
    ("sectors_discarded", "int", "512-byte sectors", "kernel ≥ 4.18, else null"),
    ("discard_time_ms", "int", "ms", "time spent by all discards; kernel ≥ 4.18, else null"),
    ("flushes_completed", "int", "I/Os", "flushes completed; kernel ≥ 5.5 (20 columns), else null"),
    ("flush_time_ms", "int", "ms", "time spent by all flushes; kernel ≥ 5.5, else null"),
    ("is_partition", "bool", "", "from sysfs (`/sys/class/block/NAME/partition`), else from the name"),
    ("parent", "str", "", "the whole disk of a partition, else null"),
))

FILESYSTEM = Record("filesystem", (
    ("mountpoint", "str", "", "where it is mounted (mountinfo)"),
    ("device", "str", "", "the mount source (mountinfo)"),
    ("fstype", "str", "", "filesystem type (mountinfo)"),
    ("major", "int", "", "device major number (mountinfo)"),
    ("minor", "int", "", "device minor number (mountinfo)"),
    ("options", "str", "", "the mount options (mountinfo)"),
    ("size_bytes", "int", "bytes", "total size; null with a recorded (non-live) root"),
    ("free_bytes", "int", "bytes", "free space; null with a recorded root"),
    ("avail_bytes", "int", "bytes", "free space available to unprivileged users; null with a recorded root"),
    ("files", "int", "inodes", "inodes in all; null where the filesystem has no inode accounting (btrfs, vfat)"),
    ("files_free", "int", "inodes", "free inodes; null as `files`"),
    ("readonly", "bool", "", "mounted read-only (statvfs); null with a recorded root"),
))

CGROUP = Record("cgroup", (
    ("path", "str", "", "the cgroup path as the host sees it (`/system.slice/nginx.service`)"),
    ("inode", "int", "", "the cgroup directory's inode; with `path`, the identity: a cgroup made again is new"),
    ("cpu", "object", "µs; counts",
     "`usage_usec`, `user_usec`, `system_usec`, `throttled_usec` (µs); `nr_periods`, `nr_throttled` "
     "(CFS periods); `quota_usec`, `period_usec` (µs, `\"max\"` without a quota); null without the controller"),
    ("memory", "object", "bytes; counts",
     "`current`, `max`, `high`, `swap_current`, `swap_max` (bytes or `\"max\"`); `events` "
     "{`oom`, `oom_kill`, `high`, `max`} (counts); `stat` {`anon`, `file`, `kernel`, `sock`, `shmem` (bytes), "
     "`pgmajfault`}"),
    ("io", "object", "bytes; I/Os",
     "{\"MAJ:MIN\": {`rbytes`, `wbytes`, `dbytes` (bytes), `rios`, `wios`, `dios` (I/Os)}}"),
    ("pids", "object", "tasks", "`current`, `max` (or `\"max\"`), `events_max` (forks refused at the limit)"),
    ("pressure", "object", "µs; percent",
     "{`cpu`, `memory`, `io`} each {`some`, `full`} as `/proc/pressure`; null outside the cgroup2 tree"),
))

WORKLOAD = Record("workload", (
    ("kind", "str", "", "`unit`, `scope`, `slice`, `user`, `container`, `pod` or `other`"),
    ("name", "str", "", "the unit, the container's or pod's name (from the host's disk), or the path; "
                        "null for a container or pod whose name is not on disk"),
    ("id", "str", "", "the container's 64-hex id or the pod's UID"),
    ("short_id", "str", "", "the id's first 12 characters"),
    ("runtime", "str", "", "`docker`, `containerd`, `cri-o`, `podman`, `lxc`, `cri` (Kubernetes, runtime unsaid)"),
    ("pod_uid", "str", "", "the Kubernetes pod's UID"),
    ("qos", "str", "", "the pod's QoS class: `guaranteed`, `burstable`, `besteffort`"),
    ("namespace", "str", "", "the pod's Kubernetes namespace"),
    ("unit", "str", "", "the innermost systemd unit or scope on the path"),
    ("uid", "int", "", "the user of `user@UID.service` or `user-UID.slice` on the path"),
))

NETNS = Record("network namespace", (
    ("inode", "int", "", "the namespace's inode (`/proc/PID/ns/net`): its identity while it exists"),
    ("name", "str", "", "its name under `/run/netns` (`ip netns add`), else null"),
    ("host", "bool", "", "the host's namespace: the one the `network` and `sockets` sections describe"),
    ("processes", "int", "processes", "processes seen in it (kernel threads aside)"),
    ("pids", "list of int", "", "the lowest pids of those, at most 4"),
    ("cgroup", "str", "",
     "the cgroup most of its processes are in: its workload is `cgroups.workloads[cgroup]`; "
     "null without processes"),
    ("snmp", "object", "counts since the namespace was made",
     "`{Tcp: {…}, Udp: {…}}`, the counters of `/proc/PID/net/snmp` listed in docs/snapshot.md; "
     "null for the host's and when unreadable"),
    ("netstat", "object", "counts since the namespace was made",
     "`{TcpExt: {…}}`, the counters of `/proc/PID/net/netstat` listed in docs/snapshot.md; "
     "null for the host's and when unreadable"),
    ("sockets", "object", "sockets; packets",
     "a summary of its sockets (sock_diag from inside it), listed in docs/snapshot.md; "
     "null for the host's and when unreadable"),
))

PROBE_RESULT = Record("probe result", (
    ("name", "str", "", "the probe's name (`probe.list`)"),
    ("kind", "str", "", "`tcp`, `http`, `dns`, `unix`, `systemd` or `process`"),
    ("target", "str", "", "what it checks, as configured"),
    ("ok", "bool", "", "the check succeeded"),
    ("latency_ms", "float", "ms", "how long the check took; null for a timeout"),
    ("error", "str", "",
     "null when ok, else `timeout`, `refused`, `network`, `dns`, `tls`, `protocol`, `status`, `body`, "
     "`inactive`, `systemd`, `absent`, `denied` or `error` ([availability.md](availability.md))"),
    ("detail", "str", "", "one line for people (`HTTP 503, expected 200`, `pid 812`), or null"),
    ("at_ns", "int", "ns since the epoch", "when the check started (CLOCK_REALTIME)"),
))

SLO_SUMMARY = Record("slo summary", (
    ("name", "str", "", "the probe's name"),
    ("target_percent", "float", "%", "the objective: good results of all, over 30 days (`slo`)"),
    ("latency_threshold_ms", "float", "ms", "a success slower than this counts as bad; null: none (`latency`)"),
    ("availability_1h", "float", "fraction", "good ÷ results over the last hour; null without results"),
    ("good_1h", "int", "results", "good results over the last hour"),
    ("total_1h", "int", "results", "results over the last hour"),
    ("availability_1d", "float", "fraction", "the same over the last day"),
    ("good_1d", "int", "results", "the same over the last day"),
    ("total_1d", "int", "results", "the same over the last day"),
    ("availability_30d", "float", "fraction", "the same over the last 30 days"),
    ("good_30d", "int", "results", "the same over the last 30 days"),
    ("total_30d", "int", "results", "the same over the last 30 days"),
    ("budget_left", "float", "fraction",
     "of the 30-day error budget not spent: 1 - burn_30d (below 0 when overspent); null without results"),
    ("burn_5m", "float", "×", "burn rate over 5 minutes: (bad ÷ results) ÷ (1 - target); null without results"),
    ("burn_30m", "float", "×", "burn rate over 30 minutes"),
    ("burn_1h", "float", "×", "burn rate over 1 hour"),
    ("burn_6h", "float", "×", "burn rate over 6 hours"),
    ("burn_3d", "float", "×", "burn rate over 3 days"),
    ("alerts", "list of str", "",
     "the burn-rate rules that fire: `page:1h/5m` (> 14.4), `page:6h/30m` (> 6), `ticket:3d/6h` (> 1)"),
    ("alert", "str", "", "`page` when a page rule fires, else `ticket` when the ticket rule does, else null"),
    ("alerting", "bool", "", "some rule fires"),
))

RECORDS = (PROCESS, TCP_SOCKET_ROW, LISTENER, LINK, DISK, FILESYSTEM, CGROUP, WORKLOAD, NETNS, PROBE_RESULT,
           SLO_SUMMARY)
