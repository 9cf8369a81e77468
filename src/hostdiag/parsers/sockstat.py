"""/proc/net/sockstat and /proc/net/sockstat6: socket counts per protocol.

The grammar is one ``PREFIX: name value name value ...`` group per line::

    sockets: used 9
    TCP: inuse 1 orphan 0 tw 2 alloc 1 mem 176
    FRAG: inuse 0 memory 0

Units are the kernel's: ``mem`` of TCP, UDP and UDPLITE is in pages,
``memory`` of FRAG in bytes, every other value is a count of sockets.
Tokens follow the hot parsers' grammar (see :mod:`hostdiag.parsers.hotpure`);
values are signed because the kernel prints them with ``%d``.
"""

_I64_LIMIT = 1 << 63


def _signed(tok):
    """The value of a signed decimal token, or None when it is not one."""
    negative = tok[:1] == b"-"
    digits = tok[1:] if negative else tok
    if not 0 < len(digits) <= 19 or not digits.isdigit():
        return None
    value = int(digits)
    if value >= _I64_LIMIT:
        return None
    return -value if negative else value


def parse_sockstat(data):
    """Returns ``({"sockets": {"used": 9}, "TCP": {"inuse": 1, ...}, ...}, malformed)``.

    A line is malformed, and skipped whole, when its prefix lacks the colon,
    it has no pairs or an odd token count, or a value is not a number. A
    prefix seen twice keeps the values of both lines, the later one winning.
    """
    result = {}
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split()
        if not tokens:
            continue
        prefix = tokens[0]
        pairs = tokens[1:]
        if len(prefix) < 2 or prefix[-1:] != b":" or not pairs or len(pairs) % 2:
            malformed += 1
            continue
        values = [_signed(tok) for tok in pairs[1::2]]
        if None in values:
            malformed += 1
            continue
        group = result.setdefault(prefix[:-1].decode("utf-8", "replace"), {})
        for name, value in zip(pairs[0::2], values):
            group[name.decode("utf-8", "replace")] = value
    return result, malformed
