"""`GET /api/v1/openapi.json`: the REST API's OpenAPI 3.1 document (openapi.yaml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from core.web import authenticate

SPEC = Path(__file__).with_name("openapi.yaml")


@cache
def document() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as f:
        return yaml.safe_load(f)  # type: ignore[no-any-return]


async def openapi_json(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(document())


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)
