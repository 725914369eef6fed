"""Waiting on a condition with a deadline, instead of sleeping and hoping.

A test that sleeps a fixed time and then asserts fails whenever the machine is slower
than the author's (a second CPU-heavy process beside the suite is enough). These helpers
poll until the condition holds and fail with the last value seen when the deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                     interval: float = 0.05, what: str = "") -> T:
    """Poll `check` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what or check} (last: {result!r})")
        await asyncio.sleep(interval)


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               what: str = "") -> T:
    """The same for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what or check} (last: {result!r})")
        time.sleep(interval)
    return result
