"""Where the test corpus lives: real Postfix log lines and real bounces, copied from the shared
corpus (each file's source is in its folder's SOURCES.md) so a clean checkout is self-contained."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
POSTFIX_LOGS = CORPUS / "postfix-logs"
BOUNCES = CORPUS / "bounces"
