# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""A line matcher in C: PCRE2's JIT runs a regular expression over a whole text, line by line.

No parse rule lives here. The pattern is given by the caller (linematch.py translates the
Python pattern it was given, the only source of the rule, to PCRE2's dialect); this module only
finds, for each line of a text, the first match of that pattern starting in the line, and writes
the match's ``lastindex``, its span and every group's span into an array of C ``int``
(linematch.py's layout): one call per text, no Python object per line. Two character loops
beside it, each with its Python twin in linematch.py: :func:`newlines` counts a buffer's lines,
:func:`json_plain` says whether JSON holds a text's characters as they are.
"""

from cpython cimport array
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcpy

import array as _array

cdef extern from * nogil:
    """
    #define PCRE2_CODE_UNIT_WIDTH 8
    #include <pcre2.h>
    """
    ctypedef struct pcre2_code:
        pass
    ctypedef struct pcre2_match_data:
        pass
    ctypedef struct pcre2_compile_context:
        pass
    ctypedef struct pcre2_match_context:
        pass
    ctypedef struct pcre2_jit_stack:
        pass
    ctypedef size_t PCRE2_SIZE
    ctypedef const unsigned char *PCRE2_SPTR
    ctypedef unsigned char PCRE2_UCHAR
    PCRE2_SIZE PCRE2_UNSET
    uint32_t PCRE2_MULTILINE
    uint32_t PCRE2_ALT_CIRCUMFLEX
    uint32_t PCRE2_NEVER_UTF
    uint32_t PCRE2_NEVER_UCP
    uint32_t PCRE2_JIT_COMPLETE
    uint32_t PCRE2_NEWLINE_LF
    uint32_t PCRE2_INFO_CAPTURECOUNT
    int PCRE2_ERROR_NOMATCH
    pcre2_compile_context *pcre2_compile_context_create(void *)
    void pcre2_compile_context_free(pcre2_compile_context *)
    int pcre2_set_newline(pcre2_compile_context *, uint32_t)
    pcre2_code *pcre2_compile(PCRE2_SPTR, PCRE2_SIZE, uint32_t, int *, PCRE2_SIZE *,
                              pcre2_compile_context *)
    void pcre2_code_free(pcre2_code *)
    int pcre2_jit_compile(pcre2_code *, uint32_t)
    int pcre2_pattern_info(const pcre2_code *, uint32_t, void *)
    pcre2_match_data *pcre2_match_data_create_from_pattern(const pcre2_code *, void *)
    void pcre2_match_data_free(pcre2_match_data *)
    PCRE2_SIZE *pcre2_get_ovector_pointer(pcre2_match_data *)
    pcre2_match_context *pcre2_match_context_create(void *)
    void pcre2_match_context_free(pcre2_match_context *)
    pcre2_jit_stack *pcre2_jit_stack_create(PCRE2_SIZE, PCRE2_SIZE, void *)
    void pcre2_jit_stack_free(pcre2_jit_stack *)
    void pcre2_jit_stack_assign(pcre2_match_context *, void *, void *)
    int pcre2_jit_match(const pcre2_code *, PCRE2_SPTR, PCRE2_SIZE, PCRE2_SIZE, uint32_t,
                        pcre2_match_data *, pcre2_match_context *)
    int pcre2_get_error_message(int, PCRE2_UCHAR *, PCRE2_SIZE)

cdef extern from "Python.h":
    char *PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    int PyUnicode_KIND(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_1BYTE_KIND
    int PyUnicode_IS_ASCII(object)


class MatchError(Exception):
    """PCRE2 could not decide a match (a resource limit): the caller uses ``re`` instead."""


cdef array.array _INTS = _array.array("i")


def newlines(bytes data):
    """The number of newline bytes in ``data``, found with ``memchr`` (a few instructions a
    line; ``bytes.count`` looks at each byte on its own, about five instructions a byte)."""
    cdef const char *p = PyBytes_AS_STRING(data)
    cdef const char *end = p + PyBytes_GET_SIZE(data)
    cdef Py_ssize_t n = 0
    while p < end:
        p = <const char *>memchr(p, 10, end - p)
        if p == NULL:
            break
        n += 1
        p += 1
    return n


cdef unsigned char _AS_IS[256]  # 1: a character JSON strings hold as it is
for _c in range(0x20, 0x7F):
    _AS_IS[_c] = 1
_AS_IS[0x22] = 0  # "
_AS_IS[0x5C] = 0  # \\
cdef uint64_t _ONES = 0x0101010101010101ULL
cdef uint64_t _HIGHS = 0x8080808080808080ULL


cdef inline uint64_t _zero_byte(uint64_t w) noexcept nogil:
    """Non-zero when a byte of ``w`` is zero (exact as a yes or no)."""
    return (w - _ONES) & ~w & _HIGHS


def json_plain(str text):
    """Whether every character of ``text`` is printable ASCII other than ``"`` and ``\\``
    (linematch.json_plain): eight characters at a time (an ASCII text has no byte of 0x80 or
    more, so "below 0x20" is one subtraction), the rest by table."""
    if not PyUnicode_IS_ASCII(text):
        return False
    cdef const unsigned char *p = <const unsigned char *>PyUnicode_DATA(text)
    cdef Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(text)
    cdef uint64_t w
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if (((w - _ONES * 0x20) & ~w & _HIGHS) | _zero_byte(w ^ (_ONES * 0x7F))
                | _zero_byte(w ^ (_ONES * 0x22)) | _zero_byte(w ^ (_ONES * 0x5C))):
            return False
        i += 8
    while i < n:
        if not _AS_IS[p[i]]:
            return False
        i += 1
    return True


cdef str _message(int code):
    cdef PCRE2_UCHAR buf[256]
    pcre2_get_error_message(code, buf, 256)
    return (<bytes>(<char *>buf)).decode("ascii", "replace")


cdef class Matcher:
    """One pattern (PCRE2 source, ASCII), compiled with MULTILINE, for subjects of one byte
    per character, and JIT-compiled.

    ``groups``: its number of capture groups; ``width``: the slots per match in the arrays
    :meth:`first_per_line` returns (``lastindex``, 0 where no group took part; the match's start
    and end; the start and end of each group, -1 and -1 where it took no part).
    """

    cdef pcre2_code *code
    cdef pcre2_match_data *data
    cdef pcre2_match_context *context
    cdef pcre2_jit_stack *stack
    cdef readonly int groups
    cdef readonly int width

    def __cinit__(self, bytes source):
        cdef int error = 0
        cdef PCRE2_SIZE offset = 0
        cdef uint32_t count = 0
        cdef pcre2_compile_context *cc = pcre2_compile_context_create(NULL)
        if cc == NULL:
            raise MemoryError()
        pcre2_set_newline(cc, PCRE2_NEWLINE_LF)
        self.code = pcre2_compile(
            <PCRE2_SPTR>(<char *>source), len(source),
            PCRE2_MULTILINE | PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_UTF | PCRE2_NEVER_UCP,
            &error, &offset, cc)
        pcre2_compile_context_free(cc)
        if self.code == NULL:
            raise ValueError(f"PCRE2 cannot compile the pattern at {offset}: {_message(error)}")
        error = pcre2_jit_compile(self.code, PCRE2_JIT_COMPLETE)
        if error != 0:
            raise ValueError(f"PCRE2's JIT cannot compile the pattern: {_message(error)}")
        pcre2_pattern_info(self.code, PCRE2_INFO_CAPTURECOUNT, &count)
        self.groups = count
        self.width = 3 + 2 * count
        self.data = pcre2_match_data_create_from_pattern(self.code, NULL)
        self.context = pcre2_match_context_create(NULL)
        self.stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL)
        if self.data == NULL or self.context == NULL or self.stack == NULL:
            raise MemoryError()
        pcre2_jit_stack_assign(self.context, NULL, self.stack)

    def __dealloc__(self):
        if self.stack != NULL:
            pcre2_jit_stack_free(self.stack)
        if self.context != NULL:
            pcre2_match_context_free(self.context)
        if self.data != NULL:
            pcre2_match_data_free(self.data)
        if self.code != NULL:
            pcre2_code_free(self.code)

    def first_per_line(self, str text, Py_ssize_t capacity):
        """``(spans, n)``: for each line of ``text``, the first match starting in it, ``n``
        matches in an ``array("i")`` of ``capacity`` matches; ``None`` when ``text`` is not
        stored one byte per character (it holds a character above U+00FF) or is 2 GiB or longer
        (the caller uses ``re``). :class:`MatchError` if PCRE2 cannot decide a line (a resource
        limit), ``ValueError`` if ``text`` has more than ``capacity`` matches."""
        if PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND:
            return None
        cdef Py_ssize_t size = PyUnicode_GET_LENGTH(text)
        if size >= 0x7FFFFFFF:
            return None
        cdef array.array spans = array.clone(_INTS, capacity * self.width, zero=False)
        cdef int *out = spans.data.as_ints
        cdef const unsigned char *subject = <const unsigned char *>PyUnicode_DATA(text)
        cdef PCRE2_SIZE *ov = pcre2_get_ovector_pointer(self.data)
        cdef Py_ssize_t pos = 0, n = 0, g, slots = 2 * (self.groups + 1)
        cdef int rc = 0
        cdef int *o
        cdef const unsigned char *nl
        # The GIL is held throughout: the match data and JIT stack are this matcher's own, and
        # no other thread can use them meanwhile.
        while pos <= size:
            rc = pcre2_jit_match(self.code, subject, size, pos, 0, self.data, self.context)
            if rc < 0:
                break
            if n >= capacity:
                rc = -10000
                break
            o = out + n * self.width
            o[0] = rc - 1
            g = 0
            while g < slots:
                o[1 + g] = -1 if ov[g] == PCRE2_UNSET else <int>ov[g]
                g += 1
            n += 1
            # On to the next line: later matches starting in this one are not first ones.
            nl = <const unsigned char *>memchr(subject + ov[0], 10, size - ov[0])
            if nl == NULL:
                break
            pos = nl - subject + 1
        if rc == -10000:
            raise ValueError(f"more matches than the capacity, {capacity}")
        if rc < 0 and rc != PCRE2_ERROR_NOMATCH:
            raise MatchError(_message(rc))
        return spans, n

    def search(self, str text):
        """Whether the pattern matches anywhere in ``text``; ``None`` for a text that
        :meth:`first_per_line` does not take. :class:`MatchError` as there."""
        if PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND:
            return None
        cdef Py_ssize_t size = PyUnicode_GET_LENGTH(text)
        if size >= 0x7FFFFFFF:
            return None
        cdef const unsigned char *subject = <const unsigned char *>PyUnicode_DATA(text)
        cdef int rc
        rc = pcre2_jit_match(self.code, subject, size, 0, 0, self.data, self.context)
        if rc < 0 and rc != PCRE2_ERROR_NOMATCH:
            raise MatchError(_message(rc))
        return rc >= 0
