"""The whole daemon in-process (real files, real HTTP on loopback) against the fake endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sendpost_agent.app import Agent
from sendpost_agent.buffer import Wal
from sendpost_agent.checkpoint import DB_NAME, LEGACY_NAME
from sendpost_agent.config import Settings
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.sources.file import FP_LEN
from sendpost_agent.telemetry import snapshot

from tests.support.fake_ingest import Answer, FakeIngest

from .helpers import expected_events, make_settings, until
from .loglines import log_text, message_lines


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    with FakeIngest(keys={"test-key"}) as server:
        yield server


class Running:
    def __init__(self, settings: Settings) -> None:
        self.agent = Agent(settings)
        self.task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.agent.run())
        await until(lambda: self.agent.listening is not None or self.task.done())  # type: ignore[union-attr]
        return self

    async def stop(self) -> int:
        assert self.task is not None
        self.agent.stop.set()
        return await asyncio.wait_for(self.task, 20)

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if not self.task.done():
            await self.stop()

    def metric(self, name: str) -> float:
        return snapshot(self.agent.metrics).get(name, 0.0)


def _received(ingest: FakeIngest) -> dict[str, dict[str, Any]]:
    return {str(e["event_id"]): e for e in ingest.events}


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _write(path: Path, start: int, stop: int) -> None:
    with open(path, "a") as fh:
        fh.write(log_text(start, stop))


async def test_ships_every_event_once_in_batches(tmp_path: Path, ingest: FakeIngest) -> None:
    """A backlog is shipped: received events equal the parser's, each once, ≤ batch-size each."""
    _write(tmp_path / "mail.log", 0, 450)
    expected = expected_events(log_text(0, 450))
    async with Running(make_settings(tmp_path, ingest.url, batch_size=100)) as run:
        await until(lambda: len(ingest.events) >= len(expected))
        assert await run.stop() == 0
    assert expected == _received(ingest)
    assert len(expected) == len(ingest.events)
    assert max(n for _, _, n in ingest.requests) == 100
    assert run.metric("sendpost_agent_events_shipped_total") == len(expected)


@pytest.mark.parametrize("kind", ["rename", "copytruncate"])
async def test_rotation_while_writing_continuously(
    tmp_path: Path, ingest: FakeIngest, kind: str
) -> None:
    """Lines written continuously through two rotations: no event lost, none duplicated."""
    log = tmp_path / "mail.log"
    log.touch()
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        n = 0
        for generation in (1, 2, 3):
            for _ in range(10):
                _write(log, n, n + 7)
                n += 7
                await asyncio.sleep(0.005)
            size = log.stat().st_size
            await until(lambda size=size: run.agent.status.log_offset == size)
            rotated = log.with_name(f"mail.log.{generation}")
            if kind == "rename":
                os.rename(log, rotated)
                _write(rotated, n, n + 3)  # the writer has not reopened yet
                n += 3
                log.touch()
            else:
                shutil.copyfile(log, rotated)
                os.truncate(log, 0)
        expected = expected_events(log_text(0, n))
        await until(lambda: len(ingest.events) >= len(expected))
        # the last copytruncate leaves an empty file and brings no event to wait for, so wait
        # until the agent has seen it (or `until` times out and the count below fails)
        rotations = f"sendpost_agent_log_rotations_total{{kind={kind}}}"
        await until(lambda: run.metric(rotations) >= 3)
        assert await run.stop() == 0
    assert expected == _received(ingest)
    assert len(expected) == len(ingest.events)
    assert run.metric(rotations) == 3


async def test_endpoint_down_then_back(tmp_path: Path, ingest: FakeIngest) -> None:
    """While the endpoint drops connections events wait; once it is back all arrive."""
    ingest.down = True
    _write(tmp_path / "mail.log", 0, 30)
    expected = expected_events(log_text(0, 30))
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: run.metric("sendpost_agent_retries_total") >= 3)
        assert run.agent.wal.pending_events == len(expected)
        ingest.down = False
        await until(lambda: len(ingest.events) >= len(expected))
    assert expected == _received(ingest)


