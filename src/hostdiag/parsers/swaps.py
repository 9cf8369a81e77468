"""/proc/swaps: the swap areas, their sizes and use.

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import decode, unescape_octal, unsigned


def parse_swaps(data):
    """/proc/swaps → [{"filename","type","size_bytes","used_bytes","priority"}]."""
    result = []
    malformed = 0
    for line in data.split(b"\n")[1:]:
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            malformed += 1
            continue
        size, used = unsigned(tokens[2]), unsigned(tokens[3])
        try:
            priority = int(tokens[4])
        except ValueError:
            priority = None
        if size is None or used is None or priority is None:
            malformed += 1
            continue
        # Octal escapes (\040) in the name are how the kernel prints spaces.
        result.append({
            "filename": unescape_octal(tokens[0]), "type": decode(tokens[1]),
            "size_bytes": size * 1024, "used_bytes": used * 1024, "priority": priority,
        })
    return result, malformed
