"""Settings: one typed schema from the environment; errors name the variable and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sendpost_platform.config import Settings, ensure_secret_key, reference_markdown
from sendpost_platform.errors import ConfigError


def test_defaults() -> None:
    """Without environment: embedded SQLite, loopback listen, the contract's rate limit."""
    settings = Settings.from_env({})
    assert (
        settings.database_url,
        settings.listen,
        settings.ingest_rate_limit,
        settings.rate_limit_url,
    ) == ("sqlite:///./sendpost.db", "127.0.0.1:8080", "10000/minute", None)


def test_values_are_parsed_by_type() -> None:
    """Durations accept units; optional values accept empty as unset."""
    settings = Settings.from_env(
        {
            "SENDPOST_INGEST_KEY_GRACE": "2h",
            "SENDPOST_WORKER_IDLE_INTERVAL": "250",
            "SENDPOST_WORKER_CLAIM_BATCHES": "5",
            "SENDPOST_RATE_LIMIT_URL": "",
            "SENDPOST_DATABASE_URL": "postgresql://u@db/x",
        }
    )
    assert (
        settings.ingest_key_grace,
        settings.worker_idle_interval,
        settings.worker_claim_batches,
        settings.rate_limit_url,
        settings.database_url,
    ) == (7200.0, 250.0, 5, None, "postgresql://u@db/x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SENDPOST_INGEST_KEY_GRACE": "soon"},
            "SENDPOST_INGEST_KEY_GRACE='soon': expected a duration",
        ),
        (
            {"SENDPOST_DATABASE_URL": "mysql://x"},
            "SENDPOST_DATABASE_URL='mysql://x': must start with",
        ),
        ({"SENDPOST_LISTEN": "8080"}, "SENDPOST_LISTEN='8080': expected HOST:PORT"),
        ({"SENDPOST_INGEST_RATE_LIMIT": "lots"}, "SENDPOST_INGEST_RATE_LIMIT='lots': expected"),
    ],
)
def test_errors_name_the_variable_and_value(env: dict[str, str], message: str) -> None:
    """Each bad value raises ConfigError whose text starts with VARIABLE='value'."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


def test_postgres_requires_a_secret_key() -> None:
    """Only embedded mode may generate the secret; PostgreSQL deployments must set it."""
    with pytest.raises(ConfigError) as caught:
        ensure_secret_key(Settings(database_url="postgresql://u@db/x"))
    assert caught.value.variable == "SENDPOST_SECRET_KEY"


def test_embedded_secret_is_generated_once(tmp_path: Path) -> None:
    """The generated key is stored next to the SQLite file and reused on the next start."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite")
    first = ensure_secret_key(settings).secret_key
    assert first == ensure_secret_key(settings).secret_key
    assert first == (tmp_path / "secret.key").read_text().strip()
    assert len(first) >= 40


def test_docs_carry_the_generated_reference() -> None:
    """docs/platform.md contains the configuration table generated from the schema."""
    docs = Path(__file__).parents[3] / "docs" / "platform.md"
    assert reference_markdown() in docs.read_text()
