"""Client certificates on the TCP listener (mutual TLS), next to the token.

A real agent listens on loopback with ``tcp.tls_client_ca``; the certificates
are made here: one CA for the agent's own certificate, one CA whose client
certificates the agent accepts, and a stranger CA it does not know. A client
must show a certificate the accepted CA signed *and* the token.
"""

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hostdiag.apps.config import ConfigError, load_config
from hostdiag.apps.history import main_show
from hostdiag.transport.client import AgentClient, client_tls_context
from hostdiag.transport.listeners import server_tls_context
from hostdiag.transport.protocol import Error, ProtocolError
from agentproc import AgentProcess, CollectorProcess, write_toml

TOKEN = "mtls-token-0123"


class _Authority:
    """A CA that signs leaf certificates; everything is written as PEM under ``directory``."""

    def __init__(self, directory, name):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.label = name
        self.cert = (self._builder(subject, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = self._write(name + "-ca.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject, public_key):
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(getattr(self, "name", subject))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def _write(self, filename, data):
        path = os.path.join(self.directory, filename)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        return path

    def issue(self, name, server=False):
        """A leaf certificate for ``name``: (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path = self._write("%s-by-%s.pem" % (name, self.label), cert.public_bytes(serialization.Encoding.PEM))
        key_path = self._write("%s-by-%s-key.pem" % (name, self.label), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cert_path, key_path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pki():
    directory = tempfile.mkdtemp(prefix="hd-pki-", dir="/tmp")
    try:
        agent_ca = _Authority(directory, "agent")
        client_ca = _Authority(directory, "clients")
        stranger_ca = _Authority(directory, "stranger")
        yield {
            "dir": directory,
            "agent_ca": agent_ca.path,
            "server": agent_ca.issue("localhost", server=True),
            "client_ca": client_ca.path,
            "client": client_ca.issue("collector1"),
            "stranger": stranger_ca.issue("collector1"),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def mtls_agent(pki):
    path = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    token_file = os.path.join(path, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    port = _free_port()
    cert, key = pki["server"]
    proc = AgentProcess(path, spool={"enabled": False},
                        tcp={"enabled": True, "listen": "127.0.0.1:%d" % port, "token_file": token_file,
                             "tls_cert": cert, "tls_key": key, "tls_client_ca": pki["client_ca"]})
    proc.start()
    try:
        proc.wait_ready().close()
        proc.address = "tls://127.0.0.1:%d" % port
        proc.port = port
        proc.token_file = token_file
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(path, ignore_errors=True)


def _connect(agent, pki, client=None, token=TOKEN):
    certfile, keyfile = pki[client] if client else (None, None)
    context = client_tls_context(pki["agent_ca"], certfile, keyfile)
    return AgentClient.connect(agent.address, token=token, timeout=10, ssl_context=context)


def _assert_still_serving(agent, pki):
    with _connect(agent, pki, "client") as client:
        assert client.latest() is not None


def test_a_client_certificate_from_the_accepted_ca_with_the_token_is_served(mtls_agent, pki):
    with _connect(mtls_agent, pki, "client") as client:
        assert "tls" in client.server["capabilities"] and "token" in client.server["capabilities"]
        assert client.latest() is not None


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-certificate", "another-ca"])
def test_a_client_without_an_accepted_certificate_is_refused_at_the_handshake(mtls_agent, pki, client):
    # With TLS 1.3 the client learns of the refusal at its first read (an
    # alert), with TLS 1.2 in the handshake itself; never a hello reply.
    with pytest.raises((ssl.SSLError, ConnectionError)) as err:
        _connect(mtls_agent, pki, client).close()
    assert not isinstance(err.value, ProtocolError)
    _assert_still_serving(mtls_agent, pki)


@pytest.mark.parametrize("token", [None, "", TOKEN[:-1], TOKEN + "x"])
def test_the_token_is_still_required_with_a_good_certificate(mtls_agent, pki, token):
    with pytest.raises(ProtocolError) as err:
        _connect(mtls_agent, pki, "client", token=token)
    assert err.value.code == Error.AUTH_FAILED


def test_the_collector_pulls_with_its_client_certificate(mtls_agent, pki, tmp_path):
    info = _connect(mtls_agent, pki, "client").info()
    cert, key = pki["client"]
    collector = CollectorProcess(str(tmp_path), [])
    agent = {"name": "web1", "address": "tcp:127.0.0.1:%d" % mtls_agent.port, "token_file": mtls_agent.token_file,
             "tls_ca": pki["agent_ca"], "tls_cert": cert, "tls_key": key}
    write_toml(collector.config_path, {"collector": {"store": collector.store_dir}}, [agent])
    done = collector.run("--once")
    assert done.returncode == 0, done.stderr
    assert collector.stored_seqs("web1", info["boot_id"])

    del agent["tls_cert"], agent["tls_key"]
    write_toml(collector.config_path, {"collector": {"store": collector.store_dir}}, [agent])
    refused = collector.run("--once")
    assert refused.returncode == 1, refused.stderr


def test_the_collector_names_an_unreadable_client_certificate(mtls_agent, tmp_path):
    collector = CollectorProcess(str(tmp_path), [])
    missing = str(tmp_path / "missing.pem")
    write_toml(collector.config_path, {"collector": {"store": collector.store_dir}},
               [{"name": "web1", "address": "tcp:127.0.0.1:1", "token_file": mtls_agent.token_file,
                 "tls_cert": missing, "tls_key": missing}])
    done = collector.run("--once")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "collector.agents (web1): cannot load the client certificate %s" \
        % missing in done.stderr


def _show_args(agent, pki, *extra):
    return ["--at", "-0s", "--format", "json", "--agent", "tcp:127.0.0.1:%d" % agent.port,
            "--token-file", agent.token_file, "--tls-ca", pki["agent_ca"], *extra]


def test_show_presents_its_client_certificate(mtls_agent, pki, capsys):
    cert, key = pki["client"]
    assert main_show(_show_args(mtls_agent, pki, "--tls-cert", cert, "--tls-key", key)) == 0
    assert '"seq"' in capsys.readouterr().out


def test_show_without_a_client_certificate_fails_in_one_line(mtls_agent, pki, capsys):
    assert main_show(_show_args(mtls_agent, pki)) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach the agent" in err


def test_show_names_an_unloadable_client_certificate(mtls_agent, pki, capsys):
    assert main_show(_show_args(mtls_agent, pki, "--tls-cert", pki["agent_ca"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--tls-cert" in err and pki["agent_ca"] in err


def test_an_unloadable_client_ca_is_named(pki, tmp_path):
    cert, key = pki["server"]
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"^tcp\.tls_client_ca: cannot load %s" % bad):
        server_tls_context(cert, key, str(bad))


def test_client_certificates_need_tls_on_the_listener():
    with pytest.raises(ConfigError, match=r"^config: tcp\.tls_cert: is required when tcp\.tls_client_ca is set"):
        load_config(None, {}, {"tcp.tls_client_ca": "/etc/hostdiag/clients.pem"})


def test_a_collector_agent_client_certificate_needs_its_key():
    agents = '[{name = "web1", address = "tcp:h:1", token_file = "/t", tls_cert = "/c.pem"}]'
    with pytest.raises(ConfigError, match=r"collector\.agents\[0\]\.tls_key: is required when tls_cert is set"):
        load_config(None, {"HOSTDIAG_COLLECTOR_AGENTS": agents})


def test_a_client_ca_file_that_cannot_be_loaded_is_named(mtls_agent, tmp_path):
    missing = str(tmp_path / "no-ca.pem")
    with pytest.raises(ValueError, match="cannot load the CA file %s" % missing):
        AgentClient.connect(mtls_agent.address, token=TOKEN, cafile=missing)
