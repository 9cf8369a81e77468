# cython: language_level=3
"""Compiled twins of the per-process parsers and scanner in :mod:`hostdiag.parsers.procpid`.

Same names, same signatures, same output; the grammar is documented in
``procpid``. The parsers walk the bytes with a C pointer and create Python
objects for the output alone. :func:`scan` does the whole per-process loop in C:
it lists the pids with readdir, opens each ``/proc/PID`` once and reads its
files with ``openat``/``read``/``close`` into buffers reused for the whole scan
(one per file of a sample), parses them in place and builds the record dicts
directly, so a sample costs the kernel's work for the files plus the records,
and nothing else. The system calls and parsing run without the GIL; it is
taken only to build each record (see :func:`scan`).

The cold-path parsers (cmdline, cgroup, oom_score_adj, read once per process
life) and the field tables are imported from ``procpid``: both twins share one
definition of each.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.dict cimport PyDict_Copy, PyDict_GetItem
from cpython.list cimport PyList_Append
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_CheckExact
from cpython.sequence cimport PySequence_Contains
from cpython.unicode cimport PyUnicode_READ_CHAR
from cpython.object cimport PyObject
from libc.errno cimport EFBIG, EINTR, ENOMEM, errno
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, strlen
from posix.fcntl cimport AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_RDONLY, openat
from posix.stat cimport fstatat, struct_stat
from posix.unistd cimport close, read

import os

from hostdiag.parsers.procpid import (
    DEFAULT_READ_CAP,
    FACT_FILES,
    FACT_KEYS,
    FD_LIST,
    FD_OFF,
    FD_SIZE,
    INITIAL_BUFFER,
    IO_FIELDS,
    IO_SIGNED,
    PF_KTHREAD,
    RECORD_KEYS,
    STAT_LAST_REQUIRED_FIELD,
    STAT_NUMBERS,
    STATM_COLUMNS,
    STATM_MIN_COLUMNS,
    STATUS_FIELDS,
    kernel_thread,
    parse_cgroup,
    parse_cmdline,
    parse_oom_score_adj,
)
from hostdiag.parsers.procraces import DENIED_ERRNOS, REQUIRED_FILE, VANISHED_ERRNOS


cdef extern from "Python.h":
    str PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)


cdef extern from *:
    """
    #include <errno.h>
    static inline void hostdiag_clear_errno(void) { errno = 0; }
    """
    # readdir() tells the end of a directory from an error only through errno.
    void clear_errno "hostdiag_clear_errno"() noexcept nogil


cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *dirp)
    int closedir(DIR *dirp)


cdef enum:
    # Slots of the stat numbers, in the order of procpid.STAT_NUMBERS.
    S_PPID, S_FLAGS, S_MINFLT, S_MAJFLT, S_UTIME, S_STIME, S_PRIORITY, S_NICE,
    S_NUM_THREADS, S_START_TIME, S_VSIZE, S_RSS, S_BLKIO, S_ARG_START, S_ARG_END, N_STAT
    # Tokens after the comm start at field 3; fields past this one are not read.
    STAT_LAST_FIELD = 49
    STAT_TOKENS = STAT_LAST_FIELD - 2
    # procpid.STAT_LAST_REQUIRED_FIELD, as tokens after the comm.
    STAT_REQUIRED_TOKENS = 24 - 2
    N_IO = 7
    # Indexes of read_bytes and write_bytes in procpid.IO_FIELDS.
    IO_READ_BYTES = 4
    IO_WRITE_BYTES = 5
    N_STATM = 7
    # Room for "/", a sign, a pid of up to 20 digits and a NUL after the root.
    PID_PATH_EXTRA = 24
    # Room for the errnos of each class of procraces' policy.
    MAX_CLASS_ERRNOS = 8
    # procpid's FD_OFF, FD_SIZE, FD_LIST.
    C_FD_OFF = 0
    C_FD_SIZE = 1
    C_FD_LIST = 2

cdef tuple _STAT_NAMES = tuple(name for name, _, _ in STAT_NUMBERS)
cdef tuple _IO_NAMES = IO_FIELDS
cdef tuple _IO_BYTES = tuple(name.encode("ascii") for name in IO_FIELDS)
# The io names as C strings (pointing into _IO_BYTES) and their lengths.
cdef const char *_IO_C[N_IO]
cdef Py_ssize_t _IO_LEN[N_IO]
cdef tuple _STATM_NAMES = tuple(name for _, name in STATM_COLUMNS)
cdef tuple _STATM_COLS = tuple(column for column, _ in STATM_COLUMNS)
# Token index (field - 3) → stat slot, or -1 for a field not read.
cdef int _STAT_SLOT[STAT_TOKENS]
cdef bint _STAT_SIGNED[N_STAT]
cdef dict _TEMPLATE = dict.fromkeys(RECORD_KEYS)
cdef tuple _FACT_FILES_B = tuple(name.encode("ascii") for name in FACT_FILES)
cdef bint _IO_SIGNED[N_IO]
# procraces' policy, as C arrays: the errnos that say "vanished" and "denied",
# and the file whose absence means the process is gone.
cdef int _VANISHED_ERRNOS[MAX_CLASS_ERRNOS]
cdef int _N_VANISHED = len(VANISHED_ERRNOS)
cdef int _DENIED_ERRNOS[MAX_CLASS_ERRNOS]
cdef int _N_DENIED = len(DENIED_ERRNOS)
cdef bytes _REQUIRED_FILE_B = REQUIRED_FILE.encode("ascii")
cdef const char *_REQUIRED_FILE_C = _REQUIRED_FILE_B


cdef int _init_layout() except -1:
    cdef int i
    expected = ("ppid", "flags", "minflt", "majflt", "utime", "stime", "priority", "nice",
                "num_threads", "start_time", "vsize_bytes", "rss_pages",
                "delayacct_blkio_ticks", "arg_start", "arg_end")
    if (_STAT_NAMES != expected or STAT_LAST_REQUIRED_FIELD != 24
            or max(number for _, number, _ in STAT_NUMBERS) != STAT_LAST_FIELD
            or len(IO_FIELDS) != N_IO or IO_FIELDS[IO_READ_BYTES] != "read_bytes"
            or IO_FIELDS[IO_WRITE_BYTES] != "write_bytes" or STATM_MIN_COLUMNS != N_STATM
            or max(_STATM_COLS) >= N_STATM
            or STATUS_FIELDS != ("uid", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
            or (FD_OFF, FD_SIZE, FD_LIST) != (C_FD_OFF, C_FD_SIZE, C_FD_LIST)):
        raise ImportError("hostdiag._procpid: procpid's tables changed; update the slots")
    for i in range(STAT_TOKENS):
        _STAT_SLOT[i] = -1
    for i in range(N_STAT):
        _STAT_SLOT[STAT_NUMBERS[i][1] - 3] = i
        _STAT_SIGNED[i] = STAT_NUMBERS[i][2]
    for i in range(N_IO):
        _IO_C[i] = PyBytes_AS_STRING(_IO_BYTES[i])
        _IO_LEN[i] = PyBytes_GET_SIZE(_IO_BYTES[i])
        _IO_SIGNED[i] = IO_FIELDS[i] in IO_SIGNED
    if _N_VANISHED > MAX_CLASS_ERRNOS or _N_DENIED > MAX_CLASS_ERRNOS:
        raise ImportError("hostdiag._procpid: procraces' errno classes outgrew MAX_CLASS_ERRNOS")
    for i in range(_N_VANISHED):
        _VANISHED_ERRNOS[i] = VANISHED_ERRNOS[i]
    for i in range(_N_DENIED):
        _DENIED_ERRNOS[i] = DENIED_ERRNOS[i]
    return 0


_init_layout()


# ---------------------------------------------------------------- tokens, numbers

include "_numparse.pxi"


# ---------------------------------------------------------------- per-file parsers

cdef struct StatOut:
    uint64_t pid
    const unsigned char *comm
    Py_ssize_t comm_len
    unsigned char state
    int present          # how many slots the file gave (slots are in field order)
    uint64_t values[N_STAT]
    bint negative[N_STAT]


cdef bint _parse_stat(const unsigned char *buf, Py_ssize_t size, StatOut *out) noexcept nogil:
    """Fill ``out``; False when the file does not follow the grammar."""
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *lp = <const unsigned char *>memchr(buf, c'(', size)
    cdef const unsigned char *rp = end
    cdef const unsigned char *p
    cdef const unsigned char *tok
    cdef Py_ssize_t tok_len
    cdef int index, slot
    if lp == NULL:
        return False
    while rp > buf and (rp - 1)[0] != c')':
        rp -= 1
    if rp == buf:
        return False
    rp -= 1
    if rp < lp:
        return False
    p = buf
    tok_len = _next_token(&p, lp, &tok)
    if not _unsigned(tok, tok_len, &out.pid) or _next_token(&p, lp, &tok) != 0:
        return False
    out.comm = lp + 1
    out.comm_len = rp - lp - 1
    out.present = 0
    p = rp + 1
    index = 0
    while index < STAT_TOKENS:
        tok_len = _next_token(&p, end, &tok)
        if tok_len == 0:
            break
        if index == 0:
            if tok_len != 1:
                return False
            out.state = tok[0]
        else:
            slot = _STAT_SLOT[index]
            if slot >= 0:
                if _STAT_SIGNED[slot] and tok[0] == c'-':
                    out.negative[slot] = True
                    if not _unsigned(tok + 1, tok_len - 1, &out.values[slot]):
                        return False
                else:
                    out.negative[slot] = False
                    if not _unsigned(tok, tok_len, &out.values[slot]):
                        return False
                out.present = slot + 1
        index += 1
    return index >= STAT_REQUIRED_TOKENS


cdef inline object _stat_value(StatOut *st, int slot):
    if slot >= st.present:
        return None
    if st.negative[slot]:
        return _signed_object(True, st.values[slot])
    return st.values[slot]


cdef struct StatusOut:
    bint has_uid, has_vol, has_nonvol
    uint64_t uid, vol, nonvol


cdef Py_ssize_t _parse_status(const unsigned char *buf, Py_ssize_t size,
                              StatusOut *out) noexcept nogil:
    """Fill ``out`` from the three lines read; returns the malformed count."""
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *q
    cdef const unsigned char *tok
    cdef Py_ssize_t tok_len, prefix, count, malformed = 0
    cdef int which, want
    cdef uint64_t value
    cdef uint64_t values[2]
    cdef bint ok
    out.has_uid = out.has_vol = out.has_nonvol = False
    while p < end:
        eol = _line_end(p, end)
        which = 0
        if p[0] == c'U' and eol - p >= 4 and memcmp(p, b"Uid:", 4) == 0:
            which, prefix, want = 1, 4, 4
        elif (p[0] == c'v' and eol - p >= 24
              and memcmp(p, b"voluntary_ctxt_switches:", 24) == 0):
            which, prefix, want = 2, 24, 1
        elif (p[0] == c'n' and eol - p >= 27
              and memcmp(p, b"nonvoluntary_ctxt_switches:", 27) == 0):
            which, prefix, want = 3, 27, 1
        if which:
            q = p + prefix
            count = 0
            ok = True
            while True:
                tok_len = _next_token(&q, eol, &tok)
                if tok_len == 0:
                    break
                if not _unsigned(tok, tok_len, &value):
                    ok = False
                    break
                if count < 2:
                    values[count] = value
                count += 1
            if not ok or count != want:
                malformed += 1
            elif which == 1:
                out.has_uid = True
                out.uid = values[1]
            elif which == 2:
                out.has_vol = True
                out.vol = values[0]
            else:
                out.has_nonvol = True
                out.nonvol = values[0]
        p = eol + 1
    return malformed


cdef struct IoOut:
    bint has[N_IO]
    uint64_t values[N_IO]
    bint negative[N_IO]


cdef Py_ssize_t _parse_io(const unsigned char *buf, Py_ssize_t size, IoOut *out) noexcept nogil:
    """Fill ``out``; returns the malformed count."""
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *eol
    cdef const unsigned char *name
    cdef const unsigned char *tok
    cdef const unsigned char *extra
    cdef Py_ssize_t name_len, tok_len, malformed = 0
    cdef uint64_t value
    cdef bint negative, ok
    cdef int i, slot
    for i in range(N_IO):
        out.has[i] = False
    while p < end:
        eol = _line_end(p, end)
        name_len = _next_token(&p, eol, &name)
        if name_len != 0:
            tok_len = _next_token(&p, eol, &tok)
            if (tok_len == 0 or _next_token(&p, eol, &extra) != 0
                    or name_len < 2 or name[name_len - 1] != c':'):
                malformed += 1
            else:
                slot = -1
                for i in range(N_IO):
                    if (_IO_LEN[i] == name_len - 1
                            and memcmp(_IO_C[i], name, name_len - 1) == 0):
                        slot = i
                        break
                negative = False
                if slot >= 0 and _IO_SIGNED[slot]:
                    ok = _signed(tok, tok_len, &negative, &value)
                else:
                    ok = _unsigned(tok, tok_len, &value)
                if not ok:
                    malformed += 1
                elif slot >= 0:
                    out.has[slot] = True
                    out.values[slot] = value
                    out.negative[slot] = negative
        p = eol + 1
    return malformed


cdef object _with_buffer(object data, object (*parse)(const unsigned char *, Py_ssize_t)):
    """Call ``parse`` on the bytes of ``data`` without copying them."""
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        return parse(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return parse(<const unsigned char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


cdef object _stat_result(const unsigned char *buf, Py_ssize_t size):
    cdef StatOut st
    cdef dict result
    cdef int i
    if not _parse_stat(buf, size, &st):
        return None, 1
    result = {"pid": st.pid,
              "comm": PyUnicode_DecodeUTF8(<const char *>st.comm, st.comm_len, "replace"),
              "state": PyUnicode_DecodeUTF8(<const char *>&st.state, 1, "replace")}
    for i in range(N_STAT):
        result[_STAT_NAMES[i]] = _stat_value(&st, i)
    return result, 0


cdef object _status_result(const unsigned char *buf, Py_ssize_t size):
    cdef StatusOut st
    cdef Py_ssize_t malformed = _parse_status(buf, size, &st)
    return {
        "uid": st.uid if st.has_uid else None,
        "voluntary_ctxt_switches": st.vol if st.has_vol else None,
        "nonvoluntary_ctxt_switches": st.nonvol if st.has_nonvol else None,
    }, malformed


cdef object _io_result(const unsigned char *buf, Py_ssize_t size):
    cdef IoOut io
    cdef Py_ssize_t malformed = _parse_io(buf, size, &io)
    cdef dict result = {}
    cdef int i
    for i in range(N_IO):
        result[_IO_NAMES[i]] = _signed_object(io.negative[i], io.values[i]) if io.has[i] else None
    return result, malformed


cdef object _statm_result(const unsigned char *buf, Py_ssize_t size):
    cdef const unsigned char *p = buf
    cdef const unsigned char *end = buf + size
    cdef const unsigned char *tok
    cdef Py_ssize_t tok_len
    cdef uint64_t values[N_STATM]
    cdef int i
    for i in range(N_STATM):
        tok_len = _next_token(&p, end, &tok)
        if not _unsigned(tok, tok_len, &values[i]):
            return None, 1
    return {_STATM_NAMES[i]: values[<int>_STATM_COLS[i]] for i in range(len(_STATM_NAMES))}, 0


def parse_stat(data):
    """/proc/PID/stat: see :func:`hostdiag.parsers.procpid.parse_stat`."""
    return _with_buffer(data, _stat_result)


def parse_status(data):
    """/proc/PID/status: see :func:`hostdiag.parsers.procpid.parse_status`."""
    return _with_buffer(data, _status_result)


def parse_statm(data):
    """/proc/PID/statm: see :func:`hostdiag.parsers.procpid.parse_statm`."""
    return _with_buffer(data, _statm_result)


def parse_io(data):
    """/proc/PID/io: see :func:`hostdiag.parsers.procpid.parse_io`."""
    return _with_buffer(data, _io_result)


# ---------------------------------------------------------------- the scanner

cdef struct Buffer:
    char *data
    Py_ssize_t size
    Py_ssize_t cap


cdef Py_ssize_t _read_at(int dirfd, const char *name, Buffer *buf, int *err) noexcept nogil:
    """Read the file ``name`` under ``dirfd`` into ``buf``: its size, or -1 with
    ``err`` set (EFBIG: the cap was reached). A read that leaves room in the
    buffer has read the whole file (see procpid._Buffer.read_at)."""
    cdef Py_ssize_t total = 0, n, grown
    cdef char *data
    cdef int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        err[0] = errno
        return -1
    while True:
        n = read(fd, buf.data + total, buf.size - total)
        if n < 0:
            if errno == EINTR:
                continue
            err[0] = errno
            close(fd)
            return -1
        total += n
        if n == 0 or total < buf.size:
            break
        if buf.size >= buf.cap:
            err[0] = EFBIG
            close(fd)
            return -1
        grown = buf.size + min(buf.size, buf.cap - buf.size)
        data = <char *>realloc(buf.data, grown)
        if data == NULL:
            err[0] = ENOMEM
            close(fd)
            return -1
        buf.data = data
        buf.size = grown
    close(fd)
    return total


cdef int _fd_count(int dirfd, int fd_mode, uint64_t *count) noexcept nogil:
    """Store the number of open descriptors in ``count``: 0, or an errno."""
    cdef struct_stat st
    cdef int fd
    cdef DIR *d
    cdef dirent *entry
    cdef uint64_t n = 0
    cdef int err
    if fd_mode == C_FD_SIZE:
        if fstatat(dirfd, "fd", &st, 0) != 0:
            return errno
        count[0] = st.st_size
        return 0
    fd = openat(dirfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        return errno
    d = fdopendir(fd)
    if d == NULL:
        err = errno
        close(fd)
        return err
    while True:
        clear_errno()
        entry = readdir(d)
        if entry == NULL:
            err = errno
            break
        # "." and ".." are not descriptors.
        if not (entry.d_name[0] == c'.' and (entry.d_name[1] == 0 or (
                entry.d_name[1] == c'.' and entry.d_name[2] == 0))):
            n += 1
    closedir(d)
    if err:
        return err
    count[0] = n
    return 0


cdef inline void _pid_path(char *path, Py_ssize_t root_len, long long pid) noexcept nogil:
    """Write "/PID" and a NUL after the root already at the start of ``path``."""
    cdef char digits[24]
    cdef int n = 0
    cdef bint negative = pid < 0
    cdef unsigned long long value = <unsigned long long>pid
    if negative:
        value = 0ULL - value
    while True:
        digits[n] = c'0' + value % 10
        n += 1
        value //= 10
        if value == 0:
            break
    path += root_len
    path[0] = c'/'
    path += 1
    if negative:
        path[0] = c'-'
        path += 1
    while n > 0:
        n -= 1
        path[0] = digits[n]
        path += 1
    path[0] = 0


cdef inline bint _vanished(int err) noexcept nogil:
    """procraces' VANISHED class."""
    cdef int i
    for i in range(_N_VANISHED):
        if err == _VANISHED_ERRNOS[i]:
            return True
    return False


