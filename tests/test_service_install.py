"""`diag service install|uninstall` for real: into a temporary root (its own
etc/passwd, written by the real useradd --prefix), and once into this
machine's own /etc, /var/lib and /run when nothing of hostdiag is there yet."""

import os
import pwd
import re
import stat
import tomllib

import pytest

from hostdiag.apps import service
from hostdiag.apps.config import load_config

from servicehelpers import diag_launcher, run_diag_service, unit_directives

FILES = {  # path under the root: (mode, owned by the service user, is a directory)
    "var/lib/hostdiag": (0o750, True, True),
    "run/hostdiag": (0o750, True, True),
    "etc/hostdiag": (0o750, False, True),
    "etc/hostdiag/agent.toml": (0o640, False, False),
    "etc/systemd/system/hostdiag-agent.service": (0o644, False, False),
}


def _empty_root(path):
    etc = path / "etc"
    etc.mkdir()
    for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("group", "root:x:0:\n"),
                       ("shadow", ""), ("gshadow", "")):
        (etc / name).write_text(text)
    return path


def _tree(root):
    """{relative path: (mode, uid, gid, mtime_ns)} of everything under root."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return found


def _passwd_entry(root):
    with open(os.path.join(root, "etc", "passwd")) as passwd:
        for line in passwd:
            fields = line.rstrip("\n").split(":")
            if fields[0] == "hostdiag":
                return fields
    return None


@pytest.fixture
def diag():
    with diag_launcher() as path:
        yield path


def test_dry_run_says_each_step_and_changes_nothing(tmp_path, diag):
    root = _empty_root(tmp_path)
    before = _tree(root)
    status, out, err = run_diag_service("install", "--dry-run", "--root", str(root), "--diag", diag)
    assert (status, err) == (0, "")
    assert _tree(root) == before
    steps = out.splitlines()
    assert steps[0].startswith("would create the system user hostdiag: useradd --prefix")
    assert all(line.startswith("would ") for line in steps)
    assert {line.split()[2] for line in steps[1:]} == {str(root / path) for path in FILES}


def test_install_then_again_changes_nothing_then_purge(tmp_path, diag):
    root = _empty_root(tmp_path)
    status, out, err = run_diag_service("install", "--root", str(root), "--diag", diag)
    assert (status, err) == (0, ""), out
    entry = _passwd_entry(root)
    assert entry is not None and entry[5:] == ["/var/lib/hostdiag", "/usr/sbin/nologin"]
    uid, gid = int(entry[2]), int(entry[3])
    for path, (mode, user_owned, is_dir) in FILES.items():
        st = os.stat(root / path)
        assert (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode)) == (is_dir, mode), path
        assert st.st_uid == (uid if user_owned else 0), path
    assert os.stat(root / "etc/hostdiag/agent.toml").st_gid == gid
    # Every line of the settings file is commented: valid TOML that changes no default.
    with open(root / "etc/hostdiag/agent.toml", "rb") as settings:
        assert all(value == {} for value in tomllib.load(settings).values())
    with open(root / "etc/systemd/system/hostdiag-agent.service") as unit:
        assert unit_directives(unit.read())["ExecStart"][0].split()[0] == diag

    installed = _tree(root)
    status, out, err = run_diag_service("install", "--root", str(root), "--diag", diag)
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == "nothing to do: already installed"
    assert _tree(root) == installed

    status, out, err = run_diag_service("uninstall", "--purge", "--root", str(root))
    assert (status, err) == (0, ""), out
    for path in FILES:
        assert not os.path.lexists(root / path), path
    assert _passwd_entry(root) is None


SETTING_LINE = re.compile(r"^# ([a-z_]+ = .*)$")


def test_the_settings_file_loads_and_each_commented_setting_is_valid(tmp_path):
    """As written, the file sets nothing; with every "# key = value" line
    uncommented, the agent's own settings loader accepts it."""
    with open(service.CONFIG_TEMPLATE) as template:
        text = template.read()
    assert all(load_config(service.CONFIG_TEMPLATE, env={}).source(key) == "default"
               for key in ("agent.interval", "spool.dir", "server.unix_path", "tcp.enabled"))
    uncommented = tmp_path / "agent.toml"
    lines = [SETTING_LINE.sub(r"\1", line) for line in text.splitlines()]
    assert sum(line != original for line, original in zip(lines, text.splitlines())) >= 10
    uncommented.write_text("\n".join(lines) + "\n")
    config = load_config(str(uncommented), env={})
    assert config.source("tcp.enabled") == "file %s" % uncommented


def test_an_edited_settings_file_is_kept(tmp_path, diag):
    root = _empty_root(tmp_path)
    assert run_diag_service("install", "--root", str(root), "--diag", diag)[0] == 0
    settings = root / "etc/hostdiag/agent.toml"
    settings.write_text("[agent]\ninterval = 2\n")
    status, out, _ = run_diag_service("install", "--root", str(root), "--diag", diag)
    assert status == 0 and "(kept: edited by hand)" in out
    assert settings.read_text() == "[agent]\ninterval = 2\n"


def test_a_diag_the_unit_cannot_reach_is_refused(tmp_path):
    root = _empty_root(tmp_path)
    status, out, err = run_diag_service("install", "--root", str(root), "--diag", _executable(tmp_path))
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1 and "below a directory the unit hides" in err


def _executable(directory):
    """An executable file under /tmp, which PrivateTmp= hides from the service."""
    path = os.path.join(str(directory), "diag")
    with open(path, "w") as out:
        out.write("#!/bin/sh\n")
    os.chmod(path, 0o755)
    assert path.startswith("/tmp/")
    return path


def test_install_on_this_machine_and_remove_everything(diag):
    if any(os.path.lexists("/" + path) for path in FILES):
        pytest.skip("hostdiag is installed on this machine; the test would not leave it as it was")
    try:
        pwd.getpwnam("hostdiag")
        pytest.skip("a hostdiag user exists on this machine")
    except KeyError:
        pass
    try:
        status, out, err = run_diag_service("install", "--diag", diag)
        assert (status, err) == (0, ""), out
        assert pwd.getpwnam("hostdiag").pw_dir == "/var/lib/hostdiag"
        assert "next: systemctl daemon-reload && systemctl enable --now hostdiag-agent" in out
        if not os.path.isdir("/run/systemd/system"):
            assert "systemd is not the init system here" in out
        for path in FILES:
            assert os.path.lexists("/" + path), path
    finally:
        status, out, err = run_diag_service("uninstall", "--purge")
    assert (status, err) == (0, ""), out
    for path in FILES:
        assert not os.path.lexists("/" + path), path
    with pytest.raises(KeyError):
        pwd.getpwnam("hostdiag")
