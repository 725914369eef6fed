"""Supervised background work: every long-running task of a node runs under one helper.

A task is named. When it fails, the failure is logged at ERROR with its traceback (a
Redis outage, a timeout or a lost connection, only in the restart's WARNING line: a loaded
host times out a command now and then, and that is no fault of the task's) and
the task is started again after a delay that doubles with each failure in a row (up to
a cap) and starts over once a run has lasted long enough to count as healthy. While a
*required* task is down (it failed and waits for its restart) the node reports itself
unhealthy on `/healthz`. A task that returns is finished and not restarted (a loop that
ends only when it is cancelled never returns on its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from core.redisconn import redis_outage

log = logging.getLogger(__name__)


class TaskState(str, Enum):
    running = "running"
    restarting = "restarting"  # failed; waiting out its backoff
    finished = "finished"


@dataclass
class Backoff:
    """Delays between restarts: `initial_s` doubling up to `max_s`; a run that lasted
    `healthy_after_s` resets the count of failures in a row."""

    initial_s: float = 0.5
    max_s: float = 30.0
    healthy_after_s: float = 60.0

    def delay(self, failures: int) -> float:
        factor: int = 2 ** max(0, failures - 1)  # a non-negative power: an int
        return min(self.max_s, self.initial_s * factor)


@dataclass
class Supervised:
    name: str
    required: bool
    task: asyncio.Task[None]
    state: TaskState = TaskState.running
    restarts: int = 0
    failures: int = 0  # in a row, since the last healthy run

    @property
    def down(self) -> bool:
        return self.state is TaskState.restarting


class Supervisor:
    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self.tasks: dict[str, Supervised] = {}

    def start(self, name: str, work: Callable[[], Awaitable[None]], *,
              required: bool = True) -> Supervised:
        """Run `work()` under supervision; `work` is called again for each restart."""
        if name in self.tasks and not self.tasks[name].task.done():
            raise ValueError(f"a task named {name!r} is running already")
        task = asyncio.create_task(self._keep(name, work), name=name)
        self.tasks[name] = entry = Supervised(name, required, task)
        return entry

    def down(self) -> list[str]:
        """Required tasks that failed and wait for their restart."""
        return sorted(s.name for s in self.tasks.values() if s.required and s.down)

    def up(self) -> int:
        return sum(s.state is TaskState.running for s in self.tasks.values())

    def report(self) -> dict[str, dict[str, object]]:
        return {s.name: {"state": s.state.value, "required": s.required,
                         "restarts": s.restarts} for s in self.tasks.values()}

    async def _keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            entry = self.tasks[name]
            entry.state = TaskState.running
            started = time.monotonic()
            outage = None
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if redis_outage(e):  # said in the restart's one warning line
                    outage = f"Redis unavailable ({type(e).__name__}: {e})"
                else:
                    log.exception("background task %s failed", name)
            else:
                self._finished(entry)
                return
            await self._wait_to_restart(entry, time.monotonic() - started, outage)

    def _finished(self, entry: Supervised) -> None:
        entry.state = TaskState.finished
        if not _cancelling():  # a loop that saw its cancellation swallowed also returns
            log.info("background task %s finished", entry.name)

    async def _wait_to_restart(self, entry: Supervised, ran_s: float,
                               outage: str | None) -> None:
        if _cancelling():
            raise asyncio.CancelledError
        if ran_s >= self.backoff.healthy_after_s:
            entry.failures = 0
        entry.failures += 1
        entry.state = TaskState.restarting
        delay = self.backoff.delay(entry.failures)
        log.warning("restarting %s in %.1f s (failure %d in a row%s)", entry.name, delay,
                    entry.failures, f": {outage}" if outage else "")
        await asyncio.sleep(delay)
        entry.restarts += 1

    async def stop(self, *entries: Supervised) -> None:
        """Cancel the given tasks (all when none given) and wait for them to end.

        redis-py's asyncio client can swallow a cancellation that lands mid-command, and
        a polling loop then runs on: a task that survives is cancelled again.
        """
        chosen = entries or tuple(self.tasks.values())
        pending = {e.task for e in chosen if not e.task.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.2)
        for entry in chosen:
            entry.state = TaskState.finished
            if self.tasks.get(entry.name) is entry:
                del self.tasks[entry.name]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

