"""Helpers for tests of the REST API and the CLI against a running service."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp

PASSWORD = "correct-horse"  # the `center` fixture's password for every user


async def request(center: Any, method: str, path: str, token: str | None = None,
                  **kwargs: Any) -> tuple[int, Any]:
    """(status, JSON body or bytes); `source=(address, 0)` picks the client's address."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connector = aiohttp.TCPConnector(local_addr=kwargs.pop("source", None))
    async with aiohttp.ClientSession(connector=connector) as http, http.request(
            method, f"{center.url}{path}", headers=headers, allow_redirects=False,
            **kwargs) as response:
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, (await response.json()) if is_json and body else body


async def login(center: Any, username: str, password: str = PASSWORD,
                source: tuple[str, int] | None = None) -> tuple[int, Any]:
    return await request(center, "POST", "/api/v1/login",
                         json={"username": username, "password": password}, source=source)


async def cli(center: Any, *args: str, env: dict[str, str] | None = None,
              ) -> tuple[int, str, str]:
    """Run `callcenter ...` against the running service's database: (code, out, err)."""
    full_env = {**os.environ, "CALLCENTER_DATABASE_URL": center.settings.database_url,
                "CALLCENTER_SECRET_KEY": center.settings.secret_key,
                "CALLCENTER_AUTO_MIGRATE": "false", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter", *args, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()
