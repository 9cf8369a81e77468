"""A blocking client of the agent protocol (docs/protocol.md), for the
collector and `diag show`.

    with AgentClient.connect("unix:/run/hostdiag/agent.sock") as client:
        client.info()
        client.latest()                       # SnapshotRecord or None
        for record in client.range(from_seq=1):
            ...
        for item in client.subscribe(from_seq=last_seq + 1, boot_id=last_boot):
            ...                               # SnapshotRecord or Gone

Addresses: ``unix:PATH`` or a path starting with "/" (Unix socket),
``tcp://HOST:PORT`` (or the settings' ``tcp:HOST:PORT``) and ``tls://HOST:PORT``
(TCP, TLS with the system's or a given CA, and a client certificate when the
agent asks for one: :func:`client_tls_context`). Every method raises :class:`ProtocolError` for an error frame,
``ConnectionError`` when the agent goes away and ``TimeoutError`` when it
does not answer in time.
"""

import socket
import ssl
from dataclasses import dataclass
from typing import Any, Dict, Optional

from hostdiag import __version__
from hostdiag.encode.delta import apply as apply_delta
from hostdiag.model.snapshot import SCHEMA_VERSION
from hostdiag.transport import protocol as P
from hostdiag.transport.framing import HEADER, decode_payload, encode_frame
from hostdiag.transport.protocol import Error, ProtocolError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PORT = 7411


@dataclass
class SnapshotRecord:
    """One snapshot of an agent's history. ``full`` and ``frame_bytes`` say how
    it travelled on a subscription (a whole snapshot or a delta, and the
    frame's size in bytes); a range or latest record is always whole.

    A record that came as a delta keeps how it was built: ``snapshot`` is
    ``encode.delta.apply(change, base, prior)``, ``base`` being the snapshot of
    record ``base_seq``, the one the frame was sent against (the very object
    this subscription yielded), and ``prior`` the values taken for
    ``prior_keys(change)`` (the very objects); all four are None for a whole
    record. A store reuses them instead of computing the delta again."""

    boot_id: str
    seq: int
    wall_ns: int
    snapshot: Dict[str, Any]
    full: bool = True
    frame_bytes: int = 0
    change: Optional[Dict[str, Any]] = None
    base_seq: Optional[int] = None
    base: Optional[Dict[str, Any]] = None
    prior: Optional[Dict[str, Any]] = None


@dataclass
class Gone:
    """Records ``from_seq..to_seq`` (inclusive; ``to_seq`` None: all of that
    boot) of ``boot_id`` are not kept by the agent any more."""

    boot_id: str
    from_seq: int
    to_seq: Optional[int]
    oldest_seq: Optional[int]
    reason: str


@dataclass
class RangePage:
    records: list
    more: bool
    next_seq: Optional[int]
    gone: list
    oldest_seq: Optional[int]
    newest_seq: Optional[int]


def parse_address(address):
    """("unix", path, None) or ("tcp"|"tls", host, port) for an address string."""
    if address.startswith("unix:"):
        return "unix", address[len("unix:"):], None
    if address.startswith("/"):
        return "unix", address, None
    if address.startswith("tcp:") and not address.startswith("tcp://"):
        address = "tcp://" + address[len("tcp:"):]  # the settings' form, tcp:HOST:PORT
    for scheme in ("tcp", "tls"):
        prefix = scheme + "://"
        if address.startswith(prefix):
            rest = address[len(prefix):]
            host, sep, port = rest.rpartition(":")
            if not sep:
                host, port = rest, str(DEFAULT_PORT)
            host = host.strip("[]")
            try:
                port = int(port)
            except ValueError:
                raise ValueError("bad port in agent address %r" % address) from None
            if not host or not 0 < port < 65536:
                raise ValueError("bad agent address %r" % address)
            return scheme, host, port
    raise ValueError("an agent address is unix:PATH, /PATH, tcp://HOST:PORT, tcp:HOST:PORT or "
                     "tls://HOST:PORT, not %r" % address)


def client_tls_context(cafile=None, certfile=None, keyfile=None):
    """The TLS settings of a client: the agent's certificate is checked
    against the CAs in ``cafile`` (PEM; None: the system's), and the client
    shows the certificate chain in ``certfile`` with the private key in
    ``keyfile`` (PEM; None: in ``certfile``) to an agent that asks for one
    (``tcp.tls_client_ca``). Files that cannot be loaded raise ``ValueError``
    with a one-line reason."""
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError("cannot load the CA file %s: %s" % (cafile, _ssl_reason(exc))) from None
    if certfile is not None:
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError("cannot load the client certificate %s and key %s: %s"
                             % (certfile, keyfile or certfile, _ssl_reason(exc))) from None
    return context


def _ssl_reason(exc):
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


