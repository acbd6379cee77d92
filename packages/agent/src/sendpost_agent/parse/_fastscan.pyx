# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of :func:`sendpost_agent.parse.scan.scan`, for the common case.

It reads the buffer as bytes and matches ``SYSLOG_SCAN`` (``postfix.py``) by hand: a ``memchr``
per ``]: `` in each line, then the payload alternatives in the regex's order with the same
character classes, so the operations it returns are the ones ``scan`` returns — the tests feed
both the corpus, the real-Postfix logs and generated lines and compare. The line-local event
fields (``analyse_reply``, ``prepare``) are the same code, compiled.

It declines (returns None, and the pure-Python scan takes the buffer) whatever is rare and
fiddly: a byte outside ASCII (invalid UTF-8 and Unicode whitespace classes live there), a line
over 64 KiB, a line that looks like a message part without its syslog envelope. The caller
checks ASCII with ``bytes.isascii`` before calling.
"""

from libc.string cimport memchr, memcmp

from hashlib import blake2b
from json.encoder import encode_basestring_ascii as _json_str

from sendpost_agent.parse.events import clean_enhanced
from sendpost_agent.parse.records import Expired, Reinjected

cdef enum:
    MAX_LINE = 65536  # postfix.MAX_LINE_BYTES
    MAX_TEXT = 10000  # events.MAX_TEXT

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
    Py_ssize_t rs, re          # relay
    Py_ssize_t ds, de          # dsn (ds < 0: absent)
    Py_ssize_t ss, se          # status word
    Py_ssize_t end             # the end of the match


cdef object _prepared_cls = None
cdef dict _heads = {}
cdef dict _enhanced_seen = {None: None}
cdef extern from *:
    const char* SENDPOST_SOURCE_DIGEST  # a macro set by setup.py: this file's sha256

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
    if _lit(b, p, end, b"orig_to=", 8):  # optional; taken only when whole
        save = p
        q = p + 8
        v = -1
        if q < end and b[q] == 60:
            v = _find(b, q + 1, end, 62)
            if v >= 0 and _lit(b, v + 1, end, b", ", 2):
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
                     str line):
    if recipient is not None and ("@" not in recipient or len(recipient) > MAX_TEXT):
        recipient = None
    recipient = recipient or None
    enhanced = _enhanced_seen.get(dsn, "")
    if enhanced == "":
        enhanced = clean_enhanced(dsn)
        if len(_enhanced_seen) < 1000:
            _enhanced_seen[dsn] = enhanced
    key = (line + "\x1f" + event_type + "\x1f" + (recipient or "")).encode("utf-8", "surrogatepass")
    eid = blake2b(key, digest_size=16).hexdigest()
    if len(queue_id) > MAX_TEXT:
        queue_id = queue_id[:MAX_TEXT]
    code, description, command = reply
    c = "" if code is None else f',"smtp_code":{code}'
    d = "" if description is None else ',"smtp_description":' + _json_str(description)
    r = "" if recipient is None else ',"recipient":' + _json_str(recipient)
    e = "" if enhanced is None else f',"enhanced_status":"{enhanced}"'
    m = "" if command is None else ',"smtp_command":' + _json_str(command)
    tail = f'{c}{d}{r},"event_id":"{eid}"{e}{m},"queue_id":{_json_str(queue_id)}}}'
    head = _heads.get(event_type) or f'","event_type":{_json_str(event_type)[1:]}'
    return tuple.__new__(_prepared_cls, (
        event_type, code, description, recipient, eid, enhanced, command, queue_id, head, tail,
    ))


cdef inline object _event_type(str status, object dsn):
    if status == "sent":
        return "delivered"
    if status == "deferred":
        return "deferred"
    if status == "bounced":
        return "soft_bounced" if dsn is not None and (<str>dsn).startswith("4") else "bounced"
    if status == "softbounce":
        return "soft_bounced"
    return None


cdef inline str _text(const unsigned char* b, Py_ssize_t s, Py_ssize_t e):
    return b[s:e].decode("ascii")


cdef object _stamp(const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
    """``postfix.stamp_of``: all but the last two space-separated tokens of ``b[start:end]``."""
    cdef Py_ssize_t last = end - 1, second
    while last >= start and b[last] != 32:
        last -= 1
    if last < start:
        return None
    second = last - 1
    while second >= start and b[second] != 32:
        second -= 1
    if second < start:
        return None
    while second > start and _space(b[second - 1]):
        second -= 1
    if second == start:
        return None
    return _text(b, start, second)


def scan(bytes data):
    """``scan.scan(data)`` as ``(ops, lines, parsed, truncated)``, or None when declined."""
    cdef const unsigned char* b = data
    cdef Py_ssize_t n = len(data), ls = 0, le, at, p, close
    cdef Py_ssize_t lines = 0, parsed = 0, truncated = 0
    cdef int kind, source
    cdef Hit h
    cdef list ops = []
    cdef dict best = {}
    cdef str qid, status, line, body
    cdef object stamp, recipient, relay, dsn, event_type, prepared
    while ls < n:
        le = _find(b, ls, n, 10)
        if le < 0:
            le = n
        lines += 1
        if le - ls > MAX_LINE or _bare_hint(b, ls, le):
            return None
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
        qid = _text(b, h.qs, h.qe)
        if kind == K_HEADER or kind == K_SENDER or kind == K_MESSAGE_ID:
            source = 1 if kind == K_HEADER else (2 if kind == K_SENDER else 3)
            if best.get(qid, 99) > source:
                best[qid] = source
                ops.append((OP_UUID, qid, _text(b, h.gs, h.ge).lower(), source))
        elif kind == K_REMOVED:
            best.pop(qid, None)
            ops.append((OP_REMOVED, qid))
        elif kind == K_TRUNCATED:
            truncated += 1
            ls = le + 1
            continue
        else:
            stamp = _stamp(b, ls, at) if at > ls else None
            line = _text(b, ls, le)
            if kind == K_STATUS or kind == K_TEXT:
                recipient = _text(b, h.gs, h.ge) if h.bs < 0 else _text(b, h.bs, h.be)
                relay = _text(b, h.rs, h.re)
                status = _text(b, h.ss, h.se).lower()
                dsn = None if h.ds < 0 else _text(b, h.ds, h.de)
                if kind == K_TEXT:
                    close = le - 1
                    while close >= h.end and b[close] != 41:  # )
                        close -= 1
                    body = _text(b, h.end, close if close >= h.end else le)
                else:
                    body = ""
                event_type = _event_type(status, dsn)
                prepared = (
                    None if event_type is None
                    else _prepare(event_type, _analyse_reply(body), recipient, dsn, qid, line)
                )
                ops.append((OP_DELIVERY, qid, stamp, line, recipient, relay, status, dsn, body,
                            prepared))
            elif kind == K_EXPIRED:
                ops.append((OP_EXPIRED, Expired(qid, stamp, line, _text(b, h.gs, h.ge))))
            else:
                ops.append((OP_REINJECTED, Reinjected(qid, stamp, line, _text(b, h.gs, h.ge))))
        parsed += 1
        ls = le + 1
    return ops, lines, parsed, truncated
