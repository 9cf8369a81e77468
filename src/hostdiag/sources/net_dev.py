"""/proc/net/dev with /sys/class/net/<name>/: the links of a root netlink cannot describe.

Used for a recorded or mounted root, or when a live root has no netlink socket.
Each link is the same dict ``Netlink.links`` gives (sources/rtnetlink.py). Three
counters are the kernel's sums under the rtnl_link_stats64 name: ``rx_dropped``
is rx_dropped + rx_missed_errors, ``rx_frame_errors`` is rx_length + rx_over +
rx_crc + rx_frame errors, ``tx_carrier_errors`` is tx_carrier + tx_aborted +
tx_window + tx_heartbeat errors (net/core/net-procfs.c). ``kind``, ``carrier``
and ``master`` are None here.
"""

import os

from hostdiag.parsers import parse_netdev
from hostdiag.parsers.sysctl import parse_decimal
from hostdiag.sources.hostroot import MALFORMED, MISSING, SourceError, error_kind

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


# The /sys/class/net/<name>/ attributes of the procfs form: (link key, attribute, integer).
_LINK_SYSFS = (
    ("index", "ifindex", True), ("operstate", "operstate", False), ("mtu", "mtu", True),
    ("address", "address", False), ("carrier_changes", "carrier_changes", True),
)


def _link_attr(root, problems, path, integer):
    """A /sys/class/net/<name>/<attr> file as an int or a string; None when
    absent (not every device has every attribute) or malformed (recorded)."""
    try:
        data = root.read(path, _ATTR_CAP)
    except SourceError as exc:
        if exc.kind != MISSING:
            problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None
    if not integer:
        return data.strip().decode("utf-8", "replace") or None
    value, malformed = parse_decimal(data)
    if malformed:
        problems.add(SOURCE, path, MALFORMED, "not an integer: %r" % data[:64])
    return value


def procfs_links(root, problems, attr_paths=None):
    """Links from /proc/net/dev and /sys/class/net, or None when /proc/net/dev
    is unreadable. ``attr_paths`` is a dict a caller keeps between samples:
    it holds each link's attribute paths, joined when the link first shows."""
    rows = problems.parse(root, SOURCE, root.proc("net", "dev"), parse_netdev)
    if rows is None:
        return None
    class_net = root.sys("class", "net")
    try:
        in_sysfs = set(os.listdir(class_net))
    except OSError as exc:
        problems.add(SOURCE, class_net, error_kind(exc), exc.strerror or str(exc))
        in_sysfs = set()
    known = attr_paths if attr_paths is not None else {}
    links = []
    for row in rows:
        name = row["name"]
        link = {"name": name, "index": None, "kind": None, "operstate": None, "mtu": None,
                "address": None, "carrier": None, "carrier_changes": None, "master": None}
        # Only names listed in class/net are joined to a path: a name from a
        # recorded /proc/net/dev never walks out of the sys root.
        if name in in_sysfs:
            paths = known.get(name)
            if paths is None:
                paths = tuple(root.sys("class", "net", name, attr) for _, attr, _ in _LINK_SYSFS)
                known[name] = paths
            for (key, _attr, integer), path in zip(_LINK_SYSFS, paths):
                link[key] = _link_attr(root, problems, path, integer)
        link["stats"] = {NETDEV_STATS[column]: value for column, value in row.items()
                         if column in NETDEV_STATS}
        links.append(link)
    # The cache holds at most one entry per link listed now.
    if attr_paths is not None and len(attr_paths) > len(links):
        for name in set(attr_paths) - {link["name"] for link in links}:
            del attr_paths[name]
    return links
