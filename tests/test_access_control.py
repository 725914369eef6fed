"""Who may call what: roles on every route, graded customer data, tokens, sign-in limits,
websocket origins, and secrets kept out of the logs (docs/security.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from core import db
from core.access import AgentCalls, Grant, grant, mask_email, mask_phone, shape
from core.auth import Forbidden, issue_token
from core.models import Role
from tests.rest import PASSWORD, cli, login, request
from tests.waits import eventually

# Reachable without signing in: the sign-in page and call, health, and static files.
PUBLIC = {("GET", "/login"), ("GET", "/healthz"), ("GET", "/static/{path}"),
          ("POST", "/api/v1/login")}
# Page shells: the same static HTML for everyone, holding no data (see
# test_page_shells_are_the_same_static_html_for_everyone).
SHELLS = {("GET", "/"), ("GET", "/console"), ("GET", "/wallboard"), ("GET", "/reports"),
          ("GET", "/quality"), ("GET", "/admin"), ("GET", "/webhooks"), ("GET", "/forbidden")}
# What a telephony token may still do on the REST API: sign out, read the spec.
TELEPHONY_ALLOWED = {"/api/v1/login", "/api/v1/logout", "/api/v1/openapi.json"}
SAMPLE = {"customer_id": "C1", "complaint_id": "1", "webhook_id": "1", "scope": "center",
          "call_id": "c-1", "form_id": "1", "evaluation_id": "1", "interaction_id": "1",
          "agent_id": "1", "queue": "default", "kind": "not_ready", "callback_id": "cb-1"}


def routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path pattern) the app serves; HEAD stands with its GET."""
    found = {(r.method, r.resource.canonical) for r in app.router.routes()
             if r.method != "HEAD"}
    return sorted(found)


def concrete(center: Any, pattern: str) -> str:
    def value(match: re.Match[str]) -> str:
        if match[1] == "path":
            return "css/app.css"
        return SAMPLE[match[1]]

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", value, pattern)


# Roles on every route ----------------------------------------------------------


async def test_every_route_refuses_anonymous_callers_except_sign_in_health_and_static(center):
    app = center.server.app
    checked = []
    for method, pattern in routes(app):
        if (method, pattern) in PUBLIC | SHELLS:
            continue
        status, body = await request(center, method, concrete(center, pattern))
        assert status == 401, f"{method} {pattern} answered {status} to an anonymous caller"
        assert body["error"]["code"] == "unauthorized"
        checked.append(pattern)
    assert {"/ws/agent", "/ws/telephony", "/ws/wallboard", "/api/v1/audit"} <= set(checked)


async def test_public_routes_answer_without_signing_in(center):
    for method, pattern in sorted(PUBLIC - {("POST", "/api/v1/login")}):
        status, _ = await request(center, method, concrete(center, pattern))
        assert status == 200, pattern


async def test_page_shells_are_the_same_static_html_for_everyone(center):
    token = await center.login_token("sue", "supervisor")
    for _, path in sorted(SHELLS - {("GET", "/")}):
        anonymous = await request(center, "GET", path)
        signed_in = await request(center, "GET", path, token)
        assert anonymous == signed_in and anonymous[1].startswith(b"<!doctype html>")
        assert b"sue" not in anonymous[1].lower()
    assert (await request(center, "GET", "/"))[0] == 302


async def test_telephony_token_gets_403_on_every_rest_route_but_sign_out_and_the_spec(center):
    token = await center.telephony_token()
    for method, pattern in routes(center.server.app):
        if not pattern.startswith(("/api/", "/ws/")) or pattern in TELEPHONY_ALLOWED:
            continue
        if pattern == "/ws/telephony":
            continue
        status, body = await request(center, method, concrete(center, pattern), token)
        assert status == 403, f"{method} {pattern} answered {status} to a telephony token"


async def test_telephony_token_sees_no_customer_data(center):
    await center.add_customer("C1", "张伟", "+8613800000001")
    token = await center.telephony_token()
    for path in ("/api/v1/customers?q=138", "/api/v1/customers/C1",
                 "/api/v1/interactions?customer_id=C1", "/api/v1/complaints?customer_id=C1"):
        status, body = await request(center, "GET", path, token)
        assert status == 403 and "138" not in str(body), path


