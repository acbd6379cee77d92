"""The oldest GNU C library a build can run with, read from its ELF symbol versions.

    python packaging/glibc_floor.py PATH [--libdir DIR]

PATH is an executable or a directory tree (a package's files). Prints the highest ``GLIBC_x.y``
version that the host's C library must provide, or nothing when the host's C library is never
used: a static executable (staticx's bootloader) needs none, and a tree whose executables name
its own loader as their interpreter (``--libdir`` is where the tree is installed) gets every
version it needs from the libc.so.6 it carries. Needs pyelftools (staticx depends on it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.segments import InterpSegment

_GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
_LIBRARY = re.compile(r"\.so(\.|$)")


def _version(name: str) -> tuple[int, ...] | None:
    match = _GLIBC.fullmatch(name)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _elf_files(path: Path) -> Iterator[Path]:
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for candidate in candidates:
        if candidate.is_symlink():
            continue
        with candidate.open("rb") as handle:
            if handle.read(4) == b"\x7fELF":
                yield candidate


def _read(path: Path) -> tuple[str | None, set[tuple[int, ...]], set[tuple[int, ...]]]:
    """(interpreter, GLIBC versions needed, GLIBC versions defined) of one ELF file."""
    interp, needed, defined = None, set(), set()
    with path.open("rb") as handle:
        try:
            elf = ELFFile(handle)
        except ELFError:
            return None, set(), set()
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interp = segment.get_interp_name()
        for section in elf.iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for _lib, aux in section.iter_versions():
                    needed |= {v for a in aux if (v := _version(a.name))}
            elif isinstance(section, GNUVerDefSection):
                for _verdef, aux in section.iter_versions():
                    defined |= {v for a in aux if (v := _version(a.name))}
    return interp, needed, defined


def floor(path: Path, libdir: str | None = None) -> tuple[int, ...] | None:
    """The highest GLIBC version the host must provide, or None when it needs none."""
    files = {elf: _read(elf) for elf in _elf_files(path)}
    needed = set().union(*(info[1] for info in files.values()))
    # The programs' interpreters (libc.so.6 has one too: it can be run, but it is a library).
    interpreters = {
        info[0] for elf, info in files.items() if info[0] and not _LIBRARY.search(elf.name)
    }
    if libdir is not None and path.is_dir() and interpreters:
        bundled = {
            os.path.join(libdir, str(elf.relative_to(path))): info for elf, info in files.items()
        }
        if all(interp in bundled for interp in interpreters):
            # The loader, libc.so.6 and libm.so.6 of the tree define what it asks for.
            needed -= set().union(*(info[2] for info in bundled.values()))
    return max(needed) if needed else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--libdir", help="where the tree PATH is installed")
    args = parser.parse_args(argv)
    found = floor(args.path, args.libdir)
    if found is not None:
        print(".".join(map(str, found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
