"""Files owner-only from creation, no personal data in the access log, and the HTTP headers
and log lines a hostile client sees or causes (docs/security.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from sqlalchemy import text

from core import db
from core.redisconn import EmbeddedRedis
from core.settings import Settings
from tests.rest import request


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask of a shell (022), whatever the test runner's is."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_the_sqlite_database_and_its_wal_are_created_owner_only(tmp_path, open_umask):
    path = tmp_path / "data" / "cc.db"
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT)"))
            await conn.execute(text("INSERT INTO t VALUES ('+8613800000001')"))
        async with engine.connect() as conn:  # holds the WAL open
            await conn.execute(text("SELECT * FROM t"))
            assert (mode(path), mode(Path(f"{path}-wal"))) == (0o600, 0o600)
    finally:
        await engine.dispose()


def test_the_embedded_redis_dump_is_owner_only(tmp_path, open_umask):
    embedded = EmbeddedRedis(tmp_path / "cc-redis.db")
    socket = embedded.start()
    try:
        client = sync_redis.Redis(unix_socket_path=socket)
        client.set("caller", "+8613800000001")
        client.save()
        client.close()
        assert mode(tmp_path / "cc-redis.db") == 0o600
    finally:
        embedded.stop(force=True)


def test_the_secret_key_file_is_owner_only_from_its_creation(tmp_path, open_umask, monkeypatch):
    # Were the mode set after writing, a chmod that does not happen would leave it 0644.
    monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    settings = Settings(secret_file=tmp_path / "secret.key")
    assert mode(tmp_path / "secret.key") == 0o600
    assert Settings(secret_file=tmp_path / "secret.key").secret_key == settings.secret_key


async def run_cli(*args: str, env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter", *args, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]


async def test_the_cli_creates_the_database_secret_and_audit_export_owner_only(
        tmp_path, open_umask):
    env = {"CALLCENTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cc.db'}",
           "CALLCENTER_SECRET_FILE": str(tmp_path / "secret.key")}
    await run_cli("db", "upgrade", env=env)
    await run_cli("audit", "export", "--output", str(tmp_path / "audit.csv"), env=env)
    modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert {"cc.db", "secret.key", "audit.csv"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes  # the first-start lock file beside it too


async def test_the_access_log_holds_no_search_query_or_phone_number(center, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    token = await center.login_token("sue", "supervisor")
    for path in ("/api/v1/customers?q=%2B8613800000001", "/api/v1/customers?q=zhang+wei",
                 "/api/v1/customers?limit=5&q=13800000001", "/api/v1/customers/13800000001"):
        await request(center, "GET", path, token)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) >= 4
    for line in lines:
        assert "13800000001" not in line and "zhang" not in line.lower(), line
    assert any("q=[redacted]" in line for line in lines)


async def test_api_answers_are_not_stored_and_the_server_header_names_no_version(center):
    import aiohttp

    token = await center.login_token("sue", "supervisor")
    async with aiohttp.ClientSession() as http:
        for path, headers in [("/api/v1/me", {"Authorization": f"Bearer {token}"}),
                              ("/api/v1/customers/NOPE", {"Authorization": f"Bearer {token}"}),
                              ("/api/v1/me", {})]:
            async with http.get(f"{center.url}{path}", headers=headers) as response:
                assert response.headers["Cache-Control"] == "no-store", path
                assert response.headers["Server"] == "callcenter", path
        async with http.get(f"{center.url}/login") as page:
            assert page.headers["Server"] == "callcenter"
            assert page.headers["Cache-Control"] == "no-cache"


async def test_a_bare_cr_in_a_header_is_a_400_and_one_info_line_not_an_error(
        center: Any, caplog):
    caplog.set_level(logging.DEBUG)
    host, port = center.server.host, center.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\rEvil: y\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]

    async def logged() -> bool:
        return any(r.name == "aiohttp.server" for r in caplog.records)

    deadline = asyncio.get_running_loop().time() + 10
    while not await logged():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelno for r in server] == [logging.INFO]
    assert server[0].exc_info is None and "BadHttpMessage" in server[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
