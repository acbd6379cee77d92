"""Which code parses: the parser's own modules compiled by Cython, or the same modules as Python.

The modules in :data:`MODULES` are ordinary, typed Python — the only place each parse rule is
written. ``setup.py`` (run by ``make setup`` / ``uv sync``) compiles those same files with Cython
into extension modules next to them (``events.cpython-311-x86_64-linux-gnu.so`` beside
``events.py``), which Python's import system prefers; without a C compiler the build still
succeeds and the ``.py`` files run. It also records the CRC-32 of each source it compiled in the
generated ``_built.py`` (with the ``.pxd`` file that gives a module its C types, if any).

:func:`choose` runs when ``sendpost_agent.parse`` is first imported, before any of these
modules (its result is ``sendpost_agent.parse.CODE``):

* ``"compiled"``: every module has its extension and each was built from its current source;
* ``"python"``: ``SENDPOST_AGENT_PURE_PYTHON=1`` (the CI's second pass) where the ``.py``
  files are (the single executable carries the compiled modules only: it ignores the switch),
  nothing built, or a source changed since it was built (a ``RuntimeWarning``: rebuild with
  ``make setup``). Then the folders holding these modules import ``.py`` files only (a
  source-only finder in ``sys.path_importer_cache``), so a built extension is never mixed with
  newer Python.

setup.py loads this file on its own (for :data:`MODULES` and :func:`checksum`): it imports
nothing of the agent.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import warnings
import zlib

MODULES = (
    "sendpost_agent.parse.events",
    "sendpost_agent.parse.postfix.lines",
    "sendpost_agent.parse.postfix.scan",
    "sendpost_agent.parse.postfix.correlate",
    "sendpost_agent.parse.postfix.pipeline",
)
"""Compiled by setup.py (its list: it reads this file), in import order."""

ENV_PURE = "SENDPOST_AGENT_PURE_PYTHON"
_SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def checksum(source: str) -> str:
    """What setup.py records of each module it compiles: the CRC-32, in hex, of its ``.py`` file
    followed by its ``.pxd`` file when it has one (a change check)."""
    crc = 0
    for path in (source, source[:-3] + ".pxd"):
        if os.path.exists(path):
            with open(path, "rb") as handle:
                crc = zlib.crc32(handle.read(), crc)
    return f"{crc:08x}"


def _files(module: str) -> tuple[str, list[str]]:
    """The module's source path and the extension files built from it."""
    base = os.path.join(_SRC, *module.split("."))
    built = [base + s for s in importlib.machinery.EXTENSION_SUFFIXES if os.path.exists(base + s)]
    return base + ".py", built


def _recorded() -> dict[str, str]:
    try:
        built = importlib.import_module("sendpost_agent.parse._built")
    except ImportError:
        return {}
    digests: dict[str, str] = built.DIGESTS
    return digests


def choose() -> str:
    """``"compiled"`` or ``"python"`` (module docstring); for ``"python"``, the source-only
    finders are in place before it returns."""
    sources = all(os.path.exists(_files(module)[0]) for module in MODULES)
    if sources and os.environ.get(ENV_PURE, "") not in ("", "0"):
        return _python_only()
    recorded = _recorded()
    stale = []
    for module in MODULES:
        source, built = _files(module)
        if not built:
            return _python_only()  # not compiled (no C compiler at install time)
        if os.path.exists(source) and recorded.get(module) != checksum(source):
            stale.append(source)  # (a frozen executable carries no sources: nothing to check)
    if stale:
        warnings.warn(
            f"{', '.join(stale)} changed since compiled; using the Python code until "
            "`make setup` rebuilds it",
            RuntimeWarning,
            stacklevel=2,
        )
        return _python_only()
    return "compiled"


def _python_only() -> str:
    """Make the folders of :data:`MODULES` import their ``.py`` files, never an extension."""
    loaders = [
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    ]
    for folder in {os.path.dirname(_files(module)[0]) for module in MODULES}:
        sys.path_importer_cache[folder] = importlib.machinery.FileFinder(folder, *loaders)
    return "python"
