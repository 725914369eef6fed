"""Garbage collection arranged for latency (core/gctune.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from core import gctune
from core.settings import Settings
from tests.waits import eventually


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it was found."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def frozen(ref: weakref.ref[Node]) -> bool:
    """Is the object in the permanent generation? The collector no longer lists it then."""
    target = ref()
    return not any(o is target for o in gc.get_objects())


def cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


def test_a_pause_stops_collections_until_the_last_overlapping_pause_ends() -> None:
    inside, leave = threading.Event(), threading.Event()

    def report() -> None:
        with gctune.paused():
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=report)
    with gctune.paused():
        assert not gc.isenabled()
        other.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the thread's pause goes on
    leave.set()
    other.join(5)
    assert gc.isenabled()


def test_a_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gctune.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_freeze_takes_the_live_heap_out_of_collections() -> None:
    gctune.freeze_now()
    assert gc.get_freeze_count() > 1000
    assert gc.get_count()[0] < 100  # nothing young left behind


def test_cyclic_garbage_frozen_alive_is_freed_by_the_full_collection() -> None:
    node = Node()
    dead = weakref.ref(node)
    gctune.freeze_now()
    del node  # garbage now, but frozen: ordinary collections do not see it
    gc.collect()
    assert dead() is not None
    freed, took = gctune.full_collection()
    assert dead() is None
    assert freed >= 1
    assert took >= 0
    assert gc.get_freeze_count() > 1000  # frozen again afterwards


async def test_run_freezes_on_its_interval_and_collects_in_full_on_its_own() -> None:
    task = asyncio.create_task(gctune.run(freeze_every_s=0.02, full_every_s=0.15))
    try:
        await eventually(lambda: gc.get_freeze_count() > 1000, timeout=10)
        # Young collections only every YOUNG_THRESHOLD allocations, the older ones as before.
        assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, 10, 10)
        node = Node()
        dead = weakref.ref(node)
        # A periodic freeze takes the live cycle in: the collector no longer lists it.
        await eventually(lambda: frozen(dead), timeout=10)
        del node
        gc.collect()
        assert dead() is not None
        # The full collection (every 0.15 s) frees it.
        await eventually(lambda: dead() is None, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_settings_can_leave_cpython_defaults() -> None:
    assert Settings(secret_key="k", gc_freeze_s=0).gc_freeze_s == 0
    with pytest.raises(ValueError):
        Settings(secret_key="k", gc_full_s=0)


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path) -> Settings:
    from tests.conftest import make_settings

    return make_settings(database_url, redis_url, redis_prefix, tmp_path, gc_freeze_s=0.05,
                         transcribe_in_process=False)


async def test_a_running_node_freezes_its_heap(aiohttp_client, app) -> None:
    gc.unfreeze()
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    await eventually(lambda: gc.get_freeze_count() > 1000, timeout=10)
