"""Per-network-namespace rates from two samples of the netns section.

A namespace is identified by its inode. It has rates when both samples
visited it (read its counters): with more namespaces than the sampler's
limit, one is visited in two consecutive samples in turn
(:mod:`hostdiag.sources.netns`), and has no entry in the others. Every rate
is ``None`` (never negative or huge) when a counter is missing, when it went
backwards (the kernel reused the inode of a namespace destroyed in the
interval for a new one) or when the interval is not positive.

:func:`netns_rates` returns ``{inode: rates}`` for every namespace besides
the host's that both sections have counters for, where rates are
(``_per_s`` per second)::

    retrans_segs_per_s, out_segs_per_s, in_segs_per_s
                          TCP segments retransmitted, sent (new ones only),
                          received (snmp Tcp)
    retransmit_pct        retransmitted segments as percent of all segments
                          sent (OutSegs + RetransSegs); None when none was sent
    listen_overflows_per_s, listen_drops_per_s
                          SYNs or connections dropped on a full accept queue,
                          and all SYNs dropped on listeners (netstat TcpExt)
    estab_resets_per_s, attempt_fails_per_s
                          connections reset / connection attempts failed
    timeouts_per_s        retransmission timer expiries (TcpExt TCPTimeouts)
    udp_in_datagrams_per_s, udp_in_errors_per_s, udp_rcvbuf_errors_per_s
                          UDP datagrams delivered, not delivered (any cause),
                          dropped on a full receive buffer (snmp Udp)
    curr_estab            established connections at the second sample (gauge)
"""

from hostdiag.derive.counters import get, growth, is_number

# (file, group, kernel counter, rate key); every counter is among those the
# source keeps (hostdiag.sources.netns.COUNTERS).
NETNS_RATES = (
    ("snmp", "Tcp", "RetransSegs", "retrans_segs_per_s"),
    ("snmp", "Tcp", "OutSegs", "out_segs_per_s"),
    ("snmp", "Tcp", "InSegs", "in_segs_per_s"),
    ("netstat", "TcpExt", "ListenOverflows", "listen_overflows_per_s"),
    ("netstat", "TcpExt", "ListenDrops", "listen_drops_per_s"),
    ("snmp", "Tcp", "EstabResets", "estab_resets_per_s"),
    ("snmp", "Tcp", "AttemptFails", "attempt_fails_per_s"),
    ("netstat", "TcpExt", "TCPTimeouts", "timeouts_per_s"),
    ("snmp", "Udp", "InDatagrams", "udp_in_datagrams_per_s"),
    ("snmp", "Udp", "InErrors", "udp_in_errors_per_s"),
    ("snmp", "Udp", "RcvbufErrors", "udp_rcvbuf_errors_per_s"),
)
RATE_FIELDS = tuple(key for _, _, _, key in NETNS_RATES) + ("retransmit_pct", "curr_estab")


def _read(record):
    """True when the namespace record holds counters (it was visited)."""
    return isinstance(record.get("snmp"), dict) or isinstance(record.get("netstat"), dict)


def _visited(section):
    """{inode: record} of the namespaces with counters in ``section``."""
    found = {}
    namespaces = section.get("namespaces") if isinstance(section, dict) else None
    for record in namespaces or ():
        if isinstance(record, dict) and is_number(record.get("inode")) and not record.get("host") \
                and _read(record):
            found[record["inode"]] = record
    return found


def _rates(old, new, dt_s):
    result = {}
    grew = {}
    for part, group, name, key in NETNS_RATES:
        grew[key] = growth(get(old, part, group, name), get(new, part, group, name))
        result[key] = None if grew[key] is None else grew[key] / dt_s
    retrans, out = grew["retrans_segs_per_s"], grew["out_segs_per_s"]
    sent = None if retrans is None or out is None else retrans + out
    result["retransmit_pct"] = 100.0 * retrans / sent if sent else None
    result["curr_estab"] = get(new, "snmp", "Tcp", "CurrEstab")
    return result


def netns_rates(prev_section, cur_section, dt_s):
    """Rates of the namespaces both sections visited (``dt_s``: seconds
    between the samples; None or not positive gives no rates at all). Keyed
    by inode; see the module docstring for the rates."""
    if not is_number(dt_s) or dt_s <= 0:
        return {}
    before = _visited(prev_section)
    return {inode: _rates(before[inode], record, dt_s)
            for inode, record in _visited(cur_section).items() if inode in before}
