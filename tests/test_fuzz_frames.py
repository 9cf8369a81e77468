"""Property-based fuzzing of the frame decoder (transport/framing.py).

Whatever bytes a peer sends, and whatever msgpack document a frame holds,
the decoder returns messages or raises the documented ProtocolError with a
BAD_FRAME or FRAME_TOO_LARGE code: never another exception. Valid frames
come back equal, however the stream is cut. The budget is in fuzzsupport.py.
"""

import struct

import msgpack
from hypothesis import example, given
from hypothesis import strategies as st

from hostdiag.transport.framing import (
    HEADER, FrameDecoder, decode_document, decode_payload, encode_frame, encode_frame_with_document,
)
from hostdiag.transport.protocol import Error, ProtocolError

from fuzzsupport import FUZZ

MAX_FRAME_BYTES = 4096
DECODER_CODES = {Error.BAD_FRAME, Error.FRAME_TOO_LARGE}

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
)
KEYS = st.one_of(st.text(max_size=10), st.binary(max_size=6), st.integers(-5, 5))
# Any document msgpack can write: maps with keys of any kind, at any depth.
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)
# What a frame may carry: str keys everywhere, a str "type" at the top.
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=30)
MESSAGES = st.builds(lambda kind, rest: {**rest, "type": kind},
                     st.text(min_size=1, max_size=12), st.dictionaries(st.text(max_size=10), VALUES, max_size=6))


def _feed(data, cuts):
    """Feed ``data`` to a decoder in pieces cut at ``cuts``: the messages, or
    the ProtocolError it raised (any other exception fails the test)."""
    decoder = FrameDecoder(MAX_FRAME_BYTES)
    messages = []
    start = 0
    try:
        for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
            messages += decoder.feed(data[start:cut])
            start = cut
    except ProtocolError as exc:
        assert exc.code in DECODER_CODES, exc
        assert exc.message and "\n" not in exc.message
        return exc
    return messages


@FUZZ
@given(data=st.binary(max_size=1024), cuts=st.lists(st.integers(0, 1 << 16), max_size=6))
@example(data=b"\x00\x00\x00\x00", cuts=[])
@example(data=b"\xff\xff\xff\xff", cuts=[1])
@example(data=b"\x00\x00\x00\x01\xc1", cuts=[])             # a reserved msgpack byte
@example(data=b"\x00\x00\x00\x02\x81\xc0", cuts=[])         # a map cut after its key
@example(data=b"\x00\x00\x00\x05\xdf\xff\xff\xff\xff", cuts=[])  # a map claiming 4 G entries
@example(data=b"\x00\x00\x00\x03\xd4\x01\x00", cuts=[])     # an ext type
def test_arbitrary_bytes(data, cuts):
    _feed(data, cuts)


@FUZZ
@given(document=DOCUMENTS, bin_type=st.booleans())
@example(document={b"type": "x"}, bin_type=True)
@example(document={"type": b"x"}, bin_type=True)
@example(document={"type": "x", "a": {1: 2}}, bin_type=True)
@example(document=[{"type": "x"}], bin_type=True)
def test_arbitrary_documents(document, bin_type):
    payload = msgpack.packb(document, use_bin_type=bin_type)
    try:
        message = decode_payload(payload)
    except ProtocolError as exc:
        assert exc.code in DECODER_CODES, exc
    else:
        assert type(message) is dict and type(message["type"]) is str
        if bin_type:  # without the bin type, bytes were written as str and come back so
            assert message == document
    framed = _feed(HEADER.pack(len(payload)) + payload, [])
    assert isinstance(framed, ProtocolError) or len(framed) == 1


@FUZZ
@given(payload=st.binary(max_size=512), str_keys=st.booleans())
@example(payload=b"\x91" * 2000, str_keys=False)   # nested deeper than the stack would allow
@example(payload=b"\xdd\xff\xff\xff\xff", str_keys=False)
def test_arbitrary_documents_stored(payload, str_keys):
    try:
        decode_document(payload, str_keys=str_keys)
    except ProtocolError as exc:
        assert exc.code == Error.BAD_FRAME, exc


@FUZZ
@given(messages=st.lists(MESSAGES, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 1 << 16), max_size=8))
def test_valid_frames_round_trip(messages, cuts):
    stream = b"".join(encode_frame(m) for m in messages)
    if any(len(encode_frame(m)) - HEADER.size > MAX_FRAME_BYTES for m in messages):
        assert isinstance(_feed(stream, cuts), ProtocolError)
        return
    assert _feed(stream, cuts) == messages


@FUZZ
@given(message=MESSAGES, document=VALUES)
def test_a_spliced_document_round_trips(message, document):
    message.pop("record", None)
    frame = encode_frame_with_document(message, "record", msgpack.packb(document, use_bin_type=True))
    (length,) = struct.unpack(">I", frame[:4])
    assert decode_payload(frame[4:4 + length]) == {**message, "record": document}
