"""JSON and msgpack encodings of plain snapshot data.

Both are pure functions of the data and round-trip: ``decode_msgpack(
encode_msgpack(d)) == d``. They add nothing to the data (protocol frames and
spool records use them too): the schema version travels inside what is
encoded, as a snapshot's ``meta.schema_version``, the report document's
``schema_version`` and the protocol's hello and info (docs/protocol.md).
"""

import json

import msgpack

# A decoder never trusts the sender: these caps bound what one document can
# make the decoder allocate.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_UNPACK_LIMITS = dict(
    max_str_len=MAX_DOCUMENT_BYTES,
    max_bin_len=MAX_DOCUMENT_BYTES,
    max_array_len=4 * 1024 * 1024,
    max_map_len=4 * 1024 * 1024,
    max_ext_len=0,
)


def encode_msgpack(data):
    return msgpack.packb(data, use_bin_type=True)


def decode_msgpack(payload):
    """Plain data from msgpack bytes; raises ValueError on anything malformed."""
    if len(payload) > MAX_DOCUMENT_BYTES:
        raise ValueError("document of %d bytes exceeds the %d byte limit"
                         % (len(payload), MAX_DOCUMENT_BYTES))
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, **_UNPACK_LIMITS)
    except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError, ValueError, TypeError) as exc:
        raise ValueError("malformed msgpack document: %s" % exc) from None


def encode_json(data, indent=2):
    return (json.dumps(data, indent=indent, sort_keys=False, allow_nan=False) + "\n").encode()
