"""Follow a log file through rotation, one step at a time, returning only complete lines.

:class:`FileTail` is driven by its caller: each :meth:`FileTail.read` returns the next complete
lines (``b"\\n"``-terminated) or ``None`` when there is nothing new right now; the caller decides
how long to wait before asking again. Nothing here sleeps or reads a clock.

A file is identified by device, inode and a SHA-256 *fingerprint* of its first bytes (up to
:data:`FP_LEN`) *as read by this source*. Rotation handling:

* before every read of the live file: if it is shorter than the read position or its first bytes
  changed (copytruncate, truncation), a sibling whose fingerprint matches the old content (the
  copy ``mail.log.1``) is read from the old offset to its end, then the live file from its start;
* at the end of the live file: if the path now names another inode (rename rotation: logrotate
  ``create``, ``postfix logrotate``), the old file, still open, is read to its end, then the new
  file from its start; if the path is missing (renamed, not recreated yet) the old file is kept.

Limits: a file that received lines and was copied-and-truncated before this source read any byte
of it cannot be told apart from an untouched empty file (its lines are only in the copy); lines
a writer appends to a renamed file after the new file appeared and the old one was drained are
not read. Both need two events within one poll interval, which daily rotation does not produce.

On start from a saved :class:`Position`, the file is looked up by fingerprint among the path and
its rotated siblings (``mail.log.1``, ``mail.log-20250101``, ``mail.log.2.gz`` …); if it is a
rotated one, it is finished from the saved offset, then any newer rotated siblings, then the live
file.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sendpost_agent.checkpoint import FileId, Position

log = logging.getLogger(__name__)

FP_LEN = 512


def _digest(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def _head(path: Path) -> bytes | None:
    """The first FP_LEN bytes of the (decompressed) file, None if it cannot be read."""
    try:
        if _is_gz(path):
            with gzip.open(path, "rb") as fh:
                return fh.read(FP_LEN)
        with open(path, "rb") as fh:
            return fh.read(FP_LEN)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


def matches(file_id: FileId, head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` starts with the fingerprinted content."""
    return len(head) >= file_id.fp_len and _digest(head[: file_id.fp_len]) == file_id.fingerprint


@dataclasses.dataclass
class _Reader:
    """One open file read sequentially; ``offset`` counts bytes of complete lines consumed.

    ``head`` is the start of the file as this reader saw it; while it is shorter than FP_LEN
    it grows with the bytes read, so the fingerprint always describes content actually read.
    """

    path: Path
    fh: BinaryIO
    file_id: FileId
    offset: int
    live: bool
    head: bytes
    pending: bytes = b""

    def read_lines(self, max_bytes: int) -> bytes:
        while True:
            start = self.read_to
            data = self.fh.read(max_bytes)
            if not data:
                return b""
            if len(self.head) < FP_LEN and start == len(self.head):
                self.head += data[: FP_LEN - len(self.head)]
                fid = self.file_id
                self.file_id = FileId(fid.dev, fid.ino, _digest(self.head), len(self.head))
            buf = self.pending + data if self.pending else data
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                self.pending = buf
                continue
            self.pending = buf[cut:]
            self.offset += cut
            return buf[:cut]

    @property
    def read_to(self) -> int:
        return self.offset + len(self.pending)

    def close(self) -> None:
        self.fh.close()


