"""Per-connection rates from two samples of the sockets section, and what to show.

A connection is identified by :func:`connection_key`: family, both endpoints
and the socket inode, as one string (``"inet 10.0.0.1:443 10.0.0.2:51234
#81234"``; IPv6 addresses in brackets), so that a 4-tuple reused by a new
socket is a new connection. Rates come from the rows of the section's
``tcp_table`` (every TCP socket of the sample, up to the table's limit), read
by the field names the table carries, so rows that went through msgpack as
lists work too.

:func:`socket_rates` returns ``{key: rates}`` for every row of the current
sample, where rates are::

    retrans_per_s      segments retransmitted per second (tcp_info total_retrans)
    bytes_acked_per_s  bytes the peer acknowledged per second (tcp_info bytes_acked)

A rate is ``None`` (never negative or huge) when the connection has no row in
the previous sample, when either value is ``None`` (no tcp_info: time-wait
sockets, the /proc fallback), when a counter went backwards, or when the
interval is not positive.

Cost: both functions touch every row once, with C-level iteration where they
can (``operator.itemgetter``, ``zip``): on this machine about 0.3 s per
100,000 connections for the rates and 0.1 s for the ranking.
"""

import heapq
import operator

TOP_CATEGORIES = ("retrans", "rtt", "queue")
_KEY_FIELDS = ("family", "local", "local_port", "remote", "remote_port", "inode")
_COUNTERS = ("total_retrans", "bytes_acked")
_NO_RATES = {"retrans_per_s": None, "bytes_acked_per_s": None}
# The rates of a connection whose counters are the same ints as before (an
# idle connection, most of them): what _rate gives, without calling it.
_UNCHANGED = {"retrans_per_s": 0.0, "bytes_acked_per_s": 0.0}


def _endpoint(address, port):
    # IPv6 addresses (all of family inet6, v4-mapped too) go in brackets.
    return ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, port)


def connection_key(conn):
    """The identity of a connection, from a socket dict or a ``{field: value}`` row."""
    return "%s %s %s #%s" % (conn["family"], _endpoint(conn["local"], conn["local_port"]),
                              _endpoint(conn["remote"], conn["remote_port"]), conn["inode"])


def _key_text(key):
    """:func:`connection_key` of a ``_KEY_FIELDS`` tuple."""
    if key[0] == "inet6":
        return "%s [%s]:%s [%s]:%s #%s" % key
    return "%s %s:%s %s:%s #%s" % key


def _table(section):
    """``(column index by field name, rows)`` of a section's tcp_table; empty when absent."""
    table = section.get("tcp_table") if isinstance(section, dict) else None
    if not isinstance(table, dict):
        return {}, ()
    fields = table.get("fields") or ()
    rows = [r for r in table.get("rows") or () if isinstance(r, (tuple, list))
            and len(r) == len(fields)]
    return {name: i for i, name in enumerate(fields)}, rows


def _getter(col, names):
    return operator.itemgetter(*(col[name] for name in names))


def _rate(before, after, dt_s):
    if type(before) is not int or type(after) is not int or after < before:
        return None
    return (after - before) / dt_s


def socket_rates(prev, cur, dt_s):
    """``{connection key: {"retrans_per_s", "bytes_acked_per_s"}}`` for every
    TCP row of ``cur``; ``prev`` and ``cur`` are sockets sections (or None),
    ``dt_s`` the seconds between them."""
    col, rows = _table(cur)
    needed = _KEY_FIELDS + _COUNTERS
    if not rows or any(name not in col for name in needed):
        return {}
    keys = list(map(_getter(col, _KEY_FIELDS), rows))
    pcol, prows = _table(prev)
    before = {}
    if prows and all(name in pcol for name in needed) and isinstance(dt_s, (int, float)) \
            and dt_s > 0:
        before = dict(zip(map(_getter(pcol, _KEY_FIELDS), prows),
                          map(_getter(pcol, _COUNTERS), prows)))
    rates = {}
    for key, counters in zip(keys, map(_getter(col, _COUNTERS), rows)):
        old = before.get(key)
        if old is None:
            rates[_key_text(key)] = dict(_NO_RATES)
        elif old == counters and type(old[0]) is int and type(old[1]) is int \
                and type(counters[0]) is int and type(counters[1]) is int:
            rates[_key_text(key)] = dict(_UNCHANGED)
        else:
            rates[_key_text(key)] = {"retrans_per_s": _rate(old[0], counters[0], dt_s),
                                     "bytes_acked_per_s": _rate(old[1], counters[1], dt_s)}
    return rates


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _positive(rows, index):
    """The rows whose value at ``index`` is an int above zero."""
    return [r for r in rows if type(r[index]) is int and r[index] > 0]


