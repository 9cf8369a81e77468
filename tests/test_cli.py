"""`diag` end to end: real /proc, recorded trees, output formats and errors."""

import json
import re
import os
import subprocess
import sys

import msgpack
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TREES = sorted(
    name for name in os.listdir(FIXTURES)
    if os.path.isdir(os.path.join(FIXTURES, name, "proc"))
)


def diag(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hostdiag", *args],
        capture_output=True, env=full_env, timeout=120,
    )


def tree_args(name):
    base = os.path.join(FIXTURES, name)
    return ["--proc-root", os.path.join(base, "proc"), "--sys-root", os.path.join(base, "sys"),
            "--rootfs", base]


def test_text_report_shows_real_rates():
    result = diag("--interval", "0.3")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert re.search(r"interval 0\.[0-9]{2} s", text)
    for block in ("LOAD", "CPU %", "MEMORY", "NET", "TCP"):
        assert block in text
    assert "\x1b[" not in text, "no colour when stdout is not a terminal"
    assert result.stderr == b""


def test_json_document_has_rates_and_raw_counters():
    result = diag("--interval", "0.3", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert doc["snapshot"]["meta"]["schema_version"] == doc["schema_version"]
    assert doc["interval_s"] == 0.3
    snap = doc["snapshot"]
    assert snap["meta"]["live"] is True
    assert snap["cpu"]["total"]["user"] > 0
    assert snap["memory"]["meminfo"]["MemTotal"] > 0
    assert snap["network"]["link_source"] == "netlink"
    assert any(link["name"] == "lo" for link in snap["network"]["links"])
    rates = doc["rates"]
    assert rates is not None
    busy = rates["cpu"]["total"]
    assert abs(sum(v for k, v in busy.items() if k != "busy_pct" and v is not None) - 100) < 1.5
    assert isinstance(doc["findings"], list)


@pytest.mark.parametrize("tree", TREES)
def test_every_fixture_tree_gives_json(tree):
    result = diag("--interval", "0", "--format", "json", *tree_args(tree))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    doc = json.loads(result.stdout)
    assert doc["rates"] is None
    meta = doc["snapshot"]["meta"]
    assert meta["live"] is False
    # A recorded tree never reads the live kernel's netlink.
    assert doc["snapshot"]["network"] is None or doc["snapshot"]["network"]["link_source"] == "procfs"
    assert all(set(e) == {"source", "path", "kind", "message", "count"} for e in meta["errors"])


def test_old_kernel_tree_gives_nulls_not_zeros():
    doc = json.loads(diag("--interval", "0", "--format", "json", *tree_args("linux-2.6.18-old")).stdout)
    snap = doc["snapshot"]
    assert snap["cpu"]["total"]["guest"] is None
    assert snap["cpu"]["total"]["steal"] is not None
    assert snap["pressure"] is None
    assert snap["network"]["snmp6"] is None
    assert snap["network"]["conntrack"] is None
    assert "MemAvailable" not in snap["memory"]["meminfo"]
    assert all(d["discards_completed"] is None and d["flush_time_ms"] is None for d in snap["disks"])
    kinds = {(e["source"], e["kind"]) for e in snap["meta"]["errors"]}
    assert ("pressure", "missing") in kinds
    assert ("network", "missing") in kinds


def test_odd_lines_are_skipped_and_counted():
    doc = json.loads(diag("--interval", "0", "--format", "json", *tree_args("container-odd-lines")).stdout)
    snap = doc["snapshot"]
    names = {link["name"] for link in snap["network"]["links"]}
    assert {"my dev", "eth0:1", "veth:x:y"} <= names
    malformed = {e["path"].rsplit("/", 1)[-1]: e["count"] for e in snap["meta"]["errors"]
                 if e["kind"] == "malformed"}
    assert malformed["dev"] == 2
    assert malformed["meminfo"] == 3
    assert malformed["diskstats"] == 2
    assert snap["memory"]["swaps"][0]["filename"] == "/swap file"


def test_empty_files_give_null_sections_and_errors():
    doc = json.loads(diag("--interval", "0", "--format", "json", *tree_args("empty-files")).stdout)
    snap = doc["snapshot"]
    assert snap["cpu"]["total"] is None
    assert snap["cpu"]["loadavg"] is None
    assert snap["kernel"]["file_nr"] is None


def test_msgpack_output_round_trips_to_the_json_document(tmp_path):
    out = tmp_path / "snap.msgpack"
    result = diag("--interval", "0", "--format", "msgpack", "--output", str(out), *tree_args("debian12-6.18"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    doc = msgpack.unpackb(out.read_bytes(), raw=False)
    as_json = json.loads(diag("--interval", "0", "--format", "json", *tree_args("debian12-6.18")).stdout)
    # Timing fields differ between the two runs; everything read from the tree is equal.
    for key in ("wall_ns", "mono_ns", "duration_ns"):
        doc["snapshot"]["meta"].pop(key)
        as_json["snapshot"]["meta"].pop(key)
    assert doc == as_json


def test_missing_file_gives_null_section_and_error(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (tmp_path / "sys").mkdir()  # an empty sysfs: every /sys source is missing
    (proc / "stat").write_bytes(open("/proc/stat", "rb").read())
    (proc / "meminfo").write_bytes(open("/proc/meminfo", "rb").read())
    doc = json.loads(diag("--interval", "0", "--format", "json", "--proc-root", str(proc),
                          "--sys-root", str(tmp_path / "sys"), "--rootfs", str(tmp_path)).stdout)
    snap = doc["snapshot"]
    assert snap["disks"] is None
    assert snap["memory"]["vmstat"] is None
    errors = {(e["path"], e["kind"]) for e in snap["meta"]["errors"]}
    assert (str(proc / "diskstats"), "missing") in errors


def test_unreadable_file_is_access_denied(tmp_path):
    """/proc/1/io is unreadable even by root on this machine: the real EACCES case."""
    if os.access("/proc/1/io", os.R_OK) and _readable("/proc/1/io"):
        pytest.skip("/proc/1/io is readable here")
    proc = tmp_path / "proc"
    proc.mkdir()
    (tmp_path / "sys").mkdir()  # an empty sysfs: every /sys source is missing
    (proc / "stat").write_bytes(open("/proc/stat", "rb").read())
    (proc / "meminfo").write_bytes(open("/proc/meminfo", "rb").read())
    (proc / "vmstat").symlink_to("/proc/1/io")
    result = diag("--interval", "0", "--format", "json", "--proc-root", str(proc),
                  "--sys-root", str(tmp_path / "sys"), "--rootfs", str(tmp_path))
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)["snapshot"]
    assert snap["memory"]["vmstat"] is None
    assert (str(proc / "vmstat"), "access_denied") in {(e["path"], e["kind"]) for e in snap["meta"]["errors"]}


def _readable(path):
    try:
        with open(path, "rb") as f:
            f.read()
    except PermissionError:
        return False
    return True


@pytest.mark.parametrize("args, message", [
    (["--interval", "abc"], b"--interval"),
    (["--interval", "-1"], b"--interval"),
    (["--format", "xml"], b"--format"),
    (["--proc-root", "/tmp"], b"not a procfs"),
    (["--bogus"], b"--bogus"),
    (["--proc-root", "/nonexistent"], b"--proc-root: /nonexistent does not exist"),
    (["--sys-root", "/nonexistent"], b"--sys-root: /nonexistent does not exist"),
    (["--rootfs", "/nonexistent"], b"--rootfs: /nonexistent does not exist"),
    (["--sys-root", "/proc/meminfo"], b"--sys-root: /proc/meminfo is not a directory"),
    (["version", "--rootfs", "/nonexistent"], b"--rootfs: /nonexistent does not exist"),
    (["agent", "--sys-root", "/nonexistent"], b"--sys-root: /nonexistent does not exist"),
])
def test_bad_usage_is_one_line_and_exit_2(args, message):
    result = diag(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.count(b"\n") == 1
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_unwritable_output_is_one_line_and_exit_1(tmp_path):
    result = diag("--interval", "0", "--output", str(tmp_path / "missing" / "out.json"))
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1
    assert b"cannot write" in result.stderr


def test_colour_only_on_a_terminal_and_never_under_no_color():
    import pty

    def run_on_tty(env):
        master, slave = pty.openpty()
        full_env = dict(os.environ)
        full_env.pop("NO_COLOR", None)
        full_env.update(env)
        proc = subprocess.Popen([sys.executable, "-m", "hostdiag", "--interval", "0"],
                                stdout=slave, stderr=subprocess.PIPE, env=full_env)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
        os.close(master)
        return b"".join(chunks)

    assert b"\x1b[" in run_on_tty({})
    assert b"\x1b[" not in run_on_tty({"NO_COLOR": "1"})


def test_version_names_the_live_parsers():
    result = diag("version")
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout.decode()
    assert text.startswith("hostdiag ")
    assert "python " in text and "kernel " in text
    expected = "pure" if os.environ.get("HOSTDIAG_PURE", "") not in ("", "0") else "compiled"
    assert "parsers %s" % expected in text


def test_version_reports_pure_when_forced():
    result = diag("version", env={"HOSTDIAG_PURE": "1"})
    assert result.returncode == 0
    assert b"parsers pure" in result.stdout
    assert b"forced by HOSTDIAG_PURE" in result.stdout


def test_dash_dash_version_is_the_first_line_of_version():
    result = diag("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == diag("version").stdout.splitlines(keepends=True)[0]
    assert result.stdout.startswith(b"hostdiag ")


def test_help_shows_the_report_options_and_every_command():
    result = diag("--help")
    assert result.returncode == 0 and result.stderr == b""
    text = result.stdout.decode()
    for option in ("--interval", "--format", "--output", "--no-netlink", "--no-tables", "--version",
                   "--proc-root", "--sys-root", "--rootfs"):
        assert option in text, option
    commands = [line.split()[0] for line in text.split("\ncommands:\n", 1)[1].splitlines() if line.startswith("  ")]
    assert commands == ["report", "version", "agent", "collector", "show", "diff", "history", "fleet", "top",
                        "replay", "service", "slo", "incidents", "incident"]
