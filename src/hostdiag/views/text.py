"""Text helpers shared by the views: numbers with their units, and a screen
of lines that never grow wider than the terminal.

Bytes are shown in binary units (KiB, MiB, GiB), bits in decimal ones (Kb, Mb,
Gb), counts with k and M; a value that is not a number is shown as "-".
Widths are in columns, one per character: the views write ASCII and the one
ellipsis "…", each one column wide.
"""

DEFAULT_WIDTH = 80          # columns when the output is not a terminal
# Lines of the report's one-screen view: a 40-line terminal less the line of
# the command and the prompt after it.
SCREEN_LINES = 38
MIN_WIDTH, MAX_WIDTH = 40, 1000     # the widths a report is laid out for
LABEL_WIDTH = 9             # the block label ("MEMORY", "PROC CPU") before the text
ELLIPSIS = "…"

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
    """A percentage with one decimal: 12.34 -> '12.3'; None -> '-'."""
    value = num(value)
    return "-" if value is None else "%.1f" % value


def whole_pct(value):
    """A percentage as a whole number, as the findings' titles write it:
    12.6 -> '13'; None -> '-'."""
    value = num(value)
    return "-" if value is None else "%.0f" % value


def duration(seconds):
    seconds = num(seconds)
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, minutes = divmod(rest // 60, 60)
    if days:
        return "%dd %dh%02dm" % (days, hours, minutes)
    return "%dh%02dm" % (hours, minutes) if hours else "%dm" % minutes


def cut_end(text, width):
    """``text`` in at most ``width`` columns, its end replaced by "…"."""
    text = str(text)
    if len(text) <= width:
        return text
    return text[:width - 1] + ELLIPSIS if width > 0 else ""


def cut_middle(text, width):
    """``text`` in at most ``width`` columns, its middle replaced by "…": a
    path keeps its first directory and its last name."""
    text = str(text)
    if len(text) <= width:
        return text
    if width < 3:
        return cut_end(text, width)
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + text[len(text) - tail:]


def fit_parts(parts, width, separator="  "):
    """The parts of one line that fit in ``width`` columns. ``parts`` are
    (text, rank) in the order shown; while the line is too wide the part of
    the highest rank (the least useful) is left out, the last of equals
    first; rank 0 is never left out, and a line of rank-0 parts only is cut
    at its end."""
    kept = [(text, rank) for text, rank in parts if text]
    while len(separator.join(text for text, _ in kept)) > width:
        droppable = [i for i, (_, rank) in enumerate(kept) if rank > 0]
        if not droppable:
            break
        worst = max(droppable, key=lambda i: (kept[i][1], i))
        del kept[worst]
    return cut_end(separator.join(text for text, _ in kept), width)


def wrap_parts(texts, width, separator="  "):
    """``texts`` on as many lines of ``width`` columns as they need, a part
    never split (one wider than the line is cut at its end)."""
    lines, line = [], ""
    for text in texts:
        if not text:
            continue
        if line and len(line) + len(separator) + len(text) > width:
            lines.append(line)
            line = ""
        line = cut_end(line + separator + text if line else text, width)
    if line:
        lines.append(line)
    return lines


class Column:
    """One column of a :func:`fit_table`: its title; ``align`` "<" or ">";
    ``rank`` 0 for a column always shown, else the higher the sooner it goes
    when the table is too wide; ``shrink`` the narrowest it may be cut to
    (None: never cut); ``cut`` how a cell too wide is cut (:func:`cut_end`
    or :func:`cut_middle`); ``widest`` the widest it grows; ``redundant``
    for a column that repeats what another shows (the process name beside
    its command line): it goes before any other is cut."""

    def __init__(self, title, align=">", rank=0, shrink=None, cut=cut_end, widest=None, redundant=False):
        self.title, self.align, self.rank = title, align, rank
        self.shrink, self.cut, self.widest = shrink, cut, widest
        self.redundant = redundant


def fit_table(columns, rows, width):
    """The title line and the rows of a table of ``columns`` (one space
    apart) in ``width`` columns. Each column is as wide as its widest cell;
    while the table is too wide, in this order: the redundant columns go;
    the columns of rank 0 that may shrink (the command, the path) are cut to
    their ``shrink`` width; then, from the highest rank down, a column is cut
    to its ``shrink`` width, and then goes. What a column that went frees is
    given back to the cut ones, rank 0 first. Returns the lines, trailing
    blanks removed; a line still too wide is cut at its end."""
    cells = [[str(cell) for cell in row] for row in rows]
    shown = list(range(len(columns)))
    natural = []
    for i, column in enumerate(columns):
        widest = max([len(column.title)] + [len(row[i]) for row in cells])
        natural.append(min(widest, column.widest) if column.widest else widest)
    widths = list(natural)

    def total():
        return sum(widths[i] for i in shown) + len(shown) - 1

    def shrink(i):
        if columns[i].shrink is not None and widths[i] > columns[i].shrink:
            widths[i] -= min(total() - width, widths[i] - columns[i].shrink)

    for i in [i for i in shown if columns[i].redundant]:
        if total() > width:
            shown.remove(i)
    for i in shown:
        if columns[i].rank == 0 and total() > width:
            shrink(i)
    for i in sorted((i for i in shown if columns[i].rank > 0), key=lambda i: (-columns[i].rank, -i)):
        if total() > width:
            shrink(i)
        if total() > width:
            shown.remove(i)
    for i in sorted(shown, key=lambda i: columns[i].rank):
        widths[i] += max(0, min(natural[i] - widths[i], width - total()))

    def line(values):
        texts = []
        for i in shown:
            column, text = columns[i], columns[i].cut(values[i], widths[i])
            texts.append(text.ljust(widths[i]) if column.align == "<" else text.rjust(widths[i]))
        return cut_end(" ".join(texts).rstrip(), width)

    return [line([c.title for c in columns])] + [line(row) for row in cells]


def without_empty_columns(columns, rows, empty=("-", "", "0")):
    """``columns`` and ``rows`` less the columns whose every cell is one of
    ``empty`` (no rates, no limit, nothing read): on one screen they tell
    nothing. The first column always stays."""
    gone = {i for i in range(1, len(columns)) if rows and all(str(row[i]) in empty for row in rows)}
    return ([c for i, c in enumerate(columns) if i not in gone],
            [tuple(v for i, v in enumerate(row) if i not in gone) for row in rows])


class Screen:
    """The lines of a report ``width`` columns wide: every line added is cut
    to the width before it is painted (ANSI colour only when ``color``).
    ``full`` says whether the blocks print everything or the one-screen view."""

    def __init__(self, color, width=DEFAULT_WIDTH, full=False):
        self.color = color
        self.width = width
        self.full = full
        self.lines = []

    @property
    def body(self):
        """The columns after the block label."""
        return self.width - LABEL_WIDTH

    def paint(self, text, code):
        return "%s%s%s" % (code, text, RESET) if self.color and code else text

    def add(self, label, text="", code=None):
        """A line: ``label`` padded to the label column, then ``text``, cut
        to the width; ``code`` paints the text."""
        head = ("%-*s" % (LABEL_WIDTH, label))
        text = cut_end(str(text), self.width - len(head)).rstrip()
        if not text:
            self.lines.append(head.rstrip())
        else:
            self.lines.append(head + self.paint(text, code))

    def add_parts(self, label, parts, code=None):
        """One line of ``parts`` (text, rank) after ``label``: the one-screen
        view leaves out the least useful that do not fit (:func:`fit_parts`),
        the full view wraps them onto more lines."""
        if self.full:
            for i, line in enumerate(wrap_parts([text for text, _ in parts], self.body)):
                self.add("" if i else label, line, code)
        else:
            self.add(label, fit_parts(parts, self.body), code)

    def add_table(self, label, columns, rows, row_labels=None, codes=None):
        """A :func:`fit_table` after the label column: its title line on
        ``label``, each row on its ``row_labels`` entry (default none) and
        painted with its ``codes`` entry."""
        lines = fit_table(columns, rows, self.body)
        self.add(label, lines[0])
        for i, line in enumerate(lines[1:]):
            self.add(row_labels[i] if row_labels else "", line, codes[i] if codes else None)


def listed(prefix, items, total, width, separator=", "):
    """``prefix`` and as many of ``items`` as fit in ``width`` columns (the
    first one always) with the count of the ``total`` left out, "(+N
    more)", at the end; cut to the width."""
    text = prefix
    shown = 0
    for item in items:
        candidate = text + (separator if shown else "") + item
        more = total - shown - 1
        if shown and len(candidate) + (len(" (+%d more)" % more) if more > 0 else 0) > width:
            break
        text = candidate
        shown += 1
    more = total - shown
    return cut_end(text + (" (+%d more)" % more if more > 0 else ""), width)