async def test_429_waits_for_retry_after(tmp_path: Path, ingest: FakeIngest) -> None:
    """A 429 with Retry-After: 1 is retried, not sooner than one second later."""
    ingest.script = [Answer(429, {"Retry-After": "1"})]
    _write(tmp_path / "mail.log", 0, 5)
    expected = expected_events(log_text(0, 5))
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: len(ingest.events) >= len(expected))
        assert run.metric("sendpost_agent_retries_total") == 1
    (t0, s0, _), (t1, s1, _) = ingest.requests[:2]
    assert (s0, s1) == (429, 200)
    assert t1 - t0 >= 1.0
    assert expected == _received(ingest)


async def test_rejected_key_stops_shipping_until_it_works(
    tmp_path: Path, ingest: FakeIngest
) -> None:
    """401: shipping stops, data kept, /health is 503; once the key is accepted all arrive."""
    ingest.keys = {"another-key"}
    _write(tmp_path / "mail.log", 0, 20)
    expected = expected_events(log_text(0, 20))
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: run.agent.status.key_rejected)
        code, body = run.agent.health()
        assert code == 503
        assert "API key rejected by the endpoint" in body["reasons"]
        assert run.agent.wal.pending_events == len(expected)
        ingest.keys.add("test-key")
        await until(lambda: len(ingest.events) >= len(expected))
        await until(lambda: run.agent.health()[0] == 200)
    assert expected == _received(ingest)
    assert not (tmp_path / "state" / "dead-letter.jsonl").exists()


async def test_413_splits_the_batch(tmp_path: Path) -> None:
    """A batch too large for the endpoint is split until it fits; nothing is lost."""
    _write(tmp_path / "mail.log", 0, 100)
    expected = expected_events(log_text(0, 100))
    with FakeIngest(max_events=30) as ingest:
        async with Running(make_settings(tmp_path, ingest.url, batch_size=100)) as run:
            await until(lambda: len(ingest.events) >= len(expected))
            assert run.metric("sendpost_agent_batches_failed_total{reason=too_large}") >= 1
    assert expected == _received(ingest)
    assert max(n for _, status, n in ingest.requests if status == 200) <= 30


async def test_other_4xx_goes_to_dead_letter(tmp_path: Path, ingest: FakeIngest) -> None:
    """A 400 puts the batch's events in dead-letter.jsonl, counted, and shipping goes on."""
    ingest.script = [Answer(400, body=b'{"errors":[]}')]
    _write(tmp_path / "mail.log", 0, 5)
    expected = expected_events(log_text(0, 5))
    async with Running(make_settings(tmp_path, ingest.url, batch_wait=0.2)) as run:
        await until(lambda: run.metric("sendpost_agent_events_dead_lettered_total") > 0)
        _write(tmp_path / "mail.log", 5, 8)
        later = expected_events(log_text(0, 8)).keys() - expected.keys()
        await until(lambda: later <= _received(ingest).keys())
    lines = (tmp_path / "state" / "dead-letter.jsonl").read_text().splitlines()
    dead = {json.loads(line)["event"]["event_id"]: json.loads(line) for line in lines}
    assert set(expected) == set(dead)
    assert {400} == {d["status"] for d in dead.values()}
    assert run.metric("sendpost_agent_events_dead_lettered_total") == len(expected)


async def test_a_400_naming_one_event_dead_letters_only_that_event(
    tmp_path: Path, ingest: FakeIngest
) -> None:
    """A 400 that names one event by index (as the platform's does) puts only that event in
    dead-letter.jsonl; the batch's other events are sent again and delivered."""
    named = {"errors": [{"index": 1, "field": "recipient", "message": "longer than 320"}]}
    ingest.script = [Answer(400, body=json.dumps(named).encode())]
    _write(tmp_path / "mail.log", 0, 5)
    expected = expected_events(log_text(0, 5))
    async with Running(make_settings(tmp_path, ingest.url, batch_wait=0.2)) as run:
        await until(lambda: len(_received(ingest)) >= len(expected) - 1)
        dead_count = run.metric("sendpost_agent_events_dead_lettered_total")
    lines = (tmp_path / "state" / "dead-letter.jsonl").read_text().splitlines()
    [dead] = [json.loads(line) for line in lines]
    first = [n for _, status, n in ingest.requests if status == 400]
    assert ([len(expected)], 1.0, 400) == (first, dead_count, dead["status"])
    assert list(expected)[1] == dead["event"]["event_id"]
    assert set(expected) - {dead["event"]["event_id"]} == set(_received(ingest))