def top_connections(section, rates=None, n=5):
    """The connections to look at first: ``{"retrans": [...], "rtt": [...], "queue": [...]}``.

    * ``retrans``: by retransmits per second when ``rates`` has them, then by
      total_retrans; only connections that ever retransmitted;
    * ``rtt``: by smoothed rtt (µs), connections with an rtt only;
    * ``queue``: by rqueue + wqueue in bytes, listeners left out (their
      queues are the accept backlog, see :func:`listeners_overflowing`).

    Each entry has the row's fields, ``key``, the connection's rates (None
    without ``rates``) and ``detail``: the full socket dict (tcp_info, skmem,
    cong) when the section decoded it, else None.
    """
    col, rows = _table(section)
    result = {name: [] for name in TOP_CATEGORIES}
    if not rows or "state" not in col or n <= 0:
        return result
    rates = rates if isinstance(rates, dict) else {}
    keyed = all(k in col for k in _KEY_FIELDS)
    key_of = _getter(col, _KEY_FIELDS) if keyed else None

    def row_rates(row):
        if not rates or not keyed:
            return {}
        found = rates.get(_key_text(key_of(row)))
        return found if isinstance(found, dict) else {}

    if "total_retrans" in col:
        retrans_i = col["total_retrans"]

        def retrans_rank(row):
            return (_number(row_rates(row).get("retrans_per_s")) or 0, row[retrans_i])

        result["retrans"] = heapq.nlargest(n, _positive(rows, retrans_i), key=retrans_rank)
    if "rtt" in col:
        result["rtt"] = heapq.nlargest(n, _positive(rows, col["rtt"]),
                                       key=operator.itemgetter(col["rtt"]))
    if "rqueue" in col and "wqueue" in col:
        rq, wq, state = col["rqueue"], col["wqueue"], col["state"]
        queued = [r for r in rows if (r[rq] or r[wq]) and r[state] != "LISTEN"
                  and type(r[rq]) is int and type(r[wq]) is int]
        result["queue"] = heapq.nlargest(n, queued, key=lambda r: r[rq] + r[wq])

    detail = {}
    for sock in (section or {}).get("tcp") or ():
        if isinstance(sock, dict) and sock.get("inode"):
            detail[sock["inode"]] = sock
    for name, chosen in result.items():
        entries = []
        for row in chosen:
            entry = {field: row[i] for field, i in col.items()}
            entry["key"] = _key_text(key_of(row)) if keyed else None
            conn_rates = row_rates(row)
            entry["retrans_per_s"] = conn_rates.get("retrans_per_s")
            entry["bytes_acked_per_s"] = conn_rates.get("bytes_acked_per_s")
            entry["detail"] = detail.get(entry.get("inode")) if entry.get("inode") else None
            entries.append(entry)
        result[name] = entries
    return result


def listeners_overflowing(section):
    """Listeners whose accept queue is full: backlog in use >= backlog max (> 0 in use).

    Once full, the kernel drops further SYNs and counts them in the host's
    TcpExt ListenOverflows and ListenDrops (the system snapshot's netstat,
    rated in ``derive.rates`` as listen_overflows_per_s). /proc gives no
    backlog max, so the fallback section never lists one here.
    """
    found = []
    listeners = section.get("listeners") if isinstance(section, dict) else None
    for listener in listeners or ():
        if not isinstance(listener, dict):
            continue
        backlog = _number(listener.get("backlog"))
        limit = _number(listener.get("backlog_max"))
        if backlog is not None and limit is not None and backlog > 0 and backlog >= limit:
            found.append(listener)
    return found
