"""``{state-dir}/state.db``: the cursor and the correlation state, saved by what changed.

Real SQLite files in a temp dir, the real pipeline fed real corpus lines (compiled and Python
paths), old-format cursor files as the previous agent wrote them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sendpost_agent.checkpoint import (
    DB_NAME,
    LEGACY_NAME,
    Cursor,
    FileId,
    JournalPosition,
    Position,
    StateDb,
)
from sendpost_agent.errors import StateCorrupt, StateUnavailable
from sendpost_agent.parse.postfix import Pipeline

from tests.support.corpus import POSTFIX_LOGS

from .loglines import log_text, message_lines

GOLDEN = Path(__file__).resolve().parents[1] / "parse" / "golden"
LOGS = [*sorted(GOLDEN.glob("*.log")), *sorted(POSTFIX_LOGS.glob("*.log"))]
FILE = FileId(1, 2, "ab" * 32, 512)
UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
_HEADER = (
    f"info: header X-Sendpost-Message-UUID: {UUID} from p.example.net[192.0.2.1]; "
    "from=<s@example.com> to=<r@example.org> proto=ESMTP helo=<p>"
)
_SENT = "to=<c@example.org>, relay=mx.example.org[192.0.2.9]:25, delay=1, dsn=2.0.0, status=sent"
# Links and orphans: a re-injected child delivered and removed before its parent's UUID is
# known (held, parked as an orphan, then linked); an orphan whose hold time runs out; expiry.
LINKS = "".join(
    f"Feb 19 {at} mx postfix/{prog}[100]: {qid}: {text}\n"
    for at, prog, qid, text in [
        (
            "12:00:00",
            "smtpd",
            "CHILD00001",
            "client=localhost[127.0.0.1], orig_queue_id=PARENT0001",
        ),
        ("12:00:01", "smtp", "CHILD00001", f"{_SENT} (250 2.0.0 Ok)"),
        ("12:00:01", "smtp", "LOST000001", f"{_SENT} (250 2.0.0 Ok)"),
        ("12:00:02", "qmgr", "CHILD00001", "removed"),
        ("12:00:02", "qmgr", "LOST000001", "removed"),
        ("12:00:02", "cleanup", "EXPIRES001", _HEADER),  # (the parent comes in the next save)
        ("12:00:03", "cleanup", "PARENT0001", _HEADER),
        ("12:00:04", "smtp", "PARENT0001", f"{_SENT} (250 2.0.0 Ok: queued as NEXT000001)"),
        (
            "12:00:06",
            "smtp",
            "EXPIRES001",
            _SENT.replace("2.0.0, status=sent", "4.4.1, status=deferred") + " (timed out)",
        ),
        ("12:30:00", "qmgr", "EXPIRES001", "from=<s@example.com>, status=expired, returned"),
        ("12:30:01", "qmgr", "EXPIRES001", "removed"),
    ]
).encode()


def _position(offset: int) -> Position:
    return Position(FILE, offset, "/var/log/mail.log")


def _json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _reopen(path: Path) -> Cursor | None:
    store = StateDb(path)
    try:
        return store.load()
    finally:
        store.close()


def _chunks(data: bytes, lines: int) -> list[bytes]:
    rows = data.splitlines(keepends=True)
    return [b"".join(rows[i : i + lines]) for i in range(0, len(rows), lines)]


@pytest.mark.parametrize("path", [None, *LOGS], ids=lambda p: p.name if p else "links")
@pytest.mark.parametrize("feed", ["feed", "feed_json"])
def test_saved_changes_add_up_to_the_whole_state(
    tmp_path: Path, path: Path | None, feed: str
) -> None:
    """Saving only what changed, after every few lines, leaves on disk exactly the state the
    pipeline holds (its snapshot): no change is missed, by the Python path (``feed``) or the
    compiled fused path (``feed_json``), including held lines, orphans, links and removals."""
    data = path.read_bytes() if path else LINKS
    data += log_text(0, 30).encode()  # deferred, never removed: pending recipients stay
    pipeline = Pipeline(track_changes=True)
    store = StateDb(tmp_path / DB_NAME)
    offset = 0
    for chunk in _chunks(data, 3):
        getattr(pipeline, feed)(chunk)
        offset += len(chunk)
        store.save(_position(offset), pipeline)
        loaded = _reopen(tmp_path / DB_NAME)
        assert loaded is not None
        assert (_position(offset), _json(pipeline.snapshot())) == (
            loaded.position,
            loaded.parser_state,
        )
    pipeline.expire(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))  # all with a log time expire
    store.save(_position(offset), pipeline)
    store.close()
    loaded = _reopen(tmp_path / DB_NAME)
    assert loaded is not None
    assert _json(pipeline.snapshot()) == loaded.parser_state


def test_a_save_writes_only_the_queue_ids_that_changed(tmp_path: Path) -> None:
    """With 3,000 queue IDs held, a save after the lines of two more messages and one retry
    writes the cursor row and the rows of those queue IDs, not the 3,000 (counted by SQLite's
    own counter of rows changed)."""
    pipeline = Pipeline(track_changes=True)
    store = StateDb(tmp_path / DB_NAME)
    held = b"".join(line.encode() for i in range(3000) for line in message_lines(i * 10 + 9))
    pipeline.feed_json(held)
    store.save(_position(len(held)), pipeline)
    db = store._connect()
    assert 3000 == db.execute("SELECT count(*) FROM queues").fetchone()[0]
    before = db.total_changes
    retry = message_lines(9)[-1]  # another deferral of a held queue ID
    more = "".join(message_lines(40_000) + message_lines(40_009) + [retry]).encode()
    pipeline.feed_json(more)
    store.save(_position(len(held) + len(more)), pipeline)
    # the cursor row, 40009 (deferred: added) and 9 (updated); 40000 came and went (sent, then
    # removed: its delete finds no row)
    assert 3 == db.total_changes - before
    assert 3001 == db.execute("SELECT count(*) FROM queues").fetchone()[0]


def test_a_torn_last_save_leaves_the_previous_one_whole(tmp_path: Path) -> None:
    """A crash in the middle of a save (the end of ``state.db-wal`` cut off) loses that save
    only: the database opens with the cursor and the correlation state of the save before,
    together, never the new cursor with the old state or half of the new entries."""
    pipeline = Pipeline(track_changes=True)
    store = StateDb(tmp_path / DB_NAME)
    first = log_text(0, 40).encode()
    pipeline.feed_json(first)
    store.save(_position(len(first)), pipeline)
    expected = _json(pipeline.snapshot())
    second = log_text(40, 80).encode()
    pipeline.feed_json(second)
    store.save(_position(len(first) + len(second)), pipeline)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in (DB_NAME, DB_NAME + "-wal"):  # the files as a kill -9 leaves them
        shutil.copy(tmp_path / name, crashed / name)
    wal = crashed / (DB_NAME + "-wal")
    size = wal.stat().st_size
    assert size > 4096
    with open(wal, "r+b") as fh:
        fh.truncate(size - 100)
    loaded = _reopen(crashed / DB_NAME)
    assert loaded is not None
    assert (_position(len(first)), expected) == (loaded.position, loaded.parser_state)
    store.close()


def _legacy_cursor(path: Path, offset: int, parser: dict[str, Any] | None) -> None:
    """A ``cursor`` file as the agent wrote it before ``state.db`` (version 1)."""
    doc = {
        "version": 1,
        "file": {"dev": FILE.dev, "ino": FILE.ino, "fingerprint": FILE.fingerprint,
                 "fp_len": FILE.fp_len, "path": "/var/log/mail.log"},
        "offset": offset,
        "parser": parser,
    }  # fmt: skip
    path.write_text(json.dumps(doc, separators=(",", ":")))


def test_an_old_cursor_file_is_imported_once(tmp_path: Path) -> None:
    """The old ``cursor`` file is imported at the first load (the same position and parser
    state), then deleted; the next save costs only what changed, on top of the imported rows."""
    pipeline = Pipeline()
    text = log_text(0, 50).encode()
    pipeline.feed_json(text)
    legacy = tmp_path / LEGACY_NAME
    _legacy_cursor(legacy, len(text), pipeline.snapshot())
    store = StateDb(tmp_path / DB_NAME, legacy=legacy)
    loaded = store.load()
    assert loaded is not None
    assert (_position(len(text)), _json(pipeline.snapshot())) == (
        loaded.position,
        loaded.parser_state,
    )
    assert not legacy.exists()
    resumed = Pipeline(state=loaded.parser_state, track_changes=True)
    more = log_text(50, 60).encode()
    resumed.feed_json(more)
    store.save(_position(len(text) + len(more)), resumed)
    store.close()
    again = _reopen(tmp_path / DB_NAME)
    assert again is not None
    assert _json(resumed.snapshot()) == again.parser_state


def test_an_import_interrupted_before_the_old_file_was_deleted(tmp_path: Path) -> None:
    """Killed after the import committed but before the old file was deleted: the database's
    cursor wins (it may already be newer), and the old file is deleted."""
    legacy = tmp_path / LEGACY_NAME
    _legacy_cursor(legacy, 10, None)
    store = StateDb(tmp_path / DB_NAME, legacy=legacy)
    store.load()
    store.save(_position(99), Pipeline(track_changes=True))
    store.close()
    _legacy_cursor(legacy, 10, None)  # as if the unlink had not happened
    loaded = StateDb(tmp_path / DB_NAME, legacy=legacy).load()
    assert loaded is not None
    assert (99, False) == (loaded.position.offset, legacy.exists())


@pytest.mark.parametrize(
    "damage",
    [b"not a database, just text" * 100, b'{"version": 1, "file": {"dev": '],
    ids=["garbage", "json"],
)
def test_an_unreadable_database_is_reported_and_moved_aside(tmp_path: Path, damage: bytes) -> None:
    """A ``state.db`` that is not a database raises StateCorrupt naming it; ``move_aside``
    keeps it as ``state.db.corrupt`` and the next load starts empty."""
    (tmp_path / DB_NAME).write_bytes(damage)
    store = StateDb(tmp_path / DB_NAME, legacy=tmp_path / LEGACY_NAME)
    with pytest.raises(StateCorrupt, match=DB_NAME):
        store.load()
    store.move_aside()
    assert damage == (tmp_path / (DB_NAME + ".corrupt")).read_bytes()
    assert StateDb(tmp_path / DB_NAME).load() is None


def test_an_unreadable_old_cursor_file_is_reported_and_moved_aside(tmp_path: Path) -> None:
    """An old-format ``cursor`` file that cannot be decoded raises StateCorrupt naming it (no
    import); ``move_aside`` keeps it as ``cursor.corrupt`` and the next load starts empty."""
    legacy = tmp_path / LEGACY_NAME
    legacy.write_text('{"version": 1, "file": {"dev": ')
    store = StateDb(tmp_path / DB_NAME, legacy=legacy)
    with pytest.raises(StateCorrupt, match=f"{LEGACY_NAME}: cannot decode the cursor"):
        store.load()
    assert "cursor.corrupt" in store.move_aside()
    assert (True, False) == ((tmp_path / "cursor.corrupt").exists(), legacy.exists())
    assert StateDb(tmp_path / DB_NAME, legacy=legacy).load() is None


def test_a_restored_pipeline_continues_like_the_uninterrupted_one(tmp_path: Path) -> None:
    """A pipeline built from the loaded state (handed over, not copied, as the daemon does)
    gives the same events for the next lines as the pipeline that saved it, held lines and
    pending recipients included."""
    text = "".join(line for i in range(40) for line in message_lines(i)[:4]).encode()
    text += log_text(40, 80).encode()
    rest = "".join(line for i in range(40) for line in message_lines(i)[4:]).encode()
    rest += log_text(80, 100).encode()
    running = Pipeline(track_changes=True)
    running.feed_json(text)
    store = StateDb(tmp_path / DB_NAME)
    store.save(_position(len(text)), running)
    store.close()
    loaded = _reopen(tmp_path / DB_NAME)
    assert loaded is not None
    assert loaded.parser_state is not None
    restored = Pipeline(state=loaded.parser_state, track_changes=True, own_state=True)
    expected = running.feed_json(rest)
    assert len(expected) == 60
    assert expected == restored.feed_json(rest)


def test_a_state_database_that_cannot_be_opened_is_left_alone(tmp_path: Path) -> None:
    """An I/O problem (here: the path is a directory; in life a full disk or a size limit) is
    not corruption: StateUnavailable, and nothing is moved aside or reset."""
    path = tmp_path / "state.db"
    path.mkdir()
    (path / "keep").write_text("x")
    db = StateDb(path, legacy=tmp_path / "cursor")
    with pytest.raises(StateUnavailable, match="left as it is"):
        db.load()
    assert (path / "keep").read_text() == "x"
    assert not (tmp_path / "state.db.corrupt").exists()


# The version 1 schema, as agents before the journald source created it.
_VERSION_1 = """
CREATE TABLE cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    fp_len INTEGER NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL, head TEXT
);
CREATE TABLE queues (qid TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE orphans (qid TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A state.db of version 1 (no journal column) keeps its file cursor and its correlation
    state; it becomes version 2, and a journal cursor can then be saved in it."""
    path = tmp_path / DB_NAME
    pipeline = Pipeline(track_changes=True)
    pipeline.feed_json(log_text(0, 20).encode())
    changes = pipeline.changes()
    with sqlite3.connect(path) as db:
        db.executescript(_VERSION_1)
        db.execute(
            "INSERT INTO cursor VALUES (1, 1, 2, ?, 512, '/var/log/mail.log', 777, ?)",
            (FILE.fingerprint, json.dumps(changes.head)),
        )
        db.executemany(
            "INSERT INTO queues VALUES (?, ?)",
            [(q, json.dumps(e)) for q, e in changes.queues.items() if e is not None],
        )
    db.close()
    loaded = _reopen(path)
    assert loaded is not None
    assert loaded.position == _position(777)
    assert loaded.parser_state == _json(pipeline.snapshot())
    store = StateDb(path)
    assert store._connect().execute("PRAGMA user_version").fetchone()[0] == 2
    store.save(JournalPosition("s=1;i=2"), pipeline)
    store.close()
    again = _reopen(path)
    assert again is not None
    assert again.position == JournalPosition("s=1;i=2")


def test_journal_and_file_positions_replace_each_other(tmp_path: Path) -> None:
    """The one cursor row holds a journal cursor or a file position, whichever was saved last,
    with the correlation state saved with it."""
    store = StateDb(tmp_path / DB_NAME)
    pipeline = Pipeline(track_changes=True)
    cursor = "s=8f77;i=1c2;b=0b5e;m=9a;t=64d1;x=3f"
    pipeline.feed_json(log_text(0, 5).encode())
    store.save(JournalPosition(cursor), pipeline)
    assert _reopen(tmp_path / DB_NAME) == Cursor(
        JournalPosition(cursor), _json(pipeline.snapshot())
    )
    pipeline.feed_json(log_text(5, 9).encode())
    store.save(_position(10), pipeline)
    assert _reopen(tmp_path / DB_NAME) == Cursor(_position(10), _json(pipeline.snapshot()))
    store.save(JournalPosition(cursor + "0"), pipeline)
    store.close()
    loaded = _reopen(tmp_path / DB_NAME)
    assert loaded is not None
    assert loaded.position == JournalPosition(cursor + "0")
