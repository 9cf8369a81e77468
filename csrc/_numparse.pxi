# Number and white-space helpers shared by the compiled parsers: textually
# included (``include "_numparse.pxi"``) by _proctext.pyx and _procpid.pyx,
# so each module gets its own inline copy and nothing is called across modules.
# Not built on its own: setup.py builds csrc/*.pyx only.
#
# The grammar is proctext's: tokens are split on ASCII white space (space, \t to
# \r); an unsigned number is 1 to 20 ASCII digits below 2**64.

from libc.stdint cimport uint64_t
from libc.string cimport memchr


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or (c >= 9 and c <= 13)


cdef inline Py_ssize_t _next_token(const unsigned char **pos, const unsigned char *end,
                                   const unsigned char **token) noexcept nogil:
    """The length of the next white-space separated token before ``end`` (0: none left)."""
    cdef const unsigned char *q = pos[0]
    while q < end and _is_space(q[0]):
        q += 1
    token[0] = q
    while q < end and not _is_space(q[0]):
        q += 1
    pos[0] = q
    return q - token[0]


cdef inline const unsigned char *_line_end(const unsigned char *p,
                                           const unsigned char *end) noexcept nogil:
    cdef const unsigned char *eol = <const unsigned char *>memchr(p, c'\n', end - p)
    return end if eol == NULL else eol


cdef inline bint _unsigned(const unsigned char *s, Py_ssize_t n, uint64_t *out) noexcept nogil:
    """1 to 20 ASCII digits whose value is below 2**64."""
    cdef uint64_t value = 0
    cdef unsigned int digit
    cdef Py_ssize_t i
    if n < 1 or n > 20:
        return False
    for i in range(n):
        digit = s[i] - 48u
        if digit > 9:
            return False
        # Only a 20th digit can overflow: 2**64 - 1 is 1844674407370955161 * 10 + 5.
        if i == 19 and (value > 1844674407370955161ULL
                        or (value == 1844674407370955161ULL and digit > 5)):
            return False
        value = value * 10 + digit
    out[0] = value
    return True


cdef inline bint _signed(const unsigned char *s, Py_ssize_t n, bint *negative,
                         uint64_t *out) noexcept nogil:
    """An unsigned number with an optional leading '-': sign and magnitude."""
    negative[0] = n > 0 and s[0] == c'-'
    if negative[0]:
        return _unsigned(s + 1, n - 1, out)
    return _unsigned(s, n, out)


cdef inline object _signed_object(bint negative, uint64_t magnitude):
    if not negative:
        return magnitude
    if magnitude <= 9223372036854775807ULL:
        return -<long long>magnitude
    return -(<object>magnitude)
