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
    copies: set[str] = set()
    notifications: set[str] = set()
    todo = [(qid, False) for qid in roots]
    while todo:
        qid, is_notification = todo.pop()
        if qid in copies or qid in notifications:
            continue
        (notifications if is_notification else copies).add(qid)
        todo += [(child, True) for child in _notification_ids(text, qid)]
        if filter_port is not None:
            todo += [(child, is_notification) for child in _copy_ids(text, qid, filter_port)]
    every = copies | notifications
    removed = set(re.findall(r"\b(\w+): removed$", text, re.M))
    lines = tuple(line for line in text.splitlines() if _line_queue_id(line) in every)
    return MessageTrace(
        frozenset(copies), frozenset(notifications), frozenset(every - removed), lines
    )


def _notification_ids(text: str, qid: str) -> list[str]:
    pattern = (
        rf"\b{re.escape(qid)}: sender (?:non-delivery|delivery status|delay) notification: (\w+)"
    )
    return re.findall(pattern, text)


def _copy_ids(text: str, qid: str, filter_port: int) -> list[str]:
    pattern = (
        rf"\b{re.escape(qid)}: to=<[^>]*>,.* relay=[^ ]*:{filter_port},"
        r".* status=sent \(.*queued as (\w+)\)"
    )
    return re.findall(pattern, text)


def _line_queue_id(line: str) -> str | None:
    found = re.search(r"\]: (\w+): ", line)
    return found.group(1) if found else None
