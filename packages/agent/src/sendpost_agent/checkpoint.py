"""The cursor and the correlation state: ``{state-dir}/state.db``, SQLite from the standard library.

The cursor says where in which log file (or up to which journal entry) the agent has read; the
correlation state is what the parser knew at that point (queue ID → message UUID, held lines,
pending recipients). Both are saved together, every ``checkpoint-interval`` while lines are read.

Schema (``PRAGMA user_version`` 2)::

    cursor(id = 1, dev, ino, fingerprint, fp_len, path, offset, head, journal)
                                      one row; head: JSON; journal: a journald cursor or NULL
    queues(qid PRIMARY KEY, entry)    one row per queue ID the correlator holds; entry: JSON
    orphans(qid PRIMARY KEY, entry)   removed queue IDs whose held lines wait for a parent

``head`` is the parser state without its ``queues`` and ``orphans`` (year inference, the log
clock); :func:`~sendpost_agent.parse.mta.whole_state` puts the three back together. ``journal``
is set when the agent reads the systemd journal (:class:`JournalPosition`; the file columns are
then zero and ``path`` is ``journald``), NULL when it reads a file (:class:`Position`).

Invariants
----------
1. **One save, one transaction.** The cursor row and every changed entry are committed together
   or not at all. The cursor and the state it was saved with never disagree. With
   ``journal_mode=WAL`` and ``synchronous=NORMAL`` a commit is with the operating system when
   :meth:`StateDb.save` returns (a killed agent loses no save) and on disk at SQLite's next
   checkpoint of its WAL (a power loss may take back the last saves, whole: the cursor then lags,
   which only means lines read again). No fsync per save.
2. **A save costs what changed.** It writes the cursor row and the entries of the queue IDs that
   changed since the previous save (:meth:`LogParser.changes
   <sendpost_agent.parse.mta.LogParser.changes>`), not every entry: its cost follows the lines
   read in between, not the number of queue IDs held. SQLite checkpoints its own WAL into the
   database file every ~1,000 pages; that too is proportional to the pages changed.
3. **WAL before cursor** (docs/wal.md): a save happens only after the events of every line
   before ``offset`` are in the event WAL, fsynced. The cursor may lag; it never leads.

Recovery
--------
SQLite's own: at open, a commit whose frames in ``state.db-wal`` are cut short or fail their
checksums is ignored, so a crash in the middle of a save leaves the previous save, whole. By
invariant 3 the lines after its cursor are read again and give the same events with the same
``event_id``. A file that is not a database, or rows that cannot be decoded, raise
:class:`StateCorrupt`; the agent moves the files aside (``state.db.corrupt``) and reads the log
from its start (duplicates, never loss).

Migration
---------
Version 1 had no ``journal`` column: :meth:`StateDb.load` adds it (NULL: a file position) and
sets version 2 in one transaction. An older agent refuses version 2 as unknown, moves the
database aside and reads its log from the start (duplicates with the same ``event_id``, no loss).

Agents before this format kept both in ``{state-dir}/cursor``, one JSON document (``version`` 1)
rewritten whole at every save. When the database holds no cursor yet and that file exists,
:meth:`StateDb.load` imports it in one transaction, then deletes it; a crash between the two
leaves both, and the next start keeps the database's and deletes the old file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sendpost_agent.errors import StateCorrupt, StateUnavailable
from sendpost_agent.parse.mta import split_state, whole_state

if TYPE_CHECKING:
    from sendpost_agent.parse.mta import LogParser

DB_NAME = "state.db"
LEGACY_NAME = "cursor"
USER_VERSION = 2
JOURNAL_PATH = "journald"  # the ``path`` of a journal position's row
LEGACY_VERSION = 1
_SCHEMA = """
CREATE TABLE cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    fp_len INTEGER NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL, head TEXT,
    journal TEXT
);
CREATE TABLE queues (qid TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE orphans (qid TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 2;
"""
_UPGRADE_1 = "ALTER TABLE cursor ADD COLUMN journal TEXT; PRAGMA user_version = 2;"
_SELECT = "SELECT dev, ino, fingerprint, fp_len, path, offset, head, journal FROM cursor"
_SUFFIXES = ("", "-wal", "-shm")  # the database and SQLite's files beside it
# per table: forget all, forget one, write one
_QUEUES = (
    "DELETE FROM queues",
    "DELETE FROM queues WHERE qid = ?",
    "INSERT OR REPLACE INTO queues VALUES (?, ?)",
)
_ORPHANS = (
    "DELETE FROM orphans",
    "DELETE FROM orphans WHERE qid = ?",
    "INSERT OR REPLACE INTO orphans VALUES (?, ?)",
)


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
class JournalPosition:
    """A read position in the systemd journal: every entry up to and including the one of
    ``cursor`` (journalctl's ``__CURSOR``) has been consumed."""

    cursor: str


SourcePosition = Position | JournalPosition
"""Where a log source has read up to: in a file or in the journal."""


@dataclasses.dataclass(frozen=True)
class Cursor:
    position: SourcePosition
    parser_state: dict[str, Any] | None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class StateDb:
    """Loads and saves ``{state-dir}/state.db`` (see the module docstring). ``legacy``: the
    old-format cursor file to import when the database has no cursor yet."""

    def __init__(self, path: Path, legacy: Path | None = None) -> None:
        self.path = path
        self.legacy = legacy
        self._db: sqlite3.Connection | None = None

    # -- opening and loading ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if not self.path.exists():  # created here so that its mode (and its WAL's) is 0640
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640))
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise StateUnavailable(
                f"{self.path}: cannot open the state database ({exc}); left as it is"
            ) from None
        try:
            # small pages: a save rewrites one page per changed entry (for a new database only)
            db.execute("PRAGMA page_size=1024")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_size_limit=8388608")  # the WAL file shrinks back to 8 MB
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            elif version == 1:
                db.executescript(f"BEGIN IMMEDIATE; {_UPGRADE_1} COMMIT;")
            elif version != USER_VERSION:
                raise StateCorrupt(f"{self.path}: unknown version {version!r}")
        except sqlite3.OperationalError as exc:
            # I/O, space, size limit, permissions, locking: the file may be perfectly good
            db.close()
            raise StateUnavailable(
                f"{self.path}: cannot open the state database ({exc}); left as it is"
            ) from None
        except sqlite3.Error as exc:
            db.close()
            raise StateCorrupt(f"{self.path}: cannot open the state database ({exc})") from None
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def load(self) -> Cursor | None:
        """The saved cursor with its parser state, None if there is none (after importing an
        old-format cursor file, if one is there); :class:`StateCorrupt` if it can't be decoded."""
        db = self._connect()
        try:
            row = db.execute(_SELECT).fetchone()
        except sqlite3.Error as exc:
            raise StateCorrupt(f"{self.path}: cannot read the cursor ({exc})") from None
        if row is None:
            legacy = self._load_legacy()
            if legacy is None:
                return None
            head, queues, orphans = split_state(legacy.parser_state)
            self._write(legacy.position, head, queues, orphans, complete=True)
            row = db.execute(_SELECT).fetchone()
        if self.legacy is not None and self.legacy.exists():  # imported (now or before a crash)
            self.legacy.unlink()
            fsync_dir(self.legacy.parent)
        return self._decode(row)

    def _decode(self, row: tuple[Any, ...]) -> Cursor:
        db = self._connect()
        try:
            dev, ino, fingerprint, fp_len, path, offset, head, journal = row
            position: SourcePosition
            if journal is not None:
                position = JournalPosition(str(journal))
            else:
                position = Position(
                    FileId(int(dev), int(ino), str(fingerprint), int(fp_len)),
                    int(offset),
                    str(path),
                )
            if head is None:
                return Cursor(position, None)
            parser = json.loads(head)
            if not isinstance(parser, dict):
                raise StateCorrupt(f"{self.path}: parser state is not an object")
            if isinstance(parser.get("correlator"), dict):
                queues = {q: json.loads(e) for q, e in db.execute("SELECT qid, entry FROM queues")}
                orphans = {
                    q: json.loads(e) for q, e in db.execute("SELECT qid, entry FROM orphans")
                }
                parser = whole_state(parser, queues, orphans)
        except StateCorrupt:
            raise
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateCorrupt(f"{self.path}: cannot decode the state ({exc!r})") from None
        return Cursor(position, parser)

    def _load_legacy(self) -> Cursor | None:
        """The old format's ``cursor`` JSON file, None if there is none."""
        if self.legacy is None:
            return None
        try:
            raw = self.legacy.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("version") != LEGACY_VERSION:
                raise StateCorrupt(f"{self.legacy}: unknown version {doc.get('version')!r}")
            f = doc["file"]
            file_id = FileId(int(f["dev"]), int(f["ino"]), str(f["fingerprint"]), int(f["fp_len"]))
            position = Position(file_id, int(doc["offset"]), str(f.get("path", "")))
            parser = doc.get("parser")
            if parser is not None and not isinstance(parser, dict):
                raise StateCorrupt(f"{self.legacy}: parser state is not an object")
        except StateCorrupt:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateCorrupt(f"{self.legacy}: cannot decode the cursor ({exc!r})") from None
        return Cursor(position, parser)

    # -- saving -------------------------------------------------------------------------------

    def save(self, position: SourcePosition, pipeline: LogParser) -> None:
        """One transaction: ``position`` and what changed in ``pipeline`` since its last save."""
        changes = pipeline.changes()
        try:
            self._write(position, changes.head, changes.queues, changes.orphans, changes.complete)
        except BaseException:
            pipeline.unsaved(changes)
            raise

    def _write(
        self,
        position: SourcePosition,
        head: dict[str, Any] | None,
        queues: dict[str, Any],
        orphans: dict[str, Any],
        complete: bool,
    ) -> None:
        db = self._connect()
        where: tuple[int, int, str, int, str, int, str | None]
        if isinstance(position, JournalPosition):
            where = (0, 0, "", 0, JOURNAL_PATH, 0, position.cursor)
        else:
            f = position.file
            where = (f.dev, f.ino, f.fingerprint, f.fp_len, position.path, position.offset, None)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO cursor VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*where[:6], None if head is None else _json(head), where[6]),
            )
            for (clear, delete, upsert), entries in ((_QUEUES, queues), (_ORPHANS, orphans)):
                if complete:
                    db.execute(clear)
                else:
                    db.executemany(delete, [(qid,) for qid, e in entries.items() if e is None])
                db.executemany(
                    upsert, [(qid, _json(e)) for qid, e in entries.items() if e is not None]
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # -- closing and moving aside -------------------------------------------------------------

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def move_aside(self) -> list[str]:
        """Close, and rename the database (with its WAL) to ``state.db.corrupt`` and an
        old-format cursor file to ``cursor.corrupt``: the next :meth:`load` starts afresh.
        Returns the new names."""
        self.close()
        moved = []
        pairs = [(Path(f"{self.path}{s}"), Path(f"{self.path}.corrupt{s}")) for s in _SUFFIXES]
        if self.legacy is not None:
            pairs.append((self.legacy, self.legacy.with_name(self.legacy.name + ".corrupt")))
        for source, target in pairs:
            with contextlib.suppress(FileNotFoundError):
                os.replace(source, target)
                moved.append(target.name)
        fsync_dir(self.path.parent)
        return moved
