"""Fixtures of the real-Postfix tests: shared harness fixtures plus one rig per configuration."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from devtools.rig import LocalMta
from tests.support.postfix import local_mta, postfix_instance, smtp_sink  # noqa: F401

CONFIGURATIONS = {
    "short-ids": {"long_queue_ids": False, "content_filter": False},
    "long-ids+content-filter": {"long_queue_ids": True, "content_filter": True},
    "short-ids+late-filter-reply": {
        "long_queue_ids": False,
        "content_filter": True,
        "content_filter_late_reply": True,
        "content_filter_xforward": False,
    },
}


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def rig(request: pytest.FixtureRequest) -> Iterator[LocalMta]:
    """A private Postfix relaying to sinks; defer… recipients expire after the first attempt;
    recipients at ``down.test`` go to a loopback port that refuses connections.

    Shared by the tests of a module (each test uses fresh UUIDs and recipients), once with short
    queue IDs and direct delivery, once with long queue IDs and a content-filter hop, and once
    with a filter that answers Postfix only after the re-injected copy is delivered and removed,
    without XFORWARD (no orig_queue_id=): every line of the child precedes the parent's
    `queued as CHILD` line, the only link between the two.
    """
    with socket.socket() as refusing:  # bound, never listening: "Connection refused"
        refusing.bind(("127.0.0.1", 0))
        down = {r"@down\.test$": f"[127.0.0.1]:{refusing.getsockname()[1]}"}
        options = CONFIGURATIONS[request.param]
        with LocalMta(maximal_queue_lifetime="0s", routes=down, **options) as started:
            yield started
