"""Garbage collection arranged for latency.

CPython's full (oldest generation) collection walks every tracked object. A node
with 1,000 agents connected holds about 270,000 of them, and a full collection
then stops the event loop for 100-190 ms (measured with `gc.callbacks` on the
screen-pop benchmark): every call in flight waits, and those pauses alone decided
the screen-pop p99.

So the long-lived heap is frozen (`gc.freeze`: moved out of the collector's sight;
objects still die by reference count as before): once the app is up, and again
every `freeze_every_s`, which costs nothing. Automatic collections then only
walk what was created since the last freeze and stay short. Cyclic garbage that
was frozen before it became garbage (a closed websocket's objects, say) is found
by one full collection every `full_every_s`: one bounded pause at a known pace
instead of pauses whenever the heap has grown by a quarter.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class _Pauses:
    """Overlapping pauses (reports in the SQLite reader's threads) and the collector's
    state before the first: the last pause to end restores it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.was_enabled = False


_PAUSES = _Pauses()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection while a large result of acyclic objects is built (a
    report's rows): each young collection would walk the rows made so far again, for
    nothing (bench/README.md: ~20% of an agent report's CPU with a frozen heap). Objects
    still die by reference count; cyclic garbage waits for the next collection."""
    with _PAUSES.lock:
        if _PAUSES.count == 0:
            _PAUSES.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSES.count += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.count -= 1
            if _PAUSES.count == 0 and _PAUSES.was_enabled:
                gc.enable()


def freeze_now() -> None:
    """Collect once, then take everything alive now out of later collections."""
    gc.collect()
    gc.freeze()


def full_collection() -> tuple[int, float]:
    """Bring the frozen heap back, collect all of it, freeze again: (objects freed,
    seconds taken)."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    return freed, time.perf_counter() - started


# Allocations (less deallocations) between young collections: CPython's 700 is a few
# telephony events' worth, so every object of an event in flight was walked by a young
# collection and again by the middle one (about 9% of a node's CPU at 1,300 acked events/s,
# bench/README.md "Events per second, session 12"). With this many, most events' objects
# have died by reference count before the next collection looks. A young collection then
# walks at most this many objects: well under a millisecond.
YOUNG_THRESHOLD = 10_000


def young_threshold() -> None:
    """Collect the young generation only every `YOUNG_THRESHOLD` allocations."""
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def run(freeze_every_s: float, full_every_s: float) -> None:
    """Freeze the heap now and every `freeze_every_s`, collect it fully every
    `full_every_s`, collect the young generation every `YOUNG_THRESHOLD` allocations,
    until cancelled."""
    young_threshold()
    freeze_now()
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every_s)
        if time.monotonic() - last_full >= full_every_s:
            freed, took = full_collection()
            last_full = time.monotonic()
            log.info("full garbage collection: %d objects freed in %.0f ms", freed, took * 1000)
        else:
            gc.freeze()
