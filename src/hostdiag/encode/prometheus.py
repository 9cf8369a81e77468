"""The Prometheus exposition of one snapshot: text format 0.0.4 and OpenMetrics 1.0.

:func:`encode_metrics` is a pure function of a snapshot (the plain-dict form,
``Snapshot.to_dict()``, as the agent keeps it), the rates that end at it, its
findings and, optionally, the serving side's own counters. It reads no file.

Names, types, labels and units follow node_exporter's wherever it reads the
same kernel counter (``node_cpu_seconds_total{cpu,mode}``, ``node_memory_*``,
``node_disk_*``, ``node_network_*{device}``, ``node_netstat_*``, …), converted
to node_exporter's units: seconds (not clock ticks or milliseconds), bytes (not
kB, pages or 512-byte sectors). ``hostdiag_*`` families carry what
node_exporter lacks; each has a fixed bound on its series (see the ``TOP_*`` and
``MAX_*`` constants and docs/metrics.md, which lists every family).

The text is written directly, without prometheus_client: on a snapshot of
this host that is several times cheaper than building prometheus_client's
metric families and calling its exposition (the measurement is in
benchmarks/README.md, "Prometheus /metrics"). A line prefix (name and labels)
is the same from one sample to the next, so prefixes are kept in a bounded
cache (:data:`PREFIX_CACHE_ENTRIES`) and only the values are formatted anew.

Gauge histograms (the distribution of current TCP connections over rtt and
retransmits) are ``gaugehistogram`` in OpenMetrics (``_bucket``, ``_gcount``,
``_gsum``); text format 0.0.4 has no such type, so there they are
``histogram`` with ``_bucket``, ``_count`` and ``_sum``, as client libraries
expose them.
"""

import bisect
import itertools
import math
import operator
import os
import re

from hostdiag.derive.slo import ALERT_RULES
from hostdiag.encode.prometheus_workloads import summarize_workloads, workload_families

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Cardinality bounds of the hostdiag_* families.
TOP_PROCESSES = 10          # processes per ranking (by CPU, by resident memory)
TOP_LISTENERS = 50          # TCP listeners, the fullest accept queues first
MAX_FINDINGS = 100          # hostdiag_finding_active series
MAX_PROBES = 64             # probes in the hostdiag_probe_* and hostdiag_slo_* families (probe.list's own bound)
SLO_AVAILABILITY_WINDOWS = ("1h", "1d", "30d")
SLO_BURN_WINDOWS = ("5m", "30m", "1h", "6h", "3d")
SLO_ALERT_RULES = tuple("%s:%s/%s" % rule[:3] for rule in ALERT_RULES)   # the rule names of derive/slo.py
# Bucket upper bounds of the TCP connection histograms.
# rtt buckets are in µs, as tcp_info counts; the exposition shows them in seconds.
RTT_BUCKETS_US = (100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000)
RETRANS_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 1000)
# Line prefixes kept between calls; the cache is emptied when it reaches this size
# (a host whose devices, pids or mounts churn cannot grow it without bound).
PREFIX_CACHE_ENTRIES = 20000

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device

_INT = frozenset((int,))
_NUMBER = frozenset((int, float))
_VALID_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z").match

_prefixes = {}
# {format: {table: {key: header and sample prefix of a one-sample family}}}; a
# table's entries are dropped when they reach PREFIX_CACHE_ENTRIES.
_scalar_heads = {False: {}, True: {}}


def _escape_label(value):
    """A label value as the exposition formats quote it (\\\\, \\", \\n)."""
    value = str(value)
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs):
    """``{a="x",b="y"}`` from ``((name, value), ...)``; empty without pairs."""
    if not pairs:
        return ""
    return "{" + ",".join('%s="%s"' % (name, _escape_label(value)) for name, value in pairs) + "}"


def _prefix(name, pairs):
    """The cached ``name{labels} `` of one series."""
    key = (name, pairs)
    found = _prefixes.get(key)
    if found is None:
        if len(_prefixes) >= PREFIX_CACHE_ENTRIES:
            _prefixes.clear()
        found = _prefixes[key] = name + _labels(pairs) + " "
    return found


def _header(name, kind, help_text, unit, openmetrics):
    """``# HELP``, ``# TYPE`` (and in OpenMetrics ``# UNIT``) lines of a family
    whose samples are named ``name``."""
    family = name
    if openmetrics:
        if kind == "counter":
            family = name[:-len("_total")]
        elif kind == "untyped":
            kind = "unknown"
    head = "# HELP %s %s\n# TYPE %s %s\n" % (family, _escape_help(help_text), family, kind)
    if openmetrics and unit:
        head += "# UNIT %s %s\n" % (family, unit)
    return head


