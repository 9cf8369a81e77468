"""The live set of hot-path parsers: compiled (``hostdiag._hotparsers``) or pure.

``HOSTDIAG_PURE=1`` in the environment forces the pure-Python twins, both when
the package is built (no extension is compiled) and when it runs. Otherwise the
compiled module is used, and when it cannot be imported the reason is kept in
``IMPL_REASON`` so that ``diag version`` shows a broken build instead of hiding it.
"""

import os

PURE_ENV = "HOSTDIAG_PURE"

HOT_PARSERS = (
    "parse_stat", "parse_keyvalue", "parse_twoline",
    "parse_diskstats", "parse_netdev", "parse_softnet",
)


def pure_forced():
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _load():
    if pure_forced():
        from hostdiag.parsers import hotpure as module
        return module, "pure", "forced by %s" % PURE_ENV
    try:
        from hostdiag import _hotparsers as module
    except ImportError as exc:
        from hostdiag.parsers import hotpure as module
        return module, "pure", "compiled extension unavailable: %s" % exc
    return module, "compiled", module.__file__


_module, IMPL, IMPL_REASON = _load()

parse_stat = _module.parse_stat
parse_keyvalue = _module.parse_keyvalue
parse_twoline = _module.parse_twoline
parse_diskstats = _module.parse_diskstats
parse_netdev = _module.parse_netdev
parse_softnet = _module.parse_softnet
