"""/proc/self/mountinfo: the mount table, one line per mount (proc(5)).

Like every parser it takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import decode, unescape_octal, unsigned


def parse_mountinfo(data):
    """/proc/self/mountinfo → [{"mount_id","parent_id","major","minor","root",
    "mountpoint","options","fstype","source","super_options"}]."""
    result = []
    malformed = 0
    for line in data.split(b"\n"):
        tokens = line.split(b" ")
        if not line.strip():
            continue
        try:
            sep = tokens.index(b"-", 6)
        except ValueError:
            malformed += 1
            continue
        if len(tokens) < sep + 3 or tokens[2].count(b":") != 1:
            malformed += 1
            continue
        major, _, minor = tokens[2].partition(b":")
        ids = [unsigned(tokens[0]), unsigned(tokens[1]), unsigned(major), unsigned(minor)]
        if None in ids:
            malformed += 1
            continue
        result.append({
            "mount_id": ids[0], "parent_id": ids[1], "major": ids[2], "minor": ids[3],
            "root": unescape_octal(tokens[3]), "mountpoint": unescape_octal(tokens[4]),
            "options": decode(tokens[5]), "fstype": decode(tokens[sep + 1]),
            "source": unescape_octal(tokens[sep + 2]),
            "super_options": decode(tokens[sep + 3]) if len(tokens) > sep + 3 else None,
        })
    return result, malformed
