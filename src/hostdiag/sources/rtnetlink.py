"""The running kernel's links, addresses, routes and neighbours over rtnetlink.

:class:`Netlink` opens one ``NETLINK_ROUTE`` socket through pyroute2's
``IPRoute`` (which also enters a network namespace when asked) and keeps it for
every sample. Each method runs one request-level dump and returns plain dicts
and lists; no pyroute2 object leaves this module.

What pyroute2 does here and what it does not: it opens the socket and it builds
the four dump requests, each encoded once, when the ``Netlink`` is made, with
its message classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``, ``ndmsg``). A sample
then only patches a fresh sequence number into a request's header, sends it,
and receives the replies into one reused buffer until NLMSG_DONE; one call of
``parse_replies`` per datagram walks its messages and reads the rows straight
from the buffer. Running each dump through pyroute2's request
machinery instead (an asyncio loop turn per dump, its response queue and
marshal) cost about 1.9 ms of CPU a sample for four dumps whose kernel work is
about 70 µs (benchmarks/README.md).

Why the replies are not decoded by pyroute2 either: its generic decoder builds
every attribute of every message (``IFLA_AF_SPEC`` alone is a kilobyte of
sysctl values per link): 35 to 45 ms a sample for a hundred links. The
per-message parsers (``parse_link``, ``parse_address``, ``parse_route``,
``parse_neighbour`` of :mod:`hostdiag.parsers`: compiled in
``csrc/_rtnetlink.pyx``, with pure twins in :mod:`hostdiag.parsers.rtnetlink`)
read only the fields they return from the raw message, and also give the
counters pyroute2 0.9 does not decode (``rx_nohandler``,
``rx_otherhost_dropped``).

Replies are matched to their request by sequence number; messages of an older
request (left over from a failed one) are skipped. An NLMSG_ERROR reply, a
negative NLMSG_DONE status, a socket error, or no reply within
``REPLY_TIMEOUT_S`` raises :class:`~hostdiag.sources.hostroot.SourceError` with the
path ``netlink:<request>``, as does a missing pyroute2. A dump the kernel marks
NLM_F_DUMP_INTR (the table changed while it was dumped) is run again, at most
``_DUMP_ATTEMPTS`` times in all. A message whose attributes overrun it is
skipped; when a :class:`~hostdiag.sources.problems.Problems` is passed, the
skipped count is recorded there.

A ``Netlink`` belongs to the thread that opened it: pyroute2 0.9 keeps its
socket per thread.
"""

import errno
import os
import select
import socket
import struct
import threading

from hostdiag.sources.hostroot import IO_ERROR, MALFORMED, TOO_LARGE, UNAVAILABLE, SourceError, error_kind
# The live twin (compiled, or the pure hostdiag.parsers.rtnetlink): it walks a
# received datagram and decodes its messages.
from hostdiag.parsers import parse_replies
from hostdiag.parsers.rtnetlink import NUD_STATES

# Message types (linux/rtnetlink.h) and netlink flags (linux/netlink.h).
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300

_PATHS = {RTM_GETLINK: "netlink:RTM_GETLINK", RTM_GETADDR: "netlink:RTM_GETADDR",
          RTM_GETROUTE: "netlink:RTM_GETROUTE", RTM_GETNEIGH: "netlink:RTM_GETNEIGH"}

_U32 = struct.Struct("=I")
_SEQ_OFFSET = 8  # of nlmsg_seq in nlmsghdr

# Attempts at one dump: one more is made after a reply the kernel marked
# NLM_F_DUMP_INTR (the table changed while it was being dumped) or one that did
# not fit the receive buffer; the last attempt is kept as it is.
_DUMP_ATTEMPTS = 3
# The receive buffer, reused by every dump. The kernel fills a dump datagram
# up to about 32 KiB (or one message, when a single link's is larger); a
# datagram that does not fit is detected (MSG_TRUNC), the buffer grows to hold
# it, at most to _RECV_BUFFER_MAX, and the dump is run again.
_RECV_BUFFER = 64 * 1024
_RECV_BUFFER_MAX = 1024 * 1024
# How long a dump may go without a reply. The kernel builds dump replies
# synchronously, in the send and receive calls, so the socket is never waited
# on in practice; the bound keeps a broken kernel or namespace from hanging a
# sample.
REPLY_TIMEOUT_S = 5.0
# Why a dump is run again.
_INTERRUPTED, _CUT = "interrupted", "cut"