async def test_full_wal_pauses_reading_then_drains(tmp_path: Path, ingest: FakeIngest) -> None:
    """With the endpoint down the WAL fills to its cap and reading stops; later all arrive."""
    ingest.down = True
    _write(tmp_path / "mail.log", 0, 300)
    expected = expected_events(log_text(0, 300))
    settings = make_settings(
        tmp_path, ingest.url, wal_max_bytes=8192, wal_segment_bytes=4096, read_chunk_bytes=4096
    )
    async with Running(settings) as run:
        await until(lambda: run.metric("sendpost_agent_reading_paused") == 1)
        assert run.agent.status.log_offset < (tmp_path / "mail.log").stat().st_size
        assert run.agent.health()[0] == 503
        ingest.down = False
        await until(lambda: len(ingest.events) >= len(expected))
    assert expected == _received(ingest)


async def test_torn_wal_tail_is_repaired_and_counted(tmp_path: Path, ingest: FakeIngest) -> None:
    """A WAL left with half a record is cut back at start, counted, and the rest delivered."""
    _write(tmp_path / "mail.log", 0, 10)
    expected = expected_events(log_text(0, 10))
    wal = Wal(tmp_path / "state" / "pending.wal", 1 << 20, 1 << 20)
    wal.open()
    wal.append([json.dumps(e).encode() for e in expected.values()])
    wal.close()
    segment = next((tmp_path / "state" / "pending.wal").glob("*.seg"))
    _append_bytes(segment, b'\x00\x00\x00\x50{"message')
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: len(ingest.events) >= 2 * len(expected))
        assert run.metric("sendpost_agent_wal_torn_tail_repairs_total") == 1
    assert expected == _received(ingest)


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
async def test_lost_or_corrupt_state_restarts_safely(
    tmp_path: Path, ingest: FakeIngest, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """State deleted or garbled: a clear log line, then everything is sent again with the
    same event_ids (duplicates, never loss)."""
    _write(tmp_path / "mail.log", 0, 10)
    expected = expected_events(log_text(0, 10))
    settings = make_settings(tmp_path, ingest.url)
    async with Running(settings):
        await until(lambda: len(ingest.events) >= len(expected))
    if damage == "delete":
        shutil.rmtree(tmp_path / "state")
    else:
        (tmp_path / "state" / DB_NAME).write_bytes(b'{"version": 1, "file": {"dev": ' * 200)
    caplog.set_level(logging.INFO)
    async with Running(settings):
        await until(lambda: len(ingest.events) >= 2 * len(expected))
    assert expected == _received(ingest)
    if damage == "corrupt":
        assert any("moved aside (state.db.corrupt" in r.getMessage() for r in caplog.records)
        assert (tmp_path / "state" / (DB_NAME + ".corrupt")).exists()


async def test_old_cursor_file_is_migrated_with_its_correlation_state(
    tmp_path: Path, ingest: FakeIngest
) -> None:
    """An agent upgraded over an old-format ``cursor`` file (one JSON document) resumes from
    it: the lines before its offset are not sent again, and deliveries after it are matched to
    the UUIDs learnt before it (the correlation state came along); the file is then gone."""
    before = [message_lines(i) for i in range(20)]
    # messages 0-9 whole, then only the first four lines (UUID, not yet delivered) of 10-19
    head = "".join(line for i, lines in enumerate(before) for line in lines[: 6 if i < 10 else 4])
    tail = "".join(line for lines in before[10:] for line in lines[4:])
    log = tmp_path / "mail.log"
    log.write_text(head + tail)
    pipeline = Pipeline(reference_time=dt.datetime.now(dt.UTC))
    pipeline.feed(head.encode())
    st = log.stat()
    first = log.read_bytes()[:FP_LEN]
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / LEGACY_NAME).write_text(json.dumps({
        "version": 1,
        "file": {"dev": st.st_dev, "ino": st.st_ino, "path": str(log), "fp_len": len(first),
                 "fingerprint": hashlib.sha256(first).hexdigest()},
        "offset": len(head.encode()),
        "parser": pipeline.snapshot(),
    }))  # fmt: skip
    expected = {k: e for k, e in expected_events(head + tail).items() if e["queue_id"] in tail}
    assert 10 == len(expected)
    async with Running(make_settings(tmp_path, ingest.url)):
        await until(lambda: len(ingest.events) >= len(expected))
    assert expected == _received(ingest)
    assert (False, True) == (
        (tmp_path / "state" / LEGACY_NAME).exists(),
        (tmp_path / "state" / DB_NAME).exists(),
    )


