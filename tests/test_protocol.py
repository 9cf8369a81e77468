"""The wire protocol: framing in isolation, then a real agent fed garbage,
truncated, oversized and out-of-order frames (hypothesis-generated too), resume
semantics (what is gone), and TCP with a token and TLS.

After every hostile exchange the server must still serve another client.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostdiag.transport import protocol as P
from hostdiag.transport.client import AgentClient, Gone, SnapshotRecord, parse_address
from hostdiag.transport.framing import (
    HEADER, FrameDecoder, decode_payload, encode_frame, encode_frame_with_document,
)
from hostdiag.transport.protocol import Error, ProtocolError

from agentproc import AgentProcess

RING_RECORDS = 15
READ_TIMEOUT_S = 1.0


# -- framing --------------------------------------------------------------------


def test_frame_round_trip_fed_byte_by_byte():
    messages = [{"type": "hello", "versions": [1]}, {"type": "x", "blob": b"\x00" * 70000, "n": -1},
                {"type": "info", "id": "abc", "nested": {"a": [1, 2.5, None, True]}}]
    stream = b"".join(encode_frame(m) for m in messages)
    assert stream[:4] == HEADER.pack(len(msgpack.packb(messages[0])))
    decoder = FrameDecoder(1 << 20)
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i:i + 1]))
        if i == 2:
            assert decoder.partial
    assert out == messages and not decoder.partial


def test_a_frame_with_a_spliced_document_equals_the_plain_encoding():
    document = {"meta": {"wall_ns": 123}, "cpu": {"total": {"user": 5}}}
    head = {"type": "record", "boot_id": "b", "seq": 7, "wall_ns": 123}
    spliced = encode_frame_with_document(head, "snapshot", msgpack.packb(document))
    decoded = FrameDecoder(1 << 20).feed(spliced)
    assert decoded == [dict(head, snapshot=document)]
    many = {"type": "t", **{"k%d" % i: i for i in range(20)}}  # map16 header
    assert FrameDecoder(1 << 20).feed(encode_frame_with_document(many, "d", msgpack.packb(1))) == \
        [dict(many, d=1)]


@pytest.mark.parametrize("stream,code", [
    (HEADER.pack(0), Error.BAD_FRAME),
    (HEADER.pack(3) + b"\xc1\xc1\xc1", Error.BAD_FRAME),                    # never-used msgpack byte
    (HEADER.pack(2) + msgpack.packb([1]), Error.BAD_FRAME),                 # not a map
    (HEADER.pack(3) + msgpack.packb({"a": 1}), Error.BAD_FRAME),            # no type
    (HEADER.pack(4) + msgpack.packb({"type": 1}), Error.BAD_FRAME),         # type not a str
    (HEADER.pack(5) + b"\xdd\xff\xff\xff\xff", Error.BAD_FRAME),            # array claiming 4G items
    (HEADER.pack(6) + b"\xc7\x01\x05\x00\x81\xa1", Error.BAD_FRAME),       # ext types refused
    (HEADER.pack(1 << 31), Error.FRAME_TOO_LARGE),                          # refused before the body
])
def test_decoder_refuses_malformed_frames(stream, code):
    with pytest.raises(ProtocolError) as err:
        FrameDecoder(1 << 20).feed(stream)
    assert err.value.code == code


def test_decoder_refuses_deep_nesting_and_non_str_keys():
    deep = b"\x91" * 5000 + b"\x00"
    with pytest.raises(ProtocolError):
        decode_payload(deep)
    with pytest.raises(ProtocolError):
        decode_payload(msgpack.packb({1: 2, "type": "x"}))  # non-str map keys


def test_truncated_frame_is_held_not_decoded():
    frame = encode_frame({"type": "info"})
    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(frame[:-1]) == [] and decoder.partial
    assert decoder.feed(frame[-1:]) == [{"type": "info"}]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_hypothesis_decoder_never_fails_unexpectedly(data):
    try:
        for message in FrameDecoder(256).feed(data):
            assert isinstance(message, dict) and isinstance(message["type"], str)
    except ProtocolError as exc:
        assert exc.code in (Error.BAD_FRAME, Error.FRAME_TOO_LARGE)


def test_parse_address():
    assert parse_address("unix:/run/a.sock") == ("unix", "/run/a.sock", None)
    assert parse_address("/run/a.sock") == ("unix", "/run/a.sock", None)
    assert parse_address("tcp://127.0.0.1:7781") == ("tcp", "127.0.0.1", 7781)
    assert parse_address("tcp:127.0.0.1:7781") == ("tcp", "127.0.0.1", 7781)
    assert parse_address("tls://[::1]:9") == ("tls", "::1", 9)
    for bad in ("http://x", "tcp://:1", "tcp://h:0", "tcp://h:x"):
        with pytest.raises(ValueError):
            parse_address(bad)


# -- a real server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def agent():
    """Memory only, a small ring (so that history ages out), a short read timeout."""
    path = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    proc = AgentProcess(path, spool={"enabled": False}, ring={"max_records": RING_RECORDS},
                        server={"read_timeout": READ_TIMEOUT_S, "max_clients": 256})
    proc.start()
    try:
        proc.wait_ready().close()
        yield proc
        assert proc.stop() == 0
        log = proc.read_log()
        assert "Traceback" not in log and "Exception in callback" not in log, log[-4000:]
    finally:
        proc.kill()
        shutil.rmtree(path, ignore_errors=True)


def raw(agent, hello=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(agent.sock_path)
    if hello:
        s.sendall(encode_frame({"type": "hello", "versions": [1]}))
        assert read_messages(s, count=1)[0]["type"] == "hello"
    return s


def read_messages(s, count=None, decoder=None):
    """Messages until ``count`` are read, or until the server closes."""
    decoder = decoder or FrameDecoder(64 << 20)
    out = []
    while count is None or len(out) < count:
        try:
            data = s.recv(1 << 16)
        except ConnectionResetError:
            break
        if not data:
            break
        out.extend(decoder.feed(data))
    return out


def assert_still_serving(agent):
    with agent.client(timeout=10) as client:
        client.ping()
        assert client.latest() is not None


def expect_error_then_close(s, code):
    messages = read_messages(s)
    assert messages and messages[-1]["type"] == "error", messages
    assert messages[-1]["code"] == code and messages[-1]["name"] == Error.NAMES[code]
    assert isinstance(messages[-1]["message"], str)
    s.close()


def test_garbage_gets_an_error_frame_and_a_close(agent):
    s = raw(agent, hello=False)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a length of 1.2 GB
    expect_error_then_close(s, Error.FRAME_TOO_LARGE)
    s = raw(agent)
    s.sendall(HEADER.pack(4) + b"\xc1\xff\x00\x01")
    expect_error_then_close(s, Error.BAD_FRAME)
    assert_still_serving(agent)


def test_oversized_frame_is_refused_before_its_body(agent):
    s = raw(agent)
    s.sendall(HEADER.pack(P.MAX_REQUEST_BYTES + 1))
    expect_error_then_close(s, Error.FRAME_TOO_LARGE)
    assert_still_serving(agent)


def test_truncated_frame_times_out(agent):
    s = raw(agent)
    frame = encode_frame({"type": "info"})
    s.sendall(frame[:-2])
    started = time.monotonic()
    expect_error_then_close(s, Error.READ_TIMEOUT)
    assert READ_TIMEOUT_S * 0.8 <= time.monotonic() - started < READ_TIMEOUT_S + 5
    # No hello at all times out the same way.
    s = raw(agent, hello=False)
    expect_error_then_close(s, Error.READ_TIMEOUT)
    assert_still_serving(agent)


def test_out_of_order_frames(agent):
    s = raw(agent, hello=False)
    s.sendall(encode_frame({"type": "latest"}))
    expect_error_then_close(s, Error.HELLO_REQUIRED)

    s = raw(agent)
    for request, code in (
        ({"type": "full", "id": 1}, Error.OUT_OF_ORDER),
        ({"type": "unsubscribe", "id": 2}, Error.OUT_OF_ORDER),
        ({"type": "hello", "versions": [1], "id": 3}, Error.OUT_OF_ORDER),
        ({"type": "frobnicate", "id": 4}, Error.UNKNOWN_TYPE),
        ({"type": "range", "from_seq": "one", "id": 5}, Error.BAD_REQUEST),
        ({"type": "range", "limit": 0, "id": 6}, Error.BAD_REQUEST),
        ({"type": "subscribe", "boot_id": "x", "id": 7}, Error.BAD_REQUEST),
        ({"type": "info", "id": [1]}, Error.BAD_REQUEST),
    ):
        s.sendall(encode_frame(request))
        reply = read_messages(s, count=1)[0]
        assert reply["type"] == "error" and reply["code"] == code, (request, reply)
        if "id" in request and not isinstance(request["id"], list):
            assert reply["id"] == request["id"]
    # Refused requests leave the session usable.
    s.sendall(encode_frame({"type": "ping", "id": "p"}))
    assert read_messages(s, count=1) == [{"type": "pong", "id": "p"}]
    # While subscribed, only full, ping and unsubscribe are valid.
    s.sendall(encode_frame({"type": "subscribe"}))
    assert read_messages(s, count=1)[0]["type"] == "subscribed"
    s.sendall(encode_frame({"type": "info", "id": 9}))
    decoder = FrameDecoder(64 << 20)
    while True:
        reply = read_messages(s, count=1, decoder=decoder)[0]
        if reply["type"] == "error":
            break
    assert reply["code"] == Error.OUT_OF_ORDER and reply["id"] == 9
    s.sendall(encode_frame({"type": "unsubscribe"}))
    while read_messages(s, count=1, decoder=decoder)[0]["type"] != "unsubscribed":
        pass
    s.close()
    assert_still_serving(agent)


def test_pipelined_requests_are_answered_in_order(agent):
    s = raw(agent)
    s.sendall(b"".join(encode_frame({"type": t, "id": i})
                       for i, t in enumerate(["ping", "info", "latest", "ping"] * 10)))
    replies = read_messages(s, count=40)
    assert [r["id"] for r in replies] == list(range(40))
    assert [r["type"] for r in replies[:4]] == ["pong", "info", "record", "pong"]
    s.close()


def test_unsupported_version_is_refused(agent):
    s = raw(agent, hello=False)
    s.sendall(encode_frame({"type": "hello", "versions": [99, 100]}))
    expect_error_then_close(s, Error.UNSUPPORTED_VERSION)


def _frame_of(body):
    return HEADER.pack(len(body)) + body


# Every integer msgpack can carry.
wire_ints = st.integers(-(2 ** 63), 2 ** 64 - 1)
request_maps = st.fixed_dictionaries(
    {"type": st.sampled_from(list(P.REQUESTS) + ["", "x" * 100, "record"])},
    optional={
        "id": st.one_of(wire_ints, st.text(max_size=80), st.lists(st.integers(0, 9), max_size=2)),
        "from_seq": st.one_of(wire_ints, st.integers(-5, 50), st.text(max_size=3), st.none()),
        "to_seq": st.one_of(st.integers(-5, 2 ** 40), st.floats()),
        "from_ns": wire_ints,
        "limit": st.one_of(st.integers(-3, 5000), st.booleans()),
        "boot_id": st.one_of(st.text(max_size=40), st.uuids().map(str), st.binary(max_size=4)),
        "versions": st.lists(st.one_of(st.integers(-2, 3), st.text(max_size=2)), max_size=3),
        "full_every": st.integers(-2, 10 ** 6),
        "token": st.text(max_size=5),
    })
HELLO_FRAME = encode_frame({"type": "hello", "versions": [1]})
chunks = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=40).map(_frame_of),
    request_maps.map(lambda m: _frame_of(msgpack.packb(m))),
    st.just(HELLO_FRAME),
)


def exchange(agent, stream):
    """Send ``stream``, close our side, and read every reply until the server
    closes; a subscription never ends by itself, so it is read for a moment."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.1)
    s.connect(agent.sock_path)
    decoder = FrameDecoder(64 << 20)
    messages = []
    deadline = time.monotonic() + 15
    subscribed_at = None
    try:
        s.sendall(stream)
        s.shutdown(socket.SHUT_WR)
        while subscribed_at is None or time.monotonic() < subscribed_at + 0.3:
            assert time.monotonic() < deadline, "the server neither answered nor closed: %s" % messages
            try:
                data = s.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                break
            messages.extend(decoder.feed(data))
            if subscribed_at is None and any(m["type"] == "subscribed" for m in messages):
                subscribed_at = time.monotonic()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    for message in messages:
        if message["type"] == "error":
            assert message["code"] in Error.NAMES and message["code"] != Error.INTERNAL, message
    return messages


