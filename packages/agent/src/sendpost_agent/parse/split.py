"""Two processes for one parse: the line-local half of the buffers in a forked child, the
order-dependent half in this process. Plumbing only: no parse rule is here.

An adapter's parser splits its work in two (:class:`~sendpost_agent.parse.mta.Mta`'s
``scan_packed`` and the parser's ``feed_packed_jsonl``): ``scan_packed(buffer)`` depends on the
buffer alone and returns bytes; ``feed_packed_jsonl(packed)`` must see the buffers in log order
and returns the events as JSON lines — the same bytes ``feed_jsonl(buffer)`` gives.

:func:`feed_split` forks once (the modules are imported already, so the child starts in
microseconds, with nothing to load). The child reads the input (``chunks``) and, for each
buffer, either runs ``scan_packed`` and sends the result, or sends the buffer as it is, for
this process to parse whole (``feed_jsonl``): the order-dependent half (with the unpacking) is
lighter than the line-local one (with the packing), so without that this process would wait.
Which way a buffer goes balances itself: this process acknowledges each frame it has finished
(one byte on a second pipe), and the child sends a buffer raw when at most one frame is
unfinished — this process is about to run out of work — and scans it otherwise. (``share``
fixes the fraction instead, for tests.) Frames go
through a pipe (a kind byte and a length, then the bytes; the pipe holds 1 MiB, a few frames).
This process takes the frames in order, so the output is the single-process output, byte for
byte.

Failures are never silent: an exception in the child is sent as a frame and raised here
(:class:`ChildError`, with the child's message and traceback); a child that dies without its
end frame (killed, out of memory) raises :class:`ChildError` naming its exit status. If this
process stops early (an exception, a closed stdout), the child is killed and reaped.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import struct
import traceback
from collections.abc import Callable, Iterable

_HEADER = struct.Struct("<BQ")
_PACKED, _RAW, _END, _ERROR = range(4)
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), missing from Python 3.11's fcntl
_PIPE_SIZE = 1 << 20  # the unprivileged maximum (/proc/sys/fs/pipe-max-size)


class ChildError(Exception):
    """The child failed. ``expected``: it raised one of the exception types the caller named
    (``str(self)`` is then that exception's message); else ``str(self)`` says what happened,
    with the child's traceback."""

    def __init__(self, message: str, expected: bool) -> None:
        super().__init__(message)
        self.expected = expected


def available() -> bool:
    """Whether two processes can help here: ``fork`` exists and this process may run on two
    CPUs or more."""
    if not hasattr(os, "fork"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return (os.cpu_count() or 1) >= 2


def feed_split(
    chunks: Callable[[], Iterable[bytes | bytearray | memoryview]],
    scan_packed: Callable[[bytes], bytes],
    feed_packed: Callable[[memoryview], bytes],
    feed_raw: Callable[[memoryview], bytes],
    write: Callable[[bytes], object],
    *,
    share: float | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> None:
    """Parse ``chunks()`` (called in the child) with two processes; each buffer's JSON lines go
    to ``write`` in order. ``share``: parse this fraction of the buffers, spread evenly, here
    (default: as many as keeps both processes busy)."""
    read_fd, write_fd = os.pipe()
    ack_read, ack_write = os.pipe()
    with contextlib.suppress(OSError):  # a smaller pipe only means more, shorter reads
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        os.close(ack_write)
        _child(write_fd, ack_read, chunks, scan_packed, share, expected)
    os.close(write_fd)
    os.close(ack_read)
    done = False
    try:
        with io.FileIO(read_fd, "r", closefd=True) as pipe:
            frames = _Frames(pipe, pid)
            while True:
                kind, body = frames.next()
                with body:
                    if kind == _PACKED:
                        write(feed_packed(body))
                        _ack(ack_write)
                    elif kind == _RAW:
                        write(feed_raw(body))
                        _ack(ack_write)
                    elif kind == _END:
                        break
                    else:
                        is_expected, message = body[0] == ord("1"), bytes(body[1:]).decode()
                        done = True
                        _reap(pid)
                        raise ChildError(message, is_expected)
        done = True
        status = _reap(pid)
        if status:
            raise ChildError(f"the scanning process exited with status {status}", False)
    finally:
        if not done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        os.close(ack_write)


def _ack(fd: int) -> None:
    """One frame done (the child may have exited already: then nobody needs to know)."""
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, b".")


class _Frames:
    """Frames from the pipe, each read into one reused buffer (a fresh multi-megabyte buffer
    per frame would be fresh pages, page faults and zeroing each time): a frame's body is a
    view valid until the next frame is read."""

    def __init__(self, pipe: io.FileIO, pid: int) -> None:
        self.pipe, self.pid = pipe, pid
        self.buf = bytearray(_PIPE_SIZE)

    def next(self) -> tuple[int, memoryview]:
        with memoryview(self.buf) as view:
            self._fill(view[: _HEADER.size])
            kind, size = _HEADER.unpack_from(self.buf)
        if size > len(self.buf):
            self.buf = bytearray(size + size // 4)
        body = memoryview(self.buf)[:size]
        self._fill(body)
        return kind, body

    def _fill(self, view: memoryview) -> None:
        got, size = 0, len(view)
        while got < size:
            n = self.pipe.readinto(view[got:])
            if not n:
                status = _reap(self.pid)
                raise ChildError(
                    f"the scanning process ended before the end of the input ({status})", False
                )
            got += n


def _reap(pid: int) -> str:
    """Wait for the child; its exit described ('' for a clean exit 0)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return ""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    code = os.WEXITSTATUS(status)
    return f"exit status {code}" if code else ""


def _child(
    fd: int,
    acks: int,
    chunks: Callable[[], Iterable[bytes | bytearray | memoryview]],
    scan_packed: Callable[[bytes], bytes],
    share: float | None,
    expected: tuple[type[BaseException], ...],
) -> None:
    """Scan and send; exit without running the parent's exit handlers or flushing its
    buffers (they belong to the parent)."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent handles it
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the parent went away: just stop
        os.set_blocking(acks, False)
        done = 0  # frames the parent has finished
        for n, chunk in enumerate(chunks(), 1):
            with contextlib.suppress(BlockingIOError):
                done += len(os.read(acks, 65536))
            # by default: raw when the parent has at most one frame left to do; with share=0.4:
            # buffers 3, 5, 8, 10, ...
            raw = n - 1 - done <= 1 if share is None else int(n * share) > int((n - 1) * share)
            if raw:
                _send(fd, _RAW, chunk)
            else:
                _send(fd, _PACKED, scan_packed(bytes(chunk)))
        _send(fd, _END, b"")
    except BaseException as exc:
        status = 1
        if isinstance(exc, expected):
            report = b"1" + str(exc).encode()
        else:
            text = "".join(traceback.format_exception(exc))
            report = b"0" + f"the scanning process failed:\n{text}".encode()
        with contextlib.suppress(BaseException):
            _send(fd, _ERROR, report)
    finally:
        os._exit(status)


def _send(fd: int, kind: int, body: bytes | bytearray | memoryview) -> None:
    """One frame: its header, then its bytes (blocking while the pipe is full)."""
    with memoryview(body) as view:
        _write_all(fd, _HEADER.pack(kind, view.nbytes))
        _write_all(fd, view)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    with memoryview(data) as view:
        sent = 0
        while sent < len(view):
            sent += os.write(fd, view[sent:])
