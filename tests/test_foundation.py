"""Settings, migrations on SQLite and PostgreSQL, the embedded Redis, and the CLI's errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis as sync_redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from core import db
from core.models import Base
from core.redisconn import EmbeddedRedis, client_from_url, open_redis
from core.settings import Settings

CLI = [sys.executable, "-m", "callcenter"]


def test_settings_default_to_embedded_sqlite_and_redis(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CALLCENTER_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///callcenter.db"
    assert settings.redis_url is None
    assert settings.port == 8080 and settings.host == "127.0.0.1"
    assert settings.ring_timeout_s == 15.0
    # The signing key is created once and then reused by every process on this machine.
    assert (tmp_path / "callcenter-secret.key").read_text().strip() == settings.secret_key
    assert Settings().secret_key == settings.secret_key


def test_settings_read_the_environment_and_parse_booleans_and_lists(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLCENTER_AUTO_MIGRATE", "false")
    monkeypatch.setenv("CALLCENTER_DISPOSITIONS", "sale, refund ,")
    monkeypatch.setenv("CALLCENTER_REDIS_URL", "redis://10.0.0.5:6379/2")
    monkeypatch.setenv("CALLCENTER_SECRET_KEY", "k" * 40)
    settings = Settings()
    assert settings.auto_migrate is False
    assert settings.dispositions == ("sale", "refund")
    assert settings.redis_url == "redis://10.0.0.5:6379/2"
    assert settings.secret_key == "k" * 40


async def test_migrations_build_the_schema_the_models_describe(any_database_url):
    if not any_database_url.startswith("sqlite"):
        engine = db.create_engine(any_database_url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()
    await asyncio.to_thread(db.upgrade, any_database_url)
    engine = db.create_engine(any_database_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    await engine.dispose()
    assert {"customers", "customer_phones", "orders", "agents", "queues", "calls",
            "interactions", "complaints", "complaint_events", "audit_log"} <= tables
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_embedded_redis_starts_and_answers(tmp_path):
    async with open_redis(None, tmp_path / "embedded.rdb") as redis:
        await redis.set("k", "v")
        assert await redis.get("k") == "v"


async def test_a_client_reconnects_to_the_embedded_redis_without_a_refused_command(tmp_path):
    """The embedded Redis is 6.2: it refuses CLIENT SETINFO (7.2), which redis-py sends on
    every connection unless told not to. Its error count shows any refusal."""
    async with open_redis(None, tmp_path / "embedded.rdb") as redis:
        me = await redis.client_id()
        admin = client_from_url(f"unix://{redis.connection_pool.connection_kwargs['path']}")
        before = await admin.info("errorstats")
        assert await admin.client_kill_filter(_id=me) == 1
        assert await redis.ping()
        assert await redis.client_id() != me, "a new connection"
        assert await admin.info("errorstats") == before
        await admin.aclose()



def test_stopping_the_embedded_redis_ends_its_server_with_the_data_saved(tmp_path):
    """Stop ends the server this process started though other clients are still connected
    (a worker, the CLI), so the next start is a new server; a process that reused the
    server leaves it running (issue 22)."""
    path = tmp_path / "embedded.rdb"
    owner = EmbeddedRedis(path)
    socket = owner.start()
    pid = owner.pid
    other = sync_redis.Redis(unix_socket_path=socket)
    try:
        other.set("live", "call")
        reuser = EmbeddedRedis(path)
        assert reuser.start() == socket and reuser.pid == pid
        reuser.stop()
        assert other.get("live") == b"call", "a reusing process leaves the server running"
        owner.stop()
        assert not psutil.pid_exists(pid) and not Path(socket).exists()
    finally:
        other.close()
    again = EmbeddedRedis(path)
    again_socket = again.start()
    again_pid = again.pid
    try:
        assert again_pid not in (0, pid)
        client = sync_redis.Redis(unix_socket_path=again_socket)
        assert client.get("live") == b"call", "the data was saved at stop"
        client.close()
    finally:
        again.stop()
    assert not psutil.pid_exists(again_pid)


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path,
         stdin: str = "") -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, input=stdin, timeout=120)


def test_unreachable_database_is_one_clear_line_without_traceback(tmp_path):
    result = _cli("db", "upgrade", cwd=tmp_path, env={
        "CALLCENTER_DATABASE_URL": "postgresql+asyncpg://u:secret@127.0.0.1:9/x"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "database" in lines[0] and "CALLCENTER_DATABASE_URL" in lines[0]
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_unreachable_redis_is_one_clear_line_without_traceback(tmp_path):
    result = _cli("serve", "--port", "0", cwd=tmp_path,
                  env={"CALLCENTER_REDIS_URL": "redis://127.0.0.1:9/0"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Redis" in lines[0] and "CALLCENTER_REDIS_URL" in lines[0]


def test_cli_adds_an_agent_with_a_password_from_stdin_and_issues_a_token(tmp_path):
    added = _cli("agents", "add", "alice", "--skills", "sales,zh", "--extension", "1001",
                 cwd=tmp_path, stdin="s3cret-pass\n")
    assert added.returncode == 0, added.stderr
    assert "added agent alice" in added.stdout and "s3cret" not in added.stdout
    again = _cli("agents", "add", "alice", cwd=tmp_path, stdin="s3cret-pass\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    token = _cli("token", "create", "--name", "pbx-1", cwd=tmp_path)
    assert token.returncode == 0 and token.stdout.count(".") == 2  # a JWT
    revoked = _cli("token", "revoke", "--name", "pbx-1", cwd=tmp_path)
    assert "revoked 1 token" in revoked.stdout


def test_cli_help_lists_every_command(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    for command in ("serve", "db", "agents", "customers", "segment", "token"):
        assert command in result.stdout


@pytest.mark.parametrize("bad", ["short"])
def test_cli_refuses_a_short_password(tmp_path, bad):
    result = _cli("agents", "add", "bob", cwd=tmp_path, stdin=bad + "\n")
    assert result.returncode == 1 and "at least 8" in result.stderr


async def test_sqlite_connections_read_pages_through_a_memory_map(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mapped.db'}"
    engine, sync_engine = db.create_engine(url), db.create_sync_engine(url)
    assert sync_engine is not None
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA mmap_size")) == db.SQLITE_MMAP_BYTES
        with sync_engine.connect() as sync_conn:
            assert sync_conn.scalar(text("PRAGMA mmap_size")) == db.SQLITE_MMAP_BYTES
    finally:
        await engine.dispose()
        sync_engine.dispose()
