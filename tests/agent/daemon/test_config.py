"""Settings: precedence, errors naming key and value, the generated reference, ``check``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendpost_agent.cli import main
from sendpost_agent.config import ConfigError, load, markdown

from tests.support.fake_ingest import FakeIngest

DOC = Path(__file__).parents[3] / "docs" / "agent-config.md"


def test_flags_win_over_env_over_file(tmp_path: Path) -> None:
    """Each key takes the value from the highest-priority source that has it."""
    config = tmp_path / "config.yaml"
    config.write_text("api-key: from-file\nlog-path: /file/mail.log\nbatch-size: 10\n")
    env = {"SENDPOST_AGENT_API_KEY": "from-env", "SENDPOST_AGENT_LOG_PATH": "/env/mail.log"}
    settings = load({"api-key": "from-flag"}, env, config)
    assert ("from-flag", Path("/env/mail.log"), 10) == (
        settings.api_key,
        settings.log_path,
        settings.batch_size,
    )


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """Defaults for every SPEC key, and the 100 MB WAL cap, batch of 100 and 5 s."""
    s = load({"api-key": "k"}, {}, None)
    assert (
        "postfix",
        "https://events.sendpost.io/api/v1/tpsp/custom-smtp/events",
        Path("/var/log/mail.log"),
        Path("/var/lib/sendpost-agent"),
        ("127.0.0.1", 9113),
        100 * 1024 * 1024,
        100,
        5.0,
    ) == (
        s.mta,
        s.endpoint,
        s.log_path,
        s.state_dir,
        s.listen,
        s.wal_max_bytes,
        s.batch_size,
        s.batch_wait,
    )


@pytest.mark.parametrize(
    ("flags", "env", "yaml_text", "key", "value"),
    [
        ({}, {}, "", "api-key", None),
        ({"api-key": "k", "endpoint": "ftp://x"}, {}, "", "endpoint", "ftp://x"),
        ({"api-key": "k"}, {}, "colour: blue\n", "colour", "blue"),
        ({"api-key": "k"}, {"SENDPOST_AGENT_COLOUR": "x"}, "", "SENDPOST_AGENT_COLOUR", "x"),
        ({"api-key": "k", "listen": "9113"}, {}, "", "listen", "9113"),
        ({"api-key": "k", "mta": "exim"}, {}, "", "mta", "exim"),
        ({"api-key": "k", "wal-max-bytes": "lots"}, {}, "", "wal-max-bytes", "lots"),
        (
            {"api-key": "k", "internal-relays": "127.0.0.1:0"},
            {},
            "",
            "internal-relays",
            "127.0.0.1:0",
        ),
    ],
)
def test_bad_settings_name_key_and_value(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], yaml_text: str, key: str, value: str
) -> None:
    """Each bad or missing setting is a ConfigError naming the key and the value."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load(flags, env, config)
    assert (key, value) == (caught.value.key, caught.value.value)
    assert key in str(caught.value)


def test_internal_relays_take_networks_names_and_host_port() -> None:
    """internal-relays accepts networks, names and host:port (IPv6 in brackets), as given."""
    s = load({"api-key": "k", "internal-relays": "127.0.0.1:10024, [::1]:10024,10.0.0.0/8,mx"}, {})
    assert ("127.0.0.1:10024", "[::1]:10024", "10.0.0.0/8", "mx") == s.internal_relays


def test_environment_switches_are_not_settings() -> None:
    """SENDPOST_AGENT_PURE_PYTHON and SENDPOST_AGENT_CONFIG share the settings' prefix but are
    switches: load() accepts them and they change no setting."""
    env = {"SENDPOST_AGENT_PURE_PYTHON": "1", "SENDPOST_AGENT_CONFIG": "/nowhere.yaml"}
    assert load({"api-key": "k"}, {}) == load({"api-key": "k"}, env)


def test_check_runs_with_the_pure_python_switch(tmp_path: Path, ingest: FakeIngest) -> None:
    """`sendpost-agent check` as a process with SENDPOST_AGENT_PURE_PYTHON=1: all checks pass
    (it used to stop at "unknown setting in the environment")."""
    log = tmp_path / "mail.log"
    log.write_text("")
    (tmp_path / "c.yaml").write_text(f"log-path: {log}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDPOST_AGENT_")}
    env["SENDPOST_AGENT_PURE_PYTHON"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "sendpost_agent.cli", "check", "--api-key", "good-key",
         "--endpoint", ingest.url, "--config", str(tmp_path / "c.yaml")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (0, "") == (result.returncode, result.stderr)
    assert "ok   settings are valid" in result.stdout


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """--config naming a file that does not exist stops the agent."""
    with pytest.raises(ConfigError) as caught:
        load({"api-key": "k"}, {}, tmp_path / "absent.yaml")
    assert caught.value.key == "config"


def test_run_with_unreadable_log_prints_one_line_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` with a log that does not exist: exit 2 and one line naming log-path."""
    monkeypatch.delenv("SENDPOST_AGENT_API_KEY", raising=False)
    (tmp_path / "c.yaml").write_text("")
    code = main(
        ["run", "--api-key", "k", "--log-path", str(tmp_path / "nope.log"),
         "--config", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0] == (
        f"sendpost-agent: config: log-path='{tmp_path / 'nope.log'}': does not exist "
        "(if Postfix logs only to the systemd journal: log-path: journald)"
    )


def test_generated_config_reference_is_up_to_date() -> None:
    """docs/agent-config.md is what `python -m sendpost_agent.config --markdown` prints."""
    assert markdown() == DOC.read_text()


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    with FakeIngest(keys={"good-key"}) as server:
        yield server


@pytest.mark.parametrize(
    ("key", "code", "words"),
    [("good-key", 0, "accepts the API key"), ("bad-key", 1, "rejects the API key")],
)
def test_check_reports_key_acceptance_in_plain_words(
    tmp_path: Path,
    ingest: FakeIngest,
    capsys: pytest.CaptureFixture[str],
    key: str,
    code: int,
    words: str,
) -> None:
    """`check` asks the endpoint about the key: plain words, non-zero when it is rejected."""
    log = tmp_path / "mail.log"
    log.write_text("")
    (tmp_path / "c.yaml").write_text(f"log-path: {log}\n")
    result = main(["check", "--api-key", key, "--endpoint", ingest.url,
                   "--config", str(tmp_path / "c.yaml")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == result
    assert words in out
    assert f"the log {log} can be read" in out
