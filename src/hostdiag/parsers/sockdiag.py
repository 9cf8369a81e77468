"""Pure-Python twin of ``csrc/_sockdiag.pyx``: netlink sock_diag replies to plain data.

Three readers of the same replies, from dearest to cheapest per socket:

* :func:`parse_inet`: every socket as a full dict (tcp_info, skmeminfo,
  congestion control), or only the sockets whose inode is asked for;
* :func:`scan_inet`: every socket as a short row tuple (:data:`ROW_FIELDS`),
  its state counted on the way: the table's whole-host pass;
* :func:`count_unix`: unix sockets counted by type and state, nothing decoded;

and :func:`top_rows`, which ranks rows by several columns in one pass (in the
compiled twin, without a Python-level loop).

The readers take the raw bytes of what a NETLINK_SOCK_DIAG socket returned to a
SOCK_DIAG_BY_FAMILY dump (any bytes-like object: one ``recv`` buffer or many
concatenated) and return ``(result, malformed, end)``:

* ``malformed`` counts the messages that were skipped because they broke the
  framing or their structure (a truncated header, a length past the buffer,
  an attribute past its message, a payload shorter than its struct);
* ``end`` is ``None`` while the dump goes on (no terminator in these bytes),
  else the status the terminator carries: ``0`` at a clean NLMSG_DONE, a
  negative errno at an NLMSG_ERROR or at an NLMSG_DONE whose dump failed (the
  kernel puts the dump's error in the DONE payload). An NLMSG_ERROR too short
  to hold its errno is malformed and ends the walk with ``end`` None. Parsing
  stops at the first terminator: bytes after it belong to no dump in progress.

A message whose length field cannot be trusted (below the header size or past
the end of the bytes) ends the walk too, since the next message cannot be
found; it counts as one malformed message. Neither twin ever raises on its
input nor reads past it. Parsers do no I/O.

Layouts (the kernel writes netlink in the host's byte order, little-endian
here, and ports and addresses in network order), from include/uapi/linux:

* ``struct nlmsghdr`` (16 bytes): u32 len, u16 type, u16 flags, u32 seq, u32 pid;
* ``struct inet_diag_msg`` (72 bytes): u8 family, u8 state, u8 timer,
  u8 retrans; sockid {be16 sport, be16 dport, be32 src[4], be32 dst[4],
  u32 if, u32 cookie[2]}; u32 expires, rqueue, wqueue, uid, inode;
* ``struct rtattr`` (4 bytes): u16 len, u16 type, payload padded to 4 bytes;
* ``struct unix_diag_msg`` (16 bytes): u8 family, u8 type, u8 state, u8 pad,
  u32 ino, u32 cookie[2].

Attributes of an inet socket that are decoded; the others are skipped:

* ``INET_DIAG_CONG``: the congestion control name (up to the first NUL);
* ``INET_DIAG_SKMEMINFO``: ``u32[SK_MEMINFO_VARS]`` as :data:`SKMEM_FIELDS`;
* ``INET_DIAG_INFO``: ``struct tcp_info`` as :data:`TCP_INFO_FIELDS`.

tcp_info and skmeminfo are decoded length-aware: a kernel older than the
layout sends a shorter struct, and a field that does not fit entirely in the
attribute's payload is ``None``, never 0. For a listener the kernel puts the
accept queue in use in ``rqueue`` and its limit (the listen backlog) in
``wqueue``.
"""

import heapq
import socket
import struct

NLMSG_HDRLEN = 16
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_MSG_LEN = 72
INODE_OFFSET = 68
UNIX_DIAG_MSG_LEN = 16
RTA_HDRLEN = 4

INET_DIAG_INFO = 2
INET_DIAG_CONG = 4
INET_DIAG_SKMEMINFO = 7

AF_INET = 2
AF_INET6 = 10
FAMILY_NAMES = {AF_INET: "inet", AF_INET6: "inet6"}

# Socket states, indexed by the kernel's number (include/net/tcp_states.h).
TCP_STATES = (
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
    "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
    "NEW_SYN_RECV", "BOUND_INACTIVE",
)
TCP_LISTEN = 10

# Unix socket types (SOCK_*) by number.
UNIX_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}

# Keys of one socket dict, in the order both twins insert them.
SOCKET_KEYS = (
    "family", "state", "local", "local_port", "remote", "remote_port",
    "rqueue", "wqueue", "uid", "inode", "cong", "skmem", "tcp_info",
)

