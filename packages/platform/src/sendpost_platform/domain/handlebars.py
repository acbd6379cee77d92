"""Handlebars-style ``{{name}}`` substitution, the subset SendPost documents for ``customFields``.

A template is parsed once (:func:`parse`) into literal text and placeholders, then rendered per
recipient (:func:`render`). Supported:

- ``{{name}}``: the value, HTML-escaped when rendering HTML (``&<>"'``), as is elsewhere;
- ``{{{name}}}``: the value never escaped (Handlebars' "triple-stash");
- ``name`` may be dotted (``{{order.total}}``) to reach into nested ``customFields`` objects, and
  may have spaces around it (``{{ name }}``).

A name that no field defines renders as the empty string (Handlebars' own rule), so a copy without
a value reads "Hello ," rather than "Hello {{firstName}}". Values render as text: strings as they
are, ``true``/``false``, numbers in JSON form, ``null`` as nothing. Anything else between ``{{``
and ``}}`` (helpers such as ``{{#if}}``, ``{{> partial}}``, comments, expressions with spaces) is
refused by :func:`parse` with :class:`TemplateError`, so nothing the customer wrote silently
renders as literal text. A ``{{`` with no ``}}`` after it is literal text.

Cost: parsing is one left-to-right scan (``str.find`` only, no regular expression), linear in the
template; rendering is linear in the output. :func:`rendered_size` gives a copy's size without
rendering it, in time proportional to the number of distinct placeholders (the API caps them,
``MAX_PLACEHOLDERS`` per text, as it checks the size of every copy).
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MAX_NAME = 128
"""Longest placeholder name (dots included)."""
MAX_PLACEHOLDERS = 1000
"""Most distinct placeholders a text may use (checked by the API, not by :func:`parse`)."""

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class TemplateError(ValueError):
    """A ``{{...}}`` that is not a supported placeholder; ``offset`` is where it starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at character {offset})")
        self.offset = offset


@dataclasses.dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    raw: bool
    """True for ``{{{name}}}``: never HTML-escaped."""


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Placeholder, ...]
    counts: tuple[tuple[Placeholder, int], ...] = ()
    """Each distinct placeholder and how often it appears (for :func:`rendered_size`)."""
    literal_bytes: int = 0
    literal_chars: int = 0

    def names(self) -> set[str]:
        return {p.name for p, _count in self.counts}


def _is_name(text: str) -> bool:
    if not text or len(text) > MAX_NAME:
        return False
    return all(part and set(part) <= _NAME_CHARS for part in text.split("."))


def parse(text: str) -> Template:
    """The template in ``text``; raises :class:`TemplateError` on an unsupported ``{{...}}``."""
    parts: list[str | Placeholder] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            break
        raw = text.startswith("{{{", start)
        opener, closer = ("{{{", "}}}") if raw else ("{{", "}}")
        end = text.find(closer, start + len(opener))
        if end < 0:
            break  # no closing braces anywhere after: the rest is text
        inner = text[start + len(opener) : end].strip()
        if not _is_name(inner):
            shown = inner if len(inner) <= 40 else inner[:39] + "…"
            raise TemplateError(
                f"{opener}{shown}{closer} is not supported: only {{{{name}}}} and"
                f" {{{{{{name}}}}}} placeholders (letters, digits, _ and -, dotted for nested"
                f" fields, at most {MAX_NAME} characters)",
                start,
            )
        if start > position:
            parts.append(text[position:start])
        parts.append(Placeholder(inner, raw))
        position = end + len(closer)
    if position < len(text):
        parts.append(text[position:])
    counts = Counter(p for p in parts if isinstance(p, Placeholder))
    literals = [p for p in parts if isinstance(p, str)]
    return Template(
        tuple(parts),
        tuple(counts.items()),
        sum(len(p.encode()) for p in literals),
        sum(len(p) for p in literals),
    )


class Layers(Mapping[str, Any]):
    """Fields given in layers, read without merging them: the first layer that has a name
    wins (a recipient's own fields over its copy's, over the request's variables)."""

    def __init__(self, *layers: Mapping[str, Any]) -> None:
        self._layers = layers

    def __getitem__(self, key: str) -> Any:
        for layer in self._layers:
            if key in layer:
                return layer[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for layer in self._layers for k in layer))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def lookup(fields: Mapping[str, Any], name: str) -> Any:
    """The value of a dotted ``name`` in ``fields`` (None when any step is missing)."""
    value: Any = fields
    for step in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def as_text(value: Any) -> str:
    """How a field value reads in a message."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def render(template: Template, fields: Mapping[str, Any], *, escape: bool) -> str:
    """``template`` with each placeholder replaced by its value from ``fields``."""
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = as_text(lookup(fields, part.name))
        out.append(html.escape(text) if escape and not part.raw else text)
    return "".join(out)


def rendered_size(
    template: Template,
    fields: Mapping[str, Any],
    *,
    escape: bool,
    chars: bool = False,
    memo: dict[tuple[int, bool, bool], int] | None = None,
) -> int:
    """The size of :func:`render`'s result in UTF-8 bytes (or characters), counted per
    distinct placeholder rather than rendered: the cost is the number of distinct placeholders
    and the length of the values they use. ``memo`` (the caller's, for one request) keeps each
    value's size by identity, so a value shared by every copy is measured once."""
    size = template.literal_chars if chars else template.literal_bytes
    for placeholder, count in template.counts:
        value = lookup(fields, placeholder.name)
        escaped = escape and not placeholder.raw
        key = (id(value), escaped, chars)
        known = None if memo is None else memo.get(key)
        if known is None:
            text = as_text(value)
            if escaped:
                text = html.escape(text)
            known = len(text) if chars else len(text.encode())
            if memo is not None and isinstance(value, str):
                memo[key] = known
        size += count * known
    return size


def used_values(templates: Iterable[Template], fields: Mapping[str, Any]) -> dict[str, str]:
    """The text of every value the templates use, by name (for checks on what will be written)."""
    return {
        name: as_text(lookup(fields, name)) for template in templates for name in template.names()
    }
