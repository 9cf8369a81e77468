"""The network section of a snapshot: links, addresses, routes, neighbours,
protocol counters, softnet and conntrack, as plain data.

Links come from netlink when a :class:`~hostdiag.sources.netlink.Netlink` is
given for a live root, and otherwise from /proc/net/dev plus
/sys/class/net/<name>/. Both give the same dict per link (see
``Netlink.links``). In the procfs form three counters are the kernel's sums
under the rtnl_link_stats64 name: ``rx_dropped`` is rx_dropped +
rx_missed_errors, ``rx_frame_errors`` is rx_length + rx_over + rx_crc +
rx_frame errors, ``tx_carrier_errors`` is tx_carrier + tx_aborted +
tx_window + tx_heartbeat errors (net/core/net-procfs.c). ``kind``,
``carrier`` and ``master`` are None there.
"""

import os

from hostdiag.hostpaths import MALFORMED, MISSING, UNAVAILABLE, SourceError, error_kind
from hostdiag.parsers import parse_keyvalue, parse_netdev, parse_softnet, parse_twoline
from hostdiag.parsers.sockstat import parse_sockstat

SOURCE = "network"

# /proc/net/dev column -> rtnl_link_stats64 name.
NETDEV_STATS = {
    "rx_bytes": "rx_bytes", "rx_packets": "rx_packets", "rx_errs": "rx_errors",
    "rx_drop": "rx_dropped", "rx_fifo": "rx_fifo_errors", "rx_frame": "rx_frame_errors",
    "rx_compressed": "rx_compressed", "rx_multicast": "multicast",
    "tx_bytes": "tx_bytes", "tx_packets": "tx_packets", "tx_errs": "tx_errors",
    "tx_drop": "tx_dropped", "tx_fifo": "tx_fifo_errors", "tx_colls": "collisions",
    "tx_carrier": "tx_carrier_errors", "tx_compressed": "tx_compressed",
}

# Small sysfs attributes: a page at most.
_ATTR_CAP = 4096


def _integer(data):
    """A file holding one decimal integer, as (value, malformed)."""
    text = data.strip()
    if text[:1] == b"-":
        ok = text[1:].isdigit()
    else:
        ok = text.isdigit()
    if not ok or len(text) > 20:
        return None, 1
    return int(text), 0


def _link_attr(root, problems, name, attr, integer):
    """/sys/class/net/<name>/<attr> as an int or a string; None when absent
    (not every device has every attribute) or malformed (recorded)."""
    path = root.sys("class", "net", name, attr)
    try:
        data = root.read(path, _ATTR_CAP)
    except SourceError as exc:
        if exc.kind != MISSING:
            problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None
    if not integer:
        return data.strip().decode("utf-8", "replace") or None
    value, malformed = _integer(data)
    if malformed:
        problems.add(SOURCE, path, MALFORMED, "not an integer: %r" % data[:64])
    return value


def procfs_links(root, problems):
    """Links from /proc/net/dev and /sys/class/net, or None when /proc/net/dev
    is unreadable."""
    rows = problems.parse(root, SOURCE, root.proc("net", "dev"), parse_netdev)
    if rows is None:
        return None
    class_net = root.sys("class", "net")
    try:
        in_sysfs = set(os.listdir(class_net))
    except OSError as exc:
        problems.add(SOURCE, class_net, error_kind(exc), exc.strerror or str(exc))
        in_sysfs = set()
    links = []
    for row in rows:
        name = row["name"]
        link = {"name": name, "index": None, "kind": None, "operstate": None, "mtu": None,
                "address": None, "carrier": None, "carrier_changes": None, "master": None}
        # Only names listed in class/net are joined to a path: a name from a
        # recorded /proc/net/dev never walks out of the sys root.
        if name in in_sysfs:
            link["index"] = _link_attr(root, problems, name, "ifindex", True)
            link["operstate"] = _link_attr(root, problems, name, "operstate", False)
            link["mtu"] = _link_attr(root, problems, name, "mtu", True)
            link["address"] = _link_attr(root, problems, name, "address", False)
            link["carrier_changes"] = _link_attr(root, problems, name, "carrier_changes", True)
        link["stats"] = {NETDEV_STATS[column]: value for column, value in row.items()
                         if column in NETDEV_STATS}
        links.append(link)
    return links


def _netlink_part(problems, call):
    """One netlink dump, or None with the failure recorded."""
    try:
        return call(problems)
    except SourceError as exc:
        problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None


def _conntrack(root, problems):
    """{"count", "max"} of the conntrack table, None without nf_conntrack."""
    count = problems.parse(root, SOURCE, root.proc("sys", "net", "netfilter", "nf_conntrack_count"), _integer)
    if count is None:
        return None
    limit = problems.parse(root, SOURCE, root.proc("sys", "net", "netfilter", "nf_conntrack_max"), _integer)
    return {"count": count, "max": limit}


def collect_network(root, problems, netlink=None):
    """The network section for ``root``; every unreadable part is None with
    an entry in ``problems``.

    ``netlink`` is used only when ``root`` is live: netlink describes the
    running kernel, which is not the host a recorded or mounted tree holds.
    """
    section = {"link_source": "procfs", "links": None, "addresses": None,
               "routes": None, "neighbours": None}
    if netlink is not None and root.live:
        links = _netlink_part(problems, netlink.links)
        if links is not None:
            section["link_source"] = "netlink"
            section["links"] = links
        section["addresses"] = _netlink_part(problems, netlink.addresses)
        section["routes"] = _netlink_part(problems, netlink.routes)
        section["neighbours"] = _netlink_part(problems, netlink.neighbours)
    else:
        reason = ("no netlink socket was given" if root.live
                  else "netlink describes the running kernel, not this root")
        problems.add(SOURCE, "netlink", UNAVAILABLE,
                     "%s: addresses, routes and neighbours not collected" % reason)
    if section["links"] is None:
        section["links"] = procfs_links(root, problems)
    section["snmp"] = problems.parse(root, SOURCE, root.proc("net", "snmp"), parse_twoline)
    section["netstat"] = problems.parse(root, SOURCE, root.proc("net", "netstat"), parse_twoline)
    section["snmp6"] = problems.parse(root, SOURCE, root.proc("net", "snmp6"), parse_keyvalue)
    section["sockstat"] = problems.parse(root, SOURCE, root.proc("net", "sockstat"), parse_sockstat)
    section["sockstat6"] = problems.parse(root, SOURCE, root.proc("net", "sockstat6"), parse_sockstat)
    section["softnet"] = problems.parse(root, SOURCE, root.proc("net", "softnet_stat"), parse_softnet)
    section["conntrack"] = _conntrack(root, problems)
    return section