class AgentClient:
    """One connection to an agent, greeted. Not thread-safe: one user at a time."""

    def __init__(self, sock, token=None, timeout=DEFAULT_TIMEOUT_S, max_frame_bytes=P.DEFAULT_MAX_FRAME_BYTES,
                 name="hostdiag/%s" % __version__):
        self.sock = sock
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.bytes_received = 0
        self.sock.settimeout(timeout)
        self.server = self._hello(token, name)

    @classmethod
    def connect(cls, address, token=None, timeout=DEFAULT_TIMEOUT_S, cafile=None, ssl_context=None,
                **kwargs):
        """Connect to ``address`` and say hello. For tls:// the server's
        certificate is checked against ``cafile`` (or the system's CAs);
        ``ssl_context`` (see :func:`client_tls_context`) replaces both and
        may carry a client certificate."""
        kind, where, port = parse_address(address)
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(where)
            except BaseException:
                sock.close()
                raise
        else:
            # Before the connection: a CA file that cannot be loaded leaves no socket open.
            context = (ssl_context or client_tls_context(cafile)) if kind == "tls" else None
            sock = socket.create_connection((where, port), timeout=timeout)
            if context is not None:
                try:
                    sock = context.wrap_socket(sock, server_hostname=where)
                except BaseException:
                    sock.close()
                    raise
        try:
            return cls(sock, token=token, timeout=timeout, **kwargs)
        except BaseException:
            sock.close()
            raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- frames ------------------------------------------------------------

    def send(self, message):
        self.sock.sendall(encode_frame(message))

    def _recv_exact(self, size):
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            try:
                n = self.sock.recv_into(view[got:], size - got)
            except socket.timeout:
                raise TimeoutError("the agent sent nothing for %s s" % self.sock.gettimeout()) from None
            if n == 0:
                raise ConnectionError("the agent closed the connection")
            got += n
        return bytes(buf)

    def receive(self):
        """The next message (a dict), and the frame's size in bytes."""
        (length,) = HEADER.unpack(self._recv_exact(HEADER.size))
        if length > self.max_frame_bytes:
            raise ProtocolError(Error.FRAME_TOO_LARGE, "the agent sent a frame of %d bytes" % length)
        message = decode_payload(self._recv_exact(length))
        self.bytes_received += HEADER.size + length
        return message, HEADER.size + length

    def _reply(self, expected):
        """The next message, which must be of type ``expected``; an error frame raises."""
        message, _ = self.receive()
        kind = message["type"]
        if kind == P.ERROR:
            raise _error(message)
        if kind not in expected:
            raise ProtocolError(Error.OUT_OF_ORDER,
                                "expected %s, the agent sent %r" % ("/".join(expected), kind))
        return message

    def _hello(self, token, name):
        hello = {"type": P.HELLO, "versions": list(P.SUPPORTED_VERSIONS), "client": name,
                 "schema_versions": [SCHEMA_VERSION], "capabilities": ["delta"]}
        if token is not None:
            hello["token"] = token
        self.send(hello)
        return self._reply((P.HELLO,))

    # -- requests ----------------------------------------------------------

    def ping(self):
        self.send({"type": P.PING})
        self._reply((P.PONG,))

    def info(self):
        self.send({"type": P.INFO})
        return self._reply((P.INFO,))

    def latest(self):
        """The newest record, or None when the agent has taken none yet."""
        self.send({"type": P.LATEST})
        try:
            message = self._reply((P.RECORD,))
        except ProtocolError as exc:
            if exc.code == Error.NOT_FOUND:
                return None
            raise
        return _record(message)

    def incidents(self, limit=None):
        """The agent's incident summaries, newest first: the reply's map
        (``incidents``, ``total``, ``more``, ``enabled``)."""
        request = {"type": P.INCIDENTS}
        if limit is not None:
            request["limit"] = limit
        self.send(request)
        return self._reply((P.INCIDENTS,))

    def incident(self, incident_id):
        """The bytes of one incident's bundle (store/incidents.py), or None when the agent keeps no such incident."""
        self.send({"type": P.INCIDENT, "incident": incident_id})
        try:
            message = self._reply((P.INCIDENT,))
        except ProtocolError as exc:
            if exc.code == Error.NOT_FOUND:
                return None
            raise
        bundle = message.get("bundle")
        if not isinstance(bundle, bytes):
            raise ProtocolError(Error.BAD_FRAME, "an incident reply without a bundle")
        return bundle

    def range_page(self, from_seq=None, to_seq=None, from_ns=None, to_ns=None, boot_id=None, limit=None):
        """One page of stored records (at most ``limit``, at most the agent's max page)."""
        request = {"type": P.RANGE}
        for name, value in (("from_seq", from_seq), ("to_seq", to_seq), ("from_ns", from_ns),
                            ("to_ns", to_ns), ("boot_id", boot_id), ("limit", limit)):
            if value is not None:
                request[name] = value
        self.send(request)
        records = []
        while True:
            message = self._reply((P.RECORD, P.RANGE_END))
            if message["type"] == P.RECORD:
                records.append(_record(message))
                continue
            gone = [Gone(message.get("boot_id"), g.get("from_seq"), g.get("to_seq"),
                         message.get("oldest_seq"), g.get("reason") or "not_kept")
                    for g in message.get("gone") or ()]
            gone.extend(Gone(message.get("boot_id"), seq, seq, message.get("oldest_seq"), "too_large")
                        for seq in message.get("too_large") or ())
            gone.sort(key=lambda g: g.from_seq)
            return RangePage(records, bool(message.get("more")), message.get("next_seq"), gone,
                             message.get("oldest_seq"), message.get("newest_seq"))

    def range(self, from_seq=None, to_seq=None, from_ns=None, to_ns=None, boot_id=None, page=None):
        """Every stored record matching, page by page, seq ascending."""
        while True:
            result = self.range_page(from_seq, to_seq, from_ns, to_ns, boot_id, page)
            yield from result.records
            if not result.more:
                return
            from_seq = result.next_seq

    def subscribe(self, from_seq=None, boot_id=None, full_every=None, idle_timeout=None):
        """A :class:`Subscription`: stored records from ``(boot_id, from_seq)``
        on, then each new one as it is taken. Without ``from_seq``: new
        records only. ``idle_timeout``: seconds to wait for a record before
        TimeoutError (None: for ever)."""
        return Subscription(self, from_seq, boot_id, full_every, idle_timeout)


