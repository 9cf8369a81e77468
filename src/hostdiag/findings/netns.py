"""Findings rules over the network namespaces: loss, full accept queues and
dropped datagrams inside a container's namespace, which the host's own
counters (the network section) do not count.

Each rule has the signature and yields the findings described in
:mod:`hostdiag.findings.rules`. It looks at the namespaces besides the
host's with rates (``rates["netns"]``, :mod:`hostdiag.derive.netns_rates`),
names the worst one over its limit in the title, with its workload and a
process inside it, and counts the others. The subject is the namespace:
``netns NAME`` for a named one (``ip netns add``), else ``netns:[INODE]``
(as ``/proc/PID/ns/net`` reads).
"""

from hostdiag.findings.culprits import CULPRITS, connection_culprit, listener_culprit, process_records
from hostdiag.findings.finding import WARN, finding
from hostdiag.findings.thresholds import THRESHOLDS, at_least, limit_text, over
from hostdiag.findings.values import get, num, show
from hostdiag.findings.workloads import label_of


def namespace_records(snapshot):
    """{inode: namespace record} of the snapshot's netns section, host's aside."""
    section = getattr(snapshot, "netns", None)
    records = section.get("namespaces") if isinstance(section, dict) else None
    return {r["inode"]: r for r in records or ()
            if isinstance(r, dict) and num(r.get("inode")) is not None and not r.get("host")}


def namespace_label(record):
    """``netns NAME``, or ``netns:[INODE]`` for a namespace without a name."""
    name = record.get("name")
    return "netns %s" % name if isinstance(name, str) else "netns:[%s]" % record.get("inode")


def _first_process(snapshot, record):
    """The process record of the namespace's lowest pid still in the snapshot."""
    wanted = [p for p in record.get("pids") or () if num(p) is not None]
    if not wanted:
        return None
    by_pid = {r["pid"]: r for r in process_records(snapshot) if r["pid"] in wanted}
    return next((by_pid[p] for p in wanted if p in by_pid), None)


def whose(snapshot, record):
    """The namespace in a few words: ``netns web (container 0123456789ab, nginx[812])``."""
    parts = []
    cgroup = record.get("cgroup")
    if isinstance(cgroup, str) and cgroup != "/":
        parts.append(label_of(snapshot, cgroup))
    first = _first_process(snapshot, record)
    if first is not None:
        parts.append("%s[%s]" % (first.get("comm"), first.get("pid")))
    return namespace_label(record) + (" (%s)" % ", ".join(parts) if parts else "")


def _per_namespace(rates):
    per = get(rates, "netns")
    return per if isinstance(per, dict) else {}


def _worst(hit, records):
    """(record, value) of the namespace with the largest value in ``hit``
    ({inode: value}), and how many are in it."""
    inode = max(hit, key=lambda i: (hit[i], i))
    return records[inode], hit[inode], len(hit)


def _more(count):
    return "" if count <= 1 else " (%d namespaces over the limit)" % count


def _host(rates, key):
    return get(rates, "network", "tcp", key)


def _retrans_per_s(previous, record, entry, interval):
    """One connection's retransmits per second, from the namespace's summary in
    ``previous`` (the same socket inode), else None."""
    if previous is None or not interval:
        return None
    before = namespace_records(previous).get(record["inode"])
    for old in get(before, "sockets", "retransmitting") or ():
        if isinstance(old, dict) and old.get("inode") == entry.get("inode") and entry.get("inode"):
            grew = (num(entry.get("total_retrans")) or 0) - (num(old.get("total_retrans")) or 0)
            return grew / interval if grew >= 0 else None
    return None


def _connections(snapshot, previous, rates, record):
    interval = num(get(rates, "interval_s"))
    found = []
    for entry in get(record, "sockets", "retransmitting") or ():
        if isinstance(entry, dict) and num(entry.get("total_retrans")):
            found.append(connection_culprit(snapshot, dict(
                entry, retrans_per_s=_retrans_per_s(previous, record, entry, interval))))
    return found[:CULPRITS]


