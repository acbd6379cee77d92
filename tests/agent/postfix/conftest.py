"""Fixtures of the real-Postfix tests: shared harness fixtures plus one rig per configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.rig import LocalMta
from tests.support.postfix import local_mta, postfix_instance, smtp_sink  # noqa: F401

CONFIGURATIONS = {
    "short-ids": {"long_queue_ids": False, "content_filter": False},
    "long-ids+content-filter": {"long_queue_ids": True, "content_filter": True},
}


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def rig(request: pytest.FixtureRequest) -> Iterator[LocalMta]:
    """A private Postfix relaying to sinks; defer… recipients expire after the first attempt.

    Shared by the tests of a module (each test uses fresh UUIDs and recipients), once with short
    queue IDs and direct delivery, once with long queue IDs and a content-filter hop.
    """
    with LocalMta(maximal_queue_lifetime="0s", **CONFIGURATIONS[request.param]) as started:
        yield started
