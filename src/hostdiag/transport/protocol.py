"""The agent protocol's vocabulary: versions, message types, capabilities,
error codes and bounds. docs/protocol.md is the normative description; the
names here are the ones it uses.
"""

# The version of the framing and message set. A hello offers a list of
# versions; the server picks the highest it shares with the client.
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Requests (client to server).
HELLO = "hello"
INFO = "info"
LATEST = "latest"
RANGE = "range"
SUBSCRIBE = "subscribe"
FULL = "full"
UNSUBSCRIBE = "unsubscribe"
PING = "ping"
INCIDENTS = "incidents"    # the incidents kept (also the reply's type)
INCIDENT = "incident"      # one incident's bundle (also the reply's type)
REQUESTS = (HELLO, INFO, LATEST, RANGE, SUBSCRIBE, FULL, UNSUBSCRIBE, PING, INCIDENTS, INCIDENT)

# Replies and stream frames (server to client).
RECORD = "record"          # one stored snapshot, whole (latest, range)
RANGE_END = "range_end"    # closes the records of one range page
SUBSCRIBED = "subscribed"  # acknowledges subscribe
SNAPSHOT = "snapshot"      # a subscription frame carrying a whole snapshot
DELTA = "delta"            # a subscription frame carrying a delta
GONE = "gone"              # records the client asked for that no longer exist
UNSUBSCRIBED = "unsubscribed"
PONG = "pong"
ERROR = "error"

# What this server implements; a hello reply lists them.
CAPABILITIES = (
    "info", "latest", "range", "range_by_time", "subscribe", "delta",
    "full_on_request", "gone", "boots", "ping", "incidents",
)
# Listed in addition when they are in effect on the listener the client used.
CAP_TOKEN = "token"
CAP_TLS = "tls"

# Bounds a client can rely on (docs/protocol.md, "Limits").
# Each is declared here once: the settings (apps/config.py) and the server
# check against these, and docs/protocol.md and docs/config.md state them.
MAX_REQUEST_BYTES = 64 * 1024          # a request frame from a client
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
MIN_FRAME_BYTES = 64 * 1024            # server.max_frame_bytes, bytes: lowest allowed...
MAX_FRAME_BYTES = 64 * 1024 * 1024     # ...and highest allowed
MAX_PAGE = 1000                        # records per range page
DEFAULT_PAGE = 100
DEFAULT_FULL_EVERY = 60                # a whole snapshot every N subscription frames
MAX_FULL_EVERY = 3600                  # highest full_every, in a subscribe and in server.full_every
FIRST_SEQ = 1                          # the history numbers the records of every boot from 1
MAX_INCIDENTS_LISTED = 1000            # summaries in one incidents reply...
DEFAULT_INCIDENTS_LISTED = 100         # ...and when the request gives no limit
MAX_INCIDENT_ID_CHARS = 64


class Error:
    """Error codes: ``{"type": "error", "code": int, "name": str, "message": str}``.

    1xx: the frame or the session is unusable; the server closes the
    connection after the error frame. 2xx: the request is refused; the
    connection stays open. 3xx: the server's own state; fatal ones close.
    """

    BAD_FRAME = 100            # malformed msgpack, not a map, no "type"
    FRAME_TOO_LARGE = 101      # a frame longer than the limit
    HELLO_REQUIRED = 102       # a request before hello
    UNSUPPORTED_VERSION = 103  # no protocol version in common
    AUTH_FAILED = 104          # missing or wrong token on TCP
    READ_TIMEOUT = 105         # no hello, or a frame left unfinished, for too long
    UNKNOWN_TYPE = 200         # a "type" this server does not know
    BAD_REQUEST = 201          # a field missing, of the wrong type or out of range
    OUT_OF_ORDER = 202         # a request that is not valid in this state
    NOT_FOUND = 203            # no such record or boot
    RECORD_TOO_LARGE = 204     # a record that does not fit in one frame
    TOO_MANY_CLIENTS = 300     # max clients reached; closes
    SLOW_CLIENT = 301          # the client read too slowly; closes
    SHUTTING_DOWN = 302        # the agent is stopping; closes
    INTERNAL = 303             # a bug; the request failed, the session goes on

    FATAL = frozenset({100, 101, 102, 103, 104, 105, 300, 301, 302})

    NAMES = {
        100: "bad_frame", 101: "frame_too_large", 102: "hello_required",
        103: "unsupported_version", 104: "auth_failed", 105: "read_timeout",
        200: "unknown_type", 201: "bad_request", 202: "out_of_order",
        203: "not_found", 204: "record_too_large",
        300: "too_many_clients", 301: "slow_client", 302: "shutting_down",
        303: "internal",
    }


def error_message(code, message, request_id=None):
    """The error frame's map."""
    msg = {"type": ERROR, "code": code, "name": Error.NAMES[code], "message": message}
    if request_id is not None:
        msg["id"] = request_id
    return msg


class ProtocolError(Exception):
    """A peer broke the protocol, or the server answered with an error frame."""

    def __init__(self, code, message, fatal=None):
        super().__init__("%s (%d): %s" % (Error.NAMES.get(code, "error"), code, message))
        self.code = code
        self.name = Error.NAMES.get(code, "error")
        self.message = message
        self.fatal = code in Error.FATAL if fatal is None else fatal
