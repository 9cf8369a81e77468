"""The token grammar the pure-only parsers share: table test of parsers/textvalues.py."""

import pytest

from hostdiag.parsers.textvalues import finite_float, unescape_octal, unsigned


@pytest.mark.parametrize("raw, text", [
    (b"/mnt/plain", "/mnt/plain"), (b"", ""),
    (b"/mnt/my\\040disk\\011tab\\012nl\\134bs", "/mnt/my disk\ttab\nnl\\bs"),
    (b"/x\\04", "/x\\04"),               # truncated escape: kept as it is
    (b"/x\\089", "/x\\089"),             # not octal: kept
    (b"/x\\777", "/x\xff"),              # above a byte: the low 8 bits, decoded with U+FFFD
    (b"\\040" * 30000, " " * 30000),
])
def test_unescape_octal(raw, text):
    assert unescape_octal(raw) == text.replace("\xff", "\ufffd")


@pytest.mark.parametrize("tok, value", [
    (b"0", 0), (b"18446744073709551615", 2**64 - 1), (b"9" * 20, int("9" * 20)),
    (b"9" * 21, None), (b"", None), (b"-1", None), (b"+1", None), (b"1.0", None), (b"\xd9\xa1", None),
])
def test_unsigned(tok, value):
    assert unsigned(tok) == value


@pytest.mark.parametrize("tok, value", [
    (b"0.52", 0.52), (b"-1.5", -1.5), (b"1e3", 1000.0),
    (b"nan", None), (b"inf", None), (b"-inf", None), (b"x", None), (b"", None),
])
def test_finite_float(tok, value):
    assert finite_float(tok) == value
