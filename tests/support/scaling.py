"""Growth checks for code that reads untrusted text: how its time grows with the input's size.

:func:`measure_growth` times a function on inputs of growing size (1 KB → 10 MB by default, ×4
per step) and stops at the first size whose time is more than ``factor`` times what the allowed
growth predicts from a reference size:

- ``exponent=1`` (linear): time per byte may not exceed ``factor`` × the time per byte at the
  reference (the first size that takes at least :data:`REFERENCE_SECONDS`, so that fixed costs
  and clock noise do not dominate it). A linear function's time per byte only falls as the size
  grows (fixed costs spread thinner); a quadratic one's grows ×4 per step, so it is caught within
  a step or two, long before it could run for hours.
- ``exponent=0`` (bounded): time may not exceed ``factor`` × the time at the reference size,
  given by the caller (e.g. the first size past a cap).

Robust on a loaded machine: each time is the best of a few rounds, each round repeats the call
until it takes at least :data:`MIN_ROUND_SECONDS`, and the clock is this thread's CPU time, so
waiting for a core while other processes run is not counted.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

KB = 1024
MB = 1024 * KB
SIZES: tuple[int, ...] = (KB, 4 * KB, 16 * KB, 64 * KB, 256 * KB, MB, 4 * MB, 10 * MB)
"""1 KB → 10 MB (the bounce server's default message size limit)."""
REFERENCE_SECONDS = 0.002
MIN_ROUND_SECONDS = 0.02
LONG_ROUND_SECONDS = 0.5
"""A round this long is measured once: noise is small against it, and repeats cost the most."""


@dataclasses.dataclass(frozen=True)
class Growth:
    """Seconds per call at each size measured, and the first size that broke the bound."""

    seconds: dict[int, float]
    reference: int
    exponent: int
    broken_at: int | None

    def ratio(self, size: int) -> float:
        """Time at ``size`` over the time the allowed growth predicts from the reference."""
        allowed = self.seconds[self.reference] * (size / self.reference) ** self.exponent
        return self.seconds[size] / allowed

    def describe(self) -> str:
        return (
            ", ".join(
                f"{_size(size)}: {seconds * 1000:.3g} ms"
                + (f" (x{self.ratio(size):.2f})" if size > self.reference else "")
                for size, seconds in self.seconds.items()
            )
            + f"; reference {_size(self.reference)}"
        )


def _size(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def best_time(function: Callable[[], object], runs: int) -> float:
    """Seconds of this thread's CPU per call of ``function``, best of ``runs`` rounds."""
    loops = 1
    round_seconds = _round(function, loops)
    while round_seconds < MIN_ROUND_SECONDS:
        # As many calls as the last round says make MIN_ROUND_SECONDS, a tenth more against
        # noise (not ×4 at a time, which overshot by up to 4 times in every round that follows).
        wanted = loops * 1.1 * MIN_ROUND_SECONDS / max(round_seconds, 1e-6)
        loops = max(loops + 1, min(100 * loops, math.ceil(wanted)))
        round_seconds = _round(function, loops)
    best = round_seconds / loops
    if round_seconds < LONG_ROUND_SECONDS:
        for _ in range(runs - 1):
            best = min(best, _round(function, loops) / loops)
    return best


def _round(function: Callable[[], object], loops: int) -> float:
    """CPU seconds of ``loops`` calls, with the cyclic garbage collector paused (its runs land
    on whichever call happens to cross its threshold)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.thread_time()
        for _ in range(loops):
            function()
        return time.thread_time() - start
    finally:
        if enabled:
            gc.enable()


def measure_growth(
    make_input: Callable[[int], T],
    function: Callable[[T], object],
    *,
    factor: float,
    exponent: int = 1,
    reference: int | None = None,
    sizes: Sequence[int] = SIZES,
    runs: int = 3,
) -> Growth:
    """Time ``function(make_input(size))`` for each size (see the module docstring)."""
    seconds: dict[int, float] = {}
    for size in sizes:
        call = functools.partial(function, make_input(size))
        gc.collect()
        seconds[size] = best_time(call, runs)
        del call
        if reference is None and (seconds[size] >= REFERENCE_SECONDS or size == sizes[-1]):
            reference = size
        if reference is None or size <= reference:
            continue
        growth = Growth(seconds, reference, exponent, None)
        if growth.ratio(size) > factor:
            return Growth(seconds, reference, exponent, size)
    assert reference is not None
    return Growth(seconds, reference, exponent, None)
