"""The SLO counters of the probes on disk, so that a restart keeps the 30-day
window (docs/availability.md, "State file").

One file, ``slo.state`` in the spool directory: a magic line, then the
zlib-compressed msgpack map ``{"version": 1, "bucket_s": 60, "minutes":
43200, "probes": {name: {"newest", "good", "total"}}}``
(:meth:`hostdiag.derive.slo.SloCounters.to_state`). It is written whole to a
temporary file, fsynced and renamed over the old one, so a crash leaves the
old file or the new one, never a mix. Its size: the counters compress to a
few KiB per probe (at most 169 KiB each uncompressed).
"""

import os
import zlib

import msgpack

from hostdiag.derive.slo import BUCKET_S, RING_MINUTES, SloCounters

FILE_NAME = "slo.state"
MAGIC = b"hostdiag slo state\n"
VERSION = 1
# A state file larger than this is not read (64 probes compress far below it).
MAX_STATE_BYTES = 64 * 1024 * 1024


class StateError(Exception):
    """The state file cannot be used; ``str()`` is one line with the reason."""


def state_path(directory):
    return os.path.join(directory, FILE_NAME)


def save_state(path, states):
    """Write ``states`` ({probe name: SloCounters.to_state()}) to ``path`` atomically."""
    document = {"version": VERSION, "bucket_s": BUCKET_S, "minutes": RING_MINUTES, "probes": dict(states)}
    payload = MAGIC + zlib.compress(msgpack.packb(document, use_bin_type=True), 1)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640), "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_state(path):
    """{probe name: SloCounters} from ``path``; {} when there is no file.
    Raises :class:`StateError` for a file that cannot be used."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    if len(raw) > MAX_STATE_BYTES:
        raise StateError("%s is larger than %d bytes" % (path, MAX_STATE_BYTES))
    if not raw.startswith(MAGIC):
        raise StateError("%s is not an SLO state file" % path)
    try:
        document = msgpack.unpackb(zlib.decompress(raw[len(MAGIC):]), raw=False)
    except (zlib.error, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StateError("%s is damaged: %s" % (path, exc)) from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise StateError("%s has an unknown version" % path)
    if document.get("bucket_s") != BUCKET_S or document.get("minutes") != RING_MINUTES:
        raise StateError("%s counts other buckets (%r s x %r)" % (path, document.get("bucket_s"),
                                                                  document.get("minutes")))
    probes = document.get("probes")
    if not isinstance(probes, dict):
        raise StateError("%s has no probes map" % path)
    out = {}
    for name, state in probes.items():
        try:
            out[str(name)] = SloCounters.from_state(state)
        except ValueError as exc:
            raise StateError("%s: probe %s: %s" % (path, name, exc)) from None
    return out
