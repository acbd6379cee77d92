"""Provider API fixtures: short SMTP-test timeouts and a one-hour key-rotation grace period."""

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
    )
