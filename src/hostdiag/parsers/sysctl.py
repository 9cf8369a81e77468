"""Small files under /proc/sys and /sys holding numbers: file handles (fs/file-nr),
one-integer values (kernel/pid_max, threads-max, tainted; sysfs attributes,
nf_conntrack_*) and the taint letters.

Like every parser each takes bytes, does no I/O and returns ``(result, malformed)``.
"""

from hostdiag.parsers.textvalues import unsigned


def parse_file_nr(data):
    """/proc/sys/fs/file-nr → {"allocated","unused","max"} file handles."""
    values = [unsigned(t) for t in data.split()]
    if len(values) != 3 or None in values:
        return None, 1
    return {"allocated": values[0], "unused": values[1], "max": values[2]}, 0


def parse_single_int(data):
    """A file holding one decimal integer (pid_max, threads-max, tainted)."""
    tokens = data.split()
    if len(tokens) != 1:
        return None, 1
    try:
        return int(tokens[0]), 0
    except ValueError:
        return None, 1


# Kernel taint bits (Documentation/admin-guide/tainted-kernels.rst), bit → letter.
TAINT_FLAGS = "PFSRMBUDAWCIOELKXTN"


def taint_letters(value):
    """The letters the kernel prints for a tainted mask, in bit order."""
    return "".join(letter for bit, letter in enumerate(TAINT_FLAGS) if value >> bit & 1)


def parse_decimal(data):
    """A file holding one decimal integer with an optional leading '-', at most 20
    characters with the sign, white space around it ignored (a sysfs attribute,
    nf_conntrack_count): ``(value, malformed)``."""
    text = data.strip()
    if text[:1] == b"-":
        ok = text[1:].isdigit()
    else:
        ok = text.isdigit()
    if not ok or len(text) > 20:
        return None, 1
    return int(text), 0
