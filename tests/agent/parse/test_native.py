"""The compiled scanner (``_fastscan.pyx``) against the pure-Python one it stands in for.

``scan`` takes the compiled path for ASCII buffers; ``scan_python`` is the reference. Where the
compiled scanner takes a buffer, both must return the same operations; where it declines, the
Python one runs, so the pipeline's output is the same either way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendpost_agent.parse.events import analyse_reply
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.postfix import scan as scan_module
from sendpost_agent.parse.postfix.scan import prepare, scan, scan_python

from tests.agent.parse.test_property import REPLY_PARTS
from tests.support.corpus import CORPUS

GOLDEN = Path(__file__).parent / "golden"
LOGS = sorted((CORPUS / "postfix-logs").rglob("*.log")) + sorted(GOLDEN.glob("*.log"))

native = pytest.mark.skipif(
    scan_module.NATIVE is None,
    reason="compares the compiled scanner with the Python one; the compiled one is off here "
    "(SENDPOST_AGENT_PURE_PYTHON=1: the pure-Python pass runs the rest of the suite on Python)",
)


def test_compiled_scanner_is_built_and_current() -> None:
    """`make setup` builds the compiled scanner from the current source (a stale build is
    refused with a warning); only SENDPOST_AGENT_PURE_PYTHON=1 turns it off."""
    if os.environ.get("SENDPOST_AGENT_PURE_PYTHON", "") not in ("", "0"):
        assert scan_module.NATIVE is None
    else:
        assert scan_module.NATIVE is not None


@native
@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_corpus_files_scan_the_same(path: Path) -> None:
    """Every corpus log and golden log: the compiled scanner gives the Python scanner's ops."""
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    found = scan_module.NATIVE.scan(data) if data.isascii() else None
    expected = scan_python(data)
    if found is not None:
        ops, lines, parsed, truncated = found
        assert (expected.ops, expected.lines, expected.parsed, expected.truncated) == (
            ops,
            lines,
            parsed,
            truncated,
        )
    assert expected == scan(data)


UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
ENVELOPES = [
    "Feb 19 12:00:00 mta postfix/smtp[2105]: ",
    "Feb  9 12:00:00 mta postfix/submission/smtpd[1]: ",
    "2026-02-19T12:00:00.123456+01:00 mta postfix-1.2.3.4/qmgr[7]: ",
    "mta postfix/smtp[1]: ",
    "x[1]: ",
    "]: ",
    "Feb 19 12:00:00  postfix/smtp[2105]: ",
    "Feb 19 12:05:00 mta postfix-out/smtp[9]: ",
    "Feb 19 12:00:00 mta postfix/smtpd[1]: NOQUEUE: reject: RCPT from a[1.2.3.4]: ",
]
QIDS = ["3E06E12011A", "4Xk9Zp1Hf2zJ3ab", "ABCD", "NOQUEUE", "NOQUEUEX", "A1B2C"]
PAYLOADS = [
    "to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:25, delay=0.1, delays=0/0/0/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 5F1A312011C)",
    "to=<a@b.c>, orig_to=<x@y>, relay=mx.b.c[1.2.3.4]:25, delay=1, dsn=5.1.1, status=bounced "
    "(host mx.b.c[1.2.3.4] said: 550 5.1.1 <a@b.c>: no (such (user)) (in reply to RCPT TO "
    "command))",
    "to=<a@b.c>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to "
    "mx[1.2.3.4]:25: Connection refused)",
    "to=a@b.c, relay=local, delay=0, dsn=2.0.0, status=sent (delivered to mailbox)",
    "to=<a@b.c>, relay=x, delay=0, status=SENT",
    "to=<>, relay=x, dsn=4.0.0, status=bounced (host x[1.1.1.1] refused to talk to me: 554 "
    "go away)",
    "to=<a@b.c>, orig_to=x, relay=y, dsn=, status=softbounce (x",
    "to=<a@b.c>, relay=y, Delay=1, status=sent (x)",
    "to=<a@b.c>, relay=y, dsn=5 1, status=sent (x)",
    "to=<a@b.c>, relay=y,dsn=5.0.0, status=sent (x)",
    "to=<a@b.c",
    "to=",
    f"info: header X-Sendpost-Message-UUID: {UUID} from localhost[127.0.0.1]",
    f"info: header x-sendpost-message-uuid:\t<{UUID.upper()}>",
    f"info: header X-SendPost-Message-UUID: {UUID}",
    f"from=<bounces+{UUID}+7@sp-bounce.example.com>, size=712, nrcpt=2 (queue active)",
    f"from=<BOUNCES+{UUID}+7@SP-BOUNCE.example.com>, size=1",
    f"from=<bounces+{UUID}+7@sp-bounce.example.com>, status=expired, returned to sender",
    "from=<x@y>, status=force-expired, returned to sender",
    "from=<x@y>, status=force-x",
    f"message-id=<{UUID}@example.com>",
    f"message-id= {UUID}@x",
    f"message-id=<<{UUID}@x>",
    "removed",
    "removed \t",
    "removedx",
    "client=localhost[127.0.0.1], orig_queue_id=ABCD, orig_queue_id=3E06E12011A",
    "client=x, orig_queue_id=",
    "connect from localhost[127.0.0.1]",
    "to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.1, dsn=2.0.0, status=sent (250 2.0.0 "
    "Ok: queued as A1B2C)",
    "to=<a@b.c>, relay=mx[1.2.3.4]:25, dsn=4.7.1, status=deferred (host mx[1.2.3.4] said: 451 "
    "4.7.1 later (in reply to end of data command))",
    "to=<a@b.c>, relay=mx[1.2.3.4]:25, dsn=5.7.1, status=bounced (host mx[1.2.3.4] said: "
    '550 "quoted\\" \x01\x7f (in reply to  mail from  command)  )',
    "to=<b@b.c>, relay=none, dsn=4.0.0, status=bounced (550)",
    "to=<a@b.c>, relay=x, dsn=2.0.0, status=deliverable (x)",
    "to=<ok.team@dest.test>, orig_to=<info@brand.test>, relay=mx[1.2.3.4]:25, delay=1, "
    "dsn=2.0.0, status=sent (250 2.0.0 Ok)",
    "to=<ok.team@dest.test>, orig_to=<info@brand.test>, relay=mx[1.2.3.4]:25, dsn=4.4.1, "
    "status=deferred (connect to mx[1.2.3.4]:25: Connection refused)",
    "to=<ok.team@dest.test>, orig_to=info@brand.test, relay=none, dsn=5.1.1, status=bounced (x)",
    "to=<a@b.c>, orig_to=<>, relay=mx[1.2.3.4]:25, dsn=2.0.0, status=sent (250 ok)",
    "to=<root>, orig_to=<info@brand.test>, relay=local, dsn=2.0.0, status=sent (delivered)",
    "to=<a@b.c>, orig_to=<info@brand.test>, relay=127.0.0.1[127.0.0.1]:2525, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 9F9F9F9F9)",
    "to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:2525, dsn=2.0.0, status=sent (250 2.0.0 Ok: "
    "queued as 4Xk9Zp1Hf2zJ3ab)",
    "to=<nobody>, relay=x, dsn=5.1.1, status=bounced (host x said: 550)",
]
PIECES = [*ENVELOPES, *QIDS, *PAYLOADS, ": ", ", ", "]: ", "(", ")", " ", "\t", "\x1f", "<", ">"]

lines = st.builds(
    lambda env, qid, payload: f"{env}{qid}: {payload}",
    st.sampled_from(ENVELOPES),
    st.sampled_from(QIDS),
    st.sampled_from(PAYLOADS),
)
mutated = st.tuples(lines, st.integers(0, 400), st.integers(0, 6), st.sampled_from(PIECES)).map(
    lambda t: t[0][: t[1]] + t[3] + t[0][t[1] + t[2] :]
)
ascii_noise = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=127, exclude_characters="\n"),
    max_size=60,
)
buffers = st.lists(st.one_of(lines, mutated, ascii_noise), min_size=1, max_size=12).map(
    lambda items: ("\n".join(items) + "\n").encode()
)