class Subscription:
    """Iterates over :class:`SnapshotRecord` (deltas applied) and :class:`Gone`
    notices. :meth:`request_full` asks for the next record whole. While it
    lasts the connection serves only the subscription; :meth:`unsubscribe`
    gives the client back."""

    def __init__(self, client, from_seq, boot_id, full_every, idle_timeout):
        self.client = client
        self.idle_timeout = idle_timeout
        self.full_every = full_every
        self.base = None  # the last SnapshotRecord yielded
        self.prior = {}  # top-level key -> (seq, newest non-null value received)
        self.resubscribed = 0
        self.reply = self._start(from_seq, boot_id)

    def _start(self, from_seq, boot_id):
        request = {"type": P.SUBSCRIBE}
        if from_seq is not None:
            request["from_seq"] = from_seq
        if boot_id is not None:
            request["boot_id"] = boot_id
        if self.full_every is not None:
            request["full_every"] = self.full_every
        self.client.send(request)
        return self.client._reply((P.SUBSCRIBED,))

    def request_full(self):
        self.client.send({"type": P.FULL})

    def close(self):
        self.client.close()

    def __iter__(self):
        return self

    def __next__(self):
        client = self.client
        client.sock.settimeout(self.idle_timeout)
        try:
            while True:
                message, size = client.receive()
                kind = message["type"]
                if kind == P.SNAPSHOT:
                    return self._keep(_record(message, full=True, frame_bytes=size))
                if kind == P.DELTA:
                    record = self._apply(message, size)
                    if record is not None:
                        return record
                    continue
                if kind == P.GONE:
                    return Gone(message.get("boot_id"), message.get("from_seq"), message.get("to_seq"),
                                message.get("oldest_seq"), message.get("reason") or "not_kept")
                if kind == P.ERROR:
                    raise _error(message)
                # A pong or another reply to a control request: not a record.
        finally:
            client.sock.settimeout(client.timeout)

    def _keep(self, record):
        self.base = record
        for key, value in record.snapshot.items():
            if value is not None:
                self.prior[key] = (record.seq, value)
        return record

    def _apply(self, message, size):
        base = self.base
        wanted = message.get("prior") or {}
        if (base is not None and base.boot_id == message.get("boot_id")
                and base.seq == message.get("base_seq") and type(wanted) is dict
                and all(self.prior.get(key, (None,))[0] == seq for key, seq in wanted.items())):
            prior = {key: self.prior[key][1] for key in wanted}
            try:
                snapshot = apply_delta(message["delta"], base.snapshot, prior)
            except (ValueError, KeyError):
                snapshot = None
            if snapshot is not None:
                return self._keep(SnapshotRecord(message["boot_id"], message["seq"], message["wall_ns"],
                                                 snapshot, full=False, frame_bytes=size, change=message["delta"],
                                                 base_seq=base.seq, base=base.snapshot, prior=prior))
        # A delta against something we do not hold: never expected, but the
        # cure is cheap: start again from this record.
        self._resubscribe(message.get("boot_id"), message.get("seq"))
        return None

    def unsubscribe(self):
        """End the subscription; the client then serves requests again. Stream
        frames still in flight are discarded."""
        self.client.send({"type": P.UNSUBSCRIBE})
        while True:
            message, _ = self.client.receive()
            if message["type"] == P.UNSUBSCRIBED:
                return
            if message["type"] == P.ERROR:
                raise _error(message)

    def _resubscribe(self, boot_id, seq):
        self.resubscribed += 1
        self.unsubscribe()
        self.base = None
        self.prior = {}
        self.reply = self._start(seq, boot_id)


def _record(message, full=True, frame_bytes=0):
    snapshot = message.get("snapshot")
    if type(snapshot) is not dict:
        raise ProtocolError(Error.BAD_FRAME, "a %s frame without a snapshot map" % message.get("type"))
    return SnapshotRecord(message.get("boot_id"), message.get("seq"), message.get("wall_ns"), snapshot,
                          full=full, frame_bytes=frame_bytes)


def _error(message):
    code = message.get("code")
    code = code if type(code) is int else Error.INTERNAL
    return ProtocolError(code, str(message.get("message", "")))
