"""Fixtures shared by the tests that run real processes and real file systems."""

import shutil
import tempfile

import pytest

from spoolhelpers import mount_tmpfs


@pytest.fixture
def workdir():
    # Short: a Unix socket path holds at most 107 bytes.
    path = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs: a disk that really fills up."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    with mount_tmpfs(mount_point, "1m"):
        yield mount_point
