"""Provider API fixtures: short SMTP-test timeouts, a one-hour key-rotation grace period and,
for the loopback SMTP servers, the development switch ``allow_private_networks``."""

from __future__ import annotations

import pytest
from sendpost_platform.config import Settings
from sendpost_platform.store import Store


@pytest.fixture
def settings(store: Store) -> Settings:
    return Settings(
        database_url=store.engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key",
        smtp_test_timeout=2.0,
        ingest_key_grace=3600.0,
        allow_private_networks=True,  # the SMTP servers are on loopback
    )
