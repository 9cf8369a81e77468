"""One token of a small /proc text file to a value: the grammar the pure-only parsers share.

``decode`` is UTF-8 with invalid bytes replaced (U+FFFD); ``unsigned`` is 1 to 20
ASCII digits (None otherwise); ``finite_float`` is a float that is neither NaN
nor infinite (None otherwise); ``unescape_octal`` undoes the kernel's ``\\NNN``
escaping of blanks and backslashes in paths (mountinfo, swaps).
"""


def decode(raw):
    return raw.decode("utf-8", "replace")


def finite_float(tok):
    try:
        value = float(tok)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def unsigned(tok):
    return int(tok) if tok.isdigit() and len(tok) <= 20 else None


def unescape_octal(raw):
    """Undo the kernel's octal escaping of space, tab, newline and backslash."""
    if b"\\" not in raw:
        return decode(raw)
    out = bytearray()
    i = 0
    while i < len(raw):
        chunk = raw[i + 1:i + 4]
        if raw[i:i + 1] == b"\\" and len(chunk) == 3 and all(48 <= c <= 55 for c in chunk):
            out.append(int(chunk, 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return decode(bytes(out))