def _value(value):
    """A sample value as text; None for what is not a number."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    if kind is bool:
        return "1" if value else "0"
    return None


class _Exposition:
    """Collects families into one text in the chosen format."""

    def __init__(self, openmetrics):
        self.openmetrics = openmetrics
        self.lines = []

    def family(self, name, kind, help_text, samples, unit=None):
        """One family. ``name`` is the sample name (a counter's ends with
        ``_total``); ``kind`` is counter, gauge or untyped; ``samples`` yields
        ``(label pairs tuple, value)``; None values are left out, and a family
        without samples is not written."""
        body = []
        for pairs, value in samples:
            text = str(value) if type(value) is int else _value(value)
            if text is not None:
                body.append(_prefix(name, pairs) + text + "\n")
        if not body:
            return
        self.lines.append(_header(name, kind, help_text, unit, self.openmetrics))
        self.lines.extend(body)

    def scalars(self, tag, items, describe):
        """Families of one unlabelled sample each, one per ``(key, value)`` of
        ``items`` (a kernel table such as vmstat): ``describe(key)`` gives
        ``(name, kind, help, unit)``, or None to leave the key out. Its answer
        is cached with the header, so a key costs a lookup from the second
        sample on."""
        cache = _scalar_heads[self.openmetrics].get(tag)
        if cache is None or len(cache) >= PREFIX_CACHE_ENTRIES:
            cache = _scalar_heads[self.openmetrics][tag] = {}
        lines = self.lines
        for key, value in items:
            head = cache.get(key)
            if head is None:
                described = describe(key)
                head = cache[key] = "" if described is None else (
                    _header(*described, self.openmetrics) + described[0] + " ")
            if not head:
                continue
            text = str(value) if type(value) is int else _value(value)
            if text is not None:
                lines.append(head + text + "\n")

    def gauge_histogram(self, name, help_text, bounds, distribution, unit=None, divisor=1):
        """One gauge histogram from :func:`_distribution`'s ``(cumulative
        counts, count, sum)`` over ``bounds`` (upper bounds in the values'
        unit), plus the +Inf bucket; written even when empty. Bounds and the
        sum are shown divided by ``divisor`` (1e6: µs to seconds)."""
        cumulative, count, total = distribution
        om = self.openmetrics
        lines = [_header(name, "gaugehistogram" if om else "histogram", help_text, unit, om)]
        for bound, n in zip(bounds, cumulative):
            lines.append('%s_bucket{le="%r"} %d\n' % (name, bound / divisor, n))
        lines.append('%s_bucket{le="+Inf"} %d\n' % (name, count))
        lines.append("%s_%s %d\n" % (name, "gcount" if om else "count", count))
        lines.append("%s_%s %r\n" % (name, "gsum" if om else "sum", total / divisor))
        self.lines.extend(lines)

    def text(self):
        if self.openmetrics:
            self.lines.append("# EOF\n")
        return "".join(self.lines)


def _scaled(value, factor):
    """``value * factor`` for a number, else None (a missing counter stays missing)."""
    return value * factor if type(value) in (int, float) else None


# --- node_exporter's families ---------------------------------------------

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _cpu(out, snapshot):
    cpu = snapshot.get("cpu")
    if not cpu:
        return
    hz = (snapshot.get("meta") or {}).get("clock_ticks") or 100
    per_cpu = []
    for key, states in sorted((cpu.get("cpus") or {}).items(), key=lambda item: _cpu_number(item[0])):
        if isinstance(states, dict):
            per_cpu.append((key[3:] if key.startswith("cpu") else key, states))
    out.family("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode (/proc/stat).",
               (((("cpu", n), ("mode", mode)), _scaled(states.get(mode), 1.0 / hz))
                for n, states in per_cpu for mode in _CPU_MODES), unit="seconds")
    out.family("node_cpu_guest_seconds_total", "counter",
               "Seconds the CPUs spent in guests (VMs) for each mode; also counted in user and nice.",
               (((("cpu", n), ("mode", mode)), _scaled(states.get(field), 1.0 / hz))
                for n, states in per_cpu for mode, field in (("nice", "guest_nice"), ("user", "guest"))),
               unit="seconds")
    load = cpu.get("loadavg") or {}
    for key in ("load1", "load5", "load15"):
        out.family("node_" + key, "gauge", "%sm load average (/proc/loadavg)." % key[4:], (((), load.get(key)),))
    out.family("node_boot_time_seconds", "gauge", "Node boot time, in unixtime (/proc/stat btime).",
               (((), cpu.get("btime")),), unit="seconds")
    out.family("node_context_switches_total", "counter", "Total number of context switches (/proc/stat).",
               (((), cpu.get("ctxt")),))
    out.family("node_forks_total", "counter", "Total number of forks (/proc/stat processes).",
               (((), cpu.get("processes")),))
    out.family("node_intr_total", "counter", "Total number of interrupts serviced (/proc/stat).",
               (((), cpu.get("intr")),))
    out.family("node_procs_running", "gauge", "Number of processes in runnable state (/proc/stat).",
               (((), cpu.get("procs_running")),))
    out.family("node_procs_blocked", "gauge", "Number of processes blocked waiting for I/O (/proc/stat).",
               (((), cpu.get("procs_blocked")),))


def _cpu_number(key):
    digits = key[3:]
    return (0, int(digits)) if digits.isdigit() else (1, key)


def _memory(out, snapshot):
    memory = snapshot.get("memory")
    if not memory:
        return
    out.scalars("meminfo", (memory.get("meminfo") or {}).items(), _describe_meminfo)
    out.scalars("vmstat", (memory.get("vmstat") or {}).items(), _describe_vmstat)


def _describe_meminfo(key):
    # node_exporter's names: "Active(anon)" becomes Active_anon; kB values get _bytes.
    base = key.replace("(", "_").replace(")", "")
    if key.startswith("HugePages_"):
        name, unit, what = "node_memory_" + base, None, "a count of huge pages"
    else:
        name, unit, what = "node_memory_%s_bytes" % base, "bytes", "bytes"
    if not _VALID_NAME(name):
        return None
    return name, "gauge", "Memory information field %s (/proc/meminfo), %s." % (key, what), unit


def _describe_vmstat(key):
    name = "node_vmstat_" + key
    return (name, "untyped", "/proc/vmstat information field %s." % key, None) if _VALID_NAME(name) else None

def _pressure(out, snapshot):
    pressure = snapshot.get("pressure")
    if not pressure:
        return
    for resource, kind, name in (("cpu", "some", "waiting"), ("cpu", "full", "stalled"),
                                 ("io", "some", "waiting"), ("io", "full", "stalled"),
                                 ("memory", "some", "waiting"), ("memory", "full", "stalled"),
                                 ("irq", "full", "stalled")):
        line = (pressure.get(resource) or {}).get(kind) or {}
        who = "some" if kind == "some" else "all non-idle"
        out.family("node_pressure_%s_%s_seconds_total" % (resource, name), "counter",
                   "Total time in seconds that %s tasks were stalled on %s (/proc/pressure/%s, %s total)."
                   % (who, resource, resource, kind),
                   (((), _scaled(line.get("total_us"), 1e-6)),), unit="seconds")


# (node_exporter's name, diskstats field, factor to its unit, kind, unit, help)
_DISK_FIELDS = (
    ("reads_completed_total", "reads_completed", None, "counter", None, "The total number of reads completed successfully."),
    ("reads_merged_total", "reads_merged", None, "counter", None, "The total number of reads merged."),
    ("read_bytes_total", "sectors_read", SECTOR_BYTES, "counter", "bytes", "The total number of bytes read successfully."),
    ("read_time_seconds_total", "read_time_ms", 1e-3, "counter", "seconds", "The total number of seconds spent by all reads."),
    ("writes_completed_total", "writes_completed", None, "counter", None, "The total number of writes completed successfully."),
    ("writes_merged_total", "writes_merged", None, "counter", None, "The number of writes merged."),
    ("written_bytes_total", "sectors_written", SECTOR_BYTES, "counter", "bytes", "The total number of bytes written successfully."),
    ("write_time_seconds_total", "write_time_ms", 1e-3, "counter", "seconds", "This is the total number of seconds spent by all writes."),
    ("io_now", "ios_in_progress", None, "gauge", None, "The number of I/Os currently in progress."),
    ("io_time_seconds_total", "io_time_ms", 1e-3, "counter", "seconds", "Total seconds spent doing I/Os."),
    ("io_time_weighted_seconds_total", "weighted_io_time_ms", 1e-3, "counter", "seconds", "The weighted number of seconds spent doing I/Os."),
    ("discards_completed_total", "discards_completed", None, "counter", None, "The total number of discards completed successfully."),
    ("discards_merged_total", "discards_merged", None, "counter", None, "The total number of discards merged."),
    ("discarded_sectors_total", "sectors_discarded", None, "counter", None, "The total number of sectors discarded successfully."),
    ("discard_time_seconds_total", "discard_time_ms", 1e-3, "counter", "seconds", "This is the total number of seconds spent by all discards."),
    ("flush_requests_total", "flushes_completed", None, "counter", None, "The total number of flush requests completed successfully."),
    ("flush_requests_time_seconds_total", "flush_time_ms", 1e-3, "counter", "seconds", "This is the total number of seconds spent by all flush requests."),
)
# node_exporter's default device exclusion: RAM disks, loop devices, floppies (partitions go by is_partition).
_SKIPPED_DISK = re.compile(r"(ram|loop|fd)\d+\Z").match


def _disks(out, snapshot):
    disks = [d for d in snapshot.get("disks") or () if isinstance(d, dict) and d.get("name")
             and not d.get("is_partition") and not _SKIPPED_DISK(d["name"])]
    if not disks:
        return
    out.family("node_disk_info", "gauge", "Info of /proc/diskstats devices, value is always 1.",
               (((("device", d["name"]), ("major", d.get("major")), ("minor", d.get("minor"))), 1)
                for d in disks))
    for suffix, field, factor, kind, unit, help_text in _DISK_FIELDS:
        labelled = [(("device", d["name"]),) for d in disks]
        if factor is None:
            samples = zip(labelled, (d.get(field) for d in disks))
        else:
            samples = zip(labelled, (_scaled(d.get(field), factor) for d in disks))
        out.family("node_disk_" + suffix, kind, help_text + " (/proc/diskstats)", samples, unit=unit)


def _filesystems(out, snapshot):
    live = (snapshot.get("meta") or {}).get("live", True)
    mounts = [fs for fs in snapshot.get("filesystems") or () if isinstance(fs, dict) and fs.get("mountpoint")]
    if not mounts:
        return
    labelled = [(fs, (("device", fs.get("device") or ""), ("fstype", fs.get("fstype") or ""),
                      ("mountpoint", fs["mountpoint"]))) for fs in mounts]
    for name, field, unit, help_text in (
            ("node_filesystem_size_bytes", "size_bytes", "bytes", "Filesystem size in bytes."),
            ("node_filesystem_free_bytes", "free_bytes", "bytes", "Filesystem free space in bytes."),
            ("node_filesystem_avail_bytes", "avail_bytes", "bytes",
             "Filesystem space available to non-root users in bytes."),
            ("node_filesystem_files", "files", None, "Filesystem total file nodes."),
            ("node_filesystem_files_free", "files_free", None, "Filesystem total free file nodes.")):
        out.family(name, "gauge", help_text + " (statvfs)", ((pairs, fs.get(field)) for fs, pairs in labelled),
                   unit=unit)
    out.family("node_filesystem_readonly", "gauge", "Filesystem read-only status (mountinfo).",
               ((pairs, bool(fs.get("readonly"))) for fs, pairs in labelled))
    if live:
        # statvfs failed for a mount of the live root when its size is missing.
        out.family("node_filesystem_device_error", "gauge",
                   "Whether an error occurred while getting statistics for the given device.",
                   ((pairs, fs.get("size_bytes") is None) for fs, pairs in labelled))


# rtnl_link_stats64 -> /proc/net/dev column, as net/core/net-procfs.c sums them.
_NET_SUMS = {
    "receive_drop": ("rx_dropped", "rx_missed_errors"),
    "receive_frame": ("rx_length_errors", "rx_over_errors", "rx_crc_errors", "rx_frame_errors"),
    "transmit_carrier": ("tx_carrier_errors", "tx_aborted_errors", "tx_window_errors", "tx_heartbeat_errors"),
}
_NET_FIELDS = (
    ("receive_bytes", "rx_bytes"), ("receive_packets", "rx_packets"), ("receive_errs", "rx_errors"),
    ("receive_drop", "rx_dropped"), ("receive_fifo", "rx_fifo_errors"), ("receive_frame", "rx_frame_errors"),
    ("receive_compressed", "rx_compressed"), ("receive_multicast", "multicast"),
    ("receive_nohandler", "rx_nohandler"),
    ("transmit_bytes", "tx_bytes"), ("transmit_packets", "tx_packets"), ("transmit_errs", "tx_errors"),
    ("transmit_drop", "tx_dropped"), ("transmit_fifo", "tx_fifo_errors"), ("transmit_colls", "collisions"),
    ("transmit_carrier", "tx_carrier_errors"), ("transmit_compressed", "tx_compressed"),
)


def _link_counter(stats, column, field, summed):
    if not summed or column not in _NET_SUMS:
        return stats.get(field)
    parts = [stats.get(name) for name in _NET_SUMS[column]]
    parts = [p for p in parts if type(p) is int]
    return sum(parts) if parts else None


def _network(out, snapshot):
    network = snapshot.get("network")
    if not network:
        return
    links = [link for link in network.get("links") or () if isinstance(link, dict) and link.get("name")]
    # The netlink source gives the detailed counters; /proc/net/dev's columns are sums of them.
    summed = network.get("link_source") == "netlink"
    for column, field in _NET_FIELDS:
        out.family("node_network_%s_total" % column, "counter", "Network device statistic %s." % column,
                   (((("device", link["name"]),), _link_counter(link.get("stats") or {}, column, field, summed))
                    for link in links), unit="bytes" if column.endswith("bytes") else None)
    out.family("node_network_up", "gauge", "Value is 1 if operstate is 'up', 0 otherwise.",
               (((("device", link["name"]),), link.get("operstate") == "up") for link in links))
    out.family("node_network_info", "gauge", "Non-numeric data of the network device, value is always 1.",
               (((("address", link.get("address") or ""), ("device", link["name"]),
                  ("operstate", link.get("operstate") or "")), 1) for link in links))
    out.family("node_network_carrier", "gauge", "Network device property: carrier",
               (((("device", link["name"]),), link.get("carrier")) for link in links))
    out.family("node_network_carrier_changes_total", "counter", "Network device property: carrier_changes_total",
               (((("device", link["name"]),), link.get("carrier_changes")) for link in links))
    out.family("node_network_mtu_bytes", "gauge", "Network device property: mtu_bytes",
               (((("device", link["name"]),), link.get("mtu")) for link in links), unit="bytes")
    out.family("node_network_iface_id", "gauge", "Network device property: iface_id",
               (((("device", link["name"]),), link.get("index")) for link in links))
    _netstat(out, network)
    _sockstat(out, network)
    softnet = [row for row in network.get("softnet") or () if isinstance(row, dict)]
    for name, field, help_text in (
            ("node_softnet_processed_total", "processed", "Number of processed packets"),
            ("node_softnet_dropped_total", "dropped", "Number of dropped packets"),
            ("node_softnet_times_squeezed_total", "time_squeeze",
             "Number of times processing packets ran out of quota"),
            ("node_softnet_received_rps_total", "received_rps", "Number of times cpu woken up received_rps"),
            ("node_softnet_flow_limit_count_total", "flow_limit_count",
             "Number of times flow limit has been reached")):
        out.family(name, "counter", help_text + " (/proc/net/softnet_stat).",
                   (((("cpu", row.get("cpu")),), row.get(field)) for row in softnet))
    out.family("node_softnet_backlog_len", "gauge", "Softnet backlog status (/proc/net/softnet_stat).",
               (((("cpu", row.get("cpu")),), row.get("backlog_len")) for row in softnet))
    conntrack = network.get("conntrack") or {}
    out.family("node_nf_conntrack_entries", "gauge",
               "Number of currently allocated flow entries for connection tracking.",
               (((), conntrack.get("count")),))
    out.family("node_nf_conntrack_entries_limit", "gauge",
               "Maximum size of connection tracking table.", (((), conntrack.get("max")),))


def _netstat(out, network):
    """node_netstat_<Proto>_<Field> for every counter of snmp, netstat and
    snmp6: the full set node_exporter gives with --collector.netstat.fields=.*
    (its default set is a subset)."""
    for section in ("snmp", "netstat"):
        for proto, fields in (network.get(section) or {}).items():
            if isinstance(fields, dict):
                out.scalars(proto, fields.items(), _netstat_describer(proto))
    out.scalars("snmp6", (network.get("snmp6") or {}).items(), _describe_snmp6)


def _netstat_describer(proto):
    def describe(field):
        name = "node_netstat_%s_%s" % (proto, field)
        return (name, "untyped", "Statistic %s%s." % (proto, field), None) if _VALID_NAME(name) else None
    return describe


def _describe_snmp6(key):
    # node_exporter splits Ip6InReceives after its first "6": Ip6 / InReceives.
    six = key.find("6")
    name = "node_netstat_%s_%s" % (key[:six + 1], key[six + 1:])
    if six < 0 or not _VALID_NAME(name):
        return None
    return name, "untyped", "Statistic %s." % key, None

def _sockstat(out, network):
    sockets = ((network.get("sockstat") or {}).get("sockets") or {}).get("used")
    out.family("node_sockstat_sockets_used", "gauge", "Number of IPv4 sockets in use.", (((), sockets),))
    for section in ("sockstat", "sockstat6"):
        for proto, fields in (network.get(section) or {}).items():
            if proto == "sockets" or not isinstance(fields, dict):
                continue
            for field, value in fields.items():
                name = "node_sockstat_%s_%s" % (proto, field)
                if not _VALID_NAME(name):
                    continue
                out.family(name, "gauge", "Number of %s sockets in state %s." % (proto, field), (((), value),))
                if field == "mem":
                    out.family(name + "_bytes", "gauge", "Number of %s sockets in state mem_bytes." % proto,
                               (((), _scaled(value, PAGE_SIZE)),), unit="bytes")


def _kernel(out, snapshot):
    kernel = snapshot.get("kernel") or {}
    meta = snapshot.get("meta") or {}
    uname = kernel.get("uname") or {}
    if uname:
        pairs = tuple((name, uname.get(field) or "") for name, field in
                      (("machine", "machine"), ("release", "release"), ("sysname", "sysname"),
                       ("version", "version"))) + (("nodename", kernel.get("hostname") or ""),)
        out.family("node_uname_info", "gauge", "Labeled system information as provided by the uname system call.",
                   ((tuple(sorted(pairs)), 1),))
    release = kernel.get("os_release") or {}
    if release:
        pairs = tuple((name, release.get(field) or "") for name, field in
                      (("id", "ID"), ("id_like", "ID_LIKE"), ("name", "NAME"), ("pretty_name", "PRETTY_NAME"),
                       ("version", "VERSION"), ("version_codename", "VERSION_CODENAME"),
                       ("version_id", "VERSION_ID")))
        out.family("node_os_info", "gauge", "A metric with a constant '1' value labeled by os-release(5) fields.",
                   ((pairs, 1),))
        out.family("node_os_version", "gauge", "Metric containing the major.minor part of the OS version.",
                   (((("id", release.get("ID") or ""), ("id_like", release.get("ID_LIKE") or ""),
                      ("name", release.get("NAME") or "")), _os_version(release.get("VERSION_ID"))),))
    file_nr = kernel.get("file_nr") or {}
    out.family("node_filefd_allocated", "gauge", "File descriptor statistics: allocated.",
               (((), file_nr.get("allocated")),))
    out.family("node_filefd_maximum", "gauge", "File descriptor statistics: maximum.", (((), file_nr.get("max")),))
    out.family("node_processes_max_processes", "gauge", "Number of max PIDs limit (kernel.pid_max).",
               (((), kernel.get("pid_max")),))
    out.family("node_processes_max_threads", "gauge", "Limit of threads in the system (kernel.threads-max).",
               (((), kernel.get("threads_max")),))
    wall_ns = meta.get("wall_ns")
    out.family("node_time_seconds", "gauge", "System time in seconds since epoch (1970), when the sample was taken.",
               (((), _scaled(wall_ns, 1e-9)),), unit="seconds")


def _os_version(text):
    """node_exporter's value: the leading major.minor of VERSION_ID, else None."""
    match = re.match(r"\d+(\.\d+)?", text or "")
    return float(match.group(0)) if match else None


