"""The parser's modules compiled by Cython against the same modules run as Python.

Both run the same source (sendpost_agent/parse/compiled.py names the modules); these tests check
that the build is there and current, and that compiling changed nothing: the same inputs — every
corpus and golden log, and generated lines cut and spliced at random, fed in several buffers —
give the same ops, events, counters and saved state in a process with the compiled modules and
in one with ``SENDPOST_AGENT_PURE_PYTHON=1`` (tests/agent/parse/differential.py prints them).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from sendpost_agent.parse import CODE, compiled

from tests.agent.parse.test_property import REPLY_PARTS
from tests.support.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
LOGS = sorted((CORPUS / "postfix-logs").rglob("*.log")) + sorted(GOLDEN.glob("*.log"))
PURE = os.environ.get(compiled.ENV_PURE, "") not in ("", "0")

UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
ENVELOPES = [
    "Feb 19 12:00:00 mta postfix/smtp[2105]: ",
    "Feb  9 12:00:00 mta postfix/submission/smtpd[1]: ",
    "2026-02-19T12:00:00.123456+01:00 mta postfix-1.2.3.4/qmgr[7]: ",
    "mta postfix/smtp[1]: ",
    "x[1]: ",
    "]: ",
    "",
    "Feb 19 12:00:30 mta postfix/smtp[2105]: ",
    "Feb 19 12:05:00 mta postfix-out/smtp[9]: ",
    "Feb 19 12:00:00 mta postfix/smtpd[1]: NOQUEUE: reject: RCPT from a[1.2.3.4]: ",
]
QIDS = ["3E06E12011A", "4Xk9Zp1Hf2zJ3ab", "ABCD", "NOQUEUE", "A1B2C", "5F1A312011C", "9F9F9F9F9"]
PAYLOADS = [
    "to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.1, delays=0/0/0/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 5F1A312011C)",
    "to=<a@b.c>, orig_to=<x@y>, relay=mx.b.c[1.2.3.4]:25, delay=1, dsn=5.1.1, status=bounced "
    "(host mx.b.c[1.2.3.4] said: 550 5.1.1 <a@b.c>: no (such (user)) (in reply to RCPT TO "
    "command))",
    "to=<a@b.c>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to "
    "mx[1.2.3.4]:25: Connection refused)",
    "to=a@b.c, relay=local, delay=0, dsn=2.0.0, status=sent (delivered to mailbox)",
    "to=<a@b.c>, relay=x, delay=0, status=SENT",
    "to=<>, relay=x, dsn=4.0.0, status=bounced (host x[1.1.1.1] refused to talk to me: 554 go)",
    "to=<a@b.c>, orig_to=x, relay=y, dsn=, status=softbounce (x",
    "to=<a@b.c",
    f"info: header X-Sendpost-Message-UUID: {UUID} from localhost[127.0.0.1]",
    f"info: header x-sendpost-message-uuid:\t<{UUID.upper()}>",
    f"from=<bounces+{UUID}+7@sp-bounce.example.com>, size=712, nrcpt=2 (queue active)",
    f"from=<bounces+{UUID}+7@sp-bounce.example.com>, status=expired, returned to sender",
    "from=<x@y>, status=force-expired, returned to sender",
    f"message-id=<{UUID}@example.com>",
    "removed",
    "client=localhost[127.0.0.1], orig_queue_id=ABCD",
    "client=localhost[127.0.0.1], orig_queue_id=3E06E12011A",
    "to=<a@b.c>, relay=mx[1.2.3.4]:25, dsn=5.7.1, status=bounced (host mx[1.2.3.4] said: "
    '550 "quoted\\" \x01\x7f (in reply to  mail from  command)  )',
    "to=<ok.team@dest.test>, orig_to=<info@brand.test>, relay=mx[1.2.3.4]:25, dsn=4.4.1, "
    "status=deferred (connect to mx[1.2.3.4]:25: Connection refused)",
    "to=<ok.team@dest.test>, orig_to=<info@brand.test>, relay=mx[1.2.3.4]:25, delay=1, "
    "dsn=2.0.0, status=sent (250 2.0.0 Ok)",
    "to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:2525, dsn=2.0.0, status=sent (250 2.0.0 Ok: "
    "queued as 9F9F9F9F9)",
    "to=<é@b.c>, relay=x, dsn=5.1.1, status=bounced (550 non-ASCII \udcff)",
    "to=<a@b.c>, relay=x, dsn=2.0.0, status=deliverable (x)",
]
PIECES = [*ENVELOPES, *QIDS, *PAYLOADS, ": ", ", ", "]: ", "(", ")", " ", "\t", "<", ">", "\x00"]


def _line(rng: random.Random) -> str:
    line = f"{rng.choice(ENVELOPES)}{rng.choice(QIDS)}: {rng.choice(PAYLOADS)}"
    if rng.random() < 0.3:  # cut and splice
        at = rng.randrange(len(line) + 1)
        line = line[:at] + rng.choice(PIECES) + line[at + rng.randrange(7) :]
    return line


def _generated(seed: int) -> list[bytes]:
    """A few buffers of generated lines (holds, hops, expiries, re-injections, reuse)."""
    rng = random.Random(seed)
    feeds = []
    for _ in range(rng.randrange(1, 5)):
        text = "".join(_line(rng) + "\n" for _ in range(rng.randrange(1, 14)))
        feeds.append(text.encode("utf-8", "surrogateescape"))
    return feeds


def _spec() -> dict[str, Any]:
    feeds = [[_whole(path.read_bytes()).hex()] for path in LOGS]
    feeds += [[data.hex() for data in _generated(seed)] for seed in range(400)]
    rng = random.Random(1)
    replies = [
        "".join(rng.choice(REPLY_PARTS) for _ in range(rng.randrange(6))) for _ in range(300)
    ]
    prepare = [
        [
            rng.choice(["delivered", "bounced", "soft_bounced", "deferred", 'odd"type']),
            [rng.choice([None, 250, 550]), rng.choice([None, "ok", "a\x00b", "é"]), None],
            rng.choice([None, "", "a@b.c", "nobody", "é@x", "a@" + "x" * 330]),
            rng.choice([None, "5.1.1", "4.7.1", "9.9.9", "5.1"]),
            rng.choice(["3E06E12011A", "Q\x00", "Q" * 70]),
            rng.choice(["line", "line é \x1f"]),
            rng.choice([None, "", "ok.team@dest.test", "root"]),
        ]
        for _ in range(200)
    ]
    return {"feeds": feeds, "replies": replies, "prepare": prepare}


def _whole(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def _run(spec_path: Path, *, pure: bool) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.ENV_PURE}
    if pure:
        env[compiled.ENV_PURE] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.agent.parse.differential", str(spec_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code, output = proc.stdout.split("\n", 1)
    return code, output


def test_compiled_modules_are_built_and_current() -> None:
    """`make setup` compiles the parser's modules from their current sources; only
    SENDPOST_AGENT_PURE_PYTHON=1 makes this process run them as Python."""
    assert CODE == ("python" if PURE else "compiled")
    for name in compiled.MODULES:
        module = sys.modules[name] if name in sys.modules else __import__(name, fromlist=["_"])
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") == PURE, module.__file__


def test_the_correlator_classes_are_the_extension_types_of_their_pxd() -> None:
    """Compiled, Queue and Correlator are the extension types correlate.pxd declares: no
    per-instance dict (their fields are C struct members), so an undeclared attribute cannot be
    set; run as Python, Correlator is a plain class and Queue keeps its __slots__."""
    from sendpost_agent.parse.postfix.correlate import Correlator, Queue

    corr = Correlator(lambda relay: False)
    queue = Queue(None, 99, None)
    assert hasattr(corr, "__dict__") == PURE
    if not PURE:
        with pytest.raises(AttributeError):
            corr.undeclared = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        queue.undeclared = 1  # type: ignore[attr-defined]
    corr.hops_resolved += 1  # declared fields stay writable from Python (the pipeline's counters)
    assert 1 == corr.hops_resolved


@pytest.mark.skipif(PURE, reason="compares the compiled modules with Python; here they are off")
def test_a_stale_build_is_refused_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose source changed since it was compiled (its recorded CRC differs) makes
    choose() warn and pick the Python code, with source-only finders for the parser's folders."""
    monkeypatch.setattr(compiled, "_recorded", lambda: {})
    saved = dict(sys.path_importer_cache)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert "python" == compiled.choose()
        assert any("changed since compiled" in str(w.message) for w in caught)
        folder = os.path.dirname(compiled._files(compiled.MODULES[-1])[0])
        finder = sys.path_importer_cache[folder]
        spec = finder.find_spec(compiled.MODULES[-1])  # type: ignore[union-attr]
        assert spec is not None
        assert str(spec.origin).endswith(".py")
    finally:
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(saved)


@pytest.mark.skipif(PURE, reason="compares the compiled modules with Python; here they are off")
def test_compiled_and_python_give_the_same_everything(tmp_path: Path) -> None:
    """Every corpus and golden log, and 400 sets of generated and spliced lines in several
    buffers (invalid UTF-8 and NULs included): the compiled modules and the Python ones give the
    same scan ops, JSON events, event objects, counters, snapshots, saved changes and flushes;
    and the same reply anatomy and prepared fields for generated replies and odd fields."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec()))
    code, compiled_out = _run(spec_path, pure=False)
    assert "compiled" == code
    code, python_out = _run(spec_path, pure=True)
    assert "python" == code
    assert len(compiled_out) > 1_000_000  # the inputs did produce output
    assert python_out == compiled_out
