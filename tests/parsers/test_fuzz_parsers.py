"""Property-based fuzzing of every parser in hostdiag.parsers.

Every public function of every module of the package is listed below, found
by walking the package (a new parser without an entry here fails
:func:`test_every_parser_is_fuzzed`): either how to feed it bytes, or why it
takes none (it reads directories, or works on values a parser already made).

For each byte parser: arbitrary bytes never raise, and near-valid input never
raises either: a real line of the file it parses (from this host's /proc, or a
written sample where the host has none) with one token replaced, cut or
extended, the line cut short or repeated. Where a parser has a compiled twin,
both twins get the same bytes and must return equal results (``repr`` too: an
int is not a float or a bool). The budget is in fuzzsupport.py.
"""

import importlib
import inspect
import os
import pkgutil
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import hostdiag.parsers
from hostdiag.parsers import cgroup, pure_forced, rtnetlink

from fuzzsupport import FUZZ

# -- the parsers ------------------------------------------------------------

CGROUP_KEYS = (b"anon", b"file", b"usage_usec", b"nr_throttled", b"oom_kill")


def _cgroup_file(kind):
    return lambda impl, data: impl.parse_file(kind, CGROUP_KEYS, data)


def _rtnetlink_message(name):
    return lambda impl, data: getattr(impl, name)(data, 0, len(data))


def _rtnetlink_replies(reply_type):
    def call(impl, data):
        rows = []
        return impl.parse_replies(data, len(data), 1, reply_type, rows), rows
    return call


def _on(name, *args):
    return lambda impl, data: getattr(impl, name)(data, *args)


# "module.function" -> [(case id, call(module, data))]; module is the pure
# twin, or the compiled one when the pair has one.
BYTE_PARSERS = {
    "cgroup.parse_file": [("cgroup.%s" % kind, _cgroup_file(kind))
                          for kind in (cgroup.VALUE, cgroup.KEYED, cgroup.CPU_MAX, cgroup.IO_STAT,
                                       cgroup.BLKIO, cgroup.PRESSURE)],
    "cgroup.parse_keyed": [("cgroup.parse_keyed", _on("parse_keyed", CGROUP_KEYS))],
    "kmsg.parse_kmsg_record": [("kmsg.parse_kmsg_record", _on("parse_kmsg_record"))],
    # A message as parse_kmsg_record decodes it.
    "kmsg.kernel_event": [("kmsg.kernel_event", lambda impl, data: impl.kernel_event(data.decode("utf-8", "replace")))],
    "procnet.parse_net_inet": [("procnet.parse_net_inet", _on("parse_net_inet"))],
    "procnet.parse_net_unix": [("procnet.parse_net_unix", _on("parse_net_unix"))],
    "rtnetlink.parse_replies": [("rtnetlink.parse_replies.%d" % t, _rtnetlink_replies(t))
                                for t in (rtnetlink.RTM_NEWLINK, rtnetlink.RTM_NEWADDR,
                                          rtnetlink.RTM_NEWROUTE, rtnetlink.RTM_NEWNEIGH)],
    "sockdiag.parse_inet": [("sockdiag.parse_inet", _on("parse_inet"))],
    "sockdiag.scan_inet": [("sockdiag.scan_inet", lambda impl, data: impl.scan_inet(data, {}))],
    "sockdiag.count_unix": [("sockdiag.count_unix", _on("count_unix"))],
    "textvalues.decode": [("textvalues.decode", _on("decode"))],
    "textvalues.finite_float": [("textvalues.finite_float", _on("finite_float"))],
    "textvalues.unsigned": [("textvalues.unsigned", _on("unsigned"))],
    "textvalues.unescape_octal": [("textvalues.unescape_octal", _on("unescape_octal"))],
}
for _name in ("parse_link", "parse_address", "parse_route", "parse_neighbour"):
    BYTE_PARSERS["rtnetlink." + _name] = [("rtnetlink." + _name, _rtnetlink_message(_name))]

# The parsers that take one argument, the file's bytes.
ONE_ARGUMENT = (
    "cgroup.parse_value", "cgroup.parse_cpu_max", "cgroup.parse_io_stat", "cgroup.parse_blkio",
    "cgroup.parse_cgroup_mounts", "loadavg.parse_loadavg", "mountinfo.parse_mountinfo",
    "os_release.parse_os_release", "pressure.parse_pressure",
    "procpid.parse_stat", "procpid.parse_status", "procpid.parse_statm", "procpid.parse_io",
    "procpid.parse_cmdline", "procpid.parse_cgroup", "procpid.parse_oom_score_adj",
    "proctext.parse_stat", "proctext.parse_keyvalue", "proctext.parse_twoline", "proctext.parse_diskstats",
    "proctext.parse_netdev", "proctext.parse_softnet", "proctext.parse_sockstat",
    "limits.parse_limits", "limits.stat_start_time",
    "swaps.parse_swaps", "sysctl.parse_file_nr", "sysctl.parse_single_int", "sysctl.parse_decimal",
    "uptime.parse_uptime",
)
for _key in ONE_ARGUMENT:
    BYTE_PARSERS[_key] = [(_key, _on(_key.split(".")[1]))]

