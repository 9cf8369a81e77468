"""How wide the text report is: ``--width N`` when given, else the width of
the terminal standard output is (``os.get_terminal_size``), else 80 columns
(a pipe, a file, ``--output``). The options ``--width`` and ``--full`` are
shared by `diag` and `diag show`, which print the same report."""

import argparse
import os

from hostdiag.views.text import DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH, SCREEN_LINES


def _width(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of columns, got %r" % text) from None
    if not MIN_WIDTH <= value <= MAX_WIDTH:
        raise argparse.ArgumentTypeError("must be between %d and %d columns, got %d" % (MIN_WIDTH, MAX_WIDTH, value))
    return value


def add_screen_options(parser):
    """--width N and --full."""
    parser.add_argument("--width", type=_width, default=None, metavar="N",
                        help="lay the report out in N columns (%d-%d; default: the terminal's width, "
                        "%d when the output is not a terminal)" % (MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH))
    parser.add_argument("--full", action="store_true",
                        help="print every block in whole instead of the one-screen view (%d lines)" % SCREEN_LINES)


def report_width(args, stream):
    """The columns of the report written to ``stream`` (a file object, None
    for a file named by --output): ``args.width``, else the terminal's width
    held between the bounds of --width, else DEFAULT_WIDTH."""
    if args.width is not None:
        return args.width
    if stream is None or not stream.isatty():
        return DEFAULT_WIDTH
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except OSError:
        return DEFAULT_WIDTH    # a terminal that does not tell its size (a serial console)
    return max(MIN_WIDTH, min(MAX_WIDTH, columns))