# The table's row: one tuple per socket, see scan_inet.
ROW_FIELDS = (
    "family", "state", "local", "local_port", "remote", "remote_port",
    "rqueue", "wqueue", "uid", "inode",
    "rtt", "total_retrans", "bytes_acked", "drops",
)
ROW_STATE = ROW_FIELDS.index("state")
_IDENTITY_KEYS = SOCKET_KEYS[:SOCKET_KEYS.index("inode") + 1]
assert _IDENTITY_KEYS == ROW_FIELDS[:len(_IDENTITY_KEYS)]
MAX_RANK_COLUMNS = 16
ROW_INODE = ROW_FIELDS.index("inode")

# struct sk_meminfo: u32 per entry, index = SK_MEMINFO_* (include/uapi/linux/sock_diag.h).
SKMEM_FIELDS = (
    "rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc",
    "wmem_queued", "optmem", "backlog", "drops",
)

# struct tcp_info of kernel 6.x (include/uapi/linux/tcp.h) as
# (key, byte offset, size in bytes, bit shift, bit width); a width of 0 takes
# the whole little-endian unsigned value, otherwise (value >> shift) & (2**width - 1).
# The key drops the ``tcpi_`` prefix; ``cwnd`` and ``ssthresh`` are
# tcpi_snd_cwnd and tcpi_snd_ssthresh. Units: rto, ato, rtt, rttvar, rcv_rtt,
# min_rtt in µs; last_* in ms; busy_time, rwnd_limited, sndbuf_limited in µs;
# total_rto_time in ms; pacing_rate, max_pacing_rate, delivery_rate in
# bytes/s; cwnd, ssthresh in segments; the rest are segments, bytes or counts
# as their names say. Omitted: tcpi_fackets and tcpi_last_ack_sent (always 0),
# tcpi_fastopen_client_fail, and the AccECN counters past byte 248.
TCP_INFO_FIELDS = (
    ("state", 0, 1, 0, 0),
    ("ca_state", 1, 1, 0, 0),
    ("retransmits", 2, 1, 0, 0),
    ("probes", 3, 1, 0, 0),
    ("backoff", 4, 1, 0, 0),
    ("options", 5, 1, 0, 0),
    ("snd_wscale", 6, 1, 0, 4),
    ("rcv_wscale", 6, 1, 4, 4),
    ("delivery_rate_app_limited", 7, 1, 0, 1),
    ("rto", 8, 4, 0, 0),
    ("ato", 12, 4, 0, 0),
    ("snd_mss", 16, 4, 0, 0),
    ("rcv_mss", 20, 4, 0, 0),
    ("unacked", 24, 4, 0, 0),
    ("sacked", 28, 4, 0, 0),
    ("lost", 32, 4, 0, 0),
    ("retrans", 36, 4, 0, 0),
    ("last_data_sent", 44, 4, 0, 0),
    ("last_data_recv", 52, 4, 0, 0),
    ("last_ack_recv", 56, 4, 0, 0),
    ("pmtu", 60, 4, 0, 0),
    ("rcv_ssthresh", 64, 4, 0, 0),
    ("rtt", 68, 4, 0, 0),
    ("rttvar", 72, 4, 0, 0),
    ("ssthresh", 76, 4, 0, 0),
    ("cwnd", 80, 4, 0, 0),
    ("advmss", 84, 4, 0, 0),
    ("reordering", 88, 4, 0, 0),
    ("rcv_rtt", 92, 4, 0, 0),
    ("rcv_space", 96, 4, 0, 0),
    ("total_retrans", 100, 4, 0, 0),
    ("pacing_rate", 104, 8, 0, 0),
    ("max_pacing_rate", 112, 8, 0, 0),
    ("bytes_acked", 120, 8, 0, 0),
    ("bytes_received", 128, 8, 0, 0),
    ("segs_out", 136, 4, 0, 0),
    ("segs_in", 140, 4, 0, 0),
    ("notsent_bytes", 144, 4, 0, 0),
    ("min_rtt", 148, 4, 0, 0),
    ("data_segs_in", 152, 4, 0, 0),
    ("data_segs_out", 156, 4, 0, 0),
    ("delivery_rate", 160, 8, 0, 0),
    ("busy_time", 168, 8, 0, 0),
    ("rwnd_limited", 176, 8, 0, 0),
    ("sndbuf_limited", 184, 8, 0, 0),
    ("delivered", 192, 4, 0, 0),
    ("delivered_ce", 196, 4, 0, 0),
    ("bytes_sent", 200, 8, 0, 0),
    ("bytes_retrans", 208, 8, 0, 0),
    ("dsack_dups", 216, 4, 0, 0),
    ("reord_seen", 220, 4, 0, 0),
    ("rcv_ooopack", 224, 4, 0, 0),
    ("snd_wnd", 228, 4, 0, 0),
    ("rcv_wnd", 232, 4, 0, 0),
    ("rehash", 236, 4, 0, 0),
    ("total_rto", 240, 2, 0, 0),
    ("total_rto_recoveries", 242, 2, 0, 0),
    ("total_rto_time", 244, 4, 0, 0),
)

