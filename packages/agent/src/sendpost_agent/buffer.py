"""The write-ahead log of events waiting to be shipped: ``{state-dir}/pending.wal/``.

Format (version 1)
------------------
The directory holds segment files ``0000000000000001.seg``, ``…02.seg`` … and one marker file
``ack``. A segment starts with the 8-byte magic ``SPWAL\\x00\\x01\\n`` and continues with records::

    +----------------+----------------+--------------------+
    | length: u32 BE | crc32: u32 BE  | payload (length B) |
    +----------------+----------------+--------------------+

The payload is one event as compact JSON (its wire form). ``crc32`` is zlib's CRC-32 of the
payload. A record never spans two segments; a new segment is started once the current one has
reached the segment size. ``ack`` is ``{"version": 1, "segment": n, "offset": o}``: every record
that ends at or before that position has been delivered (2xx) and may be deleted.

Invariants
----------
1. An event is in the WAL, fsynced, before the log cursor moves past the line that produced it.
2. An event leaves the WAL (the ack marker passes it) only after the platform answered 2xx, or
   after it was written to the dead-letter file.
3. Acknowledgement is in order: the marker moves over a contiguous prefix of records, even when
   several batches are in flight and finish out of order.
4. The ``ack`` marker is replaced atomically (tmp, fsync, rename, directory fsync). It may lag
   (events are then sent twice, with the same ``event_id``), never lead.
5. Segments entirely before the marker are deleted; the bytes after it count against the cap, and
   the reader of the log pauses while the cap is reached.

Recovery
--------
On open every remaining segment is scanned from its start. At the first record that is cut short
(a torn write at a crash) or whose checksum does not match, the segment is truncated there and all
later segments are deleted; this is counted as a repair. Nothing acknowledged is lost by this,
and, by invariant 1, the log lines behind the dropped records are read again because the cursor
had not moved past them. A missing or unreadable ``ack`` marker restarts delivery at the oldest
segment (safe: duplicates carry the same ``event_id``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from sendpost_agent.checkpoint import fsync_dir, write_atomically

log = logging.getLogger(__name__)

MAGIC = b"SPWAL\x00\x01\n"
HEADER = struct.Struct(">II")
MAX_RECORD = 16 * 1024 * 1024
_READ_BLOCK = 1024 * 1024


@dataclasses.dataclass(frozen=True, order=True)
class WalPos:
    segment: int
    offset: int


@dataclasses.dataclass(frozen=True)
class Record:
    payload: bytes
    end: WalPos


@dataclasses.dataclass
class Recovery:
    """What :meth:`Wal.open` found."""

    repairs: int = 0
    dropped_bytes: int = 0
    ack_reset: str | None = None


def _seg_name(seq: int) -> str:
    return f"{seq:016d}.seg"


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class Wal:
    """Segmented, checksummed, capped append-only log with an acknowledged-position marker."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._sizes: dict[int, int] = {}
        self._ack = WalPos(1, len(MAGIC))
        self._persisted_ack = self._ack
        self._read = self._ack
        self._events = 0
        self._wfd = -1
        self._rfd = -1
        self._rseg = 0

    # -- opening and recovery -------------------------------------------------------------------

    def open(self) -> Recovery:
        self.dir.mkdir(parents=True, exist_ok=True)
        report = Recovery()
        segs = sorted(int(p.stem) for p in self.dir.glob("*.seg") if p.stem.isdigit())
        ack = self._load_ack(report)
        if ack is None:
            ack = WalPos(segs[0] if segs else 1, len(MAGIC))
        for seq in [s for s in segs if s < ack.segment]:
            (self.dir / _seg_name(seq)).unlink()
        segs = [s for s in segs if s >= ack.segment]
        events = 0
        boundary_ok = not segs or ack.segment not in segs
        for i, seq in enumerate(segs):
            size, bounds, torn = self._scan(seq)
            if torn:
                report.repairs += 1
                report.dropped_bytes += torn
                for later in segs[i + 1 :]:
                    report.dropped_bytes += (self.dir / _seg_name(later)).stat().st_size
                    (self.dir / _seg_name(later)).unlink()
                log.warning(
                    "WAL: cut a torn or corrupt tail of %d bytes at segment %d offset %d",
                    report.dropped_bytes,
                    seq,
                    size,
                )
            self._sizes[seq] = size
            if seq == ack.segment:
                boundary_ok = ack.offset == len(MAGIC) or ack.offset in bounds
                events += sum(1 for b in bounds if b > ack.offset)
            else:
                events += len(bounds)
            if torn:
                break
        if not boundary_ok:
            report.ack_reset = f"ack marker {ack} is not on a record boundary"
            log.error("WAL: %s; delivering again from the oldest segment", report.ack_reset)
            ack = WalPos(ack.segment, len(MAGIC))
            events = sum(len(self._scan(s)[1]) for s in self._sizes)
        if not self._sizes:
            self._new_segment(ack.segment)
        self._ack = self._persisted_ack = self._read = ack
        self._events = events
        last = max(self._sizes)
        self._wfd = os.open(self.dir / _seg_name(last), os.O_WRONLY | os.O_APPEND)
        return report

    def _load_ack(self, report: Recovery) -> WalPos | None:
        try:
            doc = json.loads((self.dir / "ack").read_bytes())
            if doc.get("version") != 1:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            return WalPos(int(doc["segment"]), int(doc["offset"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.ack_reset = f"ack marker unreadable ({exc})"
            log.error("WAL: %s; delivering again from the oldest segment", report.ack_reset)
            return None

    def _scan(self, seq: int) -> tuple[int, list[int], int]:
        """Validate one segment: (good size, record end offsets, bytes cut off)."""
        path = self.dir / _seg_name(seq)
        data = path.read_bytes()
        bounds: list[int] = []
        if data[: len(MAGIC)] != MAGIC:
            good = 0
        else:
            good = len(MAGIC)
            while good + HEADER.size <= len(data):
                length, crc = HEADER.unpack_from(data, good)
                end = good + HEADER.size + length
                if length > MAX_RECORD or end > len(data):
                    break
                if zlib.crc32(data[good + HEADER.size : end]) != crc:
                    break
                good = end
                bounds.append(end)
        torn = len(data) - good
        if torn:
            with open(path, "r+b") as fh:
                if good == 0:
                    fh.write(MAGIC)
                    good = len(MAGIC)
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        return good, bounds, torn

    def _new_segment(self, seq: int) -> None:
        path = self.dir / _seg_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o640)
        os.write(fd, MAGIC)
        os.fsync(fd)
        fsync_dir(self.dir)
        self._sizes[seq] = len(MAGIC)
        if self._wfd >= 0:
            os.close(self._wfd)
        self._wfd = fd

    # -- writing --------------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> WalPos | None:
        """Append records and fsync them; they are durable when this returns. Returns the end
        of the last record appended (None when there was none)."""
        if not payloads:
            return None
        blob = b"".join(frame(p) for p in payloads)
        last = max(self._sizes)
        view = memoryview(blob)
        while view:
            view = view[os.write(self._wfd, view) :]
        os.fdatasync(self._wfd)
        self._sizes[last] += len(blob)
        self._events += len(payloads)
        end = WalPos(last, self._sizes[last])
        if self._sizes[last] >= self.segment_bytes:
            self._new_segment(last + 1)
        return end

    # -- reading and acknowledging --------------------------------------------------------------

    def read(self, max_records: int) -> list[Record]:
        """The next records after the previous read (not after the ack marker), in order."""
        out: list[Record] = []
        while len(out) < max_records:
            seq, off = self._read.segment, self._read.offset
            size = self._sizes.get(seq, 0)
            if off >= size:
                if seq + 1 in self._sizes:
                    self._read = WalPos(seq + 1, len(MAGIC))
                    continue
                break
            if self._rseg != seq:
                if self._rfd >= 0:
                    os.close(self._rfd)
                self._rfd = os.open(self.dir / _seg_name(seq), os.O_RDONLY)
                self._rseg = seq
            block = os.pread(self._rfd, min(_READ_BLOCK, size - off), off)
            pos = 0
            while len(out) < max_records and pos + HEADER.size <= len(block):
                length, _crc = HEADER.unpack_from(block, pos)
                end = pos + HEADER.size + length
                if end > len(block):
                    if pos == 0:
                        block = os.pread(self._rfd, HEADER.size + length, off)
                        continue
                    break
                out.append(Record(block[pos + HEADER.size : end], WalPos(seq, off + end)))
                pos = end
            self._read = WalPos(seq, off + pos)
        return out

    def rewind(self) -> None:
        """Read again from the ack marker (records read but never acknowledged)."""
        self._read = self._ack

    def ack(self, end: WalPos, count: int) -> None:
        """Records up to ``end`` (``count`` of them since the last ack) are delivered."""
        if end <= self._ack:
            return
        self._ack = end
        self._events -= count

    def persist_ack(self) -> None:
        """Write the marker and delete the segments it has passed."""
        if self._ack == self._persisted_ack:
            return
        doc = {"version": 1, "segment": self._ack.segment, "offset": self._ack.offset}
        write_atomically(self.dir / "ack", json.dumps(doc).encode())
        self._persisted_ack = self._ack
        done = [s for s in self._sizes if s < self._ack.segment]
        for seq in done:
            if seq == self._rseg and self._rfd >= 0:
                os.close(self._rfd)
                self._rfd, self._rseg = -1, 0
            with contextlib.suppress(FileNotFoundError):
                (self.dir / _seg_name(seq)).unlink()
            del self._sizes[seq]
        if done:
            fsync_dir(self.dir)

    # -- accounting -----------------------------------------------------------------------------

    @property
    def pending_events(self) -> int:
        return self._events

    @property
    def pending_bytes(self) -> int:
        ack = self._ack
        body = sum(size - len(MAGIC) for seq, size in self._sizes.items() if seq >= ack.segment)
        return max(0, body - (ack.offset - len(MAGIC)))

    @property
    def unread(self) -> bool:
        """Whether records were appended that :meth:`read` has not returned yet."""
        here = self._read
        return any(
            size > (here.offset if seq == here.segment else len(MAGIC))
            for seq, size in self._sizes.items()
            if seq >= here.segment
        )

    @property
    def full(self) -> bool:
        return self.pending_bytes >= self.max_bytes

    def close(self) -> None:
        for fd in (self._wfd, self._rfd):
            if fd >= 0:
                os.close(fd)
        self._wfd = self._rfd = -1
