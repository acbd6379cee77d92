"""The file source on real files: rotation kinds, restarts across rotation, partial lines."""

from __future__ import annotations

import gzip
import os
import random
import shutil
from pathlib import Path

import pytest
from sendpost_agent.sources.file import FileTail

from .loglines import log_text


def _drain(tail: FileTail) -> bytes:
    out = b""
    while (data := tail.read()) is not None:
        out += data
    return out


class Writer:
    """Writes numbered lines like a syslog daemon: an open file, reopened on rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        self.fh = open(path, "ab")  # noqa: SIM115

    def write(self, count: int) -> None:
        text = log_text(self.n, self.n + count).encode()
        self.n += count
        self.fh.write(text)
        self.fh.flush()

    def reopen(self) -> None:
        self.fh.close()
        self.fh = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        self.fh.close()


def _rotate(kind: str, path: Path, writer: Writer, generation: int) -> None:
    if kind == "rename":
        os.rename(path, path.with_name(f"{path.name}.{generation}"))
        writer.write(2)  # still writing to the renamed file until told to reopen
        writer.reopen()
    elif kind == "copytruncate":
        shutil.copyfile(path, path.with_name(f"{path.name}.{generation}"))
        os.truncate(path, 0)
    else:
        writer.fh.truncate(0)


def _has_read_current(tail: FileTail, path: Path) -> bool:
    """Rotations are spaced by at least one read of the live file (daily rotation, 0.25 s polls):
    a file copied and truncated before the agent read any of it is a documented limit."""
    position = tail.position
    return position is not None and position.path == str(path) and position.offset > 0


@pytest.mark.parametrize("kind", ["rename", "copytruncate", "truncate"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_rotation_while_writing_loses_and_repeats_nothing(
    tmp_path: Path, kind: str, seed: int
) -> None:
    """Interleaved writes, reads and rotations: the lines read are exactly the lines written."""
    rng = random.Random(seed)
    path = tmp_path / "mail.log"
    writer = Writer(path)
    rotations: list[str] = []
    tail = FileTail(path, None, chunk_bytes=700, on_rotation=rotations.append)
    got = _drain(tail)  # the agent is running before the first line is written
    generation = 0
    rotated_since_drain = False
    for _ in range(120):
        step = rng.random()
        if step < 0.5:
            writer.write(rng.randint(1, 4))
        elif step < 0.7:
            got += tail.read() or b""
        elif step < 0.9:
            got += _drain(tail)
            rotated_since_drain = False
        elif not rotated_since_drain and _has_read_current(tail, path):
            if kind == "truncate":
                got += _drain(tail)  # plain truncation drops unread lines: read them first
            generation += 1
            _rotate(kind, path, writer, generation)
            rotated_since_drain = True
    got += _drain(tail)
    got += _drain(tail)
    writer.close()
    assert log_text(0, writer.n).encode() == got
    assert [kind] * generation == rotations


def test_partial_line_is_held_until_complete(tmp_path: Path) -> None:
    """A line without its newline yet is not returned; it is once completed."""
    path = tmp_path / "mail.log"
    line = log_text(0, 1).splitlines(keepends=True)[0].encode()
    path.write_bytes(line[:30])
    tail = FileTail(path, None)
    assert tail.read() is None
    with open(path, "ab") as fh:
        fh.write(line[30:])
    assert line == tail.read()
    assert len(line) == tail.position.offset if tail.position else None


@pytest.mark.parametrize("rotated_name", ["mail.log.1", "mail.log-20260219", "mail.log.1.gz"])
def test_restart_after_rotation_during_downtime_finishes_old_file(
    tmp_path: Path, rotated_name: str
) -> None:
    """Stopped mid-file, the log rotated meanwhile: the old file is found by fingerprint and
    finished from the saved offset before the new file is read."""
    path = tmp_path / "mail.log"
    path.write_text(log_text(0, 20))
    tail = FileTail(path, None, chunk_bytes=1000)
    first = tail.read() or b""
    saved = tail.position
    tail.close()
    old = path.with_name(rotated_name)
    if rotated_name.endswith(".gz"):
        with gzip.open(old, "wb") as fh:
            fh.write(path.read_bytes())
        path.unlink()
    else:
        os.rename(path, old)
    path.write_text(log_text(20, 30))
    resumed = FileTail(path, saved)
    assert log_text(0, 30).encode() == first + _drain(resumed)


def test_restart_across_two_rotations_reads_the_middle_file(tmp_path: Path) -> None:
    """Two rotations while stopped: rest of the oldest file, then the middle one, then the live."""
    path = tmp_path / "mail.log"
    path.write_text(log_text(0, 10))
    tail = FileTail(path, None, chunk_bytes=1000)
    first = tail.read() or b""
    saved = tail.position
    os.rename(path, tmp_path / "mail.log.2")
    (tmp_path / "mail.log.1").write_text(log_text(10, 15))
    os.utime(tmp_path / "mail.log.2", (1_000_000, 1_000_000))
    os.utime(tmp_path / "mail.log.1", (2_000_000, 2_000_000))
    path.write_text(log_text(15, 20))
    assert log_text(0, 20).encode() == first + _drain(FileTail(path, saved))


def test_restart_on_same_file_continues_at_offset(tmp_path: Path) -> None:
    """A plain restart continues exactly where the saved position was."""
    path = tmp_path / "mail.log"
    path.write_text(log_text(0, 5))
    tail = FileTail(path, None)
    first = _drain(tail)
    with open(path, "a") as fh:
        fh.write(log_text(5, 8))
    assert log_text(5, 8).encode() == _drain(FileTail(path, tail.position))
    assert log_text(0, 5).encode() == first


def test_unknown_saved_file_starts_from_beginning(tmp_path: Path) -> None:
    """A cursor naming a file that is nowhere to be found restarts at the live file's start."""
    other = tmp_path / "other.log"
    other.write_text(log_text(50, 60))
    tail = FileTail(other, None)
    _drain(tail)
    path = tmp_path / "mail.log"
    path.write_text(log_text(0, 3))
    assert log_text(0, 3).encode() == _drain(FileTail(path, tail.position))


def test_missing_log_reports_error_and_recovers(tmp_path: Path) -> None:
    """No log yet: read() returns None with an error; once it appears, it is read."""
    path = tmp_path / "mail.log"
    tail = FileTail(path, None)
    assert tail.read() is None
    assert tail.error is not None
    path.write_text(log_text(0, 1))
    assert log_text(0, 1).encode() == _drain(tail)
    assert tail.error is None
