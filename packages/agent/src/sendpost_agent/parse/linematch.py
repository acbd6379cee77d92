"""The first match of a pattern on each line of a text, as spans: ints, no object per match.

A :class:`LineMatcher` is built from a compiled Python pattern — the only place its rule is
written — and runs it with PCRE2's JIT in C (the ``_linematch`` extension, built by setup.py
where PCRE2's headers are; docs/parsing.md, "The native line matcher"), or with ``re`` itself
where the extension is not built, where the parser's modules run as Python
(``SENDPOST_AGENT_PURE_PYTHON=1``) and for a text PCRE2 cannot take. Both give the same spans
the same way; the differential tests (tests/agent/parse/test_linematch.py) hold them to it.

For PCRE2 the pattern's source is translated by :func:`pcre2_source`, which knows only the
constructs whose meaning it can keep (``\\s`` becomes the characters that ``re`` counts as
white space) and refuses the rest.

Layout of the spans, :attr:`LineMatcher.width` ints per match, matches in text order: the
match's ``lastindex`` (0 when no group took part), its start and end, then the start and end of
each group (-1, -1 when the group did not take part): group ``g`` at ``1 + 2 * g`` and
``2 + 2 * g``.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain

from sendpost_agent.parse import CODE

try:
    from sendpost_agent.parse import _linematch
except ImportError:  # not built (no PCRE2 headers or no C compiler at install)
    _linematch = None  # type: ignore[assignment]

NATIVE = _linematch is not None and CODE == "compiled"
"""Whether matchers built with ``native=True`` run on PCRE2 in this process."""
ENGINE = "pcre2" if NATIVE else "re"
"""Which engine those matchers use (``parse --stats`` prints it)."""


def _newlines(data: bytes) -> int:
    return data.count(b"\n")


def _json_plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


newlines: Callable[[bytes], int] = _linematch.newlines if NATIVE else _newlines
"""``data.count(b"\\n")``; with ``memchr`` in C where :data:`NATIVE` (``bytes.count`` looks
at each byte on its own: 4% of ``parse``)."""
json_plain: Callable[[str], bool] = _linematch.json_plain if NATIVE else _json_plain
"""Whether every character of ``text`` is printable ASCII other than ``"`` and ``\\``: the
characters a JSON string holds as they are (json.encoder escapes the rest), so that
``'"' + text + '"'`` is its JSON string. By table in C where :data:`NATIVE`."""


_WHITESPACE = "".join(f"\\x{{{c:02x}}}" for c in range(256) if re.fullmatch(r"\s", chr(c)))
_PLAIN_ESCAPES = frozenset("tnrf")  # the same character in both engines
_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>")
_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")


def pcre2_source(pattern: re.Pattern[str]) -> bytes:
    """The source of ``pattern`` in PCRE2's dialect, to be compiled with MULTILINE (which
    ``pattern`` must have, and no other flag) for subjects of one byte per character
    (latin-1); ``ValueError`` for a construct whose meaning it does not know to keep."""
    if pattern.flags & ~(re.UNICODE | re.MULTILINE) or not pattern.flags & re.MULTILINE:
        raise ValueError(f"flags {re.RegexFlag(pattern.flags)!r}: only MULTILINE is translated")
    src = pattern.pattern
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(src):
        c = src[i]
        if ord(c) > 0x7E or (ord(c) < 0x20 and c not in "\t"):
            raise ValueError(f"character {c!r} at {i}: write it as an escape")
        if c == "\\":
            e = src[i + 1 : i + 2]
            if e == "s":
                out.append(_WHITESPACE if in_class else f"[{_WHITESPACE}]")
            elif e == "x" and re.fullmatch("[0-9A-Fa-f]{2}", src[i + 2 : i + 4]):
                out.append(src[i : i + 4])
                i += 2
            elif e in _PLAIN_ESCAPES or (e and not e.isalnum()):
                out.append(src[i : i + 2])
            else:
                raise ValueError(f"escape \\{e} at {i} is not translated")
            i += 2
            continue
        if in_class:
            if c == "[":
                raise ValueError(f"'[' inside a class at {i}: escape it")
            in_class = c != "]"
        elif c == "[":
            # "[", "[^", then a "]" that is the class's first member, not its end
            j = i + 1 + (src[i + 1 : i + 2] == "^")
            j += src[j : j + 1] == "]"
            out.append(src[i:j])
            i = j
            in_class = True
            continue
        elif c == "(" and src[i + 1 : i + 2] == "?" and not src.startswith(_GROUP_OPENERS, i):
            raise ValueError(f"group {src[i : i + 4]!r} at {i} is not translated")
        elif c == "{" and not _REPEAT.match(src, i):
            # re reads "{,n}" as a repeat, PCRE2 before 10.43 as text: only "{m}", "{m,}", "{m,n}"
            raise ValueError(f"'{{' at {i} is not a repeat both engines read alike: escape it")
        out.append(c)
        i += 1
    return "".join(out).encode("ascii")


class LineMatcher:
    """The first match of ``pattern`` starting in each line of a text (module docstring);
    ``native``: run it with PCRE2 where :data:`NATIVE` (else ``re``, always)."""

    def __init__(self, pattern: re.Pattern[str], *, native: bool = True) -> None:
        self.pattern = pattern
        self.width = 3 + 2 * pattern.groups
        self.native = _linematch.Matcher(pcre2_source(pattern)) if native and NATIVE else None

    def first_per_line(self, text: str, lines: int) -> tuple[Sequence[int], int]:
        """``(spans, n)``: the ``n`` first matches of the lines of ``text`` (at most
        ``lines``), with PCRE2 when it takes ``text`` (one byte per character, under 2 GiB),
        else with ``re``."""
        if self.native is not None:
            try:
                found: tuple[Sequence[int], int] | None = self.native.first_per_line(text, lines)
            except _linematch.MatchError:  # a resource limit on a pathological line: re decides
                found = None
            if found is not None:
                return found
        return self.spans(self.first_matches(text))

    def search(self, text: str) -> bool:
        """Whether ``pattern`` matches anywhere in ``text`` (PCRE2 where it takes ``text``)."""
        if self.native is not None:
            try:
                found: bool | None = self.native.search(text)
            except _linematch.MatchError:
                found = None
            if found is not None:
                return found
        return self.pattern.search(text) is not None

    def first_matches(self, text: str) -> Iterator[re.Match[str]]:
        """With ``re``: the first match starting in each line, in order."""
        next_line = -1
        for m in self.pattern.finditer(text):
            at = m.start()
            if at < next_line:
                continue
            next_line = text.find("\n", at) + 1 or len(text) + 1
            yield m

    @staticmethod
    def spans(matches: Iterable[re.Match[str]]) -> tuple[Sequence[int], int]:
        """``(spans, n)`` for ``matches`` made by ``re`` (of a pattern with this one's
        groups), as :meth:`first_per_line` gives them: an ``array("i")`` where the parser's
        modules run compiled (their typed code reads it as a buffer), else a list."""
        out: list[int] = []
        append, extend = out.append, out.extend
        n = 0
        for m in matches:
            append(m.lastindex or 0)
            extend(chain.from_iterable(m.regs))  # the match's span, then each group's
            n += 1
        return (array("i", out) if CODE == "compiled" else out), n