_U64_LIMIT = 1 << 64
# "=": the host's byte order with standard sizes and no alignment, as the
# compiled twin's memcpy loads read them; ports are in network order.
_NLMSGHDR = struct.Struct("=IHH")
_RTATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_PORTS = struct.Struct(">HH")
_INET_TAIL = struct.Struct("=IIIII")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_SIZED = {1: struct.Struct("=B"), 2: struct.Struct("=H"), 4: _U32, 8: _U64}
_WANTED_ATTRS = (INET_DIAG_INFO, INET_DIAG_CONG, INET_DIAG_SKMEMINFO)
# Byte offsets of the row's numbers in tcp_info and sk_meminfo.
_OFFSETS = {name: offset for name, offset, _size, _shift, _width in TCP_INFO_FIELDS}
_ROW_RTT = _OFFSETS["rtt"]
_ROW_TOTAL_RETRANS = _OFFSETS["total_retrans"]
_ROW_BYTES_ACKED = _OFFSETS["bytes_acked"]
_ROW_DROPS = 4 * SKMEM_FIELDS.index("drops")
_TCP_INFO_DECODE = tuple(
    (name, offset, offset + size, _SIZED[size], shift, (1 << width) - 1 if width else 0)
    for name, offset, size, shift, width in TCP_INFO_FIELDS
)


def _align4(n):
    return (n + 3) & ~3


def state_name(number):
    """The name of a socket state number; an unknown number is ``STATE_<n>``."""
    return TCP_STATES[number] if number < len(TCP_STATES) else "STATE_%d" % number


def _address(family, raw):
    return socket.inet_ntop(family, raw[:4] if family == AF_INET else raw)


def _walk(data):
    """Yield ``(type, payload_start, message_end)`` of each message, or a
    terminator/fault as ``(None, end, malformed)`` as the last item."""
    n = len(data)
    pos = 0
    while pos < n:
        if n - pos < NLMSG_HDRLEN:
            yield None, None, 1
            return
        length, kind, _flags = _NLMSGHDR.unpack_from(data, pos)
        if length < NLMSG_HDRLEN or length > n - pos:
            yield None, None, 1
            return
        if kind == NLMSG_DONE or kind == NLMSG_ERROR:
            if length >= NLMSG_HDRLEN + 4:
                yield None, _ERRNO.unpack_from(data, pos + NLMSG_HDRLEN)[0], 0
            elif kind == NLMSG_DONE:
                yield None, 0, 0
            else:
                yield None, None, 1
            return
        yield kind, pos + NLMSG_HDRLEN, pos + length
        pos += min(_align4(length), n - pos)


def _tcp_info(data, start, length):
    info = {}
    for name, offset, stop, codec, shift, mask in _TCP_INFO_DECODE:
        if stop > length:
            info[name] = None
            continue
        value = codec.unpack_from(data, start + offset)[0]
        if mask:
            value = (value >> shift) & mask
        info[name] = value
    return info


def _skmem(data, start, length):
    mem = {}
    for i, name in enumerate(SKMEM_FIELDS):
        offset = 4 * i
        mem[name] = _U32.unpack_from(data, start + offset)[0] if offset + 4 <= length else None
    return mem


def _cong(data, start, length):
    raw = bytes(data[start:start + length])
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "replace")