class FileTail:
    """The file log source. ``on_rotation(kind)`` is told of each rotation followed."""

    def __init__(
        self,
        path: Path,
        start: Position | None,
        chunk_bytes: int = 256 * 1024,
        on_rotation: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.chunk_bytes = chunk_bytes
        self.on_rotation = on_rotation or (lambda kind: None)
        self.error: str | None = None
        self._start = start
        self._cur: _Reader | None = None
        self._queue: list[tuple[Path, int]] = []
        self._last_position = start

    # -- public ---------------------------------------------------------------------------------

    @property
    def position(self) -> Position | None:
        if self._cur is not None:
            cur = self._cur
            self._last_position = Position(cur.file_id, cur.offset, str(cur.path))
        return self._last_position

    def read(self) -> bytes | None:
        """The next complete lines, or None when there is nothing to read right now."""
        for _ in range(16):
            if self._cur is None and not self._open_next():
                return None
            cur = self._cur
            assert cur is not None
            if cur.live and self._truncated(cur):
                continue
            data = cur.read_lines(self.chunk_bytes)
            if data:
                return data
            if not cur.live:
                if cur.pending:
                    log.warning("%s ends with an incomplete line; skipped", cur.path)
                self.position  # noqa: B018 - remember the end of the finished file
                cur.close()
                self._cur = None
                continue
            if not self._renamed(cur):
                return None
        return None

    def close(self) -> None:
        self.position  # noqa: B018
        if self._cur is not None:
            self._cur.close()
            self._cur = None

    # -- opening --------------------------------------------------------------------------------

    def _open_next(self) -> bool:
        if self._start is not None:
            start, self._start = self._start, None
            self._resume(start)
            if self._cur is not None:
                return True
        while self._queue:
            path, offset = self._queue.pop(0)
            if self._open(path, offset, live=False):
                return True
        return self._open(self.path, 0, live=True)

    def _open(self, path: Path, offset: int, live: bool) -> bool:
        try:
            fh: BinaryIO
            if _is_gz(path):
                fh = gzip.open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
                st = os.stat(path)
                head = fh.read(FP_LEN)
                fh.seek(offset)
            else:
                fh = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open while tailing
                st = os.fstat(fh.fileno())
                head = os.pread(fh.fileno(), FP_LEN, 0)
                fh.seek(offset)
        except FileNotFoundError:
            if live:
                self.error = f"{path}: does not exist"
            return False
        except (OSError, EOFError) as exc:
            self.error = f"{path}: {getattr(exc, 'strerror', None) or exc}"
            log.error("cannot read %s: %s", path, self.error)
            return False
        self.error = None
        file_id = FileId(st.st_dev, st.st_ino, _digest(head), len(head))
        self._cur = _Reader(path, fh, file_id, offset, live, head)
        log.info("reading %s from offset %d", path, offset)
        return True

    def siblings(self) -> list[Path]:
        """Rotated copies of the log next to it, oldest first."""
        try:
            entries = [
                p
                for p in self.path.parent.iterdir()
                if p.name.startswith(self.path.name) and p != self.path and p.is_file()
            ]
        except OSError:
            return []
        return sorted(entries, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _resume(self, start: Position) -> None:
        try:
            st = os.stat(self.path)
            head = _head(self.path)
            if (
                head is not None
                and (st.st_dev, st.st_ino) == (start.file.dev, start.file.ino)
                and matches(start.file, head)
                and st.st_size >= start.offset
            ):
                self._open(self.path, start.offset, live=True)
                return
        except OSError:
            pass
        siblings = self.siblings()
        for i in range(len(siblings) - 1, -1, -1):
            head = _head(siblings[i])
            if head is not None and matches(start.file, head):
                log.info("finishing rotated file %s from offset %d", siblings[i], start.offset)
                self._queue = [(siblings[i], start.offset)] + [(p, 0) for p in siblings[i + 1 :]]
                return
        head = _head(self.path)
        if head is not None and matches(start.file, head):
            self._open(self.path, start.offset, live=True)
            return
        log.warning(
            "the file of the saved cursor (%s, %d bytes read) was not found; "
            "reading %s from its start",
            start.path,
            start.offset,
            self.path,
        )

    # -- rotation -------------------------------------------------------------------------------

    def _renamed(self, cur: _Reader) -> bool:
        """At the end of the live file: has the path moved on to another file?"""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror}"
            return False
        if (st.st_dev, st.st_ino) == (cur.file_id.dev, cur.file_id.ino):
            return False
        log.info("%s was rotated (renamed); finishing the old file", self.path)
        self.on_rotation("rename")
        cur.live = False
        return True

    def _truncated(self, cur: _Reader) -> bool:
        """Before reading the live file: was it truncated (or truncated and rewritten)?"""
        fd = cur.fh.fileno()
        head = os.pread(fd, cur.file_id.fp_len, 0)
        if os.fstat(fd).st_size >= cur.read_to and matches(cur.file_id, head):
            return False
        copy = self._find_copy(cur)
        if copy is not None:
            log.info("%s was copied to %s and truncated; finishing the copy", self.path, copy)
            self.on_rotation("copytruncate")
            self._queue = [(copy, cur.offset)]
        else:
            log.warning("%s was truncated; reading it from its start", self.path)
            self.on_rotation("truncate")
        cur.close()
        self._cur = None
        return True

    def _find_copy(self, cur: _Reader) -> Path | None:
        for path in reversed(self.siblings()):
            head = _head(path)
            if head is None or not matches(cur.file_id, head):
                continue
            if _is_gz(path) or path.stat().st_size >= cur.offset:
                return path
        return None
