"""``sendpost-agent parse [--mta postfix] [--config FILE] [--internal-relay R]... [--stats]
[--processes N] FILE...``: the offline view of the pipeline.

Reads whole log files (plain or gzip, told apart by their magic bytes; ``-`` is standard input)
in the order given, through one parser of the MTA's adapter (:func:`~sendpost_agent.parse.adapter`:
``--mta``, else the file's ``mta``, else postfix; no saved state, no network), and prints one
JSON event per line on stdout: the wire fields plus ``queue_id``.
``--config FILE`` takes the daemon's settings from its YAML file (``internal-relays``, ``mta``;
the other keys are checked, not used); ``--internal-relay`` (repeatable, or comma-separated)
names internal relays and wins over the file. ``--stats`` prints the counters on stderr (among
them ``hops_resolved``, ``hops_unresolved``, ``recipients_from_orig_to``), which scanner ran
(``scanner compiled`` or ``scanner python``) and which engine matched the lines (``matcher
pcre2``, the native line matcher, or ``matcher re``; sendpost_agent.parse.linematch). A file
that cannot be read or a bad setting: one line naming it on stderr, exit status 2.
``--processes 2`` (the default for regular files of 4 MiB or more on two CPUs) runs the
line-local half of the parser in a forked second process (sendpost_agent.parse.split); the
output is the same bytes.

Kept free of the daemon's imports (httpx & co.): benchmarks time this command from start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring_ascii as _json_str
from typing import TYPE_CHECKING, BinaryIO

from sendpost_agent.parse.linematch import ENGINE
from sendpost_agent.parse.mta import REGISTRY, Mta, ParseStats, adapter
from sendpost_agent.parse.relays import DEFAULT_INTERNAL_RELAYS

if TYPE_CHECKING:
    from sendpost_wire import AgentEvent

CHUNK = 1024 * 1024
"""Buffer size with one process (8 MiB before: 1 MiB takes less system time, the same user
time; docs/benchmarks.md)."""
SPLIT_CHUNK = 256 * 1024
"""Buffer size with two processes: small frames, so that the two halves overlap from the start,
a few frames fit in the pipe and the parent's share balances finely (docs/benchmarks.md)."""
SPLIT_MIN_BYTES = 4 * 1024 * 1024
"""Inputs smaller than this are parsed in one process (a fork would cost more than it saves)."""
_GZIP_MAGIC = b"\x1f\x8b"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``parse`` to the ``sendpost-agent`` parser."""
    parser = subparsers.add_parser(
        "parse", help="print the events found in Postfix log files (plain or gzip), offline"
    )
    configure(parser)
    parser.set_defaults(handler=run)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mta",
        choices=sorted(REGISTRY),
        default=None,
        help="the MTA's log format (default: the file's, else postfix)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="the daemon's YAML settings (internal-relays, mta)"
    )
    parser.add_argument(
        "--internal-relay",
        action="append",
        metavar="RELAY",
        help="a relay whose `queued as` may be a hop: network, name or host:port "
        "(repeatable or comma-separated; default: the file's, else loopback)",
    )
    parser.add_argument("--stats", action="store_true", help="print counters on stderr")
    parser.add_argument(
        "--processes",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="1: parse in this process only; 2: the line-local half in a second process "
        "(same output); default 0: 2 for files of 4 MiB or more on a machine with two "
        "CPUs or more, else 1",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="log files, oldest first; - for standard input"
    )


def main(argv: Sequence[str]) -> int:
    """``sendpost-agent parse ...`` without building the full command tree."""
    parser = argparse.ArgumentParser(prog="sendpost-agent parse", description=__doc__)
    configure(parser)
    return run(parser.parse_args(argv))


class _Unreadable(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"sendpost-agent: cannot read {name}: {reason}")


class _BadSetting(Exception):
    pass


def settings(args: argparse.Namespace) -> tuple[Mta, tuple[str, ...]]:
    """The adapter and the internal relays for this run: ``--mta`` and ``--internal-relay``,
    else the ``--config`` file's ``mta`` and ``internal-relays``, else the defaults. Raises
    ``_BadSetting`` naming the key and value."""
    relays: tuple[str, ...] | None = None
    mta: str = args.mta or "postfix"
    if args.config is not None:
        from pathlib import Path

        from sendpost_agent import config  # only here: it needs PyYAML
        from sendpost_agent.errors import ConfigError

        try:
            doc = config.read_yaml(Path(args.config), explicit=True)
            for key, value in doc.items():
                if key not in config.FIELDS:
                    raise ConfigError(key, value, "unknown key")
            for key in ("mta", "internal-relays"):
                if doc.get(key) is not None:
                    value = config.FIELDS[key].metadata["convert"](key, doc[key])
                    if key == "internal-relays":
                        relays = value
                    elif args.mta is None:
                        mta = value
        except ConfigError as exc:
            raise _BadSetting(f"sendpost-agent: {exc}") from None
    if args.internal_relay:
        from sendpost_agent.parse.relays import parse_entry

        given = [item.strip() for arg in args.internal_relay for item in arg.split(",")]
        relays = tuple(item for item in given if item)
        for item in relays:
            try:
                parse_entry(item)
            except ValueError as exc:
                raise _BadSetting(f"sendpost-agent: --internal-relay: {exc}") from None
    return adapter(mta), relays if relays is not None else DEFAULT_INTERNAL_RELAYS


def run(args: argparse.Namespace) -> int:
    names: list[str] = args.files
    try:
        mta, relays = settings(args)
    except _BadSetting as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        handles = [_open(name) for name in names]
    except _Unreadable as exc:
        print(exc, file=sys.stderr)
        return 2
    size = _input_size(names, handles)
    if size is None or size >= SPLIT_MIN_BYTES:
        _keep_freed_memory()
    info = os.fstat(handles[0].fileno())
    reference = (
        dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
        if stat.S_ISREG(info.st_mode)
        else dt.datetime.now(dt.UTC)  # a pipe: the lines are being written now
    )
    pipeline = mta.parser(reference_time=reference, internal_relays=relays)
    out = sys.stdout.buffer
    try:
        if _split(args.processes, mta, size):
            from sendpost_agent.parse import split

            assert mta.scan_packed is not None
            try:
                split.feed_split(
                    lambda: _all_chunks(names, handles, SPLIT_CHUNK),
                    mta.scan_packed,
                    pipeline.feed_packed_jsonl,
                    pipeline.feed_jsonl,
                    lambda events: _write(out, events),
                    expected=(_Unreadable,),
                )
            except split.ChildError as exc:
                if not exc.expected:
                    raise
                print(exc, file=sys.stderr)
                return 2
            finally:
                for handle in handles:
                    handle.close()
        else:
            for chunk in _all_chunks(names, handles, CHUNK):
                _write(out, pipeline.feed_jsonl(chunk))
        _write(out, "".join(text + "\n" for text in pipeline.flush_json()).encode())
        out.flush()
    except _Unreadable as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stdout = None  # the reader went away: stop quietly
        return 0
    if args.stats:
        print(format_stats(pipeline.stats), file=sys.stderr)
        print(f"scanner {mta.scanner}", file=sys.stderr)
        print(f"matcher {ENGINE}", file=sys.stderr)
    return 0


def _split(processes: int, mta: Mta, size: int | None) -> bool:
    """Whether to parse with two processes (``--processes``, else by the inputs' total ``size``,
    None for a pipe, and the CPUs)."""
    if processes == 1 or mta.scan_packed is None or not hasattr(os, "fork"):
        return False
    if processes == 2:
        return True
    if size is None or size < SPLIT_MIN_BYTES:
        return False  # a pipe may be endless or slow: no gain in splitting it
    from sendpost_agent.parse import split

    return split.available()


def _input_size(names: list[str], handles: list[io.BufferedReader]) -> int | None:
    """The bytes of all inputs, None if one is standard input or not a regular file."""
    size = 0
    for name, handle in zip(names, handles, strict=True):
        info = os.fstat(handle.fileno())
        if name == "-" or not stat.S_ISREG(info.st_mode):
            return None
        size += info.st_size
    return size


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def _keep_freed_memory() -> None:
    """Large inputs: ask glibc's allocator to keep the memory freed between buffers for the
    next one. By default it returns the top of its heap to the kernel whenever 128 KiB to a few
    MiB are free, and serves each buffer-sized block with its own mmap, so every buffer's
    output, decoded text and packed frame come back as fresh pages: 65,000 page faults and a
    sixth of the CPU time of ``parse`` on the benchmark's 77 MB log, 10,000 with this
    (docs/benchmarks.md). ``parse`` is short-lived and holds little: what it keeps is what it
    just used. Elsewhere (no glibc, no ctypes, as in a stripped-down Python) nothing changes."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # blocks under 32 MiB come from the heap
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)  # give back only when 256 MiB are free at the top
    mallopt(_M_TOP_PAD, 64 << 20)  # grow the heap 64 MiB at a time (untouched pages cost no RAM)


