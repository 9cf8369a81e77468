"""The network section of a snapshot, put together from its sources: links,
addresses, routes and neighbours from rtnetlink (sources/rtnetlink.py) on a live
root, else links from /proc/net/dev (sources/net_dev.py); the /proc/net
protocol counters (sources/net_counters.py); conntrack (sources/conntrack.py).
"""

from hostdiag.sources.conntrack import ConntrackSource
from hostdiag.sources.hostroot import UNAVAILABLE, SourceError
from hostdiag.sources.net_counters import NetCounterSource
from hostdiag.sources.net_dev import procfs_links

SOURCE = "network"


def _netlink_part(problems, call):
    """One netlink dump, or None with the failure recorded."""
    try:
        return call(problems)
    except SourceError as exc:
        problems.add(SOURCE, exc.path, exc.kind, exc.message)
        return None


class NetworkSource:
    """The network section of one collector's samples (what each part keeps
    between samples is said by its source's class)."""

    def __init__(self, root):
        self.root = root
        self._counters = NetCounterSource(root)
        self._conntrack = ConntrackSource(root)
        self._link_paths = {}       # see procfs_links

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
        self._counters.collect(problems, section)
        section["conntrack"] = self._conntrack.collect(problems)
        return section
