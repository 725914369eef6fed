"""The REST API against its own OpenAPI document: every /api/v1 route is described, and
requests generated from the document (valid ones and invalid ones) never get a 5xx.

Schemathesis speaks `requests`, which blocks; it runs in a worker thread while the
test's event loop serves.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from core import db
from core.models import Complaint
from tests.rest import request

EXAMPLES_PER_OPERATION = 25
# Signing out would revoke the token the fuzzer uses for everything after it (so would a
# forced sign-out or a new password of the fuzzer's own user, agent 1).
NOT_FUZZED = {("POST", "/api/v1/logout"), ("POST", "/api/v1/admin/agents/{agent_id}/sign-out"),
              ("POST", "/api/v1/admin/agents/{agent_id}/password")}


def _spec_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")}


def _app_operations(app: Any) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method != "HEAD" and route.resource.canonical.startswith("/api/v1/")}


async def test_every_api_route_is_in_the_openapi_document_and_nothing_else(center):
    token = await center.login_token("ada", "admin")
    status, document = await request(center, "GET", "/api/v1/openapi.json", token)
    assert status == 200 and document["openapi"].startswith("3.1")
    in_app, in_spec = _app_operations(center.server.app), _spec_operations(document)
    assert in_app - in_spec == set(), "routes the OpenAPI document does not describe"
    assert in_spec - in_app == set(), "operations the app does not serve"
    for path in document["paths"]:  # path parameters are named as the router names them
        assert re.fullmatch(r"(/[\w.-]+|/\{\w+\})+", path), path


async def test_the_openapi_document_needs_a_signed_in_caller(center):
    assert (await request(center, "GET", "/api/v1/openapi.json"))[0] == 401


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(600)  # 25 requests for each of some 50 operations, on a shared machine
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_generated_requests_never_get_a_server_error(center, mode):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    async with db.session_scope(center.sessions) as session:
        session.add(Complaint(customer_id="C1", category="delivery", state="received"))
    token = await center.login_token("ada", "admin")
    _, document = await request(center, "GET", "/api/v1/openapi.json", token)
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in NOT_FUZZED]
    failures: list[str] = []
    counted = await asyncio.to_thread(_fuzz, operations, mode, center.url, token, failures)
    print(f"\n{mode.value}: {counted} requests over {len(operations)} operations")
    assert failures == []
    assert counted >= len(operations) * 5


def _fuzz(operations: list[Any], mode: GenerationMode, base_url: str, token: str,
          failures: list[str]) -> int:
    counted = 0
    with requests.Session() as http:
        for operation in operations:
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                nonlocal counted
                # The generated case may carry its own (invalid) Authorization; ours wins.
                response = case.call(base_url=base_url, session=http, timeout=10,
                                     headers={"Authorization": f"Bearer {token}"})
                counted += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} "
                                    f"query={case.query} body={case.body!r:.300} -> "
                                    f"{response.status_code} {response.text[:200]}")

            call()
    return counted
