"""The WAL on real files: framing, segments, ordered acknowledgement, cap, torn tails."""

from __future__ import annotations

from pathlib import Path

from sendpost_agent.buffer import MAGIC, Wal


def _open(path: Path, max_bytes: int = 1 << 20, segment: int = 4096) -> Wal:
    wal = Wal(path, max_bytes, segment)
    wal.open()
    return wal


def _payloads(n: int, start: int = 0) -> list[bytes]:
    return [b'{"n":%d,"pad":"%s"}' % (i, b"x" * 40) for i in range(start, start + n)]


def test_records_read_back_in_order_across_segments_and_reopen(tmp_path: Path) -> None:
    """Appended records come back in order, over several segments, also after reopening."""
    wal = _open(tmp_path / "w")
    wal.append(_payloads(100))
    wal.append(_payloads(100, 100))
    assert len(list((tmp_path / "w").glob("*.seg"))) > 1
    first = [r.payload for r in wal.read(1000)]
    wal.close()
    again = _open(tmp_path / "w")
    assert _payloads(200) == first
    assert _payloads(200) == [r.payload for r in again.read(1000)]
    assert again.pending_events == 200


def test_ack_is_persisted_and_deletes_passed_segments(tmp_path: Path) -> None:
    """After an ack is persisted, reopening starts after it and old segments are gone."""
    wal = _open(tmp_path / "w")
    wal.append(_payloads(200))
    records = wal.read(150)
    wal.ack(records[-1].end, 150)
    wal.persist_ack()
    segments_left = sorted((tmp_path / "w").glob("*.seg"))
    wal.close()
    again = _open(tmp_path / "w")
    assert _payloads(50, 150) == [r.payload for r in again.read(1000)]
    assert again.pending_events == 50
    assert records[-1].end.segment == int(segments_left[0].stem)


def test_unpersisted_ack_means_redelivery_not_loss(tmp_path: Path) -> None:
    """An ack that was never persisted (crash) makes the records readable again."""
    wal = _open(tmp_path / "w")
    wal.append(_payloads(10))
    records = wal.read(10)
    wal.ack(records[-1].end, 10)
    wal.close()
    assert _payloads(10) == [r.payload for r in _open(tmp_path / "w").read(100)]


def test_torn_tail_is_cut_back_to_last_good_record(tmp_path: Path) -> None:
    """Half a record at the end (crash mid-write) is cut off and counted; earlier ones survive."""
    wal = _open(tmp_path / "w", segment=1 << 20)
    wal.append(_payloads(5))
    wal.close()
    segment = next((tmp_path / "w").glob("*.seg"))
    with open(segment, "ab") as fh:
        fh.write(b"\x00\x00\x01\x00\xde\xad")
    again = Wal(tmp_path / "w", 1 << 20, 1 << 20)
    report = again.open()
    assert (report.repairs, report.dropped_bytes) == (1, 6)
    assert _payloads(5) == [r.payload for r in again.read(100)]
    again.append(_payloads(1, 5))
    assert _payloads(1, 5) == [r.payload for r in again.read(100)]


def test_corrupt_record_drops_it_and_everything_after(tmp_path: Path) -> None:
    """A checksum mismatch in the middle cuts the WAL at that record (later segments too)."""
    wal = _open(tmp_path / "w", segment=2048)
    wal.append(_payloads(3))
    wal.append(_payloads(60, 3))
    wal.close()
    first = sorted((tmp_path / "w").glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    second_record = len(MAGIC) + 8 + len(_payloads(1)[0]) + 8
    data[second_record + 3] ^= 0xFF
    first.write_bytes(bytes(data))
    again = Wal(tmp_path / "w", 1 << 20, 2048)
    report = again.open()
    assert report.repairs == 1
    assert _payloads(1) == [r.payload for r in again.read(100)]
    assert len(list((tmp_path / "w").glob("*.seg"))) == 1


def test_corrupt_ack_marker_restarts_delivery_from_oldest(tmp_path: Path) -> None:
    """An unreadable ack marker is reported and delivery restarts at the oldest record."""
    wal = _open(tmp_path / "w")
    wal.append(_payloads(4))
    wal.ack(wal.read(2)[-1].end, 2)
    wal.persist_ack()
    wal.close()
    (tmp_path / "w" / "ack").write_bytes(b"{not json")
    again = Wal(tmp_path / "w", 1 << 20, 4096)
    report = again.open()
    assert report.ack_reset is not None
    assert _payloads(4) == [r.payload for r in again.read(100)]


def test_cap_reports_full_until_acknowledged(tmp_path: Path) -> None:
    """The WAL is full at the cap and stops being full once records are acknowledged."""
    wal = _open(tmp_path / "w", max_bytes=4096, segment=1024)
    wal.append(_payloads(40))
    assert not wal.full
    wal.append(_payloads(40, 40))
    assert wal.full
    records = wal.read(80)
    wal.ack(records[-1].end, 80)
    wal.persist_ack()
    assert (wal.full, wal.pending_bytes, wal.pending_events) == (False, 0, 0)


def test_rewind_reads_unacknowledged_records_again(tmp_path: Path) -> None:
    """rewind() goes back to the first unacknowledged record."""
    wal = _open(tmp_path / "w")
    wal.append(_payloads(6))
    wal.ack(wal.read(2)[-1].end, 2)
    wal.read(10)
    wal.rewind()
    assert _payloads(4, 2) == [r.payload for r in wal.read(10)]
