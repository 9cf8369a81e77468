"""NETLINK_SOCK_DIAG dumps (with /proc/net/{tcp,tcp6,udp,udp6,unix} as the fallback):
the sockets section, TCP, UDP and unix sockets of the host.

:class:`SocketTable` keeps one NETLINK_SOCK_DIAG socket open between samples.
pyroute2 opens it (``DiagSocket``) and builds each request (``inet_diag_req``
with the INFO, CONG and SKMEMINFO extensions for TCP, SKMEMINFO for UDP;
``unix_diag_req`` with no per-socket attribute for unix). The replies are
received here, raw, into one reused buffer and handed to
:mod:`hostdiag.parsers.sockdiag`: pyroute2's own decoder builds an object per
attribute and costs over a hundred times the dump itself (2.6 s for 20,000
sockets against 20 ms here).

What one sample costs is bounded by what is built per socket:

* every TCP socket becomes one short row (``scan_inet``, :data:`ROW_FIELDS`),
  its state counted on the way: the whole host is counted and ranked, and
  :mod:`hostdiag.derive.socket_rates` rates every connection from two samples;
* listeners come from a dump of their own (the kernel walks its listening
  hash only), so no pass over every row looks for them;
* only the sockets shown get the full decode (every tcp_info field, socket
  memory, congestion control): the top :data:`DETAIL_PER_RANK` rows by
  total_retrans, rtt, rqueue and wqueue (``top_rows``), each fetched again by
  an exact sock_diag request for that one socket (a hash lookup in the
  kernel), so their detail is from a moment after their row;
* unix sockets are counted, never decoded.

The section (documented units: queues in bytes, rtt in µs)::

    {"source": "netlink" | "procfs",
     "limits": {"tcp_rows": MAX_TCP_ROWS, "udp": MAX_UDP, "detail_per_rank": DETAIL_PER_RANK},
     "tcp_total": sockets seen, "tcp_states": {"ESTABLISHED": n, "LISTEN": n, ...},
     "tcp_table": {"fields": [ROW_FIELDS...], "rows": [[...], ...], "dropped": n},
     "tcp": [full socket dicts of the sockets shown],
     "listeners": [{"family", "local", "local_port", "inode", "backlog", "backlog_max"}],
     "udp": [{"family", "state", "local", "local_port", "remote", "remote_port",
              "rqueue", "wqueue", "uid", "inode", "drops"}], "udp_total": n, "udp_dropped": n,
     "unix": {"total": n, "by_state": {...}, "by_type": {...}} or None}

Bounds: at most :data:`MAX_TCP_ROWS` TCP rows and :data:`MAX_UDP` UDP sockets
are kept per sample (the first ones the kernel lists); every socket is still
counted in ``tcp_total``/``tcp_states``/``udp_total`` and the rest in
``dropped``/``udp_dropped``. A dump is capped at :data:`DUMP_CAP` bytes.

For a listener ``backlog`` is the accept queue in use and ``backlog_max`` its
limit; the kernel counts a SYN dropped on a full queue in TcpExt
ListenOverflows (the system snapshot's netstat).

/proc/net/tcp, tcp6, udp, udp6 and unix are the fallback, read through the
root: with a non-default root (``root.live`` false: a recorded tree, a
container's /host/proc) and when netlink is unavailable. They have no
tcp_info, socket memory or congestion control (None), and no listen backlog
limit (``backlog_max`` None).

:func:`hostdiag.sources.proc_pid_fd.map_pids` maps socket inodes to the
processes holding them, on demand and for the sockets shown only: walking every
/proc/*/fd is the dear part.
"""

import collections
import errno
import gc
import os
import socket
import struct

from hostdiag.sources.hostroot import (
    IO_ERROR,
    MALFORMED,
    TOO_LARGE,
    UNAVAILABLE,
    SourceError,
    error_kind,
)
from hostdiag.parsers import procnet
from hostdiag.parsers import live_sockdiag
from hostdiag.parsers.sockdiag import ROW_FIELDS, TCP_LISTEN, UNIX_TYPES, state_name

