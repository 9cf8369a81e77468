"""The live per-process parsers and scanner: ``hostdiag._procparsers`` or its pure twin.

The functions are documented in :mod:`hostdiag.parsers.procpure`; which twin is
live is reported by ``diag version`` (``HOSTDIAG_PURE=1`` forces the pure one).
"""

from hostdiag.parsers import load_twin
from hostdiag.parsers.procpure import (  # noqa: F401  (shared tables, re-exported)
    FD_LIST,
    FD_OFF,
    FD_SIZE,
    IO_FIELDS,
    RECORD_KEYS,
    STAT_NUMBERS,
    STATM_COLUMNS,
    STATUS_FIELDS,
)

_module, IMPL, IMPL_REASON = load_twin("hostdiag._procparsers", "hostdiag.parsers.procpure")

parse_stat = _module.parse_stat
parse_status = _module.parse_status
parse_statm = _module.parse_statm
parse_io = _module.parse_io
parse_cmdline = _module.parse_cmdline
parse_cgroup = _module.parse_cgroup
parse_oom_score_adj = _module.parse_oom_score_adj
kernel_thread = _module.kernel_thread
list_pids = _module.list_pids
scan = _module.scan