# --- the socket and process tables ----------------------------------------

_TCP_STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")


def summarize_tables(snapshot, rates=None):
    """What the exposition needs of the process, socket and cgroup tables and
    the namespaces: the connection histograms' bucket counts, the fullest
    listeners, the top processes and cgroups and the counts; a small dict,
    ``{"sockets": …, "processes": …, "workloads": …}`` (see
    :mod:`hostdiag.encode.prometheus_workloads` for the last). Making it passes over every TCP socket
    and process (about 1.4 ms for 4,000 sockets and 1,100 processes), so
    :class:`~hostdiag.transport.metrics_http.MetricsServer` makes it once per
    new table, not once per scrape; :func:`encode_metrics` makes it when not
    given one."""
    sockets = snapshot.get("sockets")
    processes = snapshot.get("processes")
    return {
        "sockets": _socket_summary(sockets) if isinstance(sockets, dict) else None,
        "processes": _process_summary(processes, (rates or {}).get("processes"))
        if isinstance(processes, dict) else None,
        "workloads": summarize_workloads(snapshot),
    }


def _socket_summary(sockets):
    listeners = [entry for entry in sockets.get("listeners") or () if isinstance(entry, dict)]
    table = sockets.get("tcp_table") or {}
    rtts, retrans = _connection_columns(table.get("fields") or (), table.get("rows") or ())
    return {
        "states": sockets.get("tcp_states") or {},
        "listeners": len(listeners),
        "top_listeners": sorted(listeners, key=_listener_rank)[:TOP_LISTENERS],
        "rtt": _distribution(rtts, RTT_BUCKETS_US),
        "retrans": _distribution(retrans, RETRANS_BUCKETS),
        "dropped": table.get("dropped"),
    }