SOURCE = "sockets"

MAX_TCP_ROWS = 100_000
MAX_UDP = 10_000
DETAIL_PER_RANK = 20
# One netlink dump, in bytes (about 450 per TCP socket with its extensions).
DUMP_CAP = 512 * 1024 * 1024
# A netlink dump skb is at most 32 KiB; a larger buffer never truncates one.
RECV_SIZE = 64 * 1024
RECV_TIMEOUT_S = 5.0

# linux/inet_diag.h: idiag_ext bit of an attribute is 1 << (attribute - 1).
INET_DIAG_INFO = 2
INET_DIAG_CONG = 4
INET_DIAG_SKMEMINFO = 7
TCP_EXTENSIONS = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1)) \
    | (1 << (INET_DIAG_SKMEMINFO - 1))
UDP_EXTENSIONS = 1 << (INET_DIAG_SKMEMINFO - 1)
ALL_STATES = 0xFFFFFFFF
# Listeners are dumped apart (the kernel walks its listening hash only), so
# that the table finds them without a pass over every row.
LISTENING = 1 << TCP_LISTEN
NOT_LISTENING = ALL_STATES & ~LISTENING
# Where the socket id starts in an encoded inet_diag_req_v2 (after the
# 16-byte nlmsghdr and 8 bytes of family, protocol, ext, pad and states):
# be16 sport, be16 dport, src[16], dst[16] (linux/inet_diag.h).
_SOCKID_AT = 16 + 8
_SOCKID = struct.Struct(">HH16s16s")

_COL = {name: i for i, name in enumerate(ROW_FIELDS)}
_FAMILY, _STATE, _LOCAL, _LOCAL_PORT = _COL["family"], _COL["state"], _COL["local"], _COL["local_port"]
_REMOTE, _REMOTE_PORT = _COL["remote"], _COL["remote_port"]
_RQUEUE, _WQUEUE, _INODE = _COL["rqueue"], _COL["wqueue"], _COL["inode"]
_UDP_KEYS = ("family", "state", "local", "local_port", "remote", "remote_port",
             "rqueue", "wqueue", "uid", "inode", "drops")
_UDP_COLS = tuple(_COL[k] for k in _UDP_KEYS)
_RANK_COLUMNS = tuple(_COL[name] for name in ("total_retrans", "rtt", "rqueue", "wqueue"))


def _inet_request(family, protocol, extensions, states, seq, dump=True):
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, inet_diag_req

    req = inet_diag_req()
    req["sdiag_family"] = family
    req["sdiag_protocol"] = protocol
    req["idiag_states"] = states
    req["idiag_ext"] = extensions
    if not dump:
        # One socket by its id; INET_DIAG_NOCOOKIE: match on the id alone.
        req["idiag_cookie"] = 0xFFFFFFFFFFFFFFFF
    flags = NLM_F_REQUEST | NLM_F_DUMP if dump else NLM_F_REQUEST
    return _framed(req, SOCK_DIAG_BY_FAMILY, flags, seq)


def _unix_request(seq):
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, unix_diag_req

    req = unix_diag_req()
    req["sdiag_family"] = socket.AF_UNIX
    req["udiag_states"] = ALL_STATES
    req["udiag_show"] = 0
    return _framed(req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq)


def _framed(req, kind, flags, seq):
    req["header"]["type"] = kind
    req["header"]["flags"] = flags
    req["header"]["sequence_number"] = seq
    req.encode()
    return bytes(req.data)