@native
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffers)
def test_generated_lines_scan_the_same(data: bytes) -> None:
    """Realistic lines, cut and spliced at random: whenever the compiled scanner takes the
    buffer, its ops equal the Python scanner's (the regex is the reference)."""
    found = scan_module.NATIVE.scan(data)
    expected = scan_python(data)
    if found is not None:
        assert (expected.ops, expected.lines, expected.parsed, expected.truncated) == found


@native
def test_declines_what_it_does_not_handle() -> None:
    """Non-ASCII input, a line over 64 KiB and a line without its syslog envelope go to the
    Python scanner (declined), and scan() still gives its result."""
    long_line = b"Feb 19 12:00:00 mta postfix/smtp[1]: 3E06E12011A: " + b"x" * 70_000 + b"\n"
    bare = b"3E06E12011A: removed\n"
    for data in (long_line, bare):
        assert scan_module.NATIVE.scan(data) is None
        assert scan_python(data) == scan(data)
    utf8 = "Feb 19 12:00:00 mta postfix/smtp[1]: 3E06E12011A: to=<é@x>, relay=x, status=sent\n"
    assert scan_python(utf8.encode()) == scan(utf8.encode())


@native
def test_benchmark_shaped_log_scans_the_same() -> None:
    """A few thousand lines in the benchmark's shape (the golden lifecycle repeated with fresh
    queue IDs) give the same ops both ways."""
    template = (GOLDEN / "lifecycle.log").read_text()
    rng = random.Random(3)
    parts = []
    for n in range(40):
        text = template
        for qid in sorted(set(_qids(template)), key=len, reverse=True):
            text = text.replace(qid, f"{rng.getrandbits(44):011X}")
        parts.append(text if n % 2 else text.replace(UUID, f"{UUID[:-4]}{n:04d}"))
    data = "".join(parts).encode()
    found = scan_module.NATIVE.scan(data)
    assert found is not None
    expected = scan_python(data)
    assert (expected.ops, expected.lines, expected.parsed, expected.truncated) == found


def _qids(text: str) -> list[str]:
    return re.findall(r"\]: ([0-9A-F]{10,12}): ", text)


def _pair() -> tuple[Pipeline, Pipeline]:
    reference = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return (
        Pipeline(reference_time=reference, tz=dt.UTC),
        Pipeline(reference_time=reference, tz=dt.UTC),
    )


def _pure_json(pipeline: Pipeline, data: bytes) -> list[str]:
    """What feed_json gives without the compiled scanner."""
    return pipeline.render(pipeline.apply(scan_python(data))) if data else []


@pytest.fixture
def small_pieces() -> Iterator[Callable[[int], None]]:
    """Lets a test cut buffers into pieces of a few bytes, so that many go through the helper
    thread of the fused path; the default size is restored afterwards."""
    yield scan_module.NATIVE.set_piece_size
    scan_module.NATIVE.set_piece_size(1 << 20)


def _same_after(feeds: list[bytes]) -> None:
    fused, pure = _pair()
    for data in feeds:
        assert _pure_json(pure, data) == fused.feed_json(data)
        assert pure.stats == fused.stats
        assert pure.snapshot() == fused.snapshot()
    assert pure.flush() == fused.flush()
    assert pure.stats == fused.stats