def _inet_attrs(data, start, end):
    """Check the inet_diag_msg in ``data[start:end]`` and find its attributes:
    ``{type: (payload start, payload size)}`` of INFO, CONG and SKMEMINFO (the
    last of each type wins), or None when the message is malformed: shorter
    than inet_diag_msg, not AF_INET/AF_INET6, an attribute shorter than its
    header or past the message, or stray bytes after the last attribute."""
    if end - start < INET_DIAG_MSG_LEN or data[start] not in FAMILY_NAMES:
        return None
    attrs = {}
    pos = start + INET_DIAG_MSG_LEN
    while end - pos >= RTA_HDRLEN:
        rta_len, rta_type = _RTATTR.unpack_from(data, pos)
        if rta_len < RTA_HDRLEN or rta_len > end - pos:
            return None
        if rta_type in _WANTED_ATTRS:
            attrs[rta_type] = (pos + RTA_HDRLEN, rta_len - RTA_HDRLEN)
        pos += min(_align4(rta_len), end - pos)
    if pos != end:
        return None
    return attrs


def _inet_identity(data, start):
    """The fields a socket dict and a row share, in the order of both
    (:data:`SOCKET_KEYS` and :data:`ROW_FIELDS` up to ``inode``)."""
    family = data[start]
    sport, dport = _PORTS.unpack_from(data, start + 4)
    _expires, rqueue, wqueue, uid, inode = _INET_TAIL.unpack_from(data, start + 52)
    return (
        FAMILY_NAMES[family],
        state_name(data[start + 1]),
        _address(family, bytes(data[start + 8:start + 24])),
        sport,
        _address(family, bytes(data[start + 24:start + 40])),
        dport,
        rqueue,
        wqueue,
        uid,
        inode,
    )


def _inet_socket(data, start, end):
    """One inet_diag_msg and its attributes as a socket dict, or None when malformed."""
    attrs = _inet_attrs(data, start, end)
    if attrs is None:
        return None
    cong = attrs.get(INET_DIAG_CONG)
    skmem = attrs.get(INET_DIAG_SKMEMINFO)
    info = attrs.get(INET_DIAG_INFO)
    sock = dict(zip(_IDENTITY_KEYS, _inet_identity(data, start)))
    sock["cong"] = None if cong is None else _cong(data, *cong)
    sock["skmem"] = None if skmem is None else _skmem(data, *skmem)
    sock["tcp_info"] = None if info is None else _tcp_info(data, *info)
    return sock


def _optional(data, attr, offset, codec):
    if attr is None or offset + codec.size > attr[1]:
        return None
    return codec.unpack_from(data, attr[0] + offset)[0]


def _inet_row(data, start, end):
    """One inet_diag_msg as a :data:`ROW_FIELDS` tuple, or None when malformed."""
    attrs = _inet_attrs(data, start, end)
    if attrs is None:
        return None
    info = attrs.get(INET_DIAG_INFO)
    skmem = attrs.get(INET_DIAG_SKMEMINFO)
    return _inet_identity(data, start) + (
        _optional(data, info, _ROW_RTT, _U32),
        _optional(data, info, _ROW_TOTAL_RETRANS, _U32),
        _optional(data, info, _ROW_BYTES_ACKED, _U64),
        _optional(data, skmem, _ROW_DROPS, _U32),
    )


def parse_inet(data, inodes=None):
    """SOCK_DIAG_BY_FAMILY replies for AF_INET/AF_INET6 (TCP, UDP) to socket dicts.

    With ``inodes`` (a collection of ints), only the sockets whose inode is in
    it are decoded; the others are stepped over, and a message is only checked
    beyond its netlink header when it is decoded (a message too short to hold
    an inode is malformed either way).

    Returns ``(sockets, malformed, end)``; each socket is a dict with the keys
    of :data:`SOCKET_KEYS`: ``family`` ("inet" or "inet6"), ``state`` (a name
    of :data:`TCP_STATES`), ``local``/``remote`` (addresses as text) and
    ``local_port``/``remote_port``, ``rqueue``/``wqueue`` (bytes; for a
    listener: accept queue in use / its limit), ``uid``, ``inode`` (0 for
    time-wait and request sockets), and ``cong``, ``skmem``, ``tcp_info``
    (None when the kernel sent no such attribute).
    """
    sockets = []
    malformed = 0
    end = None
    for kind, start, stop in _walk(data):
        if kind is None:
            end = start
            malformed += stop
            break
        if kind == NLMSG_NOOP:
            continue
        if kind == SOCK_DIAG_BY_FAMILY and inodes is not None and stop - start >= INET_DIAG_MSG_LEN:
            if _U32.unpack_from(data, start + INODE_OFFSET)[0] not in inodes:
                continue
        sock = _inet_socket(data, start, stop) if kind == SOCK_DIAG_BY_FAMILY else None
        if sock is None:
            malformed += 1
        else:
            sockets.append(sock)
    return sockets, malformed, end


