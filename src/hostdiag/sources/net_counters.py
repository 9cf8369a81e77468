"""/proc/net protocol counters: snmp, netstat, snmp6, sockstat, sockstat6, softnet_stat."""

from hostdiag.parsers import parse_keyvalue, parse_softnet, parse_sockstat, parse_twoline

SOURCE = "network"
# Section key -> (file under /proc/net, its parser).
COUNTER_FILES = (
    ("snmp", "snmp", parse_twoline),
    ("netstat", "netstat", parse_twoline),
    ("snmp6", "snmp6", parse_keyvalue),
    ("sockstat", "sockstat", parse_sockstat),
    ("sockstat6", "sockstat6", parse_sockstat),
    ("softnet", "softnet_stat", parse_softnet),
)


class NetCounterSource:
    """The protocol counters of the network section; every file is read each sample."""

    def __init__(self, root):
        self.root = root
        self._files = tuple((key, root.proc("net", name), parser) for key, name, parser in COUNTER_FILES)

    def collect(self, problems, section):
        """Put each file's parsed counters in ``section`` under its key (None
        when unreadable, with an entry in ``problems``)."""
        root = self.root
        for key, path, parser in self._files:
            section[key] = problems.parse(root, SOURCE, path, parser)
