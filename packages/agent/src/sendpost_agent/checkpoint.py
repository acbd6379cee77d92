"""The cursor: where in which log file the agent has read up to, with the parser's state.

``{state-dir}/cursor`` is a JSON document (``version`` 1)::

    {"version": 1, "file": {"dev": .., "ino": .., "fingerprint": "<sha256 hex>", "fp_len": ..,
     "path": ".."}, "offset": .., "parser": {...}}

It is written atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
either the old or the new cursor, never a mix. The cursor is saved only after the events of the
lines before ``offset`` are in the WAL (fsynced); it may lag behind the WAL, never run ahead of it.
A lagging cursor only makes the agent read some lines again, which yields the same events with the
same ``event_id``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from sendpost_agent.errors import StateCorrupt

VERSION = 1


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: tmp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class FileId:
    """Identity of one log file: device, inode and a hash of its first ``fp_len`` bytes."""

    dev: int
    ino: int
    fingerprint: str
    fp_len: int


@dataclasses.dataclass(frozen=True)
class Position:
    """A read position: every line before ``offset`` in ``file`` has been consumed."""

    file: FileId
    offset: int
    path: str


@dataclasses.dataclass(frozen=True)
class Cursor:
    position: Position
    parser_state: dict[str, Any] | None


class CursorStore:
    """Loads and saves ``{state-dir}/cursor``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Cursor | None:
        """The saved cursor, None if there is none; :class:`StateCorrupt` if it can't be decoded."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("version") != VERSION:
                raise StateCorrupt(f"{self.path}: unknown version {doc.get('version')!r}")
            f = doc["file"]
            file_id = FileId(int(f["dev"]), int(f["ino"]), str(f["fingerprint"]), int(f["fp_len"]))
            position = Position(file_id, int(doc["offset"]), str(f.get("path", "")))
            parser = doc.get("parser")
            if parser is not None and not isinstance(parser, dict):
                raise StateCorrupt(f"{self.path}: parser state is not an object")
        except StateCorrupt:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateCorrupt(f"{self.path}: cannot decode the cursor ({exc!r})") from None
        return Cursor(position, parser)

    def save(self, cursor: Cursor) -> None:
        p = cursor.position
        doc = {
            "version": VERSION,
            "file": {**dataclasses.asdict(p.file), "path": p.path},
            "offset": p.offset,
            "parser": cursor.parser_state,
        }
        write_atomically(self.path, json.dumps(doc, separators=(",", ":")).encode())