# Functions of the package that are not fed bytes, and why.
NOT_BYTE_PARSERS = {
    "cgroup.read_dir": "reads a directory (tests/test_cgroup_twins.py); its files go to parse_file, fuzzed",
    "procpid.list_pids": "lists a directory",
    "procpid.scan": "reads /proc/PID files; each goes to a procpid parser, fuzzed",
    "procpid.kernel_thread": "decides on numbers a parser made",
    "procraces.classify": "classifies an OSError",
    "redact.secret_name": "works on the str of an argument parse_cmdline made",
    "redact.redact_arg": "works on the str of an argument parse_cmdline made",
    "redact.redact_argv": "works on the strs parse_cmdline made",
    "sockdiag.state_name": "names a state number",
    "sockdiag.top_rows": "ranks rows scan_inet made",
    "sysctl.taint_letters": "spells an int parse_single_int made",
}

# The modules with a compiled twin, and the functions of the pair.
TWINS = {"cgroup": ("parse_file",), "procpid": None, "proctext": None, "rtnetlink": None, "sockdiag": None}


def _public_functions():
    found = set()
    for info in pkgutil.iter_modules(hostdiag.parsers.__path__):
        module = importlib.import_module("hostdiag.parsers." + info.name)
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_"):
                found.add("%s.%s" % (info.name, name))
    return found


def test_every_parser_is_fuzzed():
    assert _public_functions() == set(BYTE_PARSERS) | set(NOT_BYTE_PARSERS)


def _module_of(key):
    return key.split(".")[0]


def _has_twin(key):
    module, function = key.split(".")
    return module in TWINS and (TWINS[module] is None or function in TWINS[module])


def _compiled(module):
    return importlib.import_module("hostdiag._" + module)


def _pure(module):
    return importlib.import_module("hostdiag.parsers." + module)


CASES = [pytest.param(key, call, id=case) for key, calls in sorted(BYTE_PARSERS.items()) for case, call in calls]


def _run(key, call, data):
    """The pure twin's result on ``data``; the compiled twin's must equal it."""
    module = _module_of(key)
    expected = call(_pure(module), data)
    if _has_twin(key) and not pure_forced():
        got = call(_compiled(module), data)
        assert got == expected and repr(got) == repr(expected), (key, data[:300])
    return expected


# -- arbitrary bytes ----------------------------------------------------------

@pytest.mark.parametrize("key, call", CASES)
@FUZZ
@given(data=st.binary(max_size=2048))
@example(data=b"")
@example(data=b"\n")
@example(data=b"\x00" * 64)
def test_arbitrary_bytes(key, call, data):
    _run(key, call, data)


# -- near-valid lines -----------------------------------------------------------

# A real file per parser: (path under /proc or /etc, written sample when the host has none).
SAMPLES = {
    "cgroup.parse_file": ("", b"anon 4096\nfile 8192\nusage_usec 123\nnr_throttled 0\noom_kill 1\n"
                              b"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\nmax 100000\n"
                              b"some avg10=1.50 avg60=2.25 avg300=9.99 total=123\n"),
    "cgroup.parse_keyed": ("", b"anon 4096\nfile 8192\noom_kill 1\n"),
    "cgroup.parse_value": ("", b"123456\n"),
    "cgroup.parse_cpu_max": ("", b"max 100000\n"),
    "cgroup.parse_io_stat": ("", b"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n"),
    "cgroup.parse_blkio": ("", b"8:0 Read 1\n8:0 Write 2\n8:0 Discard 3\nTotal 6\n"),
    "cgroup.parse_cgroup_mounts": ("self/mountinfo", b""),
    "kmsg.parse_kmsg_record": ("", b"6,1234,5678901,-;eth0: link up\n SUBSYSTEM=net\n"),
    "kmsg.kernel_event": ("", b"oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/a.service,task=python3,pid=2590,uid=0\n"
                              b"Memory cgroup out of memory: Killed process 2590 (python3) total-vm:540856kB\n"
                              b"INFO: task kworker/0:1:123 blocked for more than 120 seconds.\n"
                              b"I/O error, dev loop3, sector 0 op 0x1:(WRITE) flags 0x800\n"
                              b"python3[4242]: segfault at 0 ip 00007f4 sp 00007ff error 4 in libc.so.6\n"
                              b"ixgbe 0000:01:00.0 eth2: NIC Link is Down\n"),
    "limits.parse_limits": ("self/limits", b""),
    "limits.stat_start_time": ("self/stat", b""),
    "loadavg.parse_loadavg": ("loadavg", b"0.10 0.20 0.30 1/234 5678\n"),
    "mountinfo.parse_mountinfo": ("self/mountinfo", b""),
    "os_release.parse_os_release": ("/etc/os-release", b'NAME="Debian GNU/Linux"\nVERSION_ID="12"\n'),
    "pressure.parse_pressure": ("pressure/io",
                                b"some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
                                b"full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"),
    "procnet.parse_net_inet": ("net/tcp", b""),
    "procnet.parse_net_unix": ("net/unix", b""),
    "procpid.parse_stat": ("self/stat", b""),
    "procpid.parse_status": ("self/status", b""),
    "procpid.parse_statm": ("self/statm", b""),
    "procpid.parse_io": ("self/io", b""),
    "procpid.parse_cmdline": ("self/cmdline", b""),
    "procpid.parse_cgroup": ("self/cgroup", b""),
    "procpid.parse_oom_score_adj": ("self/oom_score_adj", b""),
    "proctext.parse_stat": ("stat", b""),
    "proctext.parse_keyvalue": ("meminfo", b""),
    "proctext.parse_twoline": ("net/snmp", b""),
    "proctext.parse_diskstats": ("diskstats", b""),
    "proctext.parse_netdev": ("net/dev", b""),
    "proctext.parse_softnet": ("net/softnet_stat", b""),
    "proctext.parse_sockstat": ("net/sockstat", b""),
    "swaps.parse_swaps": ("swaps", b"Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition\t1048572\t0\t-2\n"),
    "sysctl.parse_file_nr": ("sys/fs/file-nr", b"1024\t0\t9223372036854775807\n"),
    "sysctl.parse_single_int": ("sys/kernel/pid_max", b"4194304\n"),
    "sysctl.parse_decimal": ("sys/kernel/tainted", b"-12\n"),
    "uptime.parse_uptime": ("uptime", b"12345.67 23456.78\n"),
    "textvalues.decode": ("", b"caf\xc3\xa9"),
    "textvalues.finite_float": ("", b"1.5e3"),
    "textvalues.unsigned": ("", b"18446744073709551615"),
    "textvalues.unescape_octal": ("", b"/mnt/with\\040space\\134x"),
}
BINARY = {"rtnetlink", "sockdiag"}  # netlink messages: tests/parsers/test_*_twins.py edit real dumps