cdef inline bint _denied(int err) noexcept nogil:
    """procraces' DENIED class."""
    cdef int i
    for i in range(_N_DENIED):
        if err == _DENIED_ERRNOS[i]:
            return True
    return False


cdef inline bint _gone(int dirfd, const char *required) noexcept nogil:
    """True when the process open at ``dirfd`` has vanished: its required file
    (procraces.REQUIRED_FILE) can no longer be found."""
    cdef struct_stat st
    return fstatat(dirfd, required, &st, 0) != 0 and _vanished(errno)


cdef struct PidList:
    long long *values
    Py_ssize_t count
    Py_ssize_t cap


cdef int _read_pids(const char *root, PidList *out) noexcept nogil:
    """Append the numeric entries of ``root`` to ``out``: 0, or an errno."""
    cdef int fd = openat(AT_FDCWD, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    cdef DIR *d
    cdef dirent *entry
    cdef const char *name
    cdef Py_ssize_t n, i
    cdef long long value
    cdef long long *grown
    cdef int err = 0
    if fd < 0:
        return errno
    d = fdopendir(fd)
    if d == NULL:
        err = errno
        close(fd)
        return err
    while True:
        clear_errno()
        entry = readdir(d)
        if entry == NULL:
            err = errno
            break
        name = entry.d_name
        n = strlen(name)
        if n < 1 or n > 10:
            continue
        value = 0
        for i in range(n):
            if name[i] < c'0' or name[i] > c'9':
                value = -1
                break
            value = value * 10 + (name[i] - c'0')
        if value < 0:
            continue
        if out.count == out.cap:
            grown = <long long *>realloc(out.values, (out.cap * 2 + 1024) * sizeof(long long))
            if grown == NULL:
                err = ENOMEM
                break
            out.values = grown
            out.cap = out.cap * 2 + 1024
        out.values[out.count] = value
        out.count += 1
    closedir(d)
    return err


cdef list _list_pids(bytes root):
    """The numeric entries of ``root`` as ints, ascending (as procpid.list_pids).
    The directory is read without the GIL (see scan())."""
    cdef PidList found
    cdef const char *c_root = root
    cdef int err
    cdef Py_ssize_t i
    cdef list pids
    found.values = NULL
    found.count = 0
    found.cap = 0
    try:
        with nogil:
            err = _read_pids(c_root, &found)
        if err:
            raise OSError(err, os.strerror(err), os.fsdecode(root))
        pids = [found.values[i] for i in range(found.count)]
    finally:
        free(found.values)
    pids.sort()
    return pids


def list_pids(proc_root):
    """The numeric entry names of ``proc_root`` as ints, ascending."""
    root = os.fsencode(proc_root)
    if b"\0" in root:
        raise ValueError("embedded null byte")
    return _list_pids(root)


cdef enum:
    # The reads of every sample, in order; each file step has its own buffer.
    STEP_STAT, STEP_STATUS, STEP_IO, STEP_FD, N_STEPS
    N_STEP_FILES = STEP_FD

cdef const char *_STEP_FILES[N_STEP_FILES]
_STEP_FILES[STEP_STAT] = "stat"
_STEP_FILES[STEP_STATUS] = "status"
_STEP_FILES[STEP_IO] = "io"
cdef tuple _STEP_NAMES = ("stat", "status", "io", "fd")


cdef struct Before:
    # What the previous record of a process says of its stat (see procpid._unchanged).
    bint usable
    uint64_t start_time, utime, stime, minflt, majflt, num_threads, rss_bytes
    unsigned char state


cdef bint _as_u64(dict record, str key, uint64_t *out) except -1:
    """``record[key]`` as a uint64 in ``out``; False when it is absent or not
    an int in 0 .. 2**64 - 1 (such a value equals no value a stat gives)."""
    cdef PyObject *found = PyDict_GetItem(record, key)
    if found == NULL or not PyLong_CheckExact(<object>found):
        return False
    try:
        out[0] = PyLong_AsUnsignedLongLong(<object>found)
    except OverflowError:
        return False
    return True


cdef bint _complete(dict record, str group, tuple fields) except -1:
    """procpid._unchanged's rule for one group: denied, or every field given."""
    cdef str name
    if PySequence_Contains(record["denied"], group):
        return True
    for name in fields:
        if record[name] is None:
            return False
    return True


# The facts a cache entry holds (procpid.FACT_KEYS).
cdef tuple _FACT_KEYS = FACT_KEYS
cdef tuple _STATUS_KEPT = ("uid", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
cdef tuple _IO_KEPT = ("read_bytes", "write_bytes")


cdef int _load_before(dict record, Before *out) except -1:
    """Fill ``out`` from a previous record; ``out.usable`` False when it cannot
    lend its status and io fields whatever this scan's stat says."""
    cdef PyObject *state
    out.usable = False
    if not (_as_u64(record, "start_time", &out.start_time)
            and _as_u64(record, "utime", &out.utime) and _as_u64(record, "stime", &out.stime)
            and _as_u64(record, "minflt", &out.minflt) and _as_u64(record, "majflt", &out.majflt)
            and _as_u64(record, "num_threads", &out.num_threads)
            and _as_u64(record, "rss_bytes", &out.rss_bytes)):
        return 0
    state = PyDict_GetItem(record, "state")
    if (state == NULL or type(<object>state) is not str or len(<str>state) != 1
            or PyUnicode_READ_CHAR(<object>state, 0) >= 0x80):
        return 0
    out.state = <unsigned char>PyUnicode_READ_CHAR(<object>state, 0)
    out.usable = (_complete(record, "status", _STATUS_KEPT)
                  and _complete(record, "io", _IO_KEPT))
    return 0


cdef class _Scan:
    """The state of one :func:`scan` call.

    The files of a sample (stat, status, io) are read into a buffer each, so
    that the reads and parses of one process run in one stretch without the
    GIL (see :meth:`steps`) and stat's comm stays in its buffer until it is
    decoded. Each buffer starts at INITIAL_BUFFER bytes and doubles up to the
    read cap; the fact files (cmdline, cgroup, oom_score_adj) reuse stat's.
    """
    cdef Buffer bufs[N_STEP_FILES]
    cdef int dirfd
    cdef int fd_mode
    cdef object race_hook
    cdef dict cache
    cdef dict new_cache
    cdef list misses
    cdef list errors
    cdef Py_ssize_t bad_stat, bad_status, bad_io
    # What the steps of the current process found.
    cdef Py_ssize_t got[N_STEP_FILES]   # bytes read, -1 when the read failed
    cdef int err[N_STEPS]
    cdef bint stat_ok
    cdef StatOut st
    cdef StatusOut status
    cdef IoOut io
    cdef uint64_t fd_count
    cdef uint64_t page_size
    # The previous records by pid (or None), and the recheck period.
    cdef dict previous
    cdef dict seen
    cdef long long recheck_every
    # The current process's previous record, and whether its stat did not move
    # (then status and io are not read: see procpid._unchanged).
    cdef Before before
    cdef bint quiet

    def __cinit__(self, Py_ssize_t cap, int fd_mode):
        cdef int i
        self.dirfd = -1
        self.fd_mode = fd_mode
        for i in range(N_STEP_FILES):
            self.bufs[i].data = NULL
        for i in range(N_STEP_FILES):
            self.bufs[i].cap = cap
            self.bufs[i].size = min(<Py_ssize_t>INITIAL_BUFFER, cap)
            self.bufs[i].data = <char *>malloc(self.bufs[i].size)
            if self.bufs[i].data == NULL:
                raise MemoryError()

    def __dealloc__(self):
        cdef int i
        for i in range(N_STEP_FILES):
            free(self.bufs[i].data)
        if self.dirfd >= 0:
            close(self.dirfd)

    cdef bint step(self, int k) noexcept nogil:
        """Read (and parse) step ``k`` of the process open at ``dirfd``; False
        when the later steps are not wanted (stat unreadable or malformed)."""
        if k == STEP_FD:
            self.err[k] = _fd_count(self.dirfd, self.fd_mode, &self.fd_count)
            return True
        self.got[k] = _read_at(self.dirfd, _STEP_FILES[k], &self.bufs[k], &self.err[k])
        if self.got[k] < 0:
            return k != STEP_STAT
        if k == STEP_STAT:
            self.stat_ok = _parse_stat(<const unsigned char *>self.bufs[k].data, self.got[k],
                                       &self.st)
            if self.stat_ok and self.before.usable:
                self.quiet = self._unmoved()
            return self.stat_ok
        if k == STEP_STATUS:
            self.bad_status += _parse_status(<const unsigned char *>self.bufs[k].data,
                                             self.got[k], &self.status)
        else:
            self.bad_io += _parse_io(<const unsigned char *>self.bufs[k].data, self.got[k],
                                     &self.io)
        return True

    cdef bint _unmoved(self) noexcept nogil:
        """procpid._unchanged's comparison of the stat just parsed with the
        previous record (its recheck slice and completeness already checked)."""
        cdef StatOut *st = &self.st
        cdef Before *b = &self.before
        cdef uint64_t rss = st.values[S_RSS]
        if self.page_size != 0 and rss > 0xFFFFFFFFFFFFFFFFULL // self.page_size:
            return False
        return (st.values[S_START_TIME] == b.start_time and st.state == b.state
                and st.values[S_UTIME] == b.utime and st.values[S_STIME] == b.stime
                and st.values[S_MINFLT] == b.minflt and st.values[S_MAJFLT] == b.majflt
                and st.values[S_NUM_THREADS] == b.num_threads
                and rss * self.page_size == b.rss_bytes)

    cdef int steps(self, object pid) except -1:
        """Run the steps of one process. Without a race hook they run in one
        stretch without the GIL; with one, the hook is called before each."""
        cdef int k, last = N_STEPS if self.fd_mode != C_FD_OFF else STEP_FD
        cdef bint going
        self.stat_ok = False
        self.quiet = False
        for k in range(N_STEP_FILES):
            self.got[k] = -1
        for k in range(N_STEPS):
            self.err[k] = 0
        if self.race_hook is None:
            with nogil:
                for k in range(last):
                    if self.quiet and (k == STEP_STATUS or k == STEP_IO):
                        continue
                    if not self.step(k):
                        break
            return 0
        for k in range(last):
            if self.quiet and (k == STEP_STATUS or k == STEP_IO):
                continue
            self.race_hook(pid, _STEP_NAMES[k])
            with nogil:
                going = self.step(k)
            if not going:
                break
        return 0

    cdef inline Py_ssize_t read(self, object pid, const char *name, str hook_name,
                                int *err) except -2:
        """Read a fact file into stat's buffer, without the GIL."""
        cdef Py_ssize_t n
        if self.race_hook is not None:
            self.race_hook(pid, hook_name)
        with nogil:
            n = _read_at(self.dirfd, name, &self.bufs[STEP_STAT], err)
        return n

    cdef inline bint gone(self):
        cdef bint result
        with nogil:
            result = _gone(self.dirfd, _REQUIRED_FILE_C)
        return result

    cdef int lost(self, object pid, str what, int err, list denied) except -1:
        """A failed read of the optional file ``what``, classed by procraces'
        policy: 1 when the process vanished (nothing is noted), else 0 with
        ``what`` added to ``denied`` or to the errors (an absent file too)."""
        if _vanished(err) and self.gone():
            return 1
        if _denied(err):
            denied.append(what)
        else:
            self.errors.append((pid, what, err))
        return 0

    cdef bint same_record(self, dict before, object previous_stat, int fd_err,
                          tuple entry) except -1:
        """procpid._same_record: the record being built would equal ``before``."""
        cdef Py_ssize_t size = self.got[STEP_STAT]
        cdef dict facts
        cdef list lent
        if (not PyBytes_CheckExact(previous_stat) or PyBytes_GET_SIZE(previous_stat) != size
                or memcmp(PyBytes_AS_STRING(previous_stat), self.bufs[STEP_STAT].data, size) != 0):
            return False
        if self.fd_mode == C_FD_OFF:
            if before["fd_count"] is not None:
                return False
        elif fd_err != 0 or before["fd_count"] != self.fd_count:
            return False
        facts = entry[5]
        if len(facts) != len(_FACT_KEYS):
            return False
        for name in _FACT_KEYS:
            if name not in facts or before[name] is not facts[name]:
                return False
        lent = [name for name in ("status", "io") if name in before["denied"]]
        return before["denied"] == lent + list(entry[6])

    cdef object one(self, object pid, long long c_pid, uint64_t page_size,
                    long long sample_no, long long refresh_every):
        """The record of the process open at ``self.dirfd`` (its cache entry
        kept in new_cache, or its miss added to misses); None when it vanished;
        False when it was skipped for another reason."""
        cdef StatOut *st = &self.st
        cdef StatusOut *status = &self.status
        cdef IoOut *io = &self.io
        cdef int err = 0, fd_err
        cdef Py_ssize_t n
        cdef uint64_t fd_count = self.fd_count, rss, ppid, flags, vsize
        cdef bint have_status = False, have_io = False, is_kthread
        cdef list denied = []
        cdef dict record
        cdef PyObject *found
        cdef tuple entry
        cdef object start_time, comm, uid, arg_start, arg_end
        cdef list facts
        cdef object seen = None, before = None, stat_bytes
        cdef PyObject *found_before
        cdef bint entry_valid = False

        self.before.usable = False
        if (self.previous is not None and self.recheck_every > 0
                and (c_pid + sample_no) % self.recheck_every != 0):
            found_before = PyDict_GetItem(self.previous, pid)
            if (found_before != NULL and type(<object>found_before) is tuple
                    and len(<tuple>found_before) == 2
                    and type((<tuple>found_before)[1]) is dict):
                seen = <object>found_before
                before = seen[1]
                _load_before(<dict>before, &self.before)
        self.steps(pid)
        if self.got[STEP_STAT] < 0:
            err = self.err[STEP_STAT]
            if _vanished(err):
                return None
            self.errors.append((pid, "stat", err))
            return False
        if not self.stat_ok:
            self.bad_stat += 1
            return False
        fd_count = self.fd_count
        ppid = st.values[S_PPID]
        flags = st.values[S_FLAGS]
        vsize = st.values[S_VSIZE]
        rss = st.values[S_RSS]
        start_time = st.values[S_START_TIME]
        comm = PyUnicode_DecodeUTF8(<const char *>st.comm, st.comm_len, "replace")
        is_kthread = (flags & PF_KTHREAD) != 0 or (
            (c_pid == 2 or ppid == 2) and vsize == 0 and st.state != c'Z')

        if self.quiet:
            before_denied = before["denied"]
            if PySequence_Contains(before_denied, "status"):
                denied.append("status")
            if PySequence_Contains(before_denied, "io"):
                denied.append("io")
        else:
            if self.got[STEP_STATUS] < 0:
                if self.lost(pid, "status", self.err[STEP_STATUS], denied):
                    return None
            else:
                have_status = True

            if self.got[STEP_IO] < 0:
                if self.lost(pid, "io", self.err[STEP_IO], denied):
                    return None
            else:
                have_io = True

        fd_err = -1
        if self.fd_mode != C_FD_OFF:
            fd_err = self.err[STEP_FD]
            if fd_err and self.lost(pid, "fd", fd_err, denied):
                return None

        if self.quiet:
            uid = before["uid"]
        else:
            uid = status.uid if have_status and status.has_uid else None
        arg_start = _stat_value(st, S_ARG_START)
        arg_end = _stat_value(st, S_ARG_END)
        found = PyDict_GetItem(self.cache, pid)
        if found != NULL and not (refresh_every > 0
                                  and (c_pid + sample_no) % refresh_every == 0):
            entry = <tuple>found
            entry_valid = (entry[0] == start_time and entry[1] == comm and entry[2] == uid
                           and entry[3] == arg_start and entry[4] == arg_end)
        if (entry_valid and self.quiet
                and self.same_record(<dict>before, seen[0], fd_err, entry)):
            self.new_cache[pid] = entry
            self.seen[pid] = seen
            return before

        stat_bytes = PyBytes_FromStringAndSize(self.bufs[STEP_STAT].data, self.got[STEP_STAT])
        record = PyDict_Copy(_TEMPLATE)
        record["pid"] = pid
        record["ppid"] = ppid
        record["comm"] = comm
        record["state"] = PyUnicode_DecodeUTF8(<const char *>&st.state, 1, "replace")
        record["uid"] = uid
        record["start_time"] = start_time
        record["kernel_thread"] = is_kthread
        record["utime"] = st.values[S_UTIME]
        record["stime"] = st.values[S_STIME]
        record["minflt"] = st.values[S_MINFLT]
        record["majflt"] = st.values[S_MAJFLT]
        record["num_threads"] = st.values[S_NUM_THREADS]
        record["nice"] = _signed_object(st.negative[S_NICE], st.values[S_NICE])
        record["priority"] = _signed_object(st.negative[S_PRIORITY], st.values[S_PRIORITY])
        if page_size == 0 or rss <= 0xFFFFFFFFFFFFFFFFULL // page_size:
            record["rss_bytes"] = rss * page_size
        else:
            record["rss_bytes"] = (<object>rss) * page_size
        record["vsize_bytes"] = vsize
        if st.present > S_BLKIO:
            record["delayacct_blkio_ticks"] = st.values[S_BLKIO]
        if self.quiet:
            record["voluntary_ctxt_switches"] = before["voluntary_ctxt_switches"]
            record["nonvoluntary_ctxt_switches"] = before["nonvoluntary_ctxt_switches"]
            record["read_bytes"] = before["read_bytes"]
            record["write_bytes"] = before["write_bytes"]
        if have_status:
            if status.has_vol:
                record["voluntary_ctxt_switches"] = status.vol
            if status.has_nonvol:
                record["nonvoluntary_ctxt_switches"] = status.nonvol
        if have_io:
            if io.has[IO_READ_BYTES]:
                record["read_bytes"] = io.values[IO_READ_BYTES]
            if io.has[IO_WRITE_BYTES]:
                record["write_bytes"] = io.values[IO_WRITE_BYTES]
        if fd_err == 0:
            record["fd_count"] = fd_count
        record["denied"] = denied
        self.seen[pid] = (stat_bytes, record)

        if entry_valid:
            record.update(<dict>entry[5])
            if entry[6]:
                denied.extend(entry[6])
            self.new_cache[pid] = entry
            return record

        facts = []
        for i in range(3):
            n = self.read(pid, <bytes>_FACT_FILES_B[i], FACT_FILES[i], &err)
            if n < 0:
                if _vanished(err) and self.gone():
                    return None
                facts.append(err)
            else:
                facts.append(PyBytes_FromStringAndSize(self.bufs[STEP_STAT].data, n))
        self.misses.append((record, facts[0], facts[1], facts[2], arg_start, arg_end))
        return record


def scan(proc_root, pids, cache, sample_no=0, refresh_every=0, fd_mode=FD_SIZE,
         page_size=4096, read_cap=DEFAULT_READ_CAP, race_hook=None, previous=None,
         recheck_every=0):
    """Read the process table: see :func:`hostdiag.parsers.procpid.scan`.

    Every system call (the pid listing's getdents, openat, read, fstatat,
    close) runs with the GIL released, and the GIL is taken back between them
    only to build Python objects, so another thread waits for at most one
    file's read and one record's making, not for the whole scan."""
    cdef bytes root = os.fsencode(proc_root)
    cdef _Scan state = _Scan(read_cap, fd_mode)
    cdef list records = []
    cdef Py_ssize_t vanished = 0
    cdef char *path
    cdef Py_ssize_t root_len = len(root)
    cdef long long c_pid
    cdef int err
    cdef uint64_t c_page_size = page_size
    cdef long long c_sample = sample_no, c_refresh = refresh_every
    if not isinstance(cache, dict):
        raise TypeError("cache must be a dict")
    if b"\0" in root:
        raise ValueError("embedded null byte")
    state.cache = cache
    state.new_cache = {}
    state.misses = []
    state.errors = []
    state.race_hook = race_hook
    if previous is not None and not isinstance(previous, dict):
        raise TypeError("previous must be a dict or None")
    state.previous = previous or None
    state.recheck_every = recheck_every
    state.page_size = c_page_size
    state.seen = {}
    if pids is None:
        pids = _list_pids(root)
    path = <char *>malloc(root_len + PID_PATH_EXTRA)
    if path == NULL:
        raise MemoryError()
    memcpy(path, <char *>root, root_len)
    try:
        for pid in pids:
            c_pid = pid
            _pid_path(path, root_len, c_pid)
            with nogil:
                state.dirfd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                err = errno
            if state.dirfd < 0:
                if _vanished(err):
                    vanished += 1
                else:
                    state.errors.append((pid, "pid", err))
                continue
            try:
                outcome = state.one(pid, c_pid, c_page_size, c_sample, c_refresh)
            finally:
                with nogil:
                    close(state.dirfd)
                state.dirfd = -1
            if outcome is None:
                vanished += 1
            elif outcome is not False:
                PyList_Append(records, outcome)
    finally:
        free(path)
    return (records, state.new_cache, state.misses, vanished,
            {"stat": state.bad_stat, "status": state.bad_status, "io": state.bad_io},
            state.errors, state.seen)