@native
@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize("piece", [1 << 20, 300, 1])
def test_fused_path_gives_the_same_events_stats_and_state(
    path: Path, piece: int, small_pieces: Callable[[int], None]
) -> None:
    """Pipeline.feed_json's fused path (scan + correlate + render in C, in pieces of one line
    up to 1 MiB, stage 1 of each piece but the first on a helper thread) gives, for every
    corpus and golden log, the same JSON texts, counters and saved state as
    render(apply(scan))."""
    small_pieces(piece)
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    _same_after([data])
    fused, _ = _pair()
    assert fused.feed_jsonl(data) == b"".join(
        text.encode() + b"\n" for text in _pair()[1].feed_json(data)
    )


@native
def test_fused_path_on_the_benchmark_shape_in_several_feeds() -> None:
    """The golden lifecycle repeated with fresh queue IDs and UUIDs (the benchmark's shape),
    fed in uneven pieces: the same events, stats and state after each piece."""
    template = (GOLDEN / "lifecycle.log").read_text()
    rng = random.Random(5)
    parts = []
    for n in range(30):
        text = template
        for qid in sorted(set(_qids(template)), key=len, reverse=True):
            text = text.replace(qid, f"{rng.getrandbits(44):011X}")
        parts.append(text.replace(UUID, f"{UUID[:-4]}{n:04d}"))
    data = "".join(parts).encode()
    cuts = sorted(rng.sample(range(1, data.count(b"\n")), 6))
    starts = [0] + [_nth_line(data, c) for c in cuts] + [len(data)]
    _same_after([data[a:b] for a, b in itertools.pairwise(starts)])


def _nth_line(data: bytes, n: int) -> int:
    pos = 0
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


@native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(buffers, min_size=1, max_size=4), st.integers(1, 400))
def test_fused_path_on_generated_lines(feeds: list[bytes], piece: int) -> None:
    """Generated and spliced lines (holds, hops, expiries, re-injections, short-ID reuse), in
    several feeds and pieces of any size: the fused path and the Python path agree on events,
    stats and state."""
    scan_module.NATIVE.set_piece_size(piece)
    try:
        _same_after(feeds)
    finally:
        scan_module.NATIVE.set_piece_size(1 << 20)


reply_texts = st.lists(
    st.one_of(st.sampled_from(REPLY_PARTS), st.text(max_size=8)), max_size=8
).map("".join)


@native
@settings(max_examples=500, deadline=None)
@given(reply_texts)
def test_compiled_analyse_reply_is_the_python_one(text: str) -> None:
    """The compiled twin of events.analyse_reply (used by the correlator when built) gives the
    same code, description and command for any text, ASCII or not."""
    assert tuple(analyse_reply(text)) == scan_module.NATIVE.analyse_reply(text)


@native
@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["delivered", "bounced", "soft_bounced", "deferred", 'odd"type']),
    reply_texts,
    st.one_of(st.none(), st.sampled_from(["", "a@b.c", "nobody", "é@x"]), st.text(max_size=12)),
    st.one_of(st.none(), st.sampled_from(["5.1.1", "4.7.1", "2.0.0", "9.9.9", "5.1"])),
    st.text(min_size=1, max_size=20),
    st.text(max_size=80),
    st.one_of(st.none(), st.sampled_from(["", "ok.team@dest.test", "root"]), st.text(max_size=12)),
)
def test_compiled_prepare_is_the_python_one(
    event_type: str,
    text: str,
    recipient: str | None,
    dsn: str | None,
    qid: str,
    line: str,
    final: str | None,
) -> None:
    """The compiled twin of scan.prepare renders the same fields and JSON parts, with and
    without a final recipient."""
    reply = analyse_reply(text)
    expected = prepare(event_type, reply, recipient, dsn, qid, line, final)
    assert expected == scan_module.NATIVE.prepare(
        event_type, reply, recipient, dsn, qid, line, final
    )


@native
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_compiled_blake2b_is_hashlibs(data: bytes) -> None:
    """The event id's BLAKE2b (RFC 7693, written for the GIL-free stage) is hashlib's."""
    expected = hashlib.blake2b(data, digest_size=16).hexdigest()
    assert expected == scan_module.NATIVE.blake2b_128_hex(data)
