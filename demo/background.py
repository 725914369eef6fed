"""Fire-and-forget steps of the demo's simulated PBX and colleagues (a wrap-up, a reply to
a command): each task is kept until it is done, so it is not collected mid-way, and a
failure is logged at ERROR with its traceback instead of surfacing, if ever, when the
task is garbage-collected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    def __init__(self, label: str) -> None:
        self.label = label
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a background step failed", self.label, exc_info=task.exception())

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
