# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of :func:`sendpost_agent.parse.postfix.scan.scan`, for the common case.

It reads the buffer as bytes and matches ``SYSLOG_SCAN`` (``postfix.py``) by hand: a ``memchr``
per ``]: `` in each line, then the payload alternatives in the regex's order with the same
character classes, so the operations it returns are the ones ``scan`` returns — the tests feed
both the corpus, the real-Postfix logs and generated lines and compare. The line-local event
fields (``analyse_reply``, ``prepare``) are the same code, compiled.

It declines (returns None, and the pure-Python scan takes the buffer) whatever is rare and
fiddly: a byte outside ASCII (invalid UTF-8 and Unicode whitespace classes live there), a line
over 64 KiB, a line that looks like a message part without its syslog envelope.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy, memset, strlen

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL

from _blake2 import blake2b
from threading import Thread as _Thread
from json.encoder import encode_basestring_ascii as _json_str

from sendpost_agent.parse.events import clean_enhanced
from sendpost_agent.parse.records import Expired, Reinjected

cdef enum:
    MAX_LINE = 65536  # postfix.MAX_LINE_BYTES
    MAX_TEXT = 10000  # events.MAX_TEXT
    MAX_RECIPIENT = 320  # events.MAX_RECIPIENT
    MAX_COMMAND = 64  # events.MAX_COMMAND
    MAX_QUEUE_ID = 64  # events.MAX_QUEUE_ID

cdef enum:
    K_NONE = 0
    K_STATUS = 6
    K_TEXT = 7
    K_TRUNCATED = 8
    K_HEADER = 9
    K_SENDER = 10
    K_EXPIRED = 11
    K_MESSAGE_ID = 12
    K_REMOVED = 13
    K_PARENT = 14

# The op codes of scan.py.
cdef int OP_REMOVED = 0, OP_UUID = 1, OP_DELIVERY = 2, OP_EXPIRED = 3, OP_REINJECTED = 4

cdef struct Hit:
    Py_ssize_t qs, qe          # queue ID
    Py_ssize_t gs, ge          # UUID, expired status, parent queue ID, <recipient>
    Py_ssize_t bs, be          # bare recipient (bs < 0: the <recipient> form)
    Py_ssize_t os, oe          # orig_to address, either form (os < 0: not logged)
    Py_ssize_t rs, re          # relay
    Py_ssize_t ds, de          # dsn (ds < 0: absent)
    Py_ssize_t ss, se          # status word
    Py_ssize_t end             # the end of the match


cdef object _prepared_cls = None
cdef dict _heads = {}
cdef dict _enhanced_seen = {None: None}
cdef extern from *:
    const char* SENDPOST_SOURCE_DIGEST  # a macro set by setup.py: this file's CRC-32, in hex

SOURCE_DIGEST = SENDPOST_SOURCE_DIGEST.decode("ascii")


def bind(prepared_cls, dict heads):
    """scan.py hands over its ``Prepared`` class and event-type heads (it imports this module)."""
    global _prepared_cls, _heads
    _prepared_cls = prepared_cls
    _heads = heads


# -- character classes (ASCII; the caller guarantees no other byte) ---------------------------

cdef inline bint _alnum(unsigned char c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)


