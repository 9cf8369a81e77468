"""/proc/sys/net/netfilter/nf_conntrack_{count,max}: how full the conntrack table is."""

from hostdiag.parsers.sysctl import parse_decimal
from hostdiag.sources.problems import Problems

SOURCE = "network"
# Samples between two reads of nf_conntrack_max (see ConntrackSource).
CONNTRACK_MAX_REFRESH_SAMPLES = 60


class ConntrackSource:
    """The conntrack part of the network section of one collector's samples.

    The count is read in every sample. The table's size limit (``nf_conntrack_max``,
    a sysctl that only an administrator changes) is read in the first sample and
    then every ``CONNTRACK_MAX_REFRESH_SAMPLES`` samples.
    """

    def __init__(self, root):
        self.root = root
        self._count_path = root.proc("sys", "net", "netfilter", "nf_conntrack_count")
        self._max_path = root.proc("sys", "net", "netfilter", "nf_conntrack_max")
        self._max = None  # (value, problem entries) of the last read
        self._samples = 0

    def collect(self, problems):
        """{"count", "max"} of the conntrack table, None without nf_conntrack."""
        samples = self._samples
        self._samples += 1
        count = problems.parse(self.root, SOURCE, self._count_path, parse_decimal)
        if count is None:
            # Read again once the module is loaded.
            self._max = None
            return None
        if self._max is None or samples % CONNTRACK_MAX_REFRESH_SAMPLES == 0:
            scratch = Problems()
            self._max = (scratch.parse(self.root, SOURCE, self._max_path, parse_decimal),
                         scratch.entries)
        limit, entries = self._max
        for entry in entries:
            problems.add(**entry)
        return {"count": count, "max": limit}
