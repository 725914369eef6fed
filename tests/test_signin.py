"""Sign-in under concurrency: the limit holds against a burst, per user and per address,
and the password check neither blocks the event loop nor holds a database connection."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core import appkeys, auth
from core.settings import Settings
from tests.conftest import make_settings
from tests.rest import PASSWORD

LIMIT = 5
# Short enough to wait out, long enough that the burst's five checks (two at a time, on
# a loaded machine) all fail within it: the window runs from each failure.
WINDOW_S = 15


@pytest.fixture
def settings(request: pytest.FixtureRequest, any_database_url: str, redis_url: str,
             redis_prefix: str, tmp_path: Path) -> Settings:
    overrides = getattr(request, "param", {})
    return make_settings(any_database_url, redis_url, redis_prefix, tmp_path, **overrides)


async def sign_in(center: Any, username: str, password: str = PASSWORD,
                  address: str = "127.0.0.1") -> tuple[int, dict[str, Any], str | None]:
    """(status, body, Retry-After) of one sign-in from `address` (any of 127/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            f"{center.url}/api/v1/login",
            json={"username": username, "password": password}) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# The atomic limit ---------------------------------------------------------------------


async def test_sixty_concurrent_wrong_passwords_for_one_user_get_the_limit_of_401s(center):
    await center.add_agent("amy")
    results = await asyncio.gather(*(sign_in(center, "amy", "wrong", "127.0.1.1")
                                     for _ in range(60)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(401) == LIMIT and statuses.count(429) == 60 - LIMIT
    for status, body, retry_after in results:
        if status == 429:
            assert body["error"]["code"] == "rate_limited" and int(retry_after) >= 1


async def test_sixty_concurrent_guesses_from_one_address_get_the_limit_of_401s(center):
    for name in ("amy", "bob", "dave"):
        await center.add_agent(name)
    guesses = ["amy", "bob"] + [f"guess-{n}" for n in range(58)]
    results = await asyncio.gather(*(sign_in(center, name, "wrong", "127.0.2.1")
                                     for name in guesses))
    statuses = [status for status, _, _ in results]
    assert statuses.count(401) == LIMIT and statuses.count(429) == 60 - LIMIT
    # The address is locked for everyone; a user elsewhere signs in (docs/security.md).
    assert (await sign_in(center, "dave", PASSWORD, "127.0.2.1"))[0] == 429
    assert (await sign_in(center, "dave", PASSWORD, "127.0.2.2"))[0] == 200
    free = [name for name, (status, _, _) in zip(guesses, results, strict=True)
            if name in ("amy", "bob") and status == 429]
    for name in free:  # a user whose guess was refused, not failed, is not locked
        assert (await sign_in(center, name, PASSWORD, "127.0.2.2"))[0] == 200


@pytest.mark.parametrize("settings", [{"signin_window_s": WINDOW_S}], indirect=True)
async def test_right_password_after_a_burst_is_refused_until_the_window_passes(center):
    await center.add_agent("amy")
    await asyncio.gather(*(sign_in(center, "amy", "wrong", "127.0.3.1") for _ in range(60)))
    # The user is locked from every address, with the right password too.
    for address in ("127.0.3.1", "127.0.3.2"):
        status, _, retry_after = await sign_in(center, "amy", PASSWORD, address)
        assert status == 429 and 1 <= int(retry_after) <= WINDOW_S
    started = time.monotonic()
    while (result := await sign_in(center, "amy", PASSWORD, "127.0.3.2"))[0] == 429:
        assert time.monotonic() - started < WINDOW_S + 20
        await asyncio.sleep(0.5)
    assert result[0] == 200
    # A success clears the user's failures: the next mistake is a plain 401.
    assert (await sign_in(center, "amy", "wrong", "127.0.3.2"))[0] == 401


async def test_unknown_users_cost_a_password_check_and_count_as_failures(center, monkeypatch):
    checked: list[str | None] = []
    real = auth.verify_password

    def spy(password_hash: str | None, password: str) -> bool:
        checked.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", spy)
    for n in range(LIMIT):
        assert (await sign_in(center, f"nobody-{n}", "wrong", "127.0.4.1"))[0] == 401
    assert checked == [None] * LIMIT  # checked against the dummy hash
    assert (await sign_in(center, "nobody-x", "wrong", "127.0.4.1"))[0] == 429


# Off the loop, outside any transaction, bounded ---------------------------------------


class BlockedCheck:
    """Stands in front of the real Argon2 check and holds each one until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.threads: list[int] = []
        self.nice: list[int] = []
        self.connections_held: list[int] = []
        self.released_in_time: list[bool] = []

    def patch(self, monkeypatch: pytest.MonkeyPatch, pools: list[Any]) -> None:
        real = auth.verify_password

        def check(password_hash: str | None, password: str) -> bool:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                self.threads.append(threading.get_ident())
                self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
                self.connections_held.append(sum(pool.checkedout() for pool in pools))
            # On the loop this would wait out its timeout: the test cannot release it.
            self.released_in_time.append(self.release.wait(timeout=15))
            with self.lock:
                self.running -= 1
            return real(password_hash, password)

        monkeypatch.setattr(auth, "verify_password", check)


@pytest.fixture
def blocked(center: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockedCheck]:
    check = BlockedCheck()
    app = center.server.app
    engines = {app[key].kw["bind"] for key in (appkeys.SESSIONS, appkeys.READER)}
    check.patch(monkeypatch, [engine.pool for engine in engines])
    yield check
    check.release.set()


async def test_the_node_answers_while_a_password_is_checked_with_no_connection_held(
        center, blocked):
    await center.add_agent("amy")
    pending = asyncio.create_task(sign_in(center, "amy"))
    await until(lambda: blocked.threads != [])
    async with aiohttp.ClientSession() as http, http.get(f"{center.url}/healthz") as health:
        assert health.status == 200
    assert blocked.released_in_time == []  # the check is still running
    blocked.release.set()
    assert (await pending)[0] == 200
    assert blocked.released_in_time == [True]
    assert threading.get_ident() not in blocked.threads
    # ...at a lower CPU priority than the event loop's thread.
    assert blocked.nice == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + auth.SIGNIN_NICE)]
    assert blocked.connections_held == [0]  # the user's session was closed first


@pytest.mark.parametrize("settings", [{"signin_concurrency": 2, "signin_queue": 2}],
                         indirect=True)
async def test_checks_past_the_concurrency_wait_and_past_the_queue_get_503(center, blocked):
    names = [f"user-{n}" for n in range(5)]
    for name in names:
        await center.add_agent(name)
    verifier = center.server.app[appkeys.SIGN_IN].verifier
    admitted = [asyncio.create_task(sign_in(center, name, PASSWORD, f"127.0.5.{n + 1}"))
                for n, name in enumerate(names[:4])]
    await until(lambda: verifier.admitted == 4 and blocked.running == 2)
    status, body, retry_after = await sign_in(center, names[4], PASSWORD, "127.0.5.9")
    assert status == 503 and body["error"]["code"] == "busy" and int(retry_after) >= 1
    blocked.release.set()
    assert [result[0] for result in await asyncio.gather(*admitted)] == [200] * 4
    assert blocked.most == 2
    # The refused attempt was given back: it neither counts nor blocks a retry.
    redis, keys = center.server.app[appkeys.REDIS], center.server.app[appkeys.KEYS]
    assert await redis.exists(keys.login_pending(f"user:{names[4]}"),
                              keys.login_failures(f"user:{names[4]}")) == 0
    assert (await sign_in(center, names[4], PASSWORD, "127.0.5.9"))[0] == 200
