"""os-release(5) (/etc/os-release, /usr/lib/os-release): the distribution's KEY=value lines.

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import decode


def parse_os_release(data):
    """os-release(5): KEY=value lines, values optionally quoted."""
    result = {}
    malformed = 0
    for line in data.split(b"\n"):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        key, eq, value = line.partition(b"=")
        if not eq or not key.replace(b"_", b"").isalnum():
            malformed += 1
            continue
        if len(value) >= 2 and value[:1] in (b'"', b"'") and value[-1:] == value[:1]:
            value = value[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        result[decode(key)] = decode(value)
    return result, malformed