cdef inline bint _hex(unsigned char c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


cdef inline bint _space(unsigned char c) noexcept nogil:
    # str.isspace / the regex \s, restricted to ASCII
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


cdef inline bint _lit(const unsigned char* b, Py_ssize_t p, Py_ssize_t end,
                      const char* s, Py_ssize_t n) noexcept nogil:
    return end - p >= n and memcmp(b + p, s, n) == 0


cdef inline bint _ci(const unsigned char* b, Py_ssize_t p, Py_ssize_t end,
                     const char* lower, Py_ssize_t n) noexcept nogil:
    """The first letter either case, the rest as given (the ``[Xx]-[Ss]endpost`` classes)
    — or, with ``lower`` all lower case and ``n`` negative, every letter either case."""
    cdef Py_ssize_t i, m = n if n > 0 else -n
    cdef unsigned char c, want
    if end - p < m:
        return False
    for i in range(m):
        c = b[p + i]
        want = <unsigned char>lower[i]
        if c == want:
            continue
        if (n < 0 or i == 0) and 97 <= want <= 122 and c == want - 32:
            continue
        return False
    return True


cdef inline Py_ssize_t _find(const unsigned char* b, Py_ssize_t p, Py_ssize_t end,
                             unsigned char c) noexcept nogil:
    if p >= end:
        return -1
    cdef const unsigned char* hit = <const unsigned char*>memchr(b + p, c, end - p)
    return -1 if hit == NULL else hit - b


cdef inline bint _uuid(const unsigned char* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    if end - p < 36:
        return False
    for i in range(36):
        if i == 8 or i == 13 or i == 18 or i == 23:
            if b[p + i] != 45:  # -
                return False
        elif not _hex(b[p + i]):
            return False
    return True


cdef Py_ssize_t _case_field(const unsigned char* b, Py_ssize_t p, Py_ssize_t end,
                            unsigned char c, Py_ssize_t* val_end) noexcept nogil:
    """After ``p``: a value up to the first ``c`` (not included), then ``", "``: returns the
    position after ``", "`` (or -1) and stores the value's end."""
    cdef Py_ssize_t v = _find(b, p, end, c)
    if v < 0:
        v = end
    val_end[0] = v
    if c == 44 and v + 1 < end and b[v] == 44 and b[v + 1] == 32:
        return v + 2
    return -1


# -- the payload alternatives of postfix._BODY ----------------------------------------------

cdef int _delivery(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, Hit* h) noexcept nogil:
    """``to=...`` from just after ``to=``; K_NONE when it is not a whole delivery line."""
    cdef Py_ssize_t v, q, save
    cdef unsigned char c
    if p < end and b[p] == 60:  # <
        v = _find(b, p + 1, end, 62)  # >
        if v < 0:
            return K_NONE
        h.gs, h.ge, h.bs = p + 1, v, -1
        p = v + 1
    else:
        q = p
        while q < end:
            c = b[q]
            if _space(c) or c == 44 or c == 60 or c == 62:
                break
            q += 1
        if q == p:
            return K_NONE
        h.bs, h.be = p, q
        p = q
    if not _lit(b, p, end, b", ", 2):
        return K_NONE
    p += 2
    h.os = -1
    if _lit(b, p, end, b"orig_to=", 8):  # optional; taken only when whole
        save = p
        q = p + 8
        v = -1
        if q < end and b[q] == 60:
            v = _find(b, q + 1, end, 62)
            if v >= 0 and _lit(b, v + 1, end, b", ", 2):
                h.os, h.oe = q + 1, v
                p = v + 3
            else:
                v = -1
        if v < 0:
            while q < end:
                c = b[q]
                if _space(c) or c == 44 or c == 60 or c == 62:
                    break
                q += 1
            if _lit(b, q, end, b", ", 2):
                h.os, h.oe = p + 8, q
                p = q + 2
            else:
                p = save
    if not _lit(b, p, end, b"relay=", 6):
        return K_NONE
    h.rs = p + 6
    p = _case_field(b, h.rs, end, 44, &h.re)
    if p < 0:
        return K_NONE
    while not (_lit(b, p, end, b"dsn=", 4) or _lit(b, p, end, b"status=", 7)):
        q = p
        while q < end and (b[q] == 95 or 97 <= b[q] <= 122):  # [a-z_]
            q += 1
        if q == p or q >= end or b[q] != 61:  # =
            return K_NONE
        p = _case_field(b, q + 1, end, 44, &v)
        if p < 0:
            return K_NONE
    h.ds = -1
    if _lit(b, p, end, b"dsn=", 4):
        q = p + 4
        while q < end and not (_space(b[q]) or b[q] == 44):
            q += 1
        if not _lit(b, q, end, b", ", 2):
            return K_NONE
        h.ds, h.de = p + 4, q
        p = q + 2
    if not _lit(b, p, end, b"status=", 7):
        return K_NONE
    p += 7
    q = p
    while q < end and (b[q] == 45 or 65 <= b[q] <= 90 or 97 <= b[q] <= 122):
        q += 1
    if q == p:
        return K_NONE
    h.ss, h.se = p, q
    if _lit(b, q, end, b" (", 2):
        h.end = q + 2
        return K_TEXT
    h.end = q
    return K_STATUS


cdef int _from(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, Hit* h) noexcept nogil:
    """``from=<`` from just after it: the platform's bounce sender, or an expiry."""
    cdef Py_ssize_t q, v
    if _ci(b, p, end, b"bounces+", -8) and _uuid(b, p + 8, end) and _lit(b, p + 44, end, b"+", 1):
        v = p + 45
        while v < end and b[v] != 62 and b[v] != 64:  # [^>@]
            v += 1
        if v < end and b[v] == 64 and _ci(b, v + 1, end, b"sp-bounce.", -10):
            q = _find(b, v + 11, end, 62)
            if q >= 0 and _lit(b, q + 1, end, b", size=", 7):
                h.gs, h.ge = p + 8, p + 44
                return K_SENDER
    q = _find(b, p, end, 62)
    if q < 0 or not _lit(b, q + 1, end, b", status=", 9):
        return K_NONE
    q += 10
    if _lit(b, q, end, b"force-expired", 13):
        h.gs, h.ge = q, q + 13
        return K_EXPIRED
    if _lit(b, q, end, b"expired", 7):
        h.gs, h.ge = q, q + 7
        return K_EXPIRED
    return K_NONE


cdef int _body(const unsigned char* b, Py_ssize_t p, Py_ssize_t end, Hit* h) noexcept nogil:
    """``postfix._BODY`` at ``p``: the match's kind (its ``lastindex``), K_NONE for no match."""
    cdef Py_ssize_t q = p, v, w
    cdef int kind
    while q < end and _alnum(b[q]):
        q += 1
    if q - p < 5 or not _lit(b, q, end, b": ", 2):
        return K_NONE
    if q - p == 7 and memcmp(b + p, b"NOQUEUE", 7) == 0:
        return K_NONE
    h.qs, h.qe = p, q
    p = q + 2
    if _lit(b, p, end, b"to=", 3):
        kind = _delivery(b, p + 3, end, h)
        return kind if kind != K_NONE else K_TRUNCATED
    if _lit(b, p, end, b"info: header ", 13):
        q = p + 13
        if not (_ci(b, q, end, b"x-", 2) and _ci(b, q + 2, end, b"sendpost-", 9)
                and _ci(b, q + 11, end, b"message-", 8) and _ci(b, q + 19, end, b"uuid:", -4)
                and _lit(b, q + 23, end, b":", 1)):
            return K_NONE
        q += 24
        while q < end and (b[q] == 32 or b[q] == 9):
            q += 1
        if q < end and b[q] == 60 and _uuid(b, q + 1, end):
            q += 1
        if not _uuid(b, q, end):
            return K_NONE
        h.gs, h.ge = q, q + 36
        return K_HEADER
    if _lit(b, p, end, b"from=<", 6):
        return _from(b, p + 6, end, h)
    if _lit(b, p, end, b"message-id=", 11):
        q = p + 11
        while q < end and (b[q] == 32 or b[q] == 9):
            q += 1
        if q < end and b[q] == 60 and _uuid(b, q + 1, end) and _lit(b, q + 37, end, b"@", 1):
            q += 1
        if not (_uuid(b, q, end) and _lit(b, q + 36, end, b"@", 1)):
            return K_NONE
        h.gs, h.ge = q, q + 36
        return K_MESSAGE_ID
    if _lit(b, p, end, b"removed", 7):
        q = p + 7
        while q < end and (b[q] == 32 or b[q] == 9):
            q += 1
        return K_REMOVED if q == end else K_NONE
    if _lit(b, p, end, b"client=", 7):
        q = p + 7
        while True:
            v = _find(b, q, end, 44)
            if v < 0:
                return K_NONE
            if _lit(b, v, end, b", orig_queue_id=", 16):
                w = v + 16
                while w < end and _alnum(b[w]):
                    w += 1
                if w - (v + 16) >= 5:
                    h.gs, h.ge = v + 16, w
                    return K_PARENT
            q = v + 1
    return K_NONE


cdef bint _bare_hint(const unsigned char* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """``postfix.BARE_HINT``'s look-ahead at a line start: a message part without envelope."""
    cdef Py_ssize_t q = p
    while q < end and _alnum(b[q]):
        q += 1
    if q - p < 5 or not _lit(b, q, end, b": ", 2):
        return False
    q += 2
    return (_lit(b, q, end, b"to=", 3) or _lit(b, q, end, b"info: ", 6)
            or _lit(b, q, end, b"from=<", 6) or _lit(b, q, end, b"message-id=", 11)
            or _lit(b, q, end, b"removed", 7) or _lit(b, q, end, b"client=", 7))


# -- the line-local event fields: events.analyse_reply and scan.prepare, compiled -----------

def analyse_reply(str text):
    """``events.analyse_reply``, compiled (a plain tuple)."""
    return _analyse_reply(text)


def prepare(str event_type, object reply, object recipient, object dsn, str queue_id, str line,
            object final=None):
    """``scan.prepare``, compiled."""
    return _prepare(event_type, tuple(reply), recipient, dsn, queue_id, line, final)


cdef tuple _analyse_reply(str text):
    cdef object command = None
    cdef str body = text
    cdef str stripped = text.rstrip()
    cdef Py_ssize_t cut, space
    cdef str token, rest
    cdef object code = None
    if stripped.endswith(" command)"):
        cut = text.find("(in reply to ")
        if 0 <= cut and cut + 13 < len(stripped) - 9:
            command = text[cut + 13 : len(stripped) - 9].strip().upper() or None
            body = text[:cut].rstrip()
            if command == "END OF DATA":
                command = "DATA"
    if body.startswith("host "):
        space = body.find(" ", 5)
        token = body[5:space]
        if space > 5 and token.split() == [token]:
            rest = body[space + 1 :]
            if rest.startswith("said: "):
                body = rest[6:]
            elif rest.startswith("refused to talk to me: "):
                body = rest[23:]
                if command is None:
                    command = "CONNECT"
    if (
        len(body) >= 3
        and "2" <= body[0] <= "5"
        and "0" <= body[1] <= "9"
        and "0" <= body[2] <= "9"
        and (len(body) == 3 or body[3] in " -")
    ):
        code = int(body[:3])
        body = body[3:].lstrip(" -")
    description = body.strip() or None
    if description is not None and len(description) > MAX_TEXT:
        description = description[:MAX_TEXT]
    return code, description, command


cdef object _prepare(str event_type, tuple reply, object recipient, object dsn, str queue_id,
                     str line, object final=None):
    if recipient is not None and (
        "@" not in recipient
        or len(recipient) > MAX_RECIPIENT
        or (not recipient.isascii() and len(recipient.lower()) > MAX_RECIPIENT)
    ):
        recipient = None
    recipient = recipient or None
    if final is not None and ("@" not in final or len(final) > MAX_RECIPIENT or "\x00" in final):
        final = None
    enhanced = _enhanced_seen.get(dsn, "")
    if enhanced == "":
        enhanced = clean_enhanced(dsn)
        if len(_enhanced_seen) < 1000:
            _enhanced_seen[dsn] = enhanced
    key = (line + "\x1f" + event_type + "\x1f" + (recipient or "")).encode("utf-8", "surrogatepass")
    eid = blake2b(key, digest_size=16).hexdigest()
    if len(queue_id) > MAX_QUEUE_ID:
        queue_id = queue_id[:MAX_QUEUE_ID]
    code, description, command = reply
    if command is not None and len(command) > MAX_COMMAND:
        command = None
    if (
        "\x00" in queue_id
        or (recipient is not None and "\x00" in recipient)
        or (description is not None and "\x00" in description)
        or (command is not None and "\x00" in command)
    ):
        recipient, description, command = _no_nul(recipient), _no_nul(description), _no_nul(command)
        queue_id = queue_id.replace("\x00", "?")
    c = "" if code is None else f',"smtp_code":{code}'
    d = "" if description is None else ',"smtp_description":' + _json_str(description)
    r = "" if recipient is None else ',"recipient":' + _json_str(recipient)
    e = "" if enhanced is None else f',"enhanced_status":"{enhanced}"'
    m = "" if command is None else ',"smtp_command":' + _json_str(command)
    f = "" if final is None else ',"final_recipient":' + _json_str(final)
    tail = f'{c}{d}{r},"event_id":"{eid}"{e}{m},"queue_id":{_json_str(queue_id)}{f}}}'
    head = _heads.get(event_type) or f'","event_type":{_json_str(event_type)[1:]}'
    return tuple.__new__(_prepared_cls, (
        event_type, code, description, recipient, eid, enhanced, command, queue_id, head, tail,
        final,
    ))


cdef object _no_nul(object text):
    return None if text is None else text.replace("\x00", "?")


cdef inline str _text(const unsigned char* b, Py_ssize_t s, Py_ssize_t e):
    return b[s:e].decode("ascii")



# -- the fused path: scan, correlate and render in one pass ----------------------------------
#
# Pipeline.feed_json's common case. A delivery line of a queue ID whose UUID is known, that is
# not a hop, becomes its JSON text straight from the buffer: no op tuple, no record, no
# Prepared. Everything else — UUID, removed, expiry and re-injection lines, lines of queue IDs
# still waiting for their UUID, hops — is handed to the Correlator's own methods, in log order,
# with the same arguments Pipeline.apply gives them; their events are rendered by
# Pipeline.render. Stamps are resolved on the same lines as in apply (deliveries and expiries),
# so the year inference sees the same sequence.

cdef enum:
    E_NONE = 0
    E_DELIVERED = 1
    E_DEFERRED = 2
    E_BOUNCED = 3
    E_SOFT = 4

cdef const char** _TYPE_NAMES = [NULL, b"delivered", b"deferred", b"bounced", b"soft_bounced"]
cdef tuple _TYPE_STR = (None, "delivered", "deferred", "bounced", "soft_bounced")


cdef struct Buf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap
    bint failed                # an allocation failed: later puts do nothing


cdef bint _grow(Buf* o, Py_ssize_t need) noexcept nogil:
    cdef Py_ssize_t cap = o.cap if o.cap else 4096
    cdef char* d
    if o.failed:
        return False
    if o.len + need <= o.cap:
        return True
    while cap < o.len + need:
        cap *= 2
    d = <char*>realloc(o.data, cap)
    if d == NULL:
        o.failed = True
        return False
    o.data = d
    o.cap = cap
    return True


cdef inline void _put(Buf* o, const char* s, Py_ssize_t n) noexcept nogil:
    if o.len + n > o.cap and not _grow(o, n):
        return
    memcpy(o.data + o.len, s, n)
    o.len += n


cdef inline void _putz(Buf* o, const char* s) noexcept nogil:
    _put(o, s, strlen(s))


cdef inline int _put_str(Buf* o, str s) except -1:
    cdef Py_ssize_t n
    cdef const char* p = PyUnicode_AsUTF8AndSize(s, &n)
    _put(o, p, n)
    return 0


cdef const char* _HEX = b"0123456789abcdef"


cdef void _put_json(Buf* o, const unsigned char* b, Py_ssize_t s, Py_ssize_t e,
                    bint upper) noexcept nogil:
    """``json.encoder.encode_basestring_ascii`` of ASCII ``b[s:e]`` (quotes included), a NUL
    written ``?`` (as ``scan.prepare`` does); ``upper``: of its ``.upper()``."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef char* w
    if not _grow(o, 2 + 6 * (e - s)):
        return
    w = o.data + o.len
    w[0] = 34
    w += 1
    for i in range(s, e):
        c = b[i]
        if 32 <= c <= 126 and c != 34 and c != 92:
            if upper and 97 <= c <= 122:
                c -= 32
            w[0] = c
            w += 1
        elif c == 34 or c == 92:
            w[0] = 92
            w[1] = c
            w += 2
        elif c == 10:
            w[0] = 92; w[1] = 110; w += 2
        elif c == 13:
            w[0] = 92; w[1] = 114; w += 2
        elif c == 9:
            w[0] = 92; w[1] = 116; w += 2
        elif c == 8:
            w[0] = 92; w[1] = 98; w += 2
        elif c == 12:
            w[0] = 92; w[1] = 102; w += 2
        elif c == 0:
            w[0] = 63; w += 1
        else:
            w[0] = 92; w[1] = 117; w[2] = 48; w[3] = 48
            w[4] = _HEX[c >> 4]; w[5] = _HEX[c & 15]
            w += 6
    w[0] = 34
    w += 1
    o.len = w - o.data


# -- BLAKE2b (RFC 7693), for the event id without the GIL -------------------------------------

cdef uint64_t _B2_IV[8]
_B2_IV[:] = [
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
]
cdef unsigned char _B2_SIGMA[160]
_B2_SIGMA[:] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
    11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
    7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
    9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
    2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
    12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
    13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
    6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
    10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
]


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define SENDPOST_LITTLE_ENDIAN 1
    #else
    #define SENDPOST_LITTLE_ENDIAN 0
    #endif
    """
    const int SENDPOST_LITTLE_ENDIAN


cdef struct B2:
    uint64_t h[8]
    uint64_t t                 # bytes compressed so far (inputs stay far below 2**64)
    unsigned char buf[128]
    Py_ssize_t c               # bytes waiting in buf


cdef inline uint64_t _rotr(uint64_t x, int n) noexcept nogil:
    return (x >> n) | (x << (64 - n))


cdef inline void _g(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) noexcept nogil:
    v[a] = v[a] + v[b] + x
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = v[a] + v[b] + y
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 63)


cdef void _b2_compress(B2* st, bint last) noexcept nogil:
    cdef uint64_t v[16]
    cdef uint64_t m[16]
    cdef int i, j, r
    cdef const unsigned char* sg
    if SENDPOST_LITTLE_ENDIAN:
        memcpy(m, st.buf, 128)
    else:
        for i in range(16):  # little-endian words
            m[i] = 0
            for j in range(8):
                m[i] |= (<uint64_t>st.buf[8 * i + j]) << (8 * j)
    for i in range(8):
        v[i] = st.h[i]
        v[i + 8] = _B2_IV[i]
    v[12] ^= st.t
    if last:
        v[14] = ~v[14]
    for r in range(12):
        sg = &_B2_SIGMA[(r % 10) * 16]
        _g(v, 0, 4, 8, 12, m[sg[0]], m[sg[1]])
        _g(v, 1, 5, 9, 13, m[sg[2]], m[sg[3]])
        _g(v, 2, 6, 10, 14, m[sg[4]], m[sg[5]])
        _g(v, 3, 7, 11, 15, m[sg[6]], m[sg[7]])
        _g(v, 0, 5, 10, 15, m[sg[8]], m[sg[9]])
        _g(v, 1, 6, 11, 12, m[sg[10]], m[sg[11]])
        _g(v, 2, 7, 8, 13, m[sg[12]], m[sg[13]])
        _g(v, 3, 4, 9, 14, m[sg[14]], m[sg[15]])
    for i in range(8):
        st.h[i] ^= v[i] ^ v[i + 8]


cdef inline void _b2_init(B2* st) noexcept nogil:
    """Unkeyed, 16-byte digest (``hashlib.blake2b(digest_size=16)``)."""
    cdef int i
    for i in range(8):
        st.h[i] = _B2_IV[i]
    st.h[0] ^= 0x01010000 ^ 16
    st.t = 0
    st.c = 0


cdef void _b2_update(B2* st, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    while n > 0:
        if st.c == 128:  # a full block is compressed only once more input follows
            st.t += 128
            _b2_compress(st, False)
            st.c = 0
        k = 128 - st.c
        if k > n:
            k = n
        memcpy(st.buf + st.c, data, k)
        st.c += k
        data += k
        n -= k


cdef void _b2_hex(B2* st, char* out) noexcept nogil:
    """Finish and write the 32 hex digits of the digest to ``out``."""
    cdef int i
    cdef unsigned char byte
    st.t += st.c
    memset(st.buf + st.c, 0, 128 - st.c)
    _b2_compress(st, True)
    for i in range(16):
        byte = (st.h[i >> 3] >> (8 * (i & 7))) & 0xFF
        out[2 * i] = _HEX[byte >> 4]
        out[2 * i + 1] = _HEX[byte & 15]


def blake2b_128_hex(const unsigned char[::1] data):
    """``hashlib.blake2b(data, digest_size=16).hexdigest()``, by the code above (for tests)."""
    cdef B2 st
    cdef char out[32]
    _b2_init(&st)
    if data.shape[0]:
        _b2_update(&st, &data[0], data.shape[0])
    _b2_hex(&st, out)
    return out[:32].decode("ascii")


cdef struct Reply:
    int code                   # -1: none
    Py_ssize_t ds, de          # description (ds < 0: none)
    Py_ssize_t cs, ce          # command (cs: -1 none, -2 CONNECT, -3 DATA)


cdef void _analyse(const unsigned char* b, Py_ssize_t ts, Py_ssize_t te, Reply* r) noexcept nogil:
    """``events.analyse_reply`` on ASCII ``b[ts:te]``, as spans."""
    cdef Py_ssize_t stripped = te, cut, cs, ce, bs = ts, be = te, space, i
    cdef bint ok
    r.code = -1
    r.cs = -1
    r.ce = -1
    while stripped > ts and _space(b[stripped - 1]):
        stripped -= 1
    if stripped - ts >= 9 and memcmp(b + stripped - 9, b" command)", 9) == 0:
        cut = -1
        i = ts
        while i + 13 <= te:
            if b[i] == 40 and memcmp(b + i, b"(in reply to ", 13) == 0:
                cut = i
                break
            i += 1
        if cut >= 0 and cut + 13 < stripped - 9:
            cs = cut + 13
            ce = stripped - 9
            while cs < ce and _space(b[cs]):
                cs += 1
            while ce > cs and _space(b[ce - 1]):
                ce -= 1
            if ce > cs:
                r.cs, r.ce = cs, ce
                if ce - cs == 11 and _ci(b, cs, ce, b"end of data", -11):
                    r.cs = -3
            be = cut
            while be > bs and _space(b[be - 1]):
                be -= 1
    if be - bs >= 5 and memcmp(b + bs, b"host ", 5) == 0:
        space = -1
        i = bs + 5
        while i < be:
            if b[i] == 32:
                space = i
                break
            i += 1
        if space > bs + 5:
            ok = True
            for i in range(bs + 5, space):
                if _space(b[i]):
                    ok = False
                    break
            if ok:
                if be - (space + 1) >= 6 and memcmp(b + space + 1, b"said: ", 6) == 0:
                    bs = space + 7
                elif be - (space + 1) >= 23 and memcmp(b + space + 1, b"refused to talk to me: ", 23) == 0:
                    bs = space + 24
                    if r.cs == -1:
                        r.cs = -2
    if (be - bs >= 3 and 50 <= b[bs] <= 53 and 48 <= b[bs + 1] <= 57 and 48 <= b[bs + 2] <= 57
            and (be - bs == 3 or b[bs + 3] == 32 or b[bs + 3] == 45)):
        r.code = (b[bs] - 48) * 100 + (b[bs + 1] - 48) * 10 + (b[bs + 2] - 48)
        bs += 3
        while bs < be and (b[bs] == 32 or b[bs] == 45):
            bs += 1
    while bs < be and _space(b[bs]):
        bs += 1
    while be > bs and _space(b[be - 1]):
        be -= 1
    if be > bs:
        r.ds = bs
        r.de = be if be - bs <= MAX_TEXT else bs + MAX_TEXT
    else:
        r.ds = -1
        r.de = -1


cdef bint _enhanced(const unsigned char* b, Py_ssize_t s, Py_ssize_t e) noexcept nogil:
    """``events.clean_enhanced`` keeps the dsn: ``[245]\\.\\d{1,3}\\.\\d{1,3}``."""
    cdef Py_ssize_t p = s + 2, q
    if e - s < 5 or not (50 <= b[s] <= 53 and b[s] != 51) or b[s + 1] != 46:
        return False
    q = p
    while q < e and 48 <= b[q] <= 57:
        q += 1
    if q == p or q - p > 3 or q >= e or b[q] != 46:
        return False
    p = q + 1
    q = p
    while q < e and 48 <= b[q] <= 57:
        q += 1
    return q == e and 1 <= q - p <= 3


cdef bint _acceptable(const unsigned char* b, Py_ssize_t n) noexcept nogil:
    """ASCII, and no line the fused path declines (see ``scan``): checked before any state
    changes."""
    cdef Py_ssize_t ls = 0, le, i = 0
    cdef uint64_t word
    while i + 8 <= n:
        memcpy(&word, b + i, 8)
        if word & 0x8080808080808080ULL:
            return False
        i += 8
    while i < n:
        if b[i] & 0x80:
            return False
        i += 1
    while ls < n:
        le = _find(b, ls, n, 10)
        if le < 0:
            le = n
        if le - ls > MAX_LINE or _bare_hint(b, ls, le):
            return False
        ls = le + 1
    return True


cdef inline bint _has(const unsigned char* b, Py_ssize_t s, Py_ssize_t e,
                      const char* lit, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = s
    while i + n <= e:
        if memcmp(b + i, lit, n) == 0:
            return True
        i += 1
    return False


# Stage 1 (no GIL, on a helper thread for all but the first piece of a buffer) finds the
# lines that matter and renders the line-local end ("tail") of each event's JSON; stage 2 (the
# caller's thread) correlates, in log order, and writes the events. A buffer is cut into pieces
# of whole lines so that stage 1 of piece k+1 runs while stage 2 handles piece k.

cdef struct Rec:
    int kind
    int etype                  # E_* for deliveries
    bint hop                   # a delivered line whose text says "queued as": maybe a hop
    Py_ssize_t ls, le, at      # the line, and the "]" of its "]: "
    Py_ssize_t qs, qe          # queue ID
    Py_ssize_t gs, ge          # UUID, expired status or parent queue ID
    Py_ssize_t cs, ce          # recipient: orig_to when logged (not empty), else to
    Py_ssize_t fs, fe          # the final (to=) address when cs, ce is orig_to (fs < 0: none)
    Py_ssize_t rs, re          # relay
    Py_ssize_t ds, de          # dsn (ds < 0: absent)
    Py_ssize_t ss, se          # status word
    Py_ssize_t ts, te          # status text
    Py_ssize_t st_s, st_e      # timestamp (st_s < 0: none)
    Py_ssize_t tail, tail_len  # the event's rendered end in Job.tails (tail_len 0: none)


cdef struct Job:
    const unsigned char* b
    Py_ssize_t s, e            # the piece: whole lines
    Rec* recs
    Py_ssize_t n, cap
    Py_ssize_t lines, truncated
    Buf tails
    bint want_tails            # render each event's JSON tail (the fused path) or not (scan)
    bint failed


cdef bint _stamp_span(const unsigned char* b, Py_ssize_t start, Py_ssize_t end,
                      Py_ssize_t* s, Py_ssize_t* e) noexcept nogil:
    """``_stamp`` as a span; False for no timestamp."""
    cdef Py_ssize_t last = end - 1, second
    while last >= start and b[last] != 32:
        last -= 1
    if last < start:
        return False
    second = last - 1
    while second >= start and b[second] != 32:
        second -= 1
    if second < start:
        return False
    while second > start and _space(b[second - 1]):
        second -= 1
    if second == start:
        return False
    s[0] = start
    e[0] = second
    return True


cdef void _tail(Job* j, Rec* r) noexcept nogil:
    """The event's JSON after its timestamp (``scan.prepare``'s ``tail``)."""
    cdef const unsigned char* b = j.b
    cdef Reply rep
    cdef B2 st
    cdef char eid[32]
    cdef char digits[3]
    cdef const char* tname = _TYPE_NAMES[r.etype]
    cdef bint keep_rcpt = (r.ce > r.cs and _find(b, r.cs, r.ce, 64) >= 0
                           and r.ce - r.cs <= MAX_RECIPIENT)
    cdef bint keep_final = (r.fs >= 0 and r.fe > r.fs and _find(b, r.fs, r.fe, 64) >= 0
                            and r.fe - r.fs <= MAX_RECIPIENT)
    cdef Buf* o = &j.tails
    _analyse(b, r.ts, r.te, &rep)
    _b2_init(&st)
    _b2_update(&st, b + r.ls, r.le - r.ls)
    _b2_update(&st, <const unsigned char*>b"\x1f", 1)
    _b2_update(&st, <const unsigned char*>tname, strlen(tname))
    _b2_update(&st, <const unsigned char*>b"\x1f", 1)
    if keep_rcpt:
        _b2_update(&st, b + r.cs, r.ce - r.cs)
    _b2_hex(&st, eid)
    r.tail = o.len
    if rep.code >= 0:
        _putz(o, b',"smtp_code":')
        digits[0] = 48 + rep.code // 100
        digits[1] = 48 + rep.code // 10 % 10
        digits[2] = 48 + rep.code % 10
        _put(o, digits, 3)
    if rep.ds >= 0:
        _putz(o, b',"smtp_description":')
        _put_json(o, b, rep.ds, rep.de, False)
    if keep_rcpt:
        _putz(o, b',"recipient":')
        _put_json(o, b, r.cs, r.ce, False)
    _putz(o, b',"event_id":"')
    _put(o, eid, 32)
    _putz(o, b'"')
    if r.ds >= 0 and _enhanced(b, r.ds, r.de):
        _putz(o, b',"enhanced_status":"')
        _put(o, <const char*>b + r.ds, r.de - r.ds)
        _putz(o, b'"')
    if rep.cs == -2:
        _putz(o, b',"smtp_command":"CONNECT"')
    elif rep.cs == -3:
        _putz(o, b',"smtp_command":"DATA"')
    elif rep.cs >= 0 and rep.ce - rep.cs <= MAX_COMMAND:
        _putz(o, b',"smtp_command":')
        _put_json(o, b, rep.cs, rep.ce, True)
    _putz(o, b',"queue_id":')
    _put_json(o, b, r.qs, r.qs + (r.qe - r.qs if r.qe - r.qs <= MAX_QUEUE_ID else MAX_QUEUE_ID),
              False)
    if keep_final:
        _putz(o, b',"final_recipient":')
        _put_json(o, b, r.fs, r.fe, False)
    _putz(o, b'}')
    r.tail_len = o.len - r.tail


cdef void _stage1(Job* j) noexcept nogil:
    """Every relevant line of the piece as a Rec (see ``scan`` for the matching rules)."""
    cdef const unsigned char* b = j.b
    cdef Py_ssize_t ls = j.s, le, at, p, close, tlen
    cdef int kind
    cdef Hit h
    cdef Rec* r
    cdef Rec* grown
    j.n = 0
    j.lines = 0
    j.truncated = 0
    j.tails.len = 0
    j.failed = False
    while ls < j.e:
        le = _find(b, ls, j.e, 10)
        if le < 0:
            le = j.e
        j.lines += 1
        kind = K_NONE
        p = ls
        while True:
            at = _find(b, p, le, 93)  # ]
            if at < 0:
                break
            if at + 2 < le and b[at + 1] == 58 and b[at + 2] == 32:
                kind = _body(b, at + 3, le, &h)
                if kind != K_NONE:
                    break
            p = at + 1
        if kind == K_NONE:
            ls = le + 1
            continue
        if kind == K_TRUNCATED:
            j.truncated += 1
            ls = le + 1
            continue
        if j.n == j.cap:
            grown = <Rec*>realloc(j.recs, (j.cap * 2 + 256) * sizeof(Rec))
            if grown == NULL:
                j.failed = True
                return
            j.recs = grown
            j.cap = j.cap * 2 + 256
        r = &j.recs[j.n]
        j.n += 1
        r.kind = kind
        r.ls, r.le, r.at = ls, le, at
        r.qs, r.qe, r.gs, r.ge = h.qs, h.qe, h.gs, h.ge
        r.tail_len = 0
        r.etype = E_NONE
        r.hop = False
        if kind == K_EXPIRED or kind == K_STATUS or kind == K_TEXT or kind == K_PARENT:
            if not (at > ls and _stamp_span(b, ls, at, &r.st_s, &r.st_e)):
                r.st_s = r.st_e = -1
        if kind == K_STATUS or kind == K_TEXT:
            r.ts = r.te = h.end
            if kind == K_TEXT:
                close = le - 1
                while close >= h.end and b[close] != 41:  # )
                    close -= 1
                r.te = close if close >= h.end else le
            if h.bs < 0:
                r.cs, r.ce = h.gs, h.ge
            else:
                r.cs, r.ce = h.bs, h.be
            r.fs = r.fe = -1
            if h.os >= 0 and h.oe > h.os:  # postfix.recipients: orig_to is the recipient
                r.fs, r.fe = r.cs, r.ce
                r.cs, r.ce = h.os, h.oe
            r.rs, r.re = h.rs, h.re
            r.ds, r.de = h.ds, h.de
            r.ss, r.se = h.ss, h.se
            tlen = h.se - h.ss  # events.event_type_for
            if tlen == 4 and _ci(b, h.ss, h.se, b"sent", -4):
                r.etype = E_DELIVERED
                r.hop = _has(b, r.ts, r.te, b"queued as", 9)
            elif tlen == 8 and _ci(b, h.ss, h.se, b"deferred", -8):
                r.etype = E_DEFERRED
            elif tlen == 7 and _ci(b, h.ss, h.se, b"bounced", -7):
                r.etype = E_SOFT if h.ds >= 0 and h.de > h.ds and b[h.ds] == 52 else E_BOUNCED
            elif tlen == 10 and _ci(b, h.ss, h.se, b"softbounce", -10):
                r.etype = E_SOFT
            if r.etype != E_NONE and not r.hop and j.want_tails:
                _tail(j, r)
        ls = le + 1
    if j.tails.failed:
        j.failed = True


cdef class _Stage1Thread:
    """Runs stage 1 of one Job without the GIL (the target of a helper thread)."""
    cdef Job* job

    def run(self):
        with nogil:
            _stage1(self.job)


cdef Py_ssize_t _piece = 1 << 20


def set_piece_size(Py_ssize_t size):
    """Bytes per piece (tests make it small to run many pieces through the helper thread)."""
    global _piece
    _piece = max(size, 1)


def feed_json(data, object corr, object resolve, object render, object stamp_json,
              bint joined=False):
    """Pipeline.feed_json's work for one buffer of whole lines (bytes, bytearray, memoryview):
    ``(events, lines, parsed, truncated, counts)`` with ``events`` the JSON texts in log order
    (``joined``: one bytes object, each text followed by a newline) and ``counts`` events by
    type; None when declined (nothing changed)."""
    cdef const unsigned char[::1] view = data
    cdef Py_ssize_t n = view.shape[0], start, cut, k
    cdef const unsigned char* b = &view[0] if n else <const unsigned char*>b""
    cdef Job jobs[2]
    cdef _Stage1Thread runner
    cdef object thread = None
    cdef list pieces = []
    cdef _State state
    if not _acceptable(b, n):
        return None
    start = 0
    while start < n:
        # the first piece is small: its stage 1 runs on this thread, before any overlap
        cut = start + (_piece if start else min(_piece, 1 << 16))
        if cut >= n:
            cut = n
        else:
            cut = _find(b, cut - 1, n, 10)
            cut = n if cut < 0 else cut + 1
        pieces.append((start, cut))
        start = cut
    memset(jobs, 0, sizeof(jobs))
    jobs[0].want_tails = jobs[1].want_tails = True
    state = _State(corr, resolve, render, stamp_json, joined)
    try:
        for k in range(len(pieces)):
            if k == 0:
                jobs[0].b = b
                jobs[0].s, jobs[0].e = pieces[0]
                with nogil:
                    _stage1(&jobs[0])
            if thread is not None:
                thread.join()
                thread = None
            if k + 1 < len(pieces):
                jobs[(k + 1) % 2].b = b
                jobs[(k + 1) % 2].s, jobs[(k + 1) % 2].e = pieces[k + 1]
                runner = _Stage1Thread()
                runner.job = &jobs[(k + 1) % 2]
                thread = _Thread(target=runner.run, daemon=True)
                thread.start()
            if jobs[k % 2].failed:
                raise MemoryError()
            state.stage2(b, &jobs[k % 2])
        return state.result()
    finally:
        if thread is not None:
            thread.join()
        for k in range(2):
            free(jobs[k].recs)
            free(jobs[k].tails.data)
        state.close()


cdef class _State:
    """Stage 2: the correlation, in log order, over the Recs of successive pieces."""
    cdef object corr, resolve, render, stamp_json
    cdef bint joined
    cdef Buf o
    cdef list events, out
    cdef dict best, queues, counts, hops
    cdef set touched
    cdef object max_held, last_stamp, last_micros, json_micros, json_stamp
    cdef Py_ssize_t lines, parsed, truncated, last_s, last_e, from_orig_to
    cdef Py_ssize_t counted[5]

    def __cinit__(self, corr, resolve, render, stamp_json, bint joined):
        self.corr, self.resolve, self.render = corr, resolve, render
        self.stamp_json, self.joined = stamp_json, joined
        memset(&self.o, 0, sizeof(Buf))
        self.events, self.out, self.best, self.counts = [], [], {}, {}
        self.queues = corr.queues
        self.hops = corr.hops
        self.from_orig_to = 0
        self.touched = corr.touched
        self.max_held = corr.max_held
        self.last_stamp = self.last_micros = self.json_stamp = None
        self.json_micros = 0
        self.lines = self.parsed = self.truncated = 0
        self.last_s = self.last_e = -1
        memset(self.counted, 0, sizeof(self.counted))

    cdef close(self):
        free(self.o.data)
        self.o.data = NULL

    cdef result(self):
        cdef int etype
        for etype in range(1, 5):
            if self.counted[etype]:
                name = _TYPE_NAMES[etype].decode("ascii")
                self.counts[name] = self.counts.get(name, 0) + self.counted[etype]
        events = self.events
        if self.joined:
            events = PyBytes_FromStringAndSize(self.o.data, self.o.len) if self.o.len else b""
        return events, self.lines, self.parsed, self.truncated, self.counts, self.from_orig_to

    cdef drain(self):
        """The events the correlator's own methods put in ``out``, rendered in order."""
        cdef Buf* o = &self.o
        cdef list out = self.out
        for item in out:
            name = item[2].event_type
            self.counts[name] = self.counts.get(name, 0) + 1
            if item[2].final_recipient is not None:
                self.from_orig_to += 1
        if self.joined:
            for text in self.render(out):
                _put_str(o, text)
                _putz(o, b"\n")
        else:
            self.events.extend(self.render(out))
        out.clear()

    cdef stage2(self, const unsigned char* b, Job* j):
        cdef Py_ssize_t i
        cdef Rec* r
        cdef int kind, source
        cdef dict q, pending
        cdef list held
        cdef str qid, text
        cdef object stamp, micros, uuid, orphans_due, hops_due, final
        cdef list data
        cdef object corr = self.corr
        cdef dict queues = self.queues
        cdef dict hops = self.hops
        cdef dict recent = corr.recent
        cdef Py_ssize_t recent_limit = corr._recent_limit
        cdef set touched = self.touched
        cdef dict best = self.best
        cdef list out = self.out
        cdef Buf* o = &self.o
        self.lines += j.lines
        self.truncated += j.truncated
        self.parsed += j.n
        for i in range(j.n):
            r = &j.recs[i]
            kind = r.kind
            qid = _text(b, r.qs, r.qe)
            touched.add(qid)  # every line of a queue ID may change its saved entry
            if hops and qid in hops and kind != K_STATUS and kind != K_TEXT and kind != K_EXPIRED:
                corr.seen(qid, out)  # a hop candidate's NEWID (timed lines: below)
            if kind == K_HEADER or kind == K_SENDER or kind == K_MESSAGE_ID:
                source = 1 if kind == K_HEADER else (2 if kind == K_SENDER else 3)
                if best.get(qid, 99) > source:
                    best[qid] = source
                    q = queues.get(qid)
                    if q is None:  # Correlator.learn, inlined for its common cases
                        queues[qid] = {"u": _text(b, r.gs, r.ge).lower(), "s": source,
                                       "t": corr.last_us, "h": [], "p": {}, "c": []}
                    elif q["s"] > source:
                        q["t"] = corr.last_us
                        if q["h"] or q["c"]:
                            corr._learn(q, _text(b, r.gs, r.ge).lower(), source, out)
                        else:
                            q["u"] = _text(b, r.gs, r.ge).lower()
                            q["s"] = source
            elif kind == K_REMOVED:  # Correlator.removed, inlined (the seen() call is above)
                best.pop(qid, None)
                q = queues.pop(qid, None)
                if q is not None and q["h"]:
                    corr.park(qid, q)
                recent[qid] = corr.last_us or 0
                if len(recent) >= recent_limit:
                    corr._prune_recent()
                    recent, recent_limit = corr.recent, corr._recent_limit
            elif kind == K_PARENT:
                corr.reinjected(qid, _text(b, r.gs, r.ge), out)
            else:
                # the stamp, resolved as apply does (the same text as the last one: cached)
                if r.st_s < 0:
                    stamp = micros = None
                elif (self.last_s >= 0 and r.st_e - r.st_s == self.last_e - self.last_s
                        and memcmp(b + r.st_s, b + self.last_s, r.st_e - r.st_s) == 0):
                    stamp, micros = self.last_stamp, self.last_micros
                else:
                    stamp = _text(b, r.st_s, r.st_e)
                    if stamp == self.last_stamp:
                        micros = self.last_micros
                    else:
                        micros = self.resolve(stamp)
                        self.last_stamp, self.last_micros = stamp, micros
                    self.last_s, self.last_e = r.st_s, r.st_e
                if hops and qid in hops:  # Correlator.seen, with the line's time
                    corr.seen(qid, out, micros)
                if kind == K_EXPIRED:
                    corr.outcome(Expired(qid, stamp, _text(b, r.ls, r.le), _text(b, r.gs, r.ge)),
                                 micros, out)
                else:
                    final = None if r.fs < 0 else _text(b, r.fs, r.fe)
                    q = queues.get(qid)
                    if q is None or q["u"] is None:
                        # Correlator.delivery for a queue ID without its UUID yet: held
                        if micros is not None:
                            corr.last_us = micros
                            orphans_due = corr.orphans_due
                            if orphans_due is not None and micros >= orphans_due:
                                corr._drop_orphans(micros)
                            hops_due = corr.hops_due
                            if hops_due is not None and micros >= hops_due:
                                corr.release_hops(micros, out)
                        else:
                            micros = corr.last_us
                        if q is None:
                            q = {"u": None, "s": 99, "t": None, "h": [], "p": {}, "c": []}
                            queues[qid] = q
                        q["t"] = corr.last_us
                        held = q["h"]
                        if not held:
                            corr.holding.append(qid)
                        data = ["d", qid, stamp, _text(b, r.ls, r.le), _text(b, r.cs, r.ce),
                                _text(b, r.rs, r.re), _text(b, r.ss, r.se).lower(),
                                None if r.ds < 0 else _text(b, r.ds, r.de), _text(b, r.ts, r.te)]
                        if final is not None:
                            data.append(final)
                        held.append([data, micros])
                        corr.held += 1
                        if corr.held > self.max_held:
                            corr._drop_oldest_held()
                    elif r.etype == E_NONE or r.hop:
                        # no event, or a possible hop: the correlator's own path
                        corr.delivery(qid, stamp, _text(b, r.ls, r.le), _text(b, r.cs, r.ce),
                                      _text(b, r.rs, r.re), _text(b, r.ss, r.se).lower(),
                                      None if r.ds < 0 else _text(b, r.ds, r.de),
                                      _text(b, r.ts, r.te), micros, out, None, final)
                    else:
                        # Correlator.delivery + _deliver + prepare + render, for this case
                        if micros is not None:
                            corr.last_us = micros
                            orphans_due = corr.orphans_due
                            if orphans_due is not None and micros >= orphans_due:
                                corr._drop_orphans(micros)
                            hops_due = corr.hops_due
                            if hops_due is not None and micros >= hops_due:
                                corr.release_hops(micros, out)
                                self.drain()  # released events come before this one
                        else:
                            micros = corr.last_us
                        q["t"] = corr.last_us
                        uuid = q["u"]
                        pending = q["p"]
                        if r.etype == E_DEFERRED:
                            data = [_text(b, r.ts, r.te), None if r.ds < 0 else _text(b, r.ds, r.de)]
                            if final is not None:
                                data.append(final)
                            pending[_text(b, r.cs, r.ce)] = data
                        elif pending:
                            pending.pop(_text(b, r.cs, r.ce), None)
                        if micros != self.json_micros or self.json_stamp is None:
                            self.json_micros, self.json_stamp = micros, self.stamp_json(micros)
                        if not self.joined:
                            o.len = 0
                        _putz(o, b'{"message_id":"')
                        _put_str(o, uuid)
                        _putz(o, b'","event_type":"')
                        _putz(o, _TYPE_NAMES[r.etype])
                        _putz(o, b'"')
                        _put_str(o, self.json_stamp)
                        _put(o, j.tails.data + r.tail, r.tail_len)
                        if self.joined:
                            _putz(o, b"\n")
                        elif not o.failed:
                            self.events.append(PyUnicode_DecodeASCII(o.data, o.len, NULL))
                        self.counted[r.etype] += 1
                        if (final is not None and r.fe > r.fs and r.fe - r.fs <= MAX_TEXT
                                and _find(b, r.fs, r.fe, 64) >= 0):
                            self.from_orig_to += 1
            if out:
                self.drain()
        if o.failed:
            raise MemoryError()


def scan(data):
    """``scan.scan(data)`` as ``(ops, lines, parsed, truncated)``, or None when declined: stage 1
    finds the lines, the ops are built from its records."""
    cdef const unsigned char[::1] view = data
    cdef Py_ssize_t n = view.shape[0], i
    cdef const unsigned char* b = &view[0] if n else <const unsigned char*>b""
    cdef Job job
    cdef Rec* r
    cdef int kind, source
    cdef list ops = []
    cdef dict best = {}
    cdef str qid, line, body
    cdef object stamp, recipient, dsn, event_type, final
    if not _acceptable(b, n):
        return None
    memset(&job, 0, sizeof(Job))
    job.b = b
    job.e = n
    try:
        with nogil:
            _stage1(&job)
        if job.failed:
            raise MemoryError()
        for i in range(job.n):
            r = &job.recs[i]
            kind = r.kind
            qid = _text(b, r.qs, r.qe)
            if kind == K_HEADER or kind == K_SENDER or kind == K_MESSAGE_ID:
                source = 1 if kind == K_HEADER else (2 if kind == K_SENDER else 3)
                if best.get(qid, 99) > source:
                    best[qid] = source
                    ops.append((OP_UUID, qid, _text(b, r.gs, r.ge).lower(), source))
            elif kind == K_REMOVED:
                best.pop(qid, None)
                ops.append((OP_REMOVED, qid))
            else:
                stamp = None if r.st_s < 0 else _text(b, r.st_s, r.st_e)
                line = _text(b, r.ls, r.le)
                if kind == K_EXPIRED:
                    ops.append((OP_EXPIRED, Expired(qid, stamp, line, _text(b, r.gs, r.ge))))
                elif kind == K_PARENT:
                    ops.append((OP_REINJECTED, Reinjected(qid, stamp, line, _text(b, r.gs, r.ge))))
                else:
                    recipient = _text(b, r.cs, r.ce)
                    final = None if r.fs < 0 else _text(b, r.fs, r.fe)
                    dsn = None if r.ds < 0 else _text(b, r.ds, r.de)
                    body = _text(b, r.ts, r.te)
                    event_type = _TYPE_STR[r.etype]
                    ops.append((
                        OP_DELIVERY, qid, stamp, line, recipient, _text(b, r.rs, r.re),
                        _text(b, r.ss, r.se).lower(), dsn, body,
                        None if event_type is None
                        else _prepare(event_type, _analyse_reply(body), recipient, dsn, qid, line,
                                      final),
                        final,
                    ))
        return ops, job.lines, job.n, job.truncated
    finally:
        free(job.recs)
        free(job.tails.data)