def _all_chunks(names: list[str], handles: list[io.BufferedReader], size: int
                ) -> Iterator[memoryview]:  # fmt: skip
    """The chunks of every input in turn (each handle closed after its last chunk)."""
    for name, handle in zip(names, handles, strict=True):
        with handle:
            yield from _ChunkReader(name, handle, size)


def _open(name: str) -> io.BufferedReader:
    if name == "-":
        return open(sys.stdin.fileno(), "rb", closefd=False)
    try:
        return open(name, "rb")
    except OSError as exc:
        raise _Unreadable(name, exc.strerror or str(exc)) from None


class _ChunkReader:
    """Whole lines in large chunks; a last line without a newline gets one.

    Each chunk is a view of one reused buffer of ``size`` bytes (default :data:`CHUNK`; no
    fresh memory per chunk, no copies): it is valid until the next one is asked for. A line
    longer than the buffer gets a bigger one."""

    def __init__(self, name: str, raw: io.BufferedReader, size: int = 0) -> None:
        self.name = name
        self.raw = raw
        self.size = size

    def __iter__(self) -> Iterator[memoryview]:
        try:
            magic = self.raw.peek(2)[:2]  # peek, not read: standard input cannot seek back
        except OSError as exc:
            raise _Unreadable(self.name, exc.strerror or str(exc)) from None
        stream: io.BufferedIOBase = self.raw
        if magic == _GZIP_MAGIC:
            import gzip  # only here: most inputs are plain

            stream = gzip.GzipFile(fileobj=self.raw)
        buf = bytearray(self.size or CHUNK)
        kept = 0  # bytes of an unfinished line at the start of buf
        while True:
            if kept == len(buf):  # one line fills the buffer: a bigger one, the line copied
                bigger = bytearray(2 * len(buf))
                bigger[:kept] = buf
                buf = bigger
            try:
                with memoryview(buf) as free:
                    got = stream.readinto(free[kept:])
            except (OSError, EOFError) as exc:
                raise _Unreadable(self.name, str(exc) or type(exc).__name__) from None
            if not got:
                if kept:
                    yield memoryview(bytes(buf[:kept]) + b"\n")
                return
            end = kept + got
            cut = buf.rfind(b"\n", kept, end) + 1
            if cut:
                with memoryview(buf) as whole:
                    yield whole[:cut]
                buf[: end - cut] = buf[cut:end]
                kept = end - cut
            else:
                kept = end


