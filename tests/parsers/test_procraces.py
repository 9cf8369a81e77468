"""The race policy of /proc/PID reads: every errno class, and what is not in one."""

import errno

import pytest

from hostdiag.parsers.procraces import DENIED, OTHER, VANISHED, classify


@pytest.mark.parametrize("err, expected", [
    (errno.ENOENT, VANISHED), (errno.ESRCH, VANISHED),
    (errno.EACCES, DENIED), (errno.EPERM, DENIED),
    (errno.EIO, OTHER), (errno.EFBIG, OTHER), (errno.ENOTDIR, OTHER), (errno.EINVAL, OTHER),
    (0, OTHER), (-1, OTHER),
])
def test_classify(err, expected):
    assert classify(err) == expected
