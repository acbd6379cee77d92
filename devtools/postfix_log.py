"""Reading a Postfix log to see what became of submitted messages (pure functions of the text)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MessageTrace:
    """What became of some submitted messages, read from the log."""

    queue_ids: frozenset[str]  # the messages and their re-injected copies
    notifications: frozenset[str]  # bounce/delay/success notifications Postfix generated
    unfinished: frozenset[str]  # of both, those not yet ``removed``
    lines: tuple[str, ...]  # every log line of all of these queue IDs


def trace_messages(text: str, roots: Iterable[str], filter_port: int | None) -> MessageTrace:
    """Follow ``roots`` through re-injections and notifications in log ``text``.

    A copy is the NEWID of a ``status=sent (... queued as NEWID)`` line whose relay is the
    content filter's port; a notification is the NEWID of ``sender non-delivery notification:
    NEWID`` (or delivery status / delay notification), including notifications about copies.
    """
    links: dict[str, list[tuple[str, bool]]] = {}  # queue ID -> [(new queue ID, is notification)]
    for parent, child in _NOTIFICATION.findall(text):
        links.setdefault(parent, []).append((child, True))
    if filter_port is not None:
        for parent, port, child in _HOP.findall(text):
            if int(port) == filter_port:
                links.setdefault(parent, []).append((child, False))
    copies: set[str] = set()
    notifications: set[str] = set()
    todo = [(qid, False) for qid in roots]
    while todo:
        qid, is_notification = todo.pop()
        if qid in copies or qid in notifications:
            continue
        (notifications if is_notification else copies).add(qid)
        todo += [(child, is_notification or notice) for child, notice in links.get(qid, [])]
    every = copies | notifications
    removed = set(_REMOVED.findall(text))
    lines = tuple(line for line in text.splitlines() if _line_queue_id(line) in every)
    return MessageTrace(
        frozenset(copies), frozenset(notifications), frozenset(every - removed), lines
    )


_NOTIFICATION = re.compile(
    r"\b(\w+): sender (?:non-delivery|delivery status|delay) notification: (\w+)"
)
_HOP = re.compile(r"\b(\w+): to=<[^>]*>,.* relay=[^ ]*:(\d+),.* status=sent \(.*queued as (\w+)\)")
_REMOVED = re.compile(r"\b(\w+): removed$", re.M)
_QUEUE_ID = re.compile(r"\]: (\w+): ")


def _line_queue_id(line: str) -> str | None:
    found = _QUEUE_ID.search(line)
    return found.group(1) if found else None
