"""The live parser implementations: compiled from csrc/ or their pure twins.

``HOSTDIAG_PURE=1`` in the environment forces the pure-Python twins, both when
the package is built (no extension is compiled) and when it runs. Otherwise the
compiled module is used, and when it cannot be imported the reason is kept so
that ``diag version`` shows a broken build instead of hiding it.
"""

import importlib
import os

PURE_ENV = "HOSTDIAG_PURE"

# compiled module → its pure twin; `diag version` reports each.
TWINS = {}


def pure_forced():
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load_twin(compiled, pure):
    """The module to use for one twin pair, as ``(module, impl, reason)``."""
    if pure_forced():
        result = importlib.import_module(pure), "pure", "forced by %s" % PURE_ENV
    else:
        try:
            module = importlib.import_module(compiled)
        except ImportError as exc:
            result = importlib.import_module(pure), "pure", "compiled extension unavailable: %s" % exc
        else:
            result = module, "compiled", module.__file__
    TWINS[compiled] = result[1:]
    return result


def implementation():
    """"compiled" when every twin pair runs compiled, "pure" when none does, else "mixed"."""
    impls = {impl for impl, _ in TWINS.values()}
    return impls.pop() if len(impls) == 1 else "mixed"


_module, IMPL, IMPL_REASON = load_twin("hostdiag._hotparsers", "hostdiag.parsers.hotpure")

parse_stat = _module.parse_stat
parse_keyvalue = _module.parse_keyvalue
parse_twoline = _module.parse_twoline
parse_diskstats = _module.parse_diskstats
parse_netdev = _module.parse_netdev
parse_softnet = _module.parse_softnet
parse_sockstat = _module.parse_sockstat
parse_link = _module.parse_link
parse_address = _module.parse_address
parse_route = _module.parse_route
parse_neighbour = _module.parse_neighbour
parse_replies = _module.parse_replies