@pytest.mark.parametrize(("role", "method", "path", "status"), [
    ("agent", "GET", "/api/v1/audit", 403),
    ("supervisor", "GET", "/api/v1/audit", 403),
    ("admin", "GET", "/api/v1/audit", 200),
    ("agent", "GET", "/api/v1/stats", 403),
    ("supervisor", "GET", "/api/v1/stats", 200),
    ("agent", "POST", "/api/v1/complaints/1/escalate", 403),
    ("agent", "POST", "/api/v1/complaints/1/assign", 403),
    ("agent", "POST", "/api/v1/complaints/1/transition", 403),
    ("agent", "GET", "/ws/wallboard", 403),
    ("agent", "GET", "/ws/telephony", 403),
    ("admin", "GET", "/ws/telephony", 403),
])
async def test_each_role_reaches_only_what_it_is_for(center, role, method, path, status):
    token = await center.login_token(f"u-{role}", role)
    assert (await request(center, method, path, token))[0] == status


# Graded customer data ------------------------------------------------------------


def test_phone_numbers_and_emails_are_masked_as_the_console_shows_them():
    assert mask_phone("+8613800000001") == "+86138****0001"
    assert mask_phone("+14155550100") == "+141****0100"
    assert mask_phone("1007") == "****"
    assert mask_email("zhang.wei@example.com") == "z***@example.com"
    assert mask_email(None) is None and mask_email("nonsense") == "n***"


@given(st.text(alphabet="+0123456789", min_size=1, max_size=20))
def test_a_masked_phone_hides_at_least_four_characters_and_keeps_its_length(phone):
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    assert masked.count("*") >= min(4, len(phone.removeprefix("+")))
    assert masked.count("*") >= len(phone) // 4


@given(st.emails())
def test_a_masked_email_shows_only_its_first_letter_and_domain(email):
    local, _, domain = email.rpartition("@")
    assert mask_email(email) == f"{local[0]}***@{domain}"


@pytest.mark.parametrize(("role", "calls", "expected"), [
    (Role.admin, AgentCalls(), Grant.full),
    (Role.supervisor, AgentCalls(), Grant.full),
    (Role.agent, AgentCalls(current="C1"), Grant.full),
    (Role.agent, AgentCalls(current="C2", last="C1"), Grant.masked),
    (Role.agent, AgentCalls(current="C2", last="C3"), Grant.summary),
    (Role.agent, AgentCalls(), Grant.summary),
    (Role.telephony, AgentCalls(current="C1"), Grant.none),
])
def test_grant_follows_role_and_the_agents_calls(role, calls, expected):
    assert grant(role, calls, "C1") is expected


def test_summary_withholds_history_and_value_and_masks_contact_details():
    profile = {"id": "C1", "name": "Zhang", "phones": ["+8613800000001"], "email": "z@x.cn",
               "clv": 1234.5, "churn_risk": 0.7, "recent_interactions": [{"id": 1}],
               "interactions": [{"id": 1, "ani": "+8613800000001"}], "tier": "gold"}
    summary = shape(profile, Grant.summary)
    assert summary == {"id": "C1", "name": "Zhang", "phones": ["+86138****0001"],
                       "email": "z***@x.cn", "clv": None, "churn_risk": None,
                       "recent_interactions": [], "interactions": [], "tier": "gold"}
    masked = shape(profile, Grant.masked)
    assert masked["clv"] == 1234.5 and masked["interactions"][0]["ani"] == "+86138****0001"
    assert shape(profile, Grant.full) is profile
    with pytest.raises(Forbidden):
        shape(profile, Grant.none)


async def _complete_call(center: Any, ivr: Any, agent: Any, call_id: str, ani: str) -> None:
    await ivr.offer(call_id, ani)
    await agent.inbox.expect("screen_pop", call_id=call_id)
    await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
    await ivr.event("call.ended", call_id, cause="normal")
    reply = await agent.request("wrapup.done", call_id=call_id, disposition="resolved",
                                notes="all good")
    assert reply["type"] == "ack", reply


async def test_agent_sees_its_caller_in_full_its_last_caller_masked_and_others_in_summary(center):
    await center.add_customer("C1", "张伟", "+8613800000001", email="zhang.wei@example.com",
                              clv=900.0)
    await center.add_customer("C2", "Li Na", "+8613800000002", email="li.na@example.com",
                              clv=50.0)
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("call-1", "+8613800000001")
    await agent.inbox.expect("screen_pop", call_id="call-1")

    status, during = await request(center, "GET", "/api/v1/customers/C1", agent.token)
    assert status == 200 and during["access"] == "full"
    assert during["phones"] == ["+8613800000001"] and during["email"] == "zhang.wei@example.com"

    await ivr.event("call.answered", "call-1", agent_id=agent.agent_id)
    await ivr.event("call.ended", "call-1")
    await agent.request("wrapup.done", call_id="call-1", disposition="resolved", notes="ok")
    await agent.inbox.expect("agent.state", state="available")

    _, after = await request(center, "GET", "/api/v1/customers/C1", agent.token)
    assert after["access"] == "masked" and after["phones"] == ["+86138****0001"]
    assert after["email"] == "z***@example.com" and after["clv"] == 900.0
    assert [row["call_id"] for row in after["interactions"]] == ["call-1"]
    assert after["interactions"][0]["ani"] == "+86138****0001"

    _, other = await request(center, "GET", "/api/v1/customers/C2", agent.token)
    assert other["access"] == "summary" and other["phones"] == ["+86138****0002"]
    assert other["clv"] is None and other["interactions"] == []
    status, _ = await request(center, "GET", "/api/v1/interactions?customer_id=C2", agent.token)
    assert status == 403
    status, history = await request(center, "GET", "/api/v1/interactions?customer_id=C1",
                                    agent.token)
    assert status == 200 and history["interactions"][0]["ani"] == "+86138****0001"