async def test_health_and_metrics_over_http(tmp_path: Path, ingest: FakeIngest) -> None:
    """/health answers JSON 200 when all is well; /metrics lists every documented metric."""
    _write(tmp_path / "mail.log", 0, 3)
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: len(ingest.events) >= 3)
        host, port = run.agent.listening or ("", 0)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            health = await client.get("/health")
            metrics = await client.get("/metrics")
            missing = await client.get("/nothing")
    assert (health.status_code, health.json()["state"]) == (200, "ok")
    assert str(tmp_path / "mail.log") == health.json()["log"]["path"]
    documented = _documented_metrics()
    exposed = {
        line.split()[2]
        for line in metrics.text.splitlines()
        if line.startswith("# TYPE") and not line.split()[2].endswith("_created")
    }
    assert documented == {name.removesuffix("_total") for name in exposed}
    assert missing.status_code == 404


def _documented_metrics() -> set[str]:
    doc = Path(__file__).parents[3] / "docs" / "metrics.md"
    names = set()
    for line in doc.read_text().splitlines():
        if line.startswith("| `sendpost_agent_"):
            names.add(line.split("`")[1].removesuffix("_total"))
    return names


def test_settings_dataclass_is_frozen() -> None:
    """Settings are read once and never changed afterwards."""
    settings = make_settings(Path("/tmp"), "http://127.0.0.1:1/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.api_key = "other"  # type: ignore[misc]


async def test_quiet_log_ships_a_smarthost_delivery_once_its_hop_window_ends(
    tmp_path: Path, ingest: FakeIngest
) -> None:
    """A `queued as` from a loopback smarthost (its log elsewhere) is the last line of a quiet
    log: the daemon's idle check turns it into a `delivered` event once the hop window has
    passed (its line is older than the window) and counts the unresolved hop."""
    import datetime as dt

    uuid = "3a1f0c52-7e4b-4d6a-9c1e-0b2d3f4a5b03"
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    (tmp_path / "mail.log").write_text(
        f"{at} mx postfix/cleanup[11]: 3A0000001: info: header X-Sendpost-Message-UUID: {uuid}"
        " from p[192.0.2.1]; from=<s@example.com> to=<d@dest.test> proto=ESMTP helo=<p>\n"
        f"{at} mx postfix/smtp[13]: 3A0000001: to=<d@dest.test>, relay=127.0.0.1[127.0.0.1]:2525,"
        " delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 912265B1F5)\n"
    )
    async with Running(make_settings(tmp_path, ingest.url)) as run:
        await until(lambda: len(ingest.events) >= 1)
        assert await run.stop() == 0
    assert [(uuid, "delivered", "d@dest.test", "2.0.0 Ok: queued as 912265B1F5")] == [
        (e["message_id"], e["event_type"], e["recipient"], e["smtp_description"])
        for e in ingest.events
    ]
    assert 1 == run.metric("sendpost_agent_hops_total{outcome=unresolved}")