def _distribution(values, bounds):
    """``(cumulative counts at each bound, count, sum)`` of a list of ints."""
    values.sort()
    return [bisect.bisect_right(values, bound) for bound in bounds], len(values), sum(values)


def _sockets(out, summary):
    if summary is None:
        return
    states = summary["states"]
    out.family("node_tcp_connection_states", "gauge", "Number of connection states (every TCP socket counted).",
               (((("state", state.lower()),), states.get(state, 0)) for state in _TCP_STATES))
    out.family("hostdiag_tcp_listeners", "gauge", "TCP sockets listening, all of them.",
               (((), summary["listeners"]),))
    labelled = [((("address", entry.get("local") or ""), ("port", entry.get("local_port"))), entry)
                for entry in summary["top_listeners"]]
    out.family("hostdiag_tcp_listener_backlog", "gauge",
               "Connections waiting in a listener's accept queue, the %d fullest listeners." % TOP_LISTENERS,
               ((pairs, entry.get("backlog")) for pairs, entry in labelled))
    out.family("hostdiag_tcp_listener_backlog_max", "gauge",
               "A listener's accept queue limit (the listen backlog), the %d fullest listeners." % TOP_LISTENERS,
               ((pairs, entry.get("backlog_max")) for pairs, entry in labelled))
    out.gauge_histogram("hostdiag_tcp_connection_rtt_seconds",
                        "TCP connections with an RTT sample, by smoothed round-trip time now (tcp_info rtt).",
                        RTT_BUCKETS_US, summary["rtt"], unit="seconds", divisor=1e6)
    out.gauge_histogram("hostdiag_tcp_connection_retransmits",
                        "TCP connections with an RTT sample, by segments retransmitted since they opened "
                        "(tcp_info total_retrans).", RETRANS_BUCKETS, summary["retrans"])
    out.family("hostdiag_tcp_table_dropped", "gauge",
               "TCP sockets beyond the socket table's row limit, left out of the connection histograms.",
               (((), summary["dropped"]),))