def _failure(path, exc):
    """The SourceError for a failed netlink exchange (errno-mapped when known)."""
    code = getattr(exc, "code", None)
    if code is None:
        code = getattr(exc, "errno", None)
    message = getattr(exc, "strerror", None)
    if not message and len(exc.args) > 1 and isinstance(exc.args[1], str):
        message = exc.args[1]  # NetlinkError(code, message)
    message = message or str(exc) or type(exc).__name__
    if code in (None, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.ENOSYS, errno.EOPNOTSUPP):
        return SourceError(UNAVAILABLE, path, message)
    return SourceError(error_kind(OSError(code, message)), path, message)


def _encode_request(message_class, request_type):
    """One dump request of every family (AF_UNSPEC; pyroute2's rtmsg would
    otherwise default to AF_INET), built and encoded by pyroute2, as a
    bytearray whose sequence number each dump rewrites."""
    message = message_class()
    message["header"]["type"] = request_type
    message["header"]["flags"] = _NLM_F_REQUEST | _NLM_F_DUMP
    message["header"]["sequence_number"] = 0
    message["header"]["pid"] = 0
    message["family"] = socket.AF_UNSPEC
    message.encode()
    return bytearray(message.data)


class Netlink:
    """One rtnetlink socket for the lifetime of a collector.

    ``netns`` names a network namespace under /var/run/netns to talk to
    instead of the caller's own; it must exist (it is never created here).
    """

    def __init__(self, netns=None):
        self._thread = threading.get_ident()
        self._names = {}
        self._ipr = None
        self._sock = None
        try:
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError
            from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
            from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
            from pyroute2.netlink.rtnl.ndmsg import ndmsg
            from pyroute2.netlink.rtnl.rtmsg import rtmsg
        except ImportError as exc:
            raise SourceError(UNAVAILABLE, "netlink:NETLINK_ROUTE",
                              "pyroute2 unavailable: %s" % exc) from None
        self._requests = {
            request_type: _encode_request(message_class, request_type)
            for request_type, message_class in ((RTM_GETLINK, ifinfmsg), (RTM_GETADDR, ifaddrmsg),
                                                (RTM_GETROUTE, rtmsg), (RTM_GETNEIGH, ndmsg))
        }
        self._buffer = bytearray(_RECV_BUFFER)
        self._seq = 0
        try:
            # groups=0: IPRoute's default names every rtnl event group, and once
            # bound it queues each event that no request asked for, without
            # bound, for the life of the socket. flags=0: pyroute2 would
            # otherwise create a missing namespace.
            self._ipr = IPRoute(groups=0, netns=netns, flags=0)
            # The socket as pyroute2 opened it (non-blocking, owned by the
            # IPRoute, which closes it). pyroute2's own event loop never runs
            # again after this, so nothing else reads from it.
            self._sock = self._ipr.asyncore.socket
        except (NetlinkError, OSError) as exc:
            self.close()
            raise _failure("netlink:NETLINK_ROUTE", exc) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._sock = None
        if self._ipr is not None:
            ipr, self._ipr = self._ipr, None
            ipr.close()

    def _dump(self, request_type, reply_type, problems):
        """The rows of one dump's replies (``parse_replies`` decodes each
        message of ``reply_type`` with that type's row parser; a malformed
        message is skipped and counted)."""
        path = _PATHS[request_type]
        if self._sock is None:
            raise SourceError(UNAVAILABLE, path, "netlink socket is closed")
        if threading.get_ident() != self._thread:
            raise RuntimeError("a Netlink is used only by the thread that opened it")
        for _attempt in range(_DUMP_ATTEMPTS):
            rows, malformed, again = self._exchange(path, request_type, reply_type)
            if not again:
                break
        if again == _CUT:
            raise SourceError(IO_ERROR, path, "reply datagrams outgrew the receive buffer "
                              "%d times in a row" % _DUMP_ATTEMPTS)
        if malformed and problems is not None:
            problems.add("network", path, MALFORMED,
                         "%d malformed message(s) skipped" % malformed, malformed)
        return rows

    def _exchange(self, path, request_type, reply_type):
        """One request and its replies to NLMSG_DONE: (rows, malformed
        messages, why the dump must be run again: None, _INTERRUPTED or _CUT).

        Each datagram's messages are walked and decoded in one call of the
        live ``parse_replies`` (compiled, or its pure twin)."""
        sock = self._sock
        request = self._requests[request_type]
        self._seq = seq = self._seq % 0xFFFFFFFF + 1
        _U32.pack_into(request, _SEQ_OFFSET, seq)
        try:
            sock.send(request)
        except OSError as exc:
            raise _failure(path, exc) from None
        rows = []
        malformed = 0
        interrupted = None
        cut = 0  # size of the largest datagram that did not fit the buffer
        buffer = self._buffer
        while True:
            try:
                size = sock.recv_into(buffer, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                if cut:
                    # The reply is built as it is read: with nothing queued the
                    # dump is over, its NLMSG_DONE lost in the cut datagram.
                    break
                self._wait(path)
                continue
            except OSError as exc:
                raise _failure(path, exc) from None
            if size > len(buffer):
                cut = max(cut, size)
                continue
            skipped, intr, status, bad_length = parse_replies(buffer, size, seq, reply_type, rows)
            malformed += skipped
            if intr:
                interrupted = _INTERRUPTED
            if bad_length is not None:
                raise SourceError(MALFORMED, path, "netlink message of %d bytes" % bad_length)
            if status is not None:
                # NLMSG_DONE or NLMSG_ERROR: 0, or a negative errno.
                if status < 0:
                    raise _failure(path, OSError(-status, os.strerror(-status)))
                break
        if not cut:
            return rows, malformed, interrupted
        # A datagram was cut: grow the buffer to hold it and dump again.
        if cut > _RECV_BUFFER_MAX:
            raise SourceError(TOO_LARGE, path, "a reply datagram of %d bytes is larger than the "
                              "receive buffer's cap of %d bytes" % (cut, _RECV_BUFFER_MAX))
        self._buffer = bytearray(min(_RECV_BUFFER_MAX, 1 << (cut - 1).bit_length()))
        return rows, malformed, _CUT

    def _wait(self, path):
        """Wait for the socket to become readable, at most REPLY_TIMEOUT_S."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        if not poller.poll(REPLY_TIMEOUT_S * 1000):
            raise SourceError(IO_ERROR, path, "no reply within %g s" % REPLY_TIMEOUT_S)

    def _name_of(self, indexes):
        """index -> name for ``indexes``, from the last links() dump, refreshed
        once when an index is not known."""
        if any(index not in self._names for index in indexes):
            self.links()
        return self._names

    def links(self, problems=None):
        """Every link: {"name", "index", "kind", "operstate", "mtu" (bytes),
        "address", "carrier" (0/1), "carrier_changes", "master" (index),
        "stats": {LINK_STATS name: packets or bytes}}. A field the kernel did
        not send is None; a counter it did not send is absent from "stats"."""
        rows = self._dump(RTM_GETLINK, RTM_NEWLINK, problems)
        self._names = {row["index"]: row["name"] for row in rows}
        return rows

    def addresses(self, problems=None):
        """Every IPv4 and IPv6 address: {"ifindex", "ifname", "family"
        ("inet"/"inet6"), "address", "prefixlen", "scope"}."""
        rows = self._dump(RTM_GETADDR, RTM_NEWADDR, problems)
        names = self._name_of({row["ifindex"] for row in rows})
        for row in rows:
            row["ifname"] = names.get(row["ifindex"])
        return rows

    def routes(self, problems=None):
        """IPv4 and IPv6 routes of every table: {"default": [{"family",
        "gateway", "ifindex", "ifname", "table", "metric"}, one per next hop],
        "tables": {table name or id: routes}, "total": routes}. Only unicast
        routes count as default routes; a metric the kernel leaves out is 0."""
        rows = self._dump(RTM_GETROUTE, RTM_NEWROUTE, problems)
        tables = {}
        default = []
        for row in rows:
            tables[row["table"]] = tables.get(row["table"], 0) + 1
            if row["default"]:
                default.extend(row["default"])
        names = self._name_of({hop["ifindex"] for hop in default if hop["ifindex"] is not None})
        for hop in default:
            hop["ifname"] = names.get(hop["ifindex"])
        return {"default": default, "tables": tables, "total": len(rows)}

    def neighbours(self, problems=None):
        """IPv4 ARP and IPv6 ND entries: {"total": n, "by_state": {state: n}},
        every NUD state named and counted (0 when none is in it)."""
        states = self._dump(RTM_GETNEIGH, RTM_NEWNEIGH, problems)
        by_state = {name: 0 for _bit, name in NUD_STATES}
        for name in states:
            by_state[name] = by_state.get(name, 0) + 1
        return {"total": len(states), "by_state": by_state}