async def test_agent_search_masks_phones_and_supervisor_sees_them(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    agent_token = await center.login_token("amy", "agent")
    supervisor_token = await center.login_token("sue", "supervisor")
    _, found = await request(center, "GET", "/api/v1/customers?q=zhang", agent_token)
    assert found["customers"][0]["phones"] == ["+86138****0001"]
    _, found = await request(center, "GET", "/api/v1/customers?q=zhang", supervisor_token)
    assert found["customers"][0]["phones"] == ["+8613800000001"]
    _, profile = await request(center, "GET", "/api/v1/customers/C1", supervisor_token)
    assert profile["access"] == "full" and profile["phones"] == ["+8613800000001"]


# Tokens -------------------------------------------------------------------------------


async def _token(center: Any, role: Role, ttl: dt.timedelta, agent_id: int | None = None,
                 secret: str | None = None) -> str:
    async with db.session_scope(center.sessions) as session:
        return await issue_token(session, secret or center.settings.secret_key, role=role,
                                 name="someone", agent_id=agent_id, ttl=ttl)


async def test_expired_or_foreign_signed_tokens_are_refused(center):
    agent_id = await center.add_agent("amy")
    expired = await _token(center, Role.admin, dt.timedelta(seconds=-1), agent_id)
    foreign = await _token(center, Role.admin, dt.timedelta(hours=1), agent_id,
                           secret="another-deployment-key-of-enough-length")
    for token in (expired, foreign, "not.a.jwt", expired.rsplit(".", 1)[0] + ".xyz"):
        status, body = await request(center, "GET", "/api/v1/me", token)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{_ws(center)}/ws/agent",
                                     additional_headers={"Authorization": f"Bearer {token}"})
        assert refused.value.response.status_code == 401


async def test_token_with_the_none_algorithm_is_refused(center):
    import jwt

    token = jwt.encode({"jti": "x", "role": "admin", "sub": "mallory",
                        "exp": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
                       key=None, algorithm="none")
    assert (await request(center, "GET", "/api/v1/audit", token))[0] == 401


async def test_logout_revokes_the_token_for_rest_and_websockets(center):
    await center.add_agent("amy")
    _, signed_in = await login(center, "amy")
    token = signed_in["token"]
    assert (await request(center, "GET", "/api/v1/me", token))[0] == 200
    assert (await request(center, "POST", "/api/v1/logout", token))[0] == 200
    assert (await request(center, "GET", "/api/v1/me", token))[0] == 401
    assert (await request(center, "POST", "/api/v1/ws-ticket", token))[0] == 401
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{_ws(center)}/ws/agent",
                                 additional_headers={"Authorization": f"Bearer {token}"})


async def test_websocket_ticket_works_once(center):
    await center.add_agent("amy")
    _, signed_in = await login(center, "amy")
    _, issued = await request(center, "POST", "/api/v1/ws-ticket", signed_in["token"])
    url = f"{_ws(center)}/ws/agent?ticket={issued['ticket']}"
    async with websockets.connect(url) as ws:
        assert '"agent.state"' in await ws.recv()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 401


async def test_telephony_token_revoked_with_the_cli_is_refused_and_its_socket_closed(
        center, monkeypatch):
    monkeypatch.setattr("core.web.TOKEN_RECHECK_S", 0.2)
    token = await center.telephony_token("pbx-9")
    ivr = await center.ivr("pbx-9")  # a second token of the same integration, connected
    await ivr.offer("before-revoke", "+8613800000001")
    result = await cli(center, "token", "revoke", "--name", "pbx-9")
    assert result[0] == 0 and "revoked 2 token(s) of pbx-9" in result[1]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{_ws(center)}/ws/telephony",
                                 additional_headers={"Authorization": f"Bearer {token}"})
    assert refused.value.response.status_code == 401
    assert await _closed_with(ivr) == 1008


async def test_signing_out_closes_the_consoles_open_socket(center, monkeypatch):
    monkeypatch.setattr("core.web.TOKEN_RECHECK_S", 0.2)
    agent = await center.agent("amy")
    assert (await request(center, "POST", "/api/v1/logout", agent.token))[0] == 200
    assert await _closed_with(agent) == 1008