def _connection_columns(fields, rows):
    """``(rtts in µs, total_retrans)`` of the connections with an RTT sample
    (tcp_info rtt above 0: listeners, time-wait sockets and the procfs source
    have none). A table holds up to 100,000 rows, so the columns are taken and
    filtered with C-level iterators only (itemgetter, compress, filter)."""
    try:
        rtt_at, retrans_at = fields.index("rtt"), fields.index("total_retrans")
        rtts = list(map(operator.itemgetter(rtt_at), rows))
        retrans = list(itertools.compress(map(operator.itemgetter(retrans_at), rows), rtts))
    except (ValueError, IndexError, TypeError):  # a table of another shape: no histograms
        return [], []
    return _ints(list(filter(None, rtts))), _ints(retrans)


def _ints(values):
    """``values`` without what is not an int; the common all-int case is
    checked at C speed and not copied."""
    if set(map(type, values)) <= _INT:
        return values
    return [v for v in values if type(v) is int]


def _largest(n, values, items):
    """The items (a list) whose values (an iterable in the same order) are
    the ``n`` largest numbers above zero, largest first (ties: the later
    item first); what is not a number is skipped. It runs over every
    process: the numbers are sorted alone (a C sort of plain numbers), and
    only the few at or above the n-th largest are ranked with their index."""
    values = [v if type(v) in _NUMBER else 0 for v in values]
    floor = sorted(values)[-n] if len(values) > n else 0
    if floor <= 0:
        ranked = [(v, i) for i, v in enumerate(values) if v > 0]
    else:
        ranked = [(v, i) for i, v in enumerate(values) if v >= floor]
    ranked.sort(reverse=True)
    return [items[i] for _, i in ranked[:n]]


