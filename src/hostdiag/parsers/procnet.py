"""Cold-path parsers of /proc/net/{tcp,tcp6,udp,udp6,unix}: the sockets fallback.

Used when netlink sock_diag cannot be (a recorded tree, a container's
/host/proc, no sock_diag support). Like every parser they take bytes, do no
I/O and return ``(result, malformed)``; a line that does not follow the
grammar below is skipped and counted.

inet files: a header line, then one line per socket::

    sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...

Addresses are the kernel's in-memory words in hex: IPv4 one 32-bit word,
IPv6 four, each printed in host order (little-endian here), ports big hex.
The udp files end each line with the socket's ``drops``.
"""

import socket
import struct

from hostdiag.parsers.sockdiag import TCP_LISTEN, UNIX_TYPES, state_name

# /proc/net/unix St column (enum socket_state) and the listening flag (__SO_ACCEPTCON).
_UNIX_ST = {1: "UNCONN", 2: "SYN_SENT", 3: "ESTABLISHED", 4: "CLOSING"}
_SO_ACCEPTCON = 1 << 16
_WORD = struct.Struct("<I")
_MIN_TOKENS = 10
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _hex(tok, max_digits):
    if 0 < len(tok) <= max_digits and _HEX.issuperset(tok):
        return int(tok, 16)
    return None


def _endpoint(tok):
    """``ADDR:PORT`` in /proc's hex to ``(family name, address text, port)``, or None."""
    addr, sep, port = tok.partition(b":")
    port = _hex(port, 4)
    if not sep or port is None or len(addr) not in (8, 32) or not _HEX.issuperset(addr):
        return None
    raw = b"".join(_WORD.pack(int(addr[i:i + 8], 16)) for i in range(0, len(addr), 8))
    if len(raw) == 4:
        return "inet", socket.inet_ntop(socket.AF_INET, raw), port
    return "inet6", socket.inet_ntop(socket.AF_INET6, raw), port


def parse_net_inet(data):
    """/proc/net/tcp, tcp6, udp or udp6 to rows in ``ROW_FIELDS`` order.

    ``rqueue``/``wqueue`` are rx_queue/tx_queue in bytes; for a listener
    rx_queue is the accept queue in use, and ``wqueue`` (the backlog limit in
    a netlink row) is None since /proc does not give it. ``rtt``,
    ``total_retrans`` and ``bytes_acked`` are None (no tcp_info here);
    ``drops`` comes from the udp files' last column, None for tcp.
    """
    rows = []
    malformed = 0
    lines = data.split(b"\n")
    header = lines[0].split() if lines else []
    has_drops = bool(header) and header[-1] == b"drops"
    for line in lines[1:]:
        tokens = line.split()
        if not tokens:
            continue
        row = _inet_row(tokens, has_drops)
        if row is None:
            malformed += 1
        else:
            rows.append(row)
    return rows, malformed


def _inet_row(tokens, has_drops):
    if len(tokens) < _MIN_TOKENS + (3 if has_drops else 0) or not tokens[0].endswith(b":"):
        return None
    local = _endpoint(tokens[1])
    remote = _endpoint(tokens[2])
    state = _hex(tokens[3], 2)
    tx, sep, rx = tokens[4].partition(b":")
    tx = _hex(tx, 8)
    rx = _hex(rx, 8)
    uid = int(tokens[7]) if tokens[7].isdigit() and len(tokens[7]) <= 10 else None
    inode = int(tokens[9]) if tokens[9].isdigit() and len(tokens[9]) <= 20 else None
    drops = None
    if has_drops:
        drops = int(tokens[-1]) if tokens[-1].isdigit() and len(tokens[-1]) <= 20 else None
        if drops is None:
            return None
    if None in (local, remote, state, tx, rx, uid, inode) or not sep or local[0] != remote[0]:
        return None
    return (
        local[0], state_name(state), local[1], local[2], remote[1], remote[2],
        rx, None if state == TCP_LISTEN else tx, uid, inode,
        None, None, None, drops,
    )


def parse_net_unix(data):
    """/proc/net/unix to ``{(type name, state name): count}``.

    Types as in sock_diag (``stream``, ``dgram``, ``seqpacket``, else
    ``type_<n>``); states are the socket's: ``LISTEN`` for a listening socket,
    else ``UNCONN``, ``SYN_SENT``, ``ESTABLISHED`` or ``CLOSING`` from the St
    column (netlink names a connected datagram socket ESTABLISHED where /proc
    may say UNCONN).
    """
    counts = {}
    malformed = 0
    for line in data.split(b"\n")[1:]:
        tokens = line.split()
        if not tokens:
            continue
        flags = _hex(tokens[3], 8) if len(tokens) >= 7 else None
        kind = _hex(tokens[4], 4) if len(tokens) >= 7 else None
        st = _hex(tokens[5], 2) if len(tokens) >= 7 else None
        if None in (flags, kind, st) or not tokens[0].endswith(b":"):
            malformed += 1
            continue
        state = "LISTEN" if flags & _SO_ACCEPTCON else _UNIX_ST.get(st, "STATE_%d" % st)
        key = (UNIX_TYPES.get(kind, "type_%d" % kind), state)
        counts[key] = counts.get(key, 0) + 1
    return counts, malformed