async def test_signing_out_closes_an_open_wallboard(center, monkeypatch):
    monkeypatch.setattr("core.web.TOKEN_RECHECK_S", 0.2)
    token = await center.login_token("sue", "supervisor")
    async with websockets.connect(f"{_ws(center)}/ws/wallboard",
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert '"wallboard.snapshot"' in await ws.recv()
        assert (await request(center, "POST", "/api/v1/logout", token))[0] == 200
        assert await _close_code(ws) == 1008


@pytest.mark.parametrize(("path", "role"), [("/ws/agent", Role.agent),
                                            ("/ws/wallboard", Role.supervisor)])
async def test_an_open_socket_closes_when_its_token_expires(center, monkeypatch, path, role):
    monkeypatch.setattr("core.web.TOKEN_RECHECK_S", 0.2)
    agent_id = await center.add_agent("amy", role=role.value)
    # JWT expiry is in whole seconds: a shorter life could end before the handshake.
    token = await _token(center, role, dt.timedelta(seconds=3), agent_id)
    async with websockets.connect(f"{_ws(center)}{path}",
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await _close_code(ws, timeout=8) == 1008


async def _closed_with(client: Any) -> int | None:
    await asyncio.wait_for(asyncio.shield(client._reader), timeout=5)
    return client.ws.close_code


async def _close_code(ws: Any, timeout: float = 5) -> int | None:
    """Read (the wallboard streams every second) until the server closes the socket."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


# Sign-in limits -------------------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_user_from_every_address(center):
    await center.add_agent("amy")
    for _ in range(5):
        assert (await login(center, "amy", "wrong-password"))[0] == 401
    status, body = await login(center, "amy", source=("127.0.0.2", 0))
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert "token" not in body


async def test_five_failures_from_one_address_lock_that_address_for_every_user(center):
    for name in ("amy", "bob"):
        await center.add_agent(name)
    attacker = ("127.0.0.3", 0)
    for n in range(5):
        assert (await login(center, f"guess-{n}", "wrong-password", attacker))[0] == 401
    assert (await login(center, "amy", source=attacker))[0] == 429
    assert (await login(center, "bob", source=("127.0.0.4", 0)))[0] == 200


async def test_unknown_user_and_wrong_password_get_the_same_answer(center):
    await center.add_agent("amy")
    unknown = await login(center, "nobody", "wrong-password", ("127.0.0.5", 0))
    wrong = await login(center, "amy", "wrong-password", ("127.0.0.6", 0))
    assert unknown == wrong


# Websocket origins ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/agent", "/ws/wallboard"])
async def test_browser_websocket_from_another_origin_is_refused(center, path):
    token = await center.login_token("sue", "supervisor")
    auth = {"Authorization": f"Bearer {token}"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{_ws(center)}{path}", origin="https://evil.example",
                                 additional_headers=auth)
    assert refused.value.response.status_code == 403
    async with websockets.connect(f"{_ws(center)}{path}", origin=center.url,
                                  additional_headers=auth) as ws:
        assert await ws.recv()


# Secrets never logged -------------------------------------------------------------------


async def test_passwords_tokens_and_tickets_never_reach_the_logs(center, caplog):
    caplog.set_level(logging.DEBUG)
    await center.add_agent("amy")
    await login(center, "amy", "a-wrong-secret-password", ("127.0.0.7", 0))
    _, signed_in = await login(center, "amy")
    token = signed_in["token"]
    _, issued = await request(center, "POST", "/api/v1/ws-ticket", token)
    async with websockets.connect(f"{_ws(center)}/ws/agent?ticket={issued['ticket']}") as ws:
        await ws.recv()
    await request(center, "POST", "/api/v1/logout", token)
    code, out, err = await cli(center, "token", "create", "--name", "pbx-7",
                                env={"CALLCENTER_LOG_LEVEL": "DEBUG"})
    assert code == 0 and out.count(".") == 2
    # The websocket's access-log line is written after it closes.
    await eventually(lambda: any(r.name == "aiohttp.access" and "/ws/agent" in r.getMessage()
                                 for r in caplog.records), timeout=10)
    # The test's own websocket client logs its handshake; only the service is checked.
    server_logs = "\n".join(r.getMessage() for r in caplog.records
                            if not r.name.startswith("websockets"))
    assert server_logs, "nothing was logged: the check would prove nothing"
    for secret in (PASSWORD, "a-wrong-secret-password", token, issued["ticket"]):
        assert secret not in server_logs
    assert out.strip() not in err


# Helpers -------------------------------------------------------------------------------


def _ws(center: Any) -> str:
    return center.url.replace("http", "ws", 1)