def _listener_rank(entry):
    backlog = entry.get("backlog") if type(entry.get("backlog")) is int else 0
    limit = entry.get("backlog_max") if type(entry.get("backlog_max")) is int else 0
    return (-(backlog / limit if limit > 0 else backlog), -backlog, entry.get("local_port") or 0,
            str(entry.get("local")))


def _process_summary(section, per_process):
    records = section.get("processes") or []
    if not set(map(type, records)) <= {dict}:
        records = [r for r in records if isinstance(r, dict)]
    return {
        "counts": section.get("counts") or {},
        "top_cpu": _top_by_cpu(records, per_process),
        "top_rss": _largest(TOP_PROCESSES, map(dict.get, records, itertools.repeat("rss_bytes")), records),
    }


def _processes(out, summary, hz):
    if summary is None:
        return
    counts = summary["counts"]
    out.family("node_processes_state", "gauge", "Number of processes in each state.",
               (((("state", state),), n) for state, n in sorted((counts.get("by_state") or {}).items())))
    out.family("node_processes_pids", "gauge", "Number of PIDs (processes).", (((), counts.get("total")),))
    out.family("node_processes_threads", "gauge", "Allocated threads in system.", (((), counts.get("threads")),))
    out.family("hostdiag_top_process_cpu_seconds_total", "counter",
               "CPU time (user + system) of the %d processes using most CPU now, since each started."
               % TOP_PROCESSES,
               (((("pid", r.get("pid")), ("comm", r.get("comm") or "")), _cpu_ticks(r) / hz)
                for r in summary["top_cpu"]), unit="seconds")
    out.family("hostdiag_top_process_resident_memory_bytes", "gauge",
               "Resident set size of the %d processes with the largest one." % TOP_PROCESSES,
               (((("pid", r.get("pid")), ("comm", r.get("comm") or "")), r.get("rss_bytes"))
                for r in summary["top_rss"]), unit="bytes")


def _cpu_ticks(record):
    utime, stime = record.get("utime"), record.get("stime")
    return (utime if type(utime) is int else 0) + (stime if type(stime) is int else 0)


