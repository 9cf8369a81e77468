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

from hostdiag.sources.hostroot import MALFORMED, MISSING, UNAVAILABLE, SourceError, error_kind
from hostdiag.parsers import parse_keyvalue, parse_netdev, parse_sockstat, parse_softnet, parse_twoline
from hostdiag.sources.problems import Problems

SOURCE = "network"
# Samples between two reads of nf_conntrack_max (see NetworkSource).
CONNTRACK_MAX_REFRESH_SAMPLES = 60

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
    value, malformed = _integer(data)
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


def _netlink_part(problems, call):
    """One netlink dump, or None with the failure recorded."""
    try:
        return call(problems)
    except SourceError as exc:
        problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None


class NetworkSource:
    """The network section of one collector's samples.

    The conntrack table's size limit (``nf_conntrack_max``, a sysctl that only
    an administrator changes) is read in the first sample and then every
    ``CONNTRACK_MAX_REFRESH_SAMPLES`` samples; everything else is read in every
    sample.
    """

    def __init__(self, root):
        self.root = root
        self._net = {name: root.proc("net", name)
                     for name in ("snmp", "netstat", "snmp6", "sockstat", "sockstat6", "softnet_stat")}
        self._conntrack_count = root.proc("sys", "net", "netfilter", "nf_conntrack_count")
        self._conntrack_max_path = root.proc("sys", "net", "netfilter", "nf_conntrack_max")
        self._conntrack_max = None  # (value, problem entries) of the last read
        self._link_paths = {}       # see procfs_links
        self._samples = 0

    def collect(self, problems, netlink=None, netlink_failure=None):
        """The network section for the root; every unreadable part is None
        with an entry in ``problems``.

        ``netlink`` is used only when the root is live: netlink describes the
        running kernel, which is not the host a recorded or mounted tree holds.
        ``netlink_failure``, a :class:`SourceError`, says why a live root has
        no netlink socket; it is recorded in place of the generic entry.
        """
        root = self.root
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
        elif netlink_failure is not None and root.live:
            problems.add(SOURCE, netlink_failure.path, netlink_failure.kind,
                         "%s: addresses, routes and neighbours not collected" % netlink_failure.message)
        else:
            reason = ("no netlink socket was given" if root.live
                      else "netlink describes the running kernel, not this root")
            problems.add(SOURCE, "netlink", UNAVAILABLE,
                         "%s: addresses, routes and neighbours not collected" % reason)
        if section["links"] is None:
            section["links"] = procfs_links(root, problems, self._link_paths)
        net = self._net
        section["snmp"] = problems.parse(root, SOURCE, net["snmp"], parse_twoline)
        section["netstat"] = problems.parse(root, SOURCE, net["netstat"], parse_twoline)
        section["snmp6"] = problems.parse(root, SOURCE, net["snmp6"], parse_keyvalue)
        section["sockstat"] = problems.parse(root, SOURCE, net["sockstat"], parse_sockstat)
        section["sockstat6"] = problems.parse(root, SOURCE, net["sockstat6"], parse_sockstat)
        section["softnet"] = problems.parse(root, SOURCE, net["softnet_stat"], parse_softnet)
        section["conntrack"] = self._conntrack(problems)
        self._samples += 1
        return section

    def _conntrack(self, problems):
        """{"count", "max"} of the conntrack table, None without nf_conntrack."""
        count = problems.parse(self.root, SOURCE, self._conntrack_count, _integer)
        if count is None:
            # Read again once the module is loaded.
            self._conntrack_max = None
            return None
        if self._conntrack_max is None or self._samples % CONNTRACK_MAX_REFRESH_SAMPLES == 0:
            scratch = Problems()
            self._conntrack_max = (scratch.parse(self.root, SOURCE, self._conntrack_max_path, _integer),
                                   scratch.entries)
        limit, entries = self._conntrack_max
        for entry in entries:
            problems.add(**entry)
        return {"count": count, "max": limit}


def collect_network(root, problems, netlink=None):
    """The network section for ``root``, every file read now (one-off use; a
    collector keeps a :class:`NetworkSource`). See :meth:`NetworkSource.collect`."""
    return NetworkSource(root).collect(problems, netlink)