def _write(out: BinaryIO, events: bytes) -> None:
    if events:
        out.write(events)


_stamps: dict[dt.datetime, str] = {}


def _stamp(value: dt.datetime) -> str:
    text = _stamps.get(value)
    if text is None:
        if len(_stamps) > 4096:
            _stamps.clear()
        from sendpost_wire.schema import format_timestamp

        text = _stamps[value] = format_timestamp(value)
    return text


def event_json(e: AgentEvent) -> str:
    """An event as one JSON line: the same object as ``json.dumps(e.to_wire())``, and the same
    text as :meth:`LogParser.feed_json <sendpost_agent.parse.mta.LogParser.feed_json>` gives
    for it (``parse`` prints the latter)."""
    parts = ['{"message_id":"', e.message_id, '","event_type":"', e.event_type, '"']
    if e.timestamp is not None:
        parts += [',"timestamp":"', _stamp(e.timestamp), '"']
    if e.smtp_code is not None:
        parts += [',"smtp_code":', str(int(e.smtp_code))]
    if e.smtp_description is not None:
        parts += [',"smtp_description":', _json_str(e.smtp_description)]
    if e.recipient is not None:
        parts += [',"recipient":', _json_str(e.recipient)]
    if e.event_id is not None:
        parts += [',"event_id":', _json_str(e.event_id)]
    if e.enhanced_status is not None:
        parts += [',"enhanced_status":', _json_str(e.enhanced_status)]
    if e.smtp_command is not None:
        parts += [',"smtp_command":', _json_str(e.smtp_command)]
    if e.queue_id is not None:
        parts += [',"queue_id":', _json_str(e.queue_id)]
    if e.final_recipient is not None:
        parts += [',"final_recipient":', _json_str(e.final_recipient)]
    parts.append("}\n")
    return "".join(parts)


def format_stats(stats: ParseStats) -> str:
    """Counters as ``name value`` lines, e.g. ``unparsed.too_long 1``, ``events.delivered 3``."""
    rows: list[str] = []
    for key, value in stats.to_json().items():
        if isinstance(value, dict):
            rows.extend(f"{key}.{sub} {count}" for sub, count in value.items())
        else:
            rows.append(f"{key} {value}")
    return "\n".join(rows)