def _top_by_cpu(records, per_process):
    """The :data:`TOP_PROCESSES` records using most CPU: by the last
    interval's rate when ``per_process`` (rates keyed "pid:start_time") has
    any above zero, else by CPU time since each started."""
    if isinstance(per_process, dict) and set(map(type, per_process.values())) <= {dict}:
        keys = list(per_process)
        busy = _largest(TOP_PROCESSES, map(dict.get, per_process.values(), itertools.repeat("cpu_pct")), keys)
        if busy:
            # A few records, found by pid with C-level scans, then checked by start time.
            pids = list(map(dict.get, records, itertools.repeat("pid")))
            chosen = []
            for key in busy:
                pid, _, start = key.partition(":")
                if pid.isdigit() and int(pid) in pids:
                    record = records[pids.index(int(pid))]
                    if str(record.get("start_time")) == start:
                        chosen.append(record)
            return chosen
    try:
        ticks = list(map(operator.add, map(dict.get, records, itertools.repeat("utime")),
                         map(dict.get, records, itertools.repeat("stime"))))
    except TypeError:  # a process without CPU times: count them as 0
        ticks = list(map(_cpu_ticks, records))
    return _largest(TOP_PROCESSES, ticks, records)


# --- hostdiag's own -------------------------------------------------------

def _findings(out, findings):
    seen = {}
    for finding in findings or ():
        if not isinstance(finding, dict) or not finding.get("id"):
            continue
        pairs = (("id", finding["id"]), ("severity", finding.get("severity") or ""),
                 ("subject", finding.get("subject") or ""))
        if pairs not in seen and len(seen) < MAX_FINDINGS:
            seen[pairs] = 1
    out.family("hostdiag_finding_active", "gauge",
               "1 for each finding of the newest sample (docs/findings.md); at most %d." % MAX_FINDINGS,
               seen.items())
    by_severity = {"crit": 0, "warn": 0}
    for finding in findings or ():
        if isinstance(finding, dict) and finding.get("severity") in by_severity:
            by_severity[finding["severity"]] += 1
    out.family("hostdiag_findings", "gauge", "Findings of the newest sample by severity, all of them.",
               (((("severity", severity),), n) for severity, n in by_severity.items()))


def _collection(out, snapshot):
    meta = snapshot.get("meta") or {}
    out.family("hostdiag_sample_timestamp_seconds", "gauge", "Wall-clock time the newest sample was taken.",
               (((), _scaled(meta.get("wall_ns"), 1e-9)),), unit="seconds")
    out.family("hostdiag_sample_collect_seconds", "gauge",
               "Seconds the newest sample's system sections took to read.",
               (((), _scaled(meta.get("duration_ns"), 1e-9)),), unit="seconds")
    errors = {}
    for entry in meta.get("errors") or ():
        if isinstance(entry, dict):
            key = (("kind", entry.get("kind") or ""), ("source", entry.get("source") or ""))
            errors[key] = errors.get(key, 0) + 1
    out.family("hostdiag_sample_errors", "gauge",
               "Sources of the newest sample that could not be read, by section and kind (meta.errors).",
               sorted(errors.items()))
    out.family("hostdiag_build_info", "gauge", "Which parser implementation produced the sample; always 1.",
               (((("parser_impl", meta.get("parser_impl") or ""),), 1),))


def _agent(out, agent):
    if not isinstance(agent, dict):
        return
    hz = os.sysconf("SC_CLK_TCK")
    cpu = agent.get("cpu") or {}
    out.family("hostdiag_agent_cpu_seconds_total", "counter", "CPU time the agent used since it started.",
               (((("mode", "user"),), _scaled(cpu.get("utime_ticks"), 1.0 / hz)),
                ((("mode", "system"),), _scaled(cpu.get("stime_ticks"), 1.0 / hz))), unit="seconds")
    out.family("hostdiag_agent_resident_memory_bytes", "gauge", "The agent's resident set size.",
               (((), agent.get("rss_bytes")),), unit="bytes")
    for name, field, help_text in (
            ("hostdiag_agent_samples_total", "samples", "Samples taken and stored since the agent started."),
            ("hostdiag_agent_overruns_total", "overruns", "Samples that took longer than their budget."),
            ("hostdiag_agent_missed_ticks_total", "missed_ticks", "Ticks skipped because the agent was late."),
            ("hostdiag_agent_sample_errors_total", "errors", "Samples that failed."),
            ("hostdiag_agent_clients_dropped_total", "clients_dropped",
             "Protocol clients dropped for a full send buffer or a timeout.")):
        out.family(name, "counter", help_text, (((), agent.get(field)),))
    durations = agent.get("sample_s") or {}
    out.family("hostdiag_agent_sample_seconds", "gauge", "Duration of one sample: the last, the mean and the max.",
               (((("stat", stat),), durations.get(stat)) for stat in ("last", "avg", "max")), unit="seconds")
    out.family("hostdiag_agent_clients", "gauge", "Protocol clients connected now.", (((), agent.get("clients")),))
    spool = agent.get("spool") or {}
    out.family("hostdiag_agent_spool_bytes", "gauge", "Bytes of history on disk.", (((), spool.get("bytes")),),
               unit="bytes")
    out.family("hostdiag_agent_spool_degraded", "gauge", "1 while the spool cannot write (history in memory only).",
               (((), bool(spool.get("degraded")) if spool else None),))
    started = agent.get("started_wall_ns")
    out.family("hostdiag_agent_start_time_seconds", "gauge", "When the agent started, in unixtime.",
               (((), _scaled(started, 1e-9)),), unit="seconds")


def _percent_as_ratio(value):
    """``value`` / 100 for a number (99.9 gives 0.999, where x 0.01 would not), else None."""
    return value / 100 if type(value) in (int, float) else None


