"""/proc/net/sockstat and /proc/net/sockstat6: socket counts per protocol.

The parser is a hot-path twin: ``parse_sockstat`` here is the live one
(compiled in ``csrc/_hotparsers.pyx``, or :func:`hostdiag.parsers.hotpure.parse_sockstat`
when the pure path runs); its grammar and units are documented there. This
module keeps the import path of earlier releases.
"""

from hostdiag.parsers import parse_sockstat  # noqa: F401  (re-exported)