def rule_netns_retransmits(snapshot, rates, previous=None):
    records = namespace_records(snapshot)
    hit = {}
    for inode, r in _per_namespace(rates).items():
        sent = sum(num(get(r, key)) or 0 for key in ("out_segs_per_s", "retrans_segs_per_s"))
        if inode in records and over(get(r, "retransmit_pct"), "netns_retransmit_pct") \
                and at_least(sent, "netns_retransmit_min_segs_per_s"):
            hit[inode] = r["retransmit_pct"]
    if not hit:
        return
    record, pct, count = _worst(hit, records)
    r = _per_namespace(rates)[record["inode"]]
    yield finding(
        "netns_tcp_retransmits", WARN, "TCP retransmits %.1f %% of segments sent in %s%s"
        % (pct, whose(snapshot, record), _more(count)),
        {"retransmit_pct": pct, "retrans_segs_per_s": r.get("retrans_segs_per_s"),
         "out_segs_per_s": r.get("out_segs_per_s"), "host_retransmit_pct": _host(rates, "retransmit_pct"),
         "namespaces": count if count > 1 else None},
        "%s (at >= %s segments/s sent)" % (
            limit_text("retransmits in one namespace", "netns_retransmit_pct", unit=" %"),
            show(THRESHOLDS["netns_retransmit_min_segs_per_s"])),
        subject=namespace_label(record), culprits=_connections(snapshot, previous, rates, record))


def rule_netns_listen(snapshot, rates, previous=None):
    records = namespace_records(snapshot)
    hit = {}
    for inode, r in _per_namespace(rates).items():
        overflows, drops = get(r, "listen_overflows_per_s"), get(r, "listen_drops_per_s")
        if inode in records and (over(overflows, "netns_listen_overflows_per_s")
                                 or over(drops, "netns_listen_drops_per_s")):
            hit[inode] = max(num(overflows) or 0, num(drops) or 0)
    if not hit:
        return
    record, _, count = _worst(hit, records)
    r = _per_namespace(rates)[record["inode"]]
    listeners = [listener_culprit(snapshot, entry) for entry in get(record, "sockets", "listeners") or ()
                 if isinstance(entry, dict)]
    yield finding(
        "netns_listen_overflow", WARN, "listen queues overflowing in %s: %s overflows/s, %s drops/s%s"
        % (whose(snapshot, record), show(r.get("listen_overflows_per_s")), show(r.get("listen_drops_per_s")),
           _more(count)),
        {"listen_overflows_per_s": r.get("listen_overflows_per_s"), "listen_drops_per_s": r.get("listen_drops_per_s"),
         "host_listen_overflows_per_s": _host(rates, "listen_overflows_per_s"),
         "namespaces": count if count > 1 else None},
        "%s or %s" % (limit_text("listen overflows", "netns_listen_overflows_per_s", unit="/s"),
                      limit_text("listen drops", "netns_listen_drops_per_s", unit="/s")),
        subject=namespace_label(record), culprits=listeners[:CULPRITS])


def rule_netns_udp_errors(snapshot, rates, previous=None):
    records = namespace_records(snapshot)
    hit = {inode: errors for inode, r in _per_namespace(rates).items()
           if inode in records and over(errors := num(get(r, "udp_in_errors_per_s")), "netns_udp_errors_per_s")}
    if not hit:
        return
    record, errors, count = _worst(hit, records)
    r = _per_namespace(rates)[record["inode"]]
    yield finding(
        "netns_udp_errors", WARN, "%.1f UDP datagrams/s not delivered in %s%s"
        % (errors, whose(snapshot, record), _more(count)),
        {"in_errors_per_s": errors, "rcvbuf_errors_per_s": r.get("udp_rcvbuf_errors_per_s"),
         "in_datagrams_per_s": r.get("udp_in_datagrams_per_s"),
         "host_in_errors_per_s": get(rates, "network", "udp", "in_errors_per_s"),
         "namespaces": count if count > 1 else None},
        limit_text("UDP InErrors in one namespace", "netns_udp_errors_per_s", unit="/s"),
        subject=namespace_label(record))


NETNS_RULES = (rule_netns_retransmits, rule_netns_listen, rule_netns_udp_errors)
