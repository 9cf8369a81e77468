"""Where the agent's server listens: the Unix socket (default) and TCP with a
token, optional TLS and optional client certificates (docs/protocol.md,
"Transport" and "Security").

Binding is all this module does: the sessions on an accepted connection are
in handlers.py, their flow control in flow.py.
"""

import grp
import os
import socket
import ssl
import stat


class Listener:
    """Where to listen. ``kind`` is "unix" or "tcp"; TCP needs a token."""

    def __init__(self, kind, path=None, mode=0o660, group=None, host=None, port=None,
                 token=None, ssl_context=None):
        if kind == "tcp" and not token:
            raise ValueError("a TCP listener needs a token")
        self.kind = kind
        self.path = path
        self.mode = mode
        self.group = group
        self.host = host
        self.port = port
        self.token = token
        self.ssl_context = ssl_context

    def describe(self):
        if self.kind == "unix":
            return "unix:%s" % self.path
        return "%s://%s:%d" % ("tls" if self.ssl_context else "tcp", self.host, self.port)


def server_tls_context(cert, key, client_ca=None):
    """The TLS settings of a TCP listener: TLS 1.2 or later with the
    certificate chain ``cert`` and its private key ``key`` (PEM files). With
    ``client_ca`` (PEM file of CAs) a client must show a certificate one of
    them signed, or the handshake fails; the token is still asked for after
    it. A file that cannot be loaded raises ``ValueError`` naming the setting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError("tcp.tls_cert/tcp.tls_key: cannot load %s and %s: %s"
                         % (cert, key, _ssl_reason(exc))) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError("tcp.tls_client_ca: cannot load %s: %s" % (client_ca, _ssl_reason(exc))) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _ssl_reason(exc):
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


async def open_listener(loop, listener, factory, backlog, handshake_timeout):
    """An asyncio server accepting on ``listener`` with protocol ``factory``;
    a TCP listener on port 0 learns the port it was given. ``handshake_timeout``:
    seconds a TLS handshake may take."""
    if listener.kind == "unix":
        sock = bind_unix(listener.path, listener.mode, listener.group)
        return await loop.create_unix_server(factory, sock=sock, backlog=backlog)
    server = await loop.create_server(
        factory, host=listener.host, port=listener.port, backlog=backlog,
        ssl=listener.ssl_context, reuse_address=True,
        ssl_handshake_timeout=handshake_timeout if listener.ssl_context else None)
    if not listener.port:
        listener.port = server.sockets[0].getsockname()[1]
    return server


def bind_unix(path, mode, group):
    """A listening-ready Unix socket at ``path`` with ``mode`` and ``group``.

    A stale socket file (nobody accepting) is replaced; a live one is an error:
    another agent is serving there."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        except OSError as exc:
            raise OSError("cannot check the socket %s: %s" % (path, exc.strerror or exc)) from None
        else:
            raise OSError("another process is serving on %s" % path)
        finally:
            probe.close()
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not str(group).isdigit() else int(group)
        except KeyError:
            raise ValueError("server.unix_group: no group named %r" % group) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    try:
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
    except OSError:
        sock.close()
        unlink_socket(path)
        raise
    sock.setblocking(False)
    return sock


def unlink_socket(path):
    """Remove the socket file at ``path`` (nothing else that may be there)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
