"""os-release(5): table test of parsers/os_release.py."""

import pytest

from hostdiag.parsers.os_release import parse_os_release


@pytest.mark.parametrize("data, expected", [
    (b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
     ({"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian", "VERSION_ID": "12"}, 0)),
    (b"", ({}, 0)),
    (b"# a comment\n\n   \n", ({}, 0)),
    (b"ID=debian\nNAME\n", ({"ID": "debian"}, 1)),                         # truncated line
    (b"ID=debian\nBAD KEY=1\n", ({"ID": "debian"}, 1)),
    (b"NAME='single quoted'\nQ=\"a \\\"q\\\" and \\\\\"\n",
     ({"NAME": "single quoted", "Q": 'a "q" and \\'}, 0)),
    (b'NAME="unterminated\n', ({"NAME": '"unterminated'}, 0)),
    (b"ID=" + b"x" * 100000 + b"\n", ({"ID": "x" * 100000}, 0)),
])
def test_os_release_table(data, expected):
    assert parse_os_release(data) == expected
