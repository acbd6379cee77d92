"""The MTA seam (parse/mta.py): the registry behind the `mta` setting, and lazy adapters."""

from __future__ import annotations

import subprocess
import sys

from sendpost_agent import config
from sendpost_agent.parse import REGISTRY, adapter


def test_mta_setting_accepts_exactly_the_registered_adapters() -> None:
    """The values the `mta` setting accepts are the registry's names, and each name gives the
    adapter of that name (one place to add an MTA)."""
    assert tuple(REGISTRY) == config.MTAS
    assert list(REGISTRY) == [adapter(name).name for name in REGISTRY]
    assert "postfix" == config.load({"api-key": "k", "mta": "Postfix"}, {}).mta


def test_postfix_adapter_names_the_scanner_in_use() -> None:
    """The adapter says which code parses: the compiled modules unless switched off, not built
    or stale, as sendpost_agent.parse.compiled decided; the Postfix modules are what it says."""
    from sendpost_agent.parse import CODE
    from sendpost_agent.parse.postfix import pipeline

    assert CODE == adapter("postfix").scanner
    assert str(pipeline.__file__).endswith(".py") == (CODE == "python")


def test_importing_the_parse_package_loads_no_adapter() -> None:
    """`import sendpost_agent.parse` imports no MTA's code; adapter() imports the one asked for."""
    code = (
        "import sys, sendpost_agent.parse as p\n"
        "before = 'sendpost_agent.parse.postfix' in sys.modules\n"
        "p.adapter('postfix')\n"
        "print(before, 'sendpost_agent.parse.postfix' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "False True" == result.stdout.strip()