_READ_SAMPLES = {}


def _sample(key):
    """The sample of ``key``, read once: a live file changes, and the strategies
    drawn from it must not change between the examples of one run."""
    if key not in _READ_SAMPLES:
        _READ_SAMPLES[key] = _read_sample(key)
    return _READ_SAMPLES[key]


def _read_sample(key):
    where, written = SAMPLES[key]
    if where:
        path = where if where.startswith("/") else os.path.join("/proc", where)
        try:
            with open(path, "rb") as f:
                data = f.read(1 << 16)
        except OSError:
            data = b""
        if data:
            return data
    return written


TEXT_CASES = [pytest.param(key, call, id=case) for key, calls in sorted(BYTE_PARSERS.items())
              for case, call in calls if _module_of(key) not in BINARY]

TOKEN = re.compile(rb"[^\s:=,;()/]+")
REPLACEMENTS = st.one_of(
    st.sampled_from([b"", b"-", b"-1", b"0", b"+1", b"1.5", b"nan", b"inf", b"1e400", b"0x10", b"\xff",
                     b"18446744073709551615", b"18446744073709551616", b"99999999999999999999999",
                     b"9" * 400, b"\x00", b" ", b"\n", b":", b"=", b"(", b")", b"\\", b"\\0", b"\\400"]),
    st.binary(max_size=12),
    st.text(alphabet="0123456789-+.eE xX:=\t\n", max_size=12).map(str.encode),
)


@st.composite
def near_valid(draw, sample):
    """``sample`` with one to three edits, each to one line or to the whole."""
    for _ in range(draw(st.integers(1, 3))):
        sample = draw(_edited(sample))
    return sample


@st.composite
def _edited(draw, sample):
    lines = sample.split(b"\n")
    index = draw(st.integers(0, max(0, len(lines) - 1)))
    line = lines[index]
    tokens = list(TOKEN.finditer(line))
    action = draw(st.sampled_from(["replace", "truncate", "extend", "cut-line", "cut-file", "repeat"]))
    if tokens and action in ("replace", "truncate", "extend"):
        token = tokens[draw(st.integers(0, len(tokens) - 1))]
        start, end = token.span()
        if action == "replace":
            new = draw(REPLACEMENTS)
        elif action == "truncate":
            new = token.group()[:draw(st.integers(0, end - start - 1))]
        else:
            new = token.group() + draw(REPLACEMENTS)
        line = line[:start] + new + line[end:]
    elif action == "cut-line":
        line = line[:draw(st.integers(0, len(line)))]
    elif action == "repeat":
        line = line + b"\n" + line
    lines[index] = line
    mutated = b"\n".join(lines)
    if action == "cut-file":
        mutated = mutated[:draw(st.integers(0, len(mutated)))]
    return mutated


@pytest.mark.parametrize("key, call", TEXT_CASES)
@FUZZ
@given(data=st.data())
def test_near_valid_lines(key, call, data):
    mutated = data.draw(near_valid(_sample(key)), label="mutated")
    _run(key, call, mutated)


@pytest.mark.parametrize("key, call", TEXT_CASES)
def test_the_samples_parse(key, call):
    """The near-valid input starts from input the parser accepts."""
    sample = _sample(key)
    assert sample
    _run(key, call, sample)
