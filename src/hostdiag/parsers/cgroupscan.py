"""The live cgroup directory reader: ``hostdiag._cgroup`` or its pure twin.

``read_dir`` and ``parse_file`` are documented in :mod:`hostdiag.parsers.cgroup`;
which twin is live is reported by ``diag version`` (``HOSTDIAG_PURE=1`` forces
the pure one).
"""

from hostdiag.parsers import load_twin

_module, IMPL, IMPL_REASON = load_twin("hostdiag._cgroup", "hostdiag.parsers.cgroup")

read_dir = _module.read_dir
parse_file = _module.parse_file
