"""Every limit the findings rules use, declared once: name, value, unit, why.

A rule fires when the measured value is strictly above its limit, unless the
rule says otherwise (the ``_crit_pct`` limits fire at the limit, the memory
ones below it); docs/findings.md lists the same table, and a test keeps the
two equal. Units are also in the names: ``pct`` is percent 0-100, ``per_s``
per second, ``ms`` milliseconds.
"""

from collections import namedtuple

from hostdiag.findings.values import num, show

Threshold = namedtuple("Threshold", "name value unit why")

TABLE = (
    Threshold("cgroup_oom_kills", 0, "kills in one cgroup",
              "the OOM killer killed inside a workload's memory limit: a process of it is gone"),
    Threshold("cgroup_pids_pct", 90.0, "% of pids.max",
              "the next forks of the workload will fail (EAGAIN); refused forks are crit"),
    Threshold("cgroup_throttled_pct", 25.0, "% of CFS periods",
              "the workload ran out of its CPU quota in a quarter of the periods: latency"),
    Threshold("cgroup_memory_pct", 90.0, "% of memory.max, without page cache",
              "reclaim inside the limit, then the OOM killer"),
    Threshold("cgroup_psi_some_avg10", 20.0, "% (cpu, memory or io, in one cgroup)",
              "a workload stalls a fifth of the time while the host as a whole does not"),
    Threshold("netns_retransmit_pct", 2.0, "% of the segments one network namespace sent",
              "packet loss on a container's path, which the host's own counters do not count"),
    Threshold("netns_retransmit_min_segs_per_s", 100.0, "segments/s sent in the namespace (at or above)",
              "a ratio over a handful of segments means nothing"),
    Threshold("netns_listen_overflows_per_s", 0.0, "/s, in one network namespace",
              "an accept queue inside a container was full: a connection was refused or delayed"),
    Threshold("netns_listen_drops_per_s", 0.0, "/s, in one network namespace",
              "SYNs were dropped on a listener inside a container"),
    Threshold("netns_udp_errors_per_s", 0.0, "datagrams/s, in one network namespace",
              "datagrams a container's sockets did not take (rcvbuf full or checksum) are lost data"),
    Threshold("load1_per_cpu", 2.0, "1-minute load average / CPUs",
              "more runnable or D tasks than CPUs can serve, twice over"),
    Threshold("cpu_busy_pct", 90.0, "% of all CPU time",
              "all CPUs nearly saturated: no headroom left"),
    Threshold("one_cpu_busy_pct", 95.0, "% of one CPU's time",
              "a single-threaded bottleneck or an interrupt pinned to one CPU"),
    Threshold("cpu_iowait_pct", 20.0, "% of all CPU time",
              "CPUs idle while waiting for storage"),
    Threshold("cpu_steal_pct", 10.0, "% of all CPU time",
              "the hypervisor runs something else while this guest wants the CPU"),
    Threshold("mem_available_warn_pct", 10.0, "% of MemTotal (below)",
              "reclaim starts to cost; little room for a burst"),
    Threshold("mem_available_crit_pct", 5.0, "% of MemTotal (below)",
              "the OOM killer is near"),
    Threshold("swap_pages_per_s", 100.0, "pages/s, in + out",
              "sustained swapping slows every process that touches its memory"),
    Threshold("major_faults_per_s", 100.0, "faults/s",
              "pages read back from disk: page cache thrashing or swap-in"),
    Threshold("oom_kills", 0, "kills",
              "any OOM kill lost a process: crit in the interval, warn since boot"),
    Threshold("psi_cpu_some_avg10", 20.0, "%",
              "tasks wait for a CPU a fifth of the time"),
    Threshold("psi_memory_some_avg10", 10.0, "%",
              "tasks stall in reclaim or on refaults"),
    Threshold("psi_io_some_avg10", 20.0, "%",
              "tasks wait for storage a fifth of the time"),
    Threshold("psi_memory_full_avg10", 5.0, "%",
              "all non-idle tasks stalled on memory at once: thrashing"),
    Threshold("disk_util_pct", 90.0, "% of the interval",
              "a disk had I/O in flight nearly all the time"),
    Threshold("disk_await_ms", 50.0, "ms",
              "mean read+write latency far above what a healthy disk gives"),
    Threshold("disk_await_min_iops", 5.0, "I/Os per second (at or above)",
              "a few slow I/Os on an idle disk are not a finding"),
    Threshold("fs_used_warn_pct", 90.0, "%",
              "space runs out soon at a steady write rate"),
    Threshold("fs_used_crit_pct", 95.0, "% (at or above)",
              "writes are about to fail"),
    Threshold("fs_inodes_warn_pct", 90.0, "%",
              "inodes run out soon: file creation will fail with space left"),
    Threshold("fs_inodes_crit_pct", 95.0, "% (at or above)",
              "file creation is about to fail"),
    Threshold("nic_errors_per_s", 0.0, "errors/s",
              "any link error points at a cable, duplex or driver problem"),
    Threshold("nic_dropped_per_s", 10.0, "drops/s",
              "a link's rings or backlog overflow; a few drops are normal"),
    Threshold("tcp_retransmit_pct", 2.0, "% of all segments sent",
              "packet loss on the path"),
    Threshold("tcp_retransmit_min_out_segs_per_s", 100.0, "segments/s (at or above)",
              "a ratio over a handful of segments means nothing"),
    Threshold("tcp_listen_overflows_per_s", 0.0, "/s",
              "an accept queue was full: a connection was refused or delayed"),
    Threshold("tcp_listen_drops_per_s", 0.0, "/s",
              "SYNs were dropped on a listener"),
    Threshold("tcp_estab_resets_per_s", 10.0, "/s",
              "established connections reset: a crashing peer, a firewall, timeouts"),
    Threshold("tcp_attempt_fails_per_s", 10.0, "/s",
              "connection attempts failing"),
    Threshold("udp_in_errors_per_s", 0.0, "datagrams/s",
              "any datagram not delivered (rcvbuf full or checksum) is lost data"),
    Threshold("softnet_dropped_per_s", 0.0, "packets/s",
              "a full per-CPU backlog dropped packets"),
    Threshold("softnet_time_squeeze_per_s", 10.0, "/s",
              "NAPI ran out of budget or time: packet processing falls behind"),
    Threshold("file_handles_pct", 80.0, "% of fs.file-max",
              "open() fails host-wide when the handles run out"),
    Threshold("conntrack_warn_pct", 80.0, "% of nf_conntrack_max",
              "a full table drops new flows"),
    Threshold("conntrack_crit_pct", 95.0, "% of nf_conntrack_max (at or above)",
              "new flows are about to be dropped"),
    Threshold("kernel_log_severity", 3, "syslog level (err); crit below it",
              "the kernel logged an error: device, filesystem or hung task"),
    Threshold("procs_d_state", 0, "processes in D state in both snapshots",
              "one sample catches short waits too; a process in D across the interval is stuck"),
    Threshold("procs_zombie", 10, "zombie processes",
              "a parent that does not reap its children; enough zombies exhaust pid_max"),
    Threshold("tcp_conn_retrans_per_s", 5.0, "segments retransmitted per second, one connection",
              "loss or a slow peer on that connection's path"),
    Threshold("process_cpu_pct", 50.0, "% of one CPU, one process (at or above)",
              "while the CPUs are saturated, a process using half a CPU or more is their cause"),
    Threshold("process_rss_growth_bytes_per_s", 10485760, "bytes/s of resident memory, one process",
              "10 MiB/s fills a GiB in under two minutes"),
    Threshold("rss_leak_bytes_per_s", 65536, "bytes/s, least-squares slope of one process's RSS",
              "64 KiB/s is 225 MiB an hour: memory that is never given back"),
    Threshold("rss_leak_fit_r2", 0.9, "r² of the fit (at or above)",
              "steady growth fits a line; one jump or a sawtooth does not"),
    Threshold("rss_leak_samples", 5, "samples with the process (at or above)",
              "a slope over fewer points is noise"),
    Threshold("rss_leak_growing_pct", 75.0, "% of the intervals between samples in which RSS grew (at or above)",
              "a leak grows all along; one jump between two far-apart clusters also fits a line"),
    Threshold("rss_leak_window_s", 120, "seconds from the first to the last sample of the fit (at or above)",
              "a compiler or a warm-up grows fast and steadily for a minute, then stops or exits: not a leak"),
    Threshold("fd_limit_warn_pct", 90.0, "% of the process's soft RLIMIT_NOFILE",
              "the process's next open(), socket() or accept() fails with EMFILE"),
    Threshold("fd_limit_crit_pct", 100.0, "% of the soft RLIMIT_NOFILE (at or above)",
              "at the limit: every new descriptor fails now"),
    Threshold("nproc_limit_warn_pct", 90.0, "% of the user's soft RLIMIT_NPROC",
              "the user's next fork() or thread fails with EAGAIN"),
    Threshold("nproc_limit_crit_pct", 100.0, "% of the soft RLIMIT_NPROC (at or above)",
              "at the limit: every new process or thread of the user fails now"),
)

# name -> value, for the rules.
THRESHOLDS = {t.name: t.value for t in TABLE}


def over(value, name):
    """True when ``value`` is a number strictly above the limit ``name``."""
    value = num(value)
    return value is not None and value > THRESHOLDS[name]


def at_least(value, name):
    """True when ``value`` is a number at or above the limit ``name``."""
    value = num(value)
    return value is not None and value >= THRESHOLDS[name]


def limit_text(label, name, op=">", unit=""):
    """The threshold of a finding as text: ``busy > 90 %``."""
    return "%s %s %s%s" % (label, op, show(THRESHOLDS[name]), unit)