class SocketTable:
    """The sockets section of one host root; reusable across samples.

    ``parser`` is the sock_diag twin to use (default: the live one, see
    ``diag version``); ``netlink=False`` forces the /proc fallback.

    Another network namespace's sockets (:mod:`hostdiag.sources.netns`):
    ``opener`` returns a NETLINK_SOCK_DIAG ``socket.socket`` bound inside
    it (instead of pyroute2's, bound in the caller's namespace), and
    ``net_dir`` is the /proc/PID/net directory of a process inside it for
    the fallback (None: no fallback, the sockets are None). The default
    ``net_dir`` is the root's /proc/net.
    """

    def __init__(self, root, parser=None, netlink=True, detail_per_rank=DETAIL_PER_RANK,
                 max_tcp_rows=MAX_TCP_ROWS, max_udp=MAX_UDP, opener=None, net_dir=""):
        self.root = root
        self.opener = opener
        self.net_dir = root.proc("net") if net_dir == "" else net_dir
        self.parser = parser or live_sockdiag
        self.use_netlink = netlink and root.live
        self.detail_per_rank = detail_per_rank
        self.max_tcp_rows = max_tcp_rows
        self.max_udp = max_udp
        self._diag = None
        self._sock = None
        self._requests = None
        self._templates = [None, None]
        self._view = memoryview(bytearray(RECV_SIZE))
        # Names of TCP requests ("tcp4", "tcp6-listen", ...) the netlink
        # collection leaves out: set by a caller that knows from sockstat that
        # no such socket exists. Each TCP dump walks the kernel's whole TCP
        # hash table, which every network namespace shares.
        self.skip = frozenset()

    # --- the netlink socket ---------------------------------------------------------

    def requests(self):
        """The request bytes of one sample, by name: built by pyroute2 once."""
        if self._requests is None:
            tcp, udp = socket.IPPROTO_TCP, socket.IPPROTO_UDP
            v4, v6 = socket.AF_INET, socket.AF_INET6
            self._requests = {
                "tcp4": _inet_request(v4, tcp, TCP_EXTENSIONS, NOT_LISTENING, 1),
                "tcp4-listen": _inet_request(v4, tcp, TCP_EXTENSIONS, LISTENING, 2),
                "tcp6": _inet_request(v6, tcp, TCP_EXTENSIONS, NOT_LISTENING, 3),
                "tcp6-listen": _inet_request(v6, tcp, TCP_EXTENSIONS, LISTENING, 4),
                "udp4": _inet_request(v4, udp, UDP_EXTENSIONS, ALL_STATES, 5),
                "udp6": _inet_request(v6, udp, UDP_EXTENSIONS, ALL_STATES, 6),
                "unix": _unix_request(7),
            }
        return self._requests

    def socket(self):
        """The open sock_diag socket (a plain ``socket.socket`` on pyroute2's descriptor)."""
        if self._sock is None and self.opener is not None:
            self._sock = self.opener()
        if self._sock is None:
            try:
                from pyroute2 import DiagSocket

                diag = DiagSocket()
            except ImportError as exc:
                raise SourceError(UNAVAILABLE, "netlink:sock_diag", "pyroute2: %s" % exc) from None
            except OSError as exc:
                raise SourceError(error_kind(exc), "netlink:sock_diag",
                                  exc.strerror or str(exc)) from None
            try:
                diag.bind()
                sock = socket.socket(fileno=os.dup(diag.fileno()))
                sock.settimeout(RECV_TIMEOUT_S)
            except OSError as exc:
                diag.close()
                raise SourceError(error_kind(exc), "netlink:sock_diag",
                                  exc.strerror or str(exc)) from None
            self._diag, self._sock = diag, sock
        return self._sock

    @property
    def is_open(self):
        """True while the sock_diag socket is open."""
        return self._sock is not None

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _dump(self, name, reader):
        """Send request ``name`` and feed every reply buffer to ``reader``.

        Returns ``(items, malformed)``: what the reader returned, concatenated
        (lists extended, count dicts summed). Raises SourceError; a dump that
        did not end cleanly closes the socket, so that its leftovers never
        reach the next request.
        """
        sock = self.socket()
        path = "netlink:sock_diag/%s" % name
        complete = False
        view = self._view
        try:
            sock.send(self.requests()[name])
            items = None
            malformed = 0
            total = 0
            while True:
                n = sock.recv_into(view)
                if not n:
                    raise SourceError(IO_ERROR, path, "the socket returned no data")
                total += n
                if total > DUMP_CAP:
                    raise SourceError(TOO_LARGE, path, "dump larger than %d bytes" % DUMP_CAP)
                got, bad, end = reader(view[:n])
                malformed += bad
                if items is None:
                    items = got
                elif isinstance(got, list):
                    items += got
                else:
                    for key, count in got.items():
                        items[key] = items.get(key, 0) + count
                if end is not None:
                    complete = True
                    if end < 0:
                        code = -end
                        kind = UNAVAILABLE if code in (errno.ENOENT, errno.EOPNOTSUPP,
                                                       errno.EAFNOSUPPORT,
                                                       errno.EPROTONOSUPPORT) else IO_ERROR
                        raise SourceError(kind, path, os.strerror(code))
                    return items, malformed
        except socket.timeout:
            raise SourceError(IO_ERROR, path, "no reply in %.0f s" % RECV_TIMEOUT_S) from None
        except OSError as exc:
            raise SourceError(error_kind(exc), path, exc.strerror or str(exc)) from None
        finally:
            if not complete:
                self.close()

    # --- one sample ---------------------------------------------------------------------

    def collect(self, problems):
        """The sockets section (see the module docstring), or None when no
        source could be read; every failure is one entry in ``problems``."""
        if self.use_netlink:
            try:
                return self._collect_netlink(problems)
            except SourceError as exc:
                problems.add(SOURCE, exc.path, exc.kind, exc.message + "; using the procfs fallback")
        return self._collect_procfs(problems)

    def _collect_netlink(self, problems):
        scan = self.parser.scan_inet
        states = {}
        rows = []
        listening = []
        malformed = 0
        # A row holds only str, int and None (the compiled scanner does not
        # even track it), but creating 100,000 of them would still start the
        # cyclic collector over the whole heap a few times per sample.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for name, into in (("tcp4", rows), ("tcp4-listen", listening),
                               ("tcp6", rows), ("tcp6-listen", listening)):
                if name in self.skip:
                    continue
                try:
                    got, bad = self._dump(name, lambda data: scan(data, states))
                except SourceError as exc:
                    if exc.kind == UNAVAILABLE and name.startswith("tcp6"):
                        continue
                    raise
                into += got
                malformed += bad
        finally:
            if collecting:
                gc.enable()
        if malformed:
            problems.add(SOURCE, "netlink:sock_diag/tcp", MALFORMED,
                         "%d malformed message(s) skipped" % malformed, malformed)
        section = self._tcp_section(rows, listening, states,
                                    lambda shown: self._lookup(shown, problems))
        section["source"] = "netlink"
        section.update(self._udp_netlink(problems))
        section["unix"] = self._unix_netlink(problems)
        return section

    def _lookup(self, shown, problems):
        """Full socket dicts of the ``shown`` rows: one exact sock_diag request
        per socket (a hash lookup in the kernel, no dump), so the detail is
        the socket's state a moment after its row. A socket closed meanwhile,
        or whose 4-tuple a new socket took, is left out."""
        sock = self.socket()
        view = self._view
        found = []
        complete = False
        try:
            for row in shown:
                sock.send(self._lookup_request(row))
                n = sock.recv_into(view)
                sockets, bad, _end = self.parser.parse_inet(view[:n])
                if sockets and sockets[0]["inode"] == row[_INODE]:
                    found.append(sockets[0])
                elif bad:
                    problems.add(SOURCE, "netlink:sock_diag/lookup", MALFORMED,
                                 "unreadable reply to a socket lookup", bad)
                # Else the socket closed meanwhile (ENOENT), or its 4-tuple
                # belongs to a new socket: nothing to show.
            complete = True
        except socket.timeout:
            problems.add(SOURCE, "netlink:sock_diag/lookup", IO_ERROR,
                         "no reply in %.0f s" % RECV_TIMEOUT_S)
        except OSError as exc:
            problems.add(SOURCE, "netlink:sock_diag/lookup", error_kind(exc),
                         exc.strerror or str(exc))
        finally:
            if not complete:
                self.close()
        return found

    def _lookup_request(self, row):
        """The request for one socket: pyroute2's encoded template with this
        socket's id written in (building each with pyroute2 costs 60 µs)."""
        inet6 = row[_FAMILY] == "inet6"
        template = self._templates[inet6]
        if template is None:
            template = _inet_request(socket.AF_INET6 if inet6 else socket.AF_INET,
                                     socket.IPPROTO_TCP, TCP_EXTENSIONS, ALL_STATES, 0,
                                     dump=False)
            self._templates[inet6] = template
        family = socket.AF_INET6 if inet6 else socket.AF_INET
        request = bytearray(template)
        _SOCKID.pack_into(request, _SOCKID_AT, row[_LOCAL_PORT], row[_REMOTE_PORT],
                          socket.inet_pton(family, row[_LOCAL]),
                          socket.inet_pton(family, row[_REMOTE]))
        return request

    def _tcp_section(self, rows, listening, states, detail):
        """The TCP part of the section: ``rows`` of every socket but the
        listeners, ``listening`` of the listeners, ``states`` counted over
        both; ``detail`` maps the rows to show to their full socket dicts."""
        listeners = [
            {"family": r[_FAMILY], "local": r[_LOCAL], "local_port": r[_LOCAL_PORT],
             "inode": r[_INODE], "backlog": r[_RQUEUE], "backlog_max": r[_WQUEUE]}
            for r in listening
        ]
        shown = detail(self._shown(rows))
        rows += listening
        total = len(rows)
        dropped = max(0, total - self.max_tcp_rows)
        if dropped:
            del rows[self.max_tcp_rows:]
        return {
            "limits": {"tcp_rows": self.max_tcp_rows, "udp": self.max_udp,
                       "detail_per_rank": self.detail_per_rank},
            "tcp_total": total,
            "tcp_states": states,
            "tcp_table": {"fields": list(ROW_FIELDS), "rows": rows, "dropped": dropped},
            "tcp": shown,
            "listeners": listeners,
        }

    def _shown(self, rows):
        """The rows of the sockets to decode in full: the top rows of each rank
        (listeners are ranked apart: see ``listeners``), each once."""
        shown = {}
        for ranked in self.parser.top_rows(rows, _RANK_COLUMNS, self.detail_per_rank):
            for row in ranked:
                if row[_INODE]:
                    shown.setdefault(row[_INODE], row)
        return list(shown.values())

    def _udp_netlink(self, problems):
        rows = []
        for name in ("udp4", "udp6"):
            try:
                got, bad = self._dump(name, self.parser.scan_inet)
            except SourceError as exc:
                if exc.kind == UNAVAILABLE and name == "udp6":
                    continue
                problems.add(SOURCE, exc.path, exc.kind, exc.message + "; using the procfs fallback")
                return self._udp_procfs(problems)
            if bad:
                problems.add(SOURCE, "netlink:sock_diag/%s" % name, MALFORMED,
                             "%d malformed message(s) skipped" % bad, bad)
            rows += got
        return self._udp_section(rows)

    def _udp_section(self, rows):
        total = len(rows)
        kept = rows[:self.max_udp]
        udp = []
        for row in kept:
            entry = dict(zip(_UDP_KEYS, (row[i] for i in _UDP_COLS)))
            if entry["state"] == "CLOSE":
                entry["state"] = "UNCONN"
            udp.append(entry)
        return {"udp": udp, "udp_total": total, "udp_dropped": total - len(kept)}

    def _unix_netlink(self, problems):
        try:
            counts, bad = self._dump("unix", self.parser.count_unix)
        except SourceError as exc:
            problems.add(SOURCE, exc.path, exc.kind, exc.message + "; using the procfs fallback")
            return self._unix_procfs(problems)
        if bad:
            problems.add(SOURCE, "netlink:sock_diag/unix", MALFORMED,
                         "%d malformed message(s) skipped" % bad, bad)
        return _unix_summary(
            ((UNIX_TYPES.get(kind, "type_%d" % kind), _unix_state(state)), n)
            for (kind, state), n in counts.items()
        )

    def sockets(self, inodes, problems):
        """Full socket dicts (tcp_info, skmem, cong) of the TCP sockets with these
        inodes, from a fresh dump: on demand, for a socket a view is about to
        show that the sample did not decode. Empty on the /proc fallback."""
        wanted = {i for i in inodes if i}
        if not wanted or not self.use_netlink:
            return []
        found = []
        for name in ("tcp4", "tcp4-listen", "tcp6", "tcp6-listen"):
            try:
                got, bad = self._dump(name, lambda data: self.parser.parse_inet(data, wanted))
            except SourceError as exc:
                problems.add(SOURCE, exc.path, exc.kind, exc.message)
                continue
            if bad:
                problems.add(SOURCE, "netlink:sock_diag/%s" % name, MALFORMED,
                             "%d malformed message(s) skipped" % bad, bad)
            found += got
        return found

    # --- the /proc/net fallback -------------------------------------------------------------

    def _net_file(self, name, problems):
        """The path of /proc/net file ``name`` to fall back on, or None (with
        an entry in ``problems``) when there is no ``net_dir``."""
        if self.net_dir is None:
            problems.add(SOURCE, "procfs:net/%s" % name, UNAVAILABLE,
                         "no process inside this network namespace to read /proc/PID/net from")
            return None
        return os.path.join(self.net_dir, name)

    def _collect_procfs(self, problems):
        rows = []
        read_any = False
        for name in ("tcp", "tcp6"):
            path = self._net_file(name, problems)
            if path is None:
                return None
            got = problems.parse(self.root, SOURCE, path, procnet.parse_net_inet)
            if got is not None:
                read_any = True
                rows += got
        if not read_any:
            return None
        listening = [row for row in rows if row[_STATE] == "LISTEN"]
        rows = [row for row in rows if row[_STATE] != "LISTEN"]
        states = dict(collections.Counter(row[_STATE] for row in rows + listening))
        section = self._tcp_section(
            rows, listening, states,
            lambda shown: [_row_dict(row) for row in shown])
        section["source"] = "procfs"
        section.update(self._udp_procfs(problems))
        section["unix"] = self._unix_procfs(problems)
        return section

    def _udp_procfs(self, problems):
        rows = []
        for name in ("udp", "udp6"):
            path = self._net_file(name, problems)
            got = None if path is None else problems.parse(self.root, SOURCE, path, procnet.parse_net_inet)
            if got is not None:
                rows += got
        return self._udp_section(rows)

    def _unix_procfs(self, problems):
        path = self._net_file("unix", problems)
        counts = None if path is None else problems.parse(self.root, SOURCE, path, procnet.parse_net_unix)
        if counts is None:
            return None
        return _unix_summary(counts.items())


def _row_dict(row):
    """A full socket dict for a row from /proc/net: what /proc cannot give is None."""
    sock = dict(zip(ROW_FIELDS[:10], row[:10]))
    sock.update({"cong": None, "skmem": None, "tcp_info": None})
    return sock


def _unix_state(number):
    # Unix sockets reuse the TCP state numbers; an unconnected one is TCP_CLOSE.
    name = state_name(number)
    return "UNCONN" if name == "CLOSE" else name


def _unix_summary(counts):
    """``((type name, state name), n)`` pairs to the section's unix counts."""
    total = 0
    by_state = {}
    by_type = {}
    for (kind, state), n in counts:
        total += n
        by_state[state] = by_state.get(state, 0) + n
        by_type[kind] = by_type.get(kind, 0) + n
    return {"total": total, "by_state": by_state, "by_type": by_type}