def _probes(out, results):
    """The latest probe results (the snapshot's ``probes``, docs/availability.md)."""
    kept = [r for r in results or () if isinstance(r, dict) and r.get("name")][:MAX_PROBES]
    out.family("hostdiag_probe_success", "gauge", "1 when the probe's latest check succeeded, else 0.",
               (((("probe", r["name"]), ("kind", r.get("kind") or "")), r.get("ok")) for r in kept))
    out.family("hostdiag_probe_latency_seconds", "gauge",
               "How long the probe's latest check took (absent after a timeout).",
               (((("probe", r["name"]),), _scaled(r.get("latency_ms"), 1e-3)) for r in kept), unit="seconds")
    out.family("hostdiag_probe_timestamp_seconds", "gauge", "When the probe's latest check started, in unixtime.",
               (((("probe", r["name"]),), _scaled(r.get("at_ns"), 1e-9)) for r in kept), unit="seconds")


def _slo(out, summaries):
    """The probes' SLO figures (the snapshot's ``slo``, docs/availability.md)."""
    kept = [s for s in summaries or () if isinstance(s, dict) and s.get("name")][:MAX_PROBES]
    out.family("hostdiag_slo_target_ratio", "gauge", "The probe's objective: good results of all over 30 days.",
               (((("probe", s["name"]),), _percent_as_ratio(s.get("target_percent"))) for s in kept), unit="ratio")
    out.family("hostdiag_slo_availability_ratio", "gauge", "Good results of all, over the window.",
               (((("probe", s["name"]), ("window", w)), s.get("availability_" + w))
                for s in kept for w in SLO_AVAILABILITY_WINDOWS), unit="ratio")
    out.family("hostdiag_slo_results", "gauge", "Probe results counted over the window.",
               (((("probe", s["name"]), ("window", w)), s.get("total_" + w))
                for s in kept for w in SLO_AVAILABILITY_WINDOWS))
    out.family("hostdiag_slo_good_results", "gauge", "Good probe results over the window.",
               (((("probe", s["name"]), ("window", w)), s.get("good_" + w))
                for s in kept for w in SLO_AVAILABILITY_WINDOWS))
    out.family("hostdiag_slo_error_budget_remaining_ratio", "gauge",
               "Fraction of the 30-day error budget not spent (below 0 when overspent).",
               (((("probe", s["name"]),), s.get("budget_left")) for s in kept), unit="ratio")
    out.family("hostdiag_slo_burn_rate", "gauge", "How fast the window spends the error budget (1: in 30 days).",
               (((("probe", s["name"]), ("window", w)), s.get("burn_" + w))
                for s in kept for w in SLO_BURN_WINDOWS))
    out.family("hostdiag_slo_alert", "gauge", "1 while the multi-window burn-rate rule fires, else 0.",
               (((("probe", s["name"]), ("rule", rule)), rule in (s.get("alerts") or ()))
                for s in kept for rule in SLO_ALERT_RULES))


def _server(out, stats):
    if not isinstance(stats, dict):
        return
    out.family("hostdiag_metrics_scrapes_total", "counter", "GET /metrics requests answered, by format.",
               (((("format", form),), n) for form, n in sorted((stats.get("scrapes") or {}).items())))
    out.family("hostdiag_metrics_gzipped_total", "counter", "GET /metrics answers sent gzip-compressed.",
               (((), stats.get("gzipped")),))
    out.family("hostdiag_metrics_encodes_total", "counter",
               "Times the exposition was encoded (once per new sample and format, at the first scrape).",
               (((), stats.get("encodes")),))
    out.family("hostdiag_metrics_rejected_total", "counter", "HTTP requests or connections refused, by reason.",
               (((("reason", reason),), n) for reason, n in sorted((stats.get("rejected") or {}).items())))
    out.family("hostdiag_metrics_connections", "gauge", "HTTP connections open now.",
               (((), stats.get("connections")),))


def encode_metrics(snapshot, rates=None, findings=(), server_stats=None, openmetrics=False, tables=None):
    """The exposition of ``snapshot`` as text (str).

    ``snapshot`` is the plain-dict form (its optional ``agent`` section is the
    agent's self-report); ``rates`` is :func:`hostdiag.derive.rates.derive_rates`'s
    result ending at it, or None (it only ranks the top processes by recent
    CPU); ``findings`` is the list :func:`hostdiag.findings.rules.evaluate`
    gave; ``server_stats`` is the HTTP server's own counters (``scrapes`` by
    format, ``gzipped``, ``encodes``, ``rejected`` by reason, ``connections``)
    or None.
    ``openmetrics`` selects OpenMetrics 1.0 (with ``# EOF``) over text 0.0.4.
    ``tables`` is :func:`summarize_tables`'s result for this snapshot and
    rates, made here when None.
    Sections a snapshot lacks (null) give no series; nothing is written as 0
    for a value the kernel did not give.
    """
    if hasattr(snapshot, "to_dict"):
        snapshot = snapshot.to_dict()
    out = _Exposition(openmetrics)
    _cpu(out, snapshot)
    _memory(out, snapshot)
    _pressure(out, snapshot)
    _disks(out, snapshot)
    _filesystems(out, snapshot)
    _network(out, snapshot)
    _kernel(out, snapshot)
    if tables is None:
        tables = summarize_tables(snapshot, rates)
    _sockets(out, tables["sockets"])
    _processes(out, tables["processes"], (snapshot.get("meta") or {}).get("clock_ticks") or 100)
    workload_families(out, tables.get("workloads") or summarize_workloads(snapshot))
    _findings(out, findings)
    _collection(out, snapshot)
    _agent(out, snapshot.get("agent"))
    _probes(out, snapshot.get("probes"))
    _slo(out, snapshot.get("slo"))
    _server(out, server_stats)
    return out.text()
