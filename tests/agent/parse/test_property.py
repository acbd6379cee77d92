"""Property tests: the parser and the pipeline never raise, whatever the bytes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendpost_agent.parse import Unparsed
from sendpost_agent.parse.events import Reply, analyse_reply
from sendpost_agent.parse.postfix import Pipeline, parse_line
from sendpost_wire import validate_event

GOLDEN = Path(__file__).parent / "golden"
REAL_LINES = (GOLDEN / "lifecycle.log").read_bytes().splitlines() + (
    GOLDEN / "lines.log"
).read_bytes().splitlines()

# Fragments that steer random input towards the parser's interesting paths.
FRAGMENTS = [
    b"\n",
    b": ",
    b"]: ",
    b"A1B2C3D4E5",
    b"to=<",
    b">, relay=",
    b"127.0.0.1[127.0.0.1]:10024",
    b", dsn=5.1.1, status=",
    b"sent (",
    b"bounced (",
    b"deferred (",
    b"queued as ",
    b")",
    b"from=<bounces+1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01+1@sp-bounce.x>, size=",
    b"status=expired",
    b"info: header X-Sendpost-Message-UUID: 1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01",
    b"message-id=<1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01@x>",
    b"removed",
    b"client=x, orig_queue_id=",
    b"Feb 29 12:00:00 mx postfix/smtp[1]",
    b"2024-13-40T99:99:99.1234567890+99:99 ",
    b"\xff\xfe\x80",
    b"\xed\xa0\x80",
    b"\r",
]

chunks = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS), st.sampled_from(REAL_LINES)),
    max_size=30,
).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks)
def test_parse_line_never_raises(data: bytes) -> None:
    """parse_line returns a record or Unparsed for any bytes."""
    result = parse_line(data)
    assert result is not None
    if isinstance(result, Unparsed):
        assert result.reason in {"irrelevant", "too_long", "truncated"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunks, max_size=5))
def test_pipeline_never_raises_and_emits_valid_events(feeds: list[bytes]) -> None:
    """Pipeline.feed/flush/snapshot never raise on arbitrary bytes; every event it emits passes
    the wire contract's validation; every line is counted exactly once."""
    pipeline = Pipeline(reference_time=dt.datetime(2024, 3, 1, tzinfo=dt.UTC), tz=dt.UTC)
    events = []
    total = 0
    for data in feeds:
        data = data if data.endswith(b"\n") or not data else data + b"\n"
        total += data.count(b"\n")
        events += pipeline.feed(data)
        Pipeline(state=pipeline.snapshot(), tz=dt.UTC).feed(data)  # state always reloads
    events += pipeline.flush()
    for event in events:
        assert validate_event(event.to_wire(), 0) == event
    stats = pipeline.stats
    assert (stats.lines, stats.parsed + stats.ignored + sum(stats.unparsed.values())) == (
        total,
        total,
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(REAL_LINES), max_size=20), st.integers(min_value=0, max_value=20))
def test_how_the_input_is_cut_does_not_matter(lines: list[bytes], cut: int) -> None:
    """Feeding the same lines in one buffer or in two gives the same events."""
    data = b"".join(line + b"\n" for line in lines)
    split = sum(len(line) + 1 for line in lines[:cut])
    one = Pipeline(reference_time=dt.datetime(2024, 3, 1, tzinfo=dt.UTC), tz=dt.UTC)
    two = Pipeline(reference_time=dt.datetime(2024, 3, 1, tzinfo=dt.UTC), tz=dt.UTC)
    whole = one.feed(data) + one.flush()
    parts = two.feed(data[:split]) + two.feed(data[split:]) + two.flush()
    assert whole == parts


_SAID = re.compile(r"host \S+ (?:said|(?P<refused>refused to talk to me)): ", re.S)
_CODE = re.compile(r"(?P<code>[2-5][0-9][0-9])(?:[ -]+(?P<rest>.*)|\Z)", re.S)
_IN_REPLY = re.compile(r"\s*\(in reply to (?P<cmd>.+?) command\)\s*$", re.S)


def reference_reply(text: str) -> Reply:
    """The documented reply anatomy, written with regexes (the shipped code avoids them)."""
    command = None
    body = text
    tail = _IN_REPLY.search(text)
    if tail is not None:
        body = text[: tail.start()]
        command = tail.group("cmd").strip().upper() or None
        if command == "END OF DATA":
            command = "DATA"
    said = _SAID.match(body)
    if said is not None:
        if said.group("refused") and command is None:
            command = "CONNECT"
        body = body[said.end() :]
    code = None
    coded = _CODE.match(body)
    if coded is not None:
        code = int(coded.group("code"))
        body = coded.group("rest") or ""
    return (code, body.strip() or None, command)


REPLY_PARTS = [
    "host mx.example.org[192.0.2.1] said: ",
    "host mx refused to talk to me: ",
    "host  said: ",
    "host a\tb said: ",
    "250",
    "550-5.1.1 ",
    "451 4.7.1 ",
    " (in reply to RCPT TO command)",
    " (in reply to end of DATA command)",
    "(in reply to  command)",
    "(in reply to ",
    " command)",
    "  ",
    "\n",
    "said: ",
    "(",
    ")",
    "Ok: queued as ABC",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(REPLY_PARTS), st.text(max_size=8)), max_size=8))
def test_reply_anatomy_matches_the_regex_reference(parts: list[str]) -> None:
    """analyse_reply (string methods) agrees with the regex formulation of the same rules."""
    text = "".join(parts)
    assert analyse_reply(text) == reference_reply(text)
