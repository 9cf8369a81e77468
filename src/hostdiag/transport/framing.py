"""Frames: a 4-byte big-endian unsigned length, then that many bytes of one
msgpack map with a str ``"type"``.

Encoding is a pure function of the message. Decoding never trusts the peer:
a declared length over the limit is refused before its body is read, and the
msgpack decoder's own limits are bounded by the frame's length, so one frame
can make the decoder allocate no more than a small multiple of its size.
"""

import struct

import msgpack

from hostdiag.encode.wire import MAX_DOCUMENT_BYTES, encode_msgpack
from hostdiag.transport.protocol import Error, ProtocolError

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
# The largest frame any reader of this package accepts, whatever it is configured to.
ABSOLUTE_MAX_FRAME_BYTES = min(MAX_DOCUMENT_BYTES, 0xFFFFFFFF)


def encode_frame(message, max_frame_bytes=ABSOLUTE_MAX_FRAME_BYTES):
    """The frame carrying ``message`` (a dict with a str "type")."""
    body = encode_msgpack(message)
    return _framed(body, max_frame_bytes)


def encode_frame_with_document(message, key, document, max_frame_bytes=ABSOLUTE_MAX_FRAME_BYTES):
    """The frame carrying ``message`` plus ``key`` whose value is ``document``,
    msgpack bytes already encoded (a stored snapshot), spliced in verbatim so
    that the server never decodes and re-encodes a record to send it."""
    parts = [_map_header(len(message) + 1)]
    for name, value in message.items():
        parts.append(encode_msgpack(name))
        parts.append(encode_msgpack(value))
    parts.append(encode_msgpack(key))
    parts.append(document)
    return _framed(b"".join(parts), max_frame_bytes)


def _map_header(count):
    if count < 16:
        return bytes((0x80 | count,))
    if count < 0x10000:
        return b"\xde" + struct.pack(">H", count)
    return b"\xdf" + struct.pack(">I", count)


def _framed(body, max_frame_bytes):
    if len(body) > max_frame_bytes:
        raise ProtocolError(Error.FRAME_TOO_LARGE, "a frame of %d bytes exceeds the %d byte limit"
                            % (len(body), max_frame_bytes), fatal=False)
    return HEADER.pack(len(body)) + body


def _str_keyed(pairs):
    """A map whose keys are all str (msgpack's own check lets bin keys through)."""
    for key, _ in pairs:
        if type(key) is not str:
            raise ValueError("a map key is %s, not str" % type(key).__name__)
    return dict(pairs)


def decode_document(payload, str_keys=False):
    """Plain data from msgpack bytes, with the decoder's limits bounded by the
    payload's own size (no length field can claim more elements or bytes than
    the payload holds). ``str_keys``: every map key at any depth must be a str
    (a frame); else str or bin (a stored snapshot, written by our encoder).
    Raises ProtocolError(BAD_FRAME)."""
    size = len(payload)
    try:
        return msgpack.unpackb(
            payload, raw=False, strict_map_key=True, use_list=True,
            object_pairs_hook=_str_keyed if str_keys else None,
            max_str_len=size, max_bin_len=size, max_array_len=size, max_map_len=size // 2,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, RecursionError,
            msgpack.exceptions.UnpackException) as exc:
        raise ProtocolError(Error.BAD_FRAME, "malformed msgpack: %s" % (exc,)) from None


def decode_payload(payload):
    """The message in one frame's body; raises ProtocolError(BAD_FRAME)."""
    if len(payload) > ABSOLUTE_MAX_FRAME_BYTES:
        raise ProtocolError(Error.FRAME_TOO_LARGE, "a frame of %d bytes" % len(payload))
    message = decode_document(payload, str_keys=True)
    if type(message) is not dict:
        raise ProtocolError(Error.BAD_FRAME, "a frame holds a map, not %s" % type(message).__name__)
    kind = message.get("type")
    if type(kind) is not str:
        raise ProtocolError(Error.BAD_FRAME, "a frame's map needs a str \"type\"")
    return message


class FrameDecoder:
    """Splits a byte stream into messages. Feed it whatever arrived; it
    returns the complete messages and keeps the rest. After it raises, the
    stream is out of step and the connection must close."""

    def __init__(self, max_frame_bytes):
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._need = None  # body length of the frame being read

    @property
    def partial(self):
        """True while a frame has begun to arrive and is not complete."""
        return self._need is not None or bool(self._buffer)

    def feed(self, data):
        self._buffer += data
        messages = []
        while True:
            if self._need is None:
                if len(self._buffer) < HEADER_BYTES:
                    return messages
                (length,) = HEADER.unpack_from(self._buffer)
                if length > self.max_frame_bytes:
                    raise ProtocolError(Error.FRAME_TOO_LARGE, "a frame of %d bytes exceeds the %d byte limit"
                                        % (length, self.max_frame_bytes))
                if length == 0:
                    raise ProtocolError(Error.BAD_FRAME, "an empty frame")
                del self._buffer[:HEADER_BYTES]
                self._need = length
            if len(self._buffer) < self._need:
                return messages
            payload = bytes(self._buffer[:self._need])
            del self._buffer[:self._need]
            self._need = None
            messages.append(decode_payload(payload))