@given(st.lists(chunks, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_hypothesis_streams_against_the_real_server(agent, parts):
    exchange(agent, b"".join(parts))
    assert_still_serving(agent)


@given(st.lists(request_maps, min_size=1, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_hypothesis_requests_after_hello_are_answered_never_crash(agent, requests):
    stream = HELLO_FRAME + b"".join(_frame_of(msgpack.packb(r)) for r in requests)
    messages = exchange(agent, stream)
    assert messages and messages[0]["type"] == "hello"
    assert_still_serving(agent)


def test_requests_then_half_close_are_all_answered(agent):
    stream = HELLO_FRAME + b"".join(encode_frame({"type": t, "id": i})
                                    for i, t in enumerate(["ping", "latest", "info"]))
    messages = exchange(agent, stream)
    assert [m["type"] for m in messages] == ["hello", "pong", "record", "info"]


# -- resume semantics ---------------------------------------------------------------


def _rolled_over(agent):
    """Wait until the small ring has dropped seq 1; the info."""
    deadline = time.monotonic() + 30
    with agent.client() as client:
        while True:
            info = client.info()
            if info["oldest_seq"] > 3:
                return info
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_resuming_from_records_no_longer_kept_is_told_exactly_what_is_gone(agent):
    info = _rolled_over(agent)
    with agent.client() as client:
        sub = client.subscribe(from_seq=1, boot_id=info["boot_id"], idle_timeout=10)
        first = next(sub)
        assert isinstance(first, Gone)
        assert first.boot_id == info["boot_id"] and first.from_seq == 1
        assert first.to_seq == first.oldest_seq - 1 >= 3
        records = [next(sub) for _ in range(RING_RECORDS + 5)]
    assert all(isinstance(r, SnapshotRecord) for r in records)
    assert [r.seq for r in records] == list(range(first.to_seq + 1, first.to_seq + 1 + len(records)))

    with agent.client() as client:
        page = client.range_page(from_seq=1, limit=5)
        assert page.records[0].seq == page.oldest_seq > 1
        assert page.gone[0].from_seq == 1 and page.gone[0].to_seq == page.oldest_seq - 1


def test_resuming_an_unknown_boot_says_so_then_sends_what_is_kept(agent):
    _rolled_over(agent)
    gone_boot = "11111111-2222-3333-4444-555555555555"
    with agent.client() as client:
        sub = client.subscribe(from_seq=40, boot_id=gone_boot, idle_timeout=10)
        first, second, third = next(sub), next(sub), next(sub)
    assert isinstance(first, Gone) and first.boot_id == gone_boot and first.to_seq is None
    assert first.reason == "boot_not_kept"
    assert isinstance(second, Gone) and second.from_seq == 1 and second.boot_id == sub.reply["boot_id"]
    assert isinstance(third, SnapshotRecord) and third.seq == second.to_seq + 1 and third.full


def test_subscribing_ahead_of_the_newest_waits_for_it(agent):
    with agent.client() as client:
        newest = client.latest().seq
        sub = client.subscribe(from_seq=newest + 3, idle_timeout=10)
        first = next(sub)
    assert isinstance(first, SnapshotRecord) and first.seq == newest + 3 and first.full


# -- TCP: token, TLS, max clients -------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_agent():
    path = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    cert, key, token_file = (os.path.join(path, n) for n in ("cert.pem", "key.pem", "token"))
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True)
    if made.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        pytest.skip("openssl could not make a test certificate: %s" % made.stderr.decode()[-200:])
    with open(token_file, "w") as f:
        f.write("s3cret-token\n")
    os.chmod(token_file, 0o600)
    port = _free_port()
    proc = AgentProcess(path, spool={"enabled": False}, server={"max_clients": 4},
                        tcp={"enabled": True, "listen": "127.0.0.1:%d" % port, "token_file": token_file,
                             "tls_cert": cert, "tls_key": key})
    proc.start()
    try:
        proc.wait_ready().close()
        proc.address = "tls://127.0.0.1:%d" % port
        proc.cafile = cert
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(path, ignore_errors=True)


def test_tls_with_the_right_token_is_served(tls_agent):
    with AgentClient.connect(tls_agent.address, token="s3cret-token", cafile=tls_agent.cafile) as client:
        assert "token" in client.server["capabilities"] and "tls" in client.server["capabilities"]
        assert client.latest() is not None


@pytest.mark.parametrize("token", [None, "", "s3cret-toke", "s3cret-token-", "S3CRET-TOKEN"])
def test_tls_without_the_right_token_is_refused(tls_agent, token):
    with pytest.raises(ProtocolError) as err:
        AgentClient.connect(tls_agent.address, token=token, cafile=tls_agent.cafile)
    assert err.value.code == Error.AUTH_FAILED


def test_plain_tcp_to_a_tls_listener_fails(tls_agent):
    with pytest.raises((ConnectionError, ProtocolError, TimeoutError, OSError)):
        AgentClient.connect(tls_agent.address.replace("tls://", "tcp://"), token="s3cret-token", timeout=5)


def test_max_clients_refuses_the_one_too_many(tls_agent):
    held = [tls_agent.client() for _ in range(4)]
    try:
        with pytest.raises((ProtocolError, ConnectionError)) as err:
            tls_agent.client()
        if isinstance(err.value, ProtocolError):
            assert err.value.code == Error.TOO_MANY_CLIENTS
    finally:
        for client in held:
            client.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with tls_agent.client() as client:
                assert client.latest() is not None
            break
        except (ProtocolError, ConnectionError):
            assert time.monotonic() < deadline
            time.sleep(0.05)
