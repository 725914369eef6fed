"""Several nodes started at once against one empty database: one migrates and loads the
demo data, the others wait for it, and every node comes up."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.harness import Deployment, free_port
from core import db
from core.models import Agent, Customer
from tests.conftest import POSTGRES_URL
from tests.waits import eventually

ROOT = Path(__file__).resolve().parents[1]
# Connections of this database waiting for an advisory lock (a node for the start lock).
WAITERS = text("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
               " WHERE l.locktype = 'advisory' AND NOT l.granted"
               " AND d.datname = current_database()")


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server, dropped afterwards."""
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    name = f"first_start_{uuid.uuid4().hex[:10]}"
    admin = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
             "-U", url.username or "postgres"]
    subprocess.run(["createdb", *admin, name], check=True)
    yield url.set(database=name).render_as_string(hide_password=False)
    subprocess.run(["dropdb", *admin, "--force", name], check=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("fresh_postgres")


@pytest.fixture
async def nodes(empty_database: str, redis_url: str, tmp_path: Path,
                ) -> AsyncIterator[tuple[Deployment, list[subprocess.Popen[bytes]], list[str]]]:
    deployment = Deployment(tmp_path, empty_database, redis_url)
    env = deployment.env(CALLCENTER_AUTO_MIGRATE="true",
                         PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                  os.environ.get("PYTHONPATH")])))
    ports = [free_port(), free_port()]
    logs = [open(tmp_path / f"node-{port}.log", "wb") for port in ports]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--demo",
                               "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=log)
             for port, log in zip(ports, logs, strict=True)]
    try:
        yield deployment, procs, [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(timeout=30)
            log.close()


async def up_or_exited(url: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """"healthy" once /healthz answers 200, or how the process ended before that."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with {proc.returncode}"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return "healthy"
            await asyncio.sleep(0.2)
    return "not healthy in time"


@pytest.mark.timeout(300)
async def test_two_nodes_started_together_on_an_empty_database_both_come_up(
        nodes: tuple[Deployment, list[subprocess.Popen[bytes]], list[str]]) -> None:
    deployment, procs, urls = nodes
    states = await asyncio.gather(*(up_or_exited(url, proc, 240)
                                    for url, proc in zip(urls, procs, strict=True)))
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(deployment.workdir.glob("node-*.log")))
    assert states == ["healthy", "healthy"], f"{states}\n{logs}"
    assert "Traceback" not in logs
    engine = db.create_engine(deployment.database_url)
    try:
        async with db.sessionmaker(engine)() as session:
            demo_agents = await session.scalar(
                select(func.count()).select_from(Agent).where(Agent.username == "agent1"))
            customers = await session.scalar(select(func.count()).select_from(Customer))
            versions = (await session.execute(text("SELECT version_num FROM alembic_version"))
                        ).all()
    finally:
        await engine.dispose()
    assert demo_agents == 1
    assert customers == 3000
    assert len(versions) == 1


@contextlib.contextmanager
def sqlite_node_mid_first_start(path: Path) -> Iterator[None]:
    """What a node holds while it starts on a new SQLite file: the lock file beside it
    (the cross-node contract, docs/architecture.md) and an open write on the database,
    still in its first journal mode: the moment SQLite refuses another node's connection
    at once with "database is locked"."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("CREATE TABLE starting (x INTEGER)")
        yield
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        os.close(fd)


def holds_open(proc: subprocess.Popen[bytes], path: Path) -> bool:
    """Has `proc` opened `path` (a node waiting on the lock file)?"""
    with contextlib.suppress(OSError):  # the process, or one of its descriptors, is gone
        for fd in os.listdir(f"/proc/{proc.pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(path):
                    return True
    return False


@pytest.mark.timeout(300)
async def test_a_node_started_while_another_writes_a_new_sqlite_file_waits_then_comes_up(
        tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "fresh.db"
    path.touch()
    env = Deployment(tmp_path, f"sqlite+aiosqlite:///{path}", redis_url).env(
        CALLCENTER_AUTO_MIGRATE="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    port = free_port()
    with open(tmp_path / "node.log", "wb") as log:
        with sqlite_node_mid_first_start(path):
            proc = subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--port",
                                     str(port)], env=env, cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=log)
            try:
                await eventually(lambda: proc.poll() is not None
                                 or holds_open(proc, Path(f"{path}.lock")), 120)
                assert proc.poll() is None, (tmp_path / "node.log").read_text()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        try:
            state = await up_or_exited(f"http://127.0.0.1:{port}", proc, 240)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    stderr = (tmp_path / "node.log").read_text(errors="replace")
    assert state == "healthy", stderr
    assert "Traceback" not in stderr


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_a_node_started_while_another_holds_the_postgres_start_lock_waits_then_comes_up(
        fresh_postgres: str, redis_url: str, tmp_path: Path) -> None:
    env = Deployment(tmp_path, fresh_postgres, redis_url).env(
        CALLCENTER_AUTO_MIGRATE="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    port = free_port()
    engine = db.create_engine(fresh_postgres)
    try:
        with open(tmp_path / "node.log", "wb") as log:
            async with engine.connect() as holder:
                await holder.execute(text("SELECT pg_advisory_lock(:k)"),
                                     {"k": db.FIRST_START_LOCK})
                proc = subprocess.Popen([sys.executable, "-m", "callcenter", "serve", "--port",
                                         str(port)], env=env, cwd=tmp_path,
                                        stdout=subprocess.DEVNULL, stderr=log)
                try:
                    async with asyncio.timeout(120):
                        while proc.poll() is None and not await holder.scalar(WAITERS):
                            await asyncio.sleep(0.05)
                    assert proc.poll() is None, (tmp_path / "node.log").read_text()
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                await holder.execute(text("SELECT pg_advisory_unlock(:k)"),
                                     {"k": db.FIRST_START_LOCK})
            try:
                state = await up_or_exited(f"http://127.0.0.1:{port}", proc, 240)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        await engine.dispose()
    stderr = (tmp_path / "node.log").read_text(errors="replace")
    assert state == "healthy", stderr
    assert "Traceback" not in stderr


def test_a_database_that_cannot_be_migrated_is_one_clear_line_not_a_traceback(
        tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:  # a table of the schema's name, not of its shape
        conn.execute("CREATE TABLE agents (something_else INTEGER)")
    env = Deployment(tmp_path, f"sqlite+aiosqlite:///{path}", redis_url).env(
        CALLCENTER_AUTO_MIGRATE="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "callcenter", "serve", "--demo", "--port",
                           str(free_port())], env=env, cwd=tmp_path, capture_output=True,
                          timeout=120)
    stderr = done.stderr.decode()
    assert done.returncode == 1
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database setup failed"), stderr
    assert "agents" in lines[0]
