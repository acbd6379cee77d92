"""Pytest fixtures for tests that need a real Postfix or SMTP sinks.

Import the ones you need into your test package's conftest.py::

    from tests.support.postfix import postfix_instance, smtp_sink  # noqa: F401

- ``smtp_sink``: a started ``devtools.sinks.SmtpSink`` on 127.0.0.1 (per test).
- ``postfix_instance``: a factory ``postfix_instance(settings) -> PostfixInstance``; each instance
  is started on fresh loopback ports and stopped (no process left) when the test ends.
- ``local_mta``: a factory ``local_mta(**options) -> devtools.rig.LocalMta`` (Postfix + recipient
  sink + bounce sink), stopped when the test ends.

For one instance per module, build it in a module-scoped fixture of your own with
``with LocalMta(...) as rig: yield rig`` (start-up takes about 0.1 s, so per-test is fine too).
Mark such tests ``@pytest.mark.postfix``. Without Postfix installed or without root, the fixtures
fail with one line saying so (``devtools.postfix.PostfixUnavailable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.postfix import PostfixInstance, PostfixSettings
from devtools.rig import LocalMta
from devtools.sinks import SmtpSink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def postfix_instance() -> Iterator[Callable[[PostfixSettings], PostfixInstance]]:
    started: list[PostfixInstance] = []

    def start(settings: PostfixSettings) -> PostfixInstance:
        instance = PostfixInstance(settings)
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def local_mta() -> Iterator[Callable[..., LocalMta]]:
    started: list[LocalMta] = []

    def start(**options: Any) -> LocalMta:
        rig = LocalMta(**options)
        started.append(rig)
        return rig.start()

    yield start
    for rig in started:
        rig.stop()