def scan_inet(data, states=None):
    """The table's fast path over the same replies: ``(rows, malformed, end)``.

    With ``states`` (a dict), the state name of every row is also counted
    into it (``{"ESTABLISHED": n, ...}``, added to what it holds).

    Each row is a tuple in :data:`ROW_FIELDS` order: the socket's identity,
    state and queues as in :func:`parse_inet`, the few tcp_info and skmeminfo
    numbers a whole-table pass ranks and rates by (``rtt`` µs,
    ``total_retrans``, ``bytes_acked``, ``drops``; None where the kernel sent
    no such attribute or a too short one). ``parse_inet(data, inodes)`` over the
    same bytes gives the full dicts of the few sockets shown. Malformed
    messages are the same as in :func:`parse_inet`.
    """
    if states is not None and not isinstance(states, dict):
        raise TypeError("states must be a dict")
    rows = []
    malformed = 0
    end = None
    for kind, start, stop in _walk(data):
        if kind is None:
            end = start
            malformed += stop
            break
        if kind == NLMSG_NOOP:
            continue
        row = _inet_row(data, start, stop) if kind == SOCK_DIAG_BY_FAMILY else None
        if row is None:
            malformed += 1
        else:
            rows.append(row)
            if states is not None:
                states[row[ROW_STATE]] = states.get(row[ROW_STATE], 0) + 1
    return rows, malformed, end


def count_unix(data):
    """SOCK_DIAG_BY_FAMILY replies for AF_UNIX, counted without decoding each socket.

    Returns ``(counts, malformed, end)`` where ``counts`` maps
    ``(socket type number, state number)`` to how many sockets the bytes hold
    (types: 1 stream, 2 datagram, 5 seqpacket; states as in :data:`TCP_STATES`).
    """
    counts = {}
    malformed = 0
    end = None
    for kind, start, stop in _walk(data):
        if kind is None:
            end = start
            malformed += stop
            break
        if kind == NLMSG_NOOP:
            continue
        if kind != SOCK_DIAG_BY_FAMILY or stop - start < UNIX_DIAG_MSG_LEN \
                or data[start] != socket.AF_UNIX:
            malformed += 1
            continue
        key = (data[start + 1], data[start + 2])
        counts[key] = counts.get(key, 0) + 1
    return counts, malformed, end


def top_rows(rows, columns, n, exclude_state=None):
    """For each column index of ``columns`` (at most 16, indices of
    :data:`ROW_FIELDS`), the at most ``n`` rows with the largest value in that
    column, largest first, ties in their order in ``rows``: a list of lists,
    one per column. The compiled twin ranks every column in one pass.

    Rows whose value is not an int in 1..2**64-1 (None, zero) are left out, and
    so are rows whose state is ``exclude_state``, and rows that are not
    tuples or lists long enough to hold the column. Rows may come back from
    msgpack as lists.
    """
    columns = list(columns)
    if len(columns) > MAX_RANK_COLUMNS:
        raise ValueError("at most %d columns" % MAX_RANK_COLUMNS)
    if any(column < 0 for column in columns):
        raise ValueError("column must be >= 0")
    if not isinstance(rows, (list, tuple)):
        rows = list(rows)
    return [_top_one(rows, column, n, exclude_state) for column in columns]


def _top_one(rows, column, n, exclude_state):
    if n <= 0:
        return []
    ranked = []
    for index, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) <= max(column, ROW_STATE):
            continue
        value = row[column]
        if type(value) is not int or not 0 < value < _U64_LIMIT:
            continue
        if exclude_state is not None and row[ROW_STATE] == exclude_state:
            continue
        ranked.append((value, -index, row))
    return [row for _value, _order, row in heapq.nlargest(n, ranked, key=_rank_key)]


def _rank_key(item):
    return item[0], item[1]
