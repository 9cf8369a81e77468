"""os-release(5) of the host root: /etc/os-release, else /usr/lib/os-release."""

import os

from hostdiag.parsers.os_release import parse_os_release

SOURCE = "kernel"
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")


def read_os_release(root, problems):
    """The KEY=value pairs of the first os-release file the root has, or None
    with an entry in ``problems`` (naming the first path) when it has neither."""
    for candidate in OS_RELEASE_PATHS:
        path = root.host(candidate)
        if os.path.exists(path):
            return problems.parse(root, SOURCE, path, parse_os_release)
    problems.read(root, SOURCE, root.host(OS_RELEASE_PATHS[0]))
    return None
