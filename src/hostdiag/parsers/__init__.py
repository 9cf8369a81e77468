"""Parsers: kernel bytes to plain data, and the one switch between twin pairs.

Four parsers have a compiled twin built from ``csrc/``; each compiled module is
named after its pure twin with a leading underscore:

* ``parsers.proctext`` / ``hostdiag._proctext``: /proc text files (stat, meminfo,
  snmp, diskstats, net/dev, softnet_stat, sockstat);
* ``parsers.rtnetlink`` / ``hostdiag._rtnetlink``: rtnetlink dump replies;
* ``parsers.procpid`` / ``hostdiag._procpid``: /proc/PID files and the process scan;
* ``parsers.sockdiag`` / ``hostdiag._sockdiag``: sock_diag dump replies.

The other modules here are pure Python only (their files are small or read
rarely): named after the file they parse.

This module is the only place that chooses between the twins. ``HOSTDIAG_PURE=1`` in
the environment forces the pure twins, both when the package is built (no
extension is compiled) and when it runs. Otherwise the compiled twin is used,
and when it cannot be imported the reason is kept in :data:`TWINS`, so that
``diag version`` shows a broken build instead of hiding it.

Callers take the live twin from here: the module objects ``live_proctext``,
``live_rtnetlink``, ``live_procpid`` and ``live_sockdiag``, and, for the text and
rtnetlink parsers, whose names are unique, the functions themselves
(``parse_stat``, ``parse_link``, ...). Tables of names and layouts are defined
in the pure twin and imported from it.
"""

import importlib
import os

PURE_ENV = "HOSTDIAG_PURE"

# compiled module name → (impl, reason), for every twin pair; `diag version` lists them.
TWINS = {}


def pure_forced():
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load_twin(compiled, pure):
    """The live module of one twin pair, recorded in :data:`TWINS`. The pairs
    of this layer are loaded below; a layer to the right with a pair of its own
    (the delta encoder's table comparison) calls this same switch."""
    if pure_forced():
        module, impl, reason = importlib.import_module(pure), "pure", "forced by %s" % PURE_ENV
    else:
        try:
            module = importlib.import_module(compiled)
        except ImportError as exc:
            module = importlib.import_module(pure)
            impl, reason = "pure", "compiled extension unavailable: %s" % exc
        else:
            impl, reason = "compiled", module.__file__
    TWINS[compiled] = (impl, reason)
    return module


def implementation():
    """"compiled" when every twin pair runs compiled, "pure" when none does, else "mixed"."""
    impls = {impl for impl, _ in TWINS.values()}
    return impls.pop() if len(impls) == 1 else "mixed"


live_proctext = load_twin("hostdiag._proctext", "hostdiag.parsers.proctext")
live_rtnetlink = load_twin("hostdiag._rtnetlink", "hostdiag.parsers.rtnetlink")
live_procpid = load_twin("hostdiag._procpid", "hostdiag.parsers.procpid")
live_sockdiag = load_twin("hostdiag._sockdiag", "hostdiag.parsers.sockdiag")
live_cgroup = load_twin("hostdiag._cgroup", "hostdiag.parsers.cgroup")

parse_stat = live_proctext.parse_stat
parse_keyvalue = live_proctext.parse_keyvalue
parse_twoline = live_proctext.parse_twoline
parse_diskstats = live_proctext.parse_diskstats
parse_netdev = live_proctext.parse_netdev
parse_softnet = live_proctext.parse_softnet
parse_sockstat = live_proctext.parse_sockstat

parse_link = live_rtnetlink.parse_link
parse_address = live_rtnetlink.parse_address
parse_route = live_rtnetlink.parse_route
parse_neighbour = live_rtnetlink.parse_neighbour
parse_replies = live_rtnetlink.parse_replies
