"""The agent makes its socket's own directory and nothing above it, with no
more access than the socket's mode gives."""

import grp
import os
import stat
import subprocess
import sys

import pytest

from agentproc import AGENT_MAIN, AgentProcess, clean_env, write_toml
from hostdiag.apps.agent import StartError, make_socket_directory


@pytest.mark.parametrize("socket_mode, directory_mode", [(0o660, 0o750), (0o600, 0o700), (0o666, 0o755),
                                                         (0o640, 0o750)])
def test_the_directory_lets_in_whom_the_socket_lets_in(tmp_path, socket_mode, directory_mode):
    old_umask = os.umask(0o077)  # the directory's mode must not depend on the umask
    try:
        make_socket_directory(str(tmp_path / "run" / "agent.sock"), socket_mode, None)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == directory_mode


def test_the_directory_takes_the_socket_group(tmp_path):
    try:
        gid = grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("no group daemon on this machine")
    make_socket_directory(str(tmp_path / "run" / "agent.sock"), 0o660, "daemon")
    assert os.stat(tmp_path / "run").st_gid == gid


def test_an_existing_directory_is_left_as_it_is(tmp_path):
    os.chmod(tmp_path, 0o711)
    make_socket_directory(str(tmp_path / "agent.sock"), 0o600, None)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o711


def test_a_missing_directory_above_is_refused(tmp_path):
    with pytest.raises(StartError, match="server.unix_path: %s is not a directory" % (tmp_path / "none")):
        make_socket_directory(str(tmp_path / "none" / "run" / "agent.sock"), 0o660, None)
    assert not (tmp_path / "none").exists()


def test_agent_serves_from_the_directory_it_made(workdir):
    agent = AgentProcess(workdir)
    agent.sock_path = os.path.join(workdir, "run", "agent.sock")
    agent.configure(server={"unix_path": agent.sock_path})
    agent.start()
    try:
        agent.wait_ready().close()
        assert stat.S_IMODE(os.stat(os.path.join(workdir, "run")).st_mode) == 0o750
    finally:
        assert agent.stop() == 0, agent.log_tail()


def test_agent_refuses_a_socket_under_missing_directories_in_one_line(workdir):
    config = os.path.join(workdir, "agent.toml")
    write_toml(config, {"spool": {"dir": os.path.join(workdir, "spool")},
                        "server": {"unix_path": os.path.join(workdir, "none", "run", "agent.sock")}})
    done = subprocess.run([sys.executable, "-c", AGENT_MAIN, "--config", config], env=clean_env(),
                          capture_output=True, timeout=60)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "server.unix_path" in err and os.path.join(workdir, "none") in err, err
    assert not os.path.exists(os.path.join(workdir, "none"))
