"""The live sock_diag parser: ``hostdiag._sockdiag`` compiled from csrc/, or its
pure twin :mod:`hostdiag.parsers.sockdiagpure` (``HOSTDIAG_PURE=1`` forces it).

Which one runs is registered with :func:`hostdiag.parsers.load_twin`, so that
``diag version`` names it; the grammar and layouts are in the pure twin.
"""

from hostdiag.parsers import load_twin
from hostdiag.parsers.sockdiagpure import (  # noqa: F401  (re-exported layouts)
    ROW_FIELDS,
    SKMEM_FIELDS,
    SOCKET_KEYS,
    TCP_INFO_FIELDS,
    TCP_STATES,
    UNIX_TYPES,
    state_name,
)

_module, IMPL, IMPL_REASON = load_twin("hostdiag._sockdiag", "hostdiag.parsers.sockdiagpure")

parse_inet = _module.parse_inet
scan_inet = _module.scan_inet
count_unix = _module.count_unix
top_rows = _module.top_rows
