"""Text helpers shared by the views: numbers with their units, and a screen of lines.

Bytes are shown in binary units (KiB, MiB, GiB), bits in decimal ones (Kb, Mb,
Gb), counts with k and M; a value that is not a number is shown as "-".
"""

LINE_WIDTH = 110            # the widest line a view writes on its own (columns)

RED, YELLOW, BOLD, RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
SEVERITY_COLOR = {"crit": RED, "warn": YELLOW}


def num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def get(data, *keys):
    for key in keys:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
    return data


def scaled(value, step, units, suffix=""):
    value = num(value)
    if value is None:
        return "-"
    for unit in units[:-1]:
        if abs(value) < step:
            break
        value /= step
    else:
        unit = units[-1]
    if unit == units[0]:
        return "%d%s%s" % (round(value), unit, suffix)
    return "%.1f%s%s" % (value, unit, suffix)


def human_bytes(value, suffix=""):
    """1536 -> '1.5KiB'; None -> '-'."""
    return scaled(value, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), suffix)


def human_bits(value, suffix=""):
    """12_300_000 -> '12.3Mb'; None -> '-'."""
    return scaled(value, 1000.0, ("b", "Kb", "Mb", "Gb", "Tb"), suffix)


def human_count(value, suffix=""):
    """1234 -> '1.2k'; 0.4 -> '0.4'; None -> '-'."""
    value = num(value)
    if value is None:
        return "-"
    if abs(value) < 10 and not float(value).is_integer():
        return "%.1f%s" % (value, suffix)
    return scaled(value, 1000.0, ("", "k", "M", "G", "T"), suffix)


def pct(value):
    value = num(value)
    return "-" if value is None else "%.1f" % value


def duration(seconds):
    seconds = num(seconds)
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, minutes = divmod(rest // 60, 60)
    if days:
        return "%dd %dh%02dm" % (days, hours, minutes)
    return "%dh%02dm" % (hours, minutes) if hours else "%dm" % minutes


class Screen:
    def __init__(self, color):
        self.color = color
        self.lines = []

    def paint(self, text, code):
        return "%s%s%s" % (code, text, RESET) if self.color and code else text

    def add(self, label, text=""):
        line = ("%-9s%s" % (label, text)).rstrip() if label else "         " + text
        self.lines.append(line)


def listed(prefix, items, total, separator=", "):
    """``prefix`` and as many of ``items`` as fit on one line, then how many of
    the ``total`` were left out."""
    text = prefix
    shown = 0
    for item in items:
        candidate = text + (separator if shown else "") + item
        if shown and len(candidate) > LINE_WIDTH - 22:
            break
        text = candidate
        shown += 1
    more = total - shown
    return text + (" (+%d more)" % more if more > 0 else "")
