"""Outbound webhooks through the running service: subscriptions over REST, signed
deliveries of a call's events in order, retries, dead letters and replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.conftest import make_settings
from tests.rest import request
from tests.webhook_receiver import Receiver, wait_for

SECRET = "whsec_test_secret_0123456789"


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         webhook_backoff_s=0.05, webhook_backoff_max_s=0.2,
                         webhook_timeout_s=0.5, webhook_retry_hours=1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(secret=SECRET).start()
    yield server
    await server.close()


async def subscribe(center: Any, token: str, url: str, events: list[str],
                    **fields: Any) -> dict[str, Any]:
    status, body = await request(center, "POST", "/api/v1/webhooks", token,
                                 json={"url": url, "events": events, "secret": SECRET,
                                       **fields})
    assert status == 201, body
    return body


async def deliveries(center: Any, token: str, webhook_id: int, **query: str) -> list[Any]:
    status, body = await request(center, "GET", f"/api/v1/webhooks/{webhook_id}/deliveries",
                                 token, params=query)
    assert status == 200, body
    return body["deliveries"]


async def test_a_calls_events_reach_the_receiver_signed_and_in_order(
        center: Any, receiver: Receiver) -> None:
    admin = await center.login_token("root", role="admin")
    await subscribe(center, admin, receiver.url, ["*"])
    agent, ivr = await center.answered_call("alice", "call-1", "+8613800000001")
    await ivr.event("call.ended", "call-1", cause="caller_hangup")
    reply = await agent.request("wrapup.done", call_id="call-1", disposition="resolved",
                                notes="refund sent")
    assert reply["type"] == "ack", reply
    await ivr.event("survey.result", "call-1", score=4)
    await wait_for(lambda: len(receiver.received) >= 5, what="five events")
    assert receiver.types() == ["call.offered", "call.answered", "call.ended", "wrapup.done",
                                "survey.result"]
    assert receiver.bad_signatures == 0
    wrap = receiver.received[3]["data"]
    assert wrap["call_id"] == "call-1"
    assert (wrap["disposition"], wrap["notes"]) == ("resolved", "refund sent")
    assert receiver.received[4]["data"] == {"call_id": "call-1", "score": 4}
    assert len({e["id"] for e in receiver.received}) == 5


async def test_a_failing_receiver_gets_the_event_after_retries_and_the_log_says_so(
        center: Any, receiver: Receiver) -> None:
    receiver.fail_first = 3
    admin = await center.login_token("root", role="admin")
    hook = await subscribe(center, admin, receiver.url, ["call.offered"])
    ivr = await center.ivr()
    await ivr.offer("call-2", "+8613800000002")
    await wait_for(lambda: receiver.types() == ["call.offered"], what="the retried event")
    [logged] = await deliveries(center, admin, hook["id"])
    assert (logged["status"], logged["attempts"]) == ("delivered", 4)
    assert receiver.requests == 4


async def test_a_receiver_that_never_answers_in_time_is_dead_lettered_then_replayed(
        center: Any, receiver: Receiver) -> None:
    receiver.stall_s = 2.0
    admin = await center.login_token("root", role="admin")
    hook = await subscribe(center, admin, receiver.url, ["call.offered"])
    # A retry window shorter than the backoff makes the first timeout final.
    status, _ = await request(center, "PATCH", f"/api/v1/webhooks/{hook['id']}", admin,
                              json={"active": True})
    assert status == 200
    center.server.app[_webhooks_key()].sender.policy = _short_window()
    ivr = await center.ivr()
    await ivr.offer("call-3", "+8613800000003")

    async def dead() -> list[Any]:
        return await deliveries(center, admin, hook["id"], status="dead")

    deadline = time.monotonic() + 10
    while not (rows := await dead()):
        assert time.monotonic() < deadline, "never dead-lettered"
    assert "no answer within" in rows[0]["last_error"]
    receiver.stall_s = 0.0
    # Generous again for the replay: a loaded machine must not time it out a second time.
    center.server.app[_webhooks_key()].sender.policy = _patient()
    status, body = await request(center, "POST", f"/api/v1/webhooks/{hook['id']}/replay",
                                 admin, json={"delivery_id": rows[0]["id"]})
    assert (status, body) == (200, {"replayed": 1})
    # The receiver may still finish the stalled first request (the server side is not
    # cancelled when the sender gives up): judge the replay by its delivery's status.
    deadline = time.monotonic() + 20
    while not await deliveries(center, admin, hook["id"], status="delivered"):
        assert time.monotonic() < deadline, "the replayed delivery was never delivered"
        await asyncio.sleep(0.1)
    assert "call.offered" in receiver.types()


@pytest.mark.parametrize("failing", [False, True], ids=["slow", "slow-and-failing"])
async def test_a_slow_receiver_does_not_slow_the_call_path(
        center: Any, receiver: Receiver, failing: bool) -> None:
    receiver.stall_s = 0.4
    receiver.fail_first = 1000 if failing else 0  # then every answer is a 500, late
    admin = await center.login_token("root", role="admin")
    await subscribe(center, admin, receiver.url, ["*"])
    ivr = await center.ivr()
    started = time.monotonic()
    for n in range(20):
        await ivr.offer(f"slow-{n}", f"+86138000001{n:02d}")
    elapsed = time.monotonic() - started
    # Twenty offers acknowledged while each delivery takes 0.4 s to be answered.
    assert elapsed < 20 * 0.4 / 2, elapsed
    if failing:  # being retried meanwhile, and the calls went on
        await wait_for(lambda: receiver.requests >= 20, timeout=30, what="all attempts")
        return
    await wait_for(lambda: len(receiver.received) == 20, timeout=30, what="all offers")


@pytest.mark.parametrize(("body", "message"), [
    ({"url": "ftp://example.com/hook", "events": ["call.offered"]}, "http or https"),
    ({"url": "http://169.254.169.254/latest", "events": ["call.offered"]}, "link-local"),
    ({"url": "http://[fe80::1]:8000/", "events": ["call.offered"]}, "link-local"),
    # Hosts that are not written as an address but resolve to the metadata service's.
    ({"url": "http://2852039166/latest", "events": ["call.offered"]}, "link-local"),
    ({"url": "http://0xa9.0xfe.0xa9.0xfe/latest", "events": ["call.offered"]}, "link-local"),
    ({"url": "http://[::ffff:169.254.169.254]/", "events": ["call.offered"]}, "link-local"),
    ({"url": "http://user:pw@127.0.0.1:9/x", "events": ["call.offered"]}, "credentials"),
    ({"url": "http://127.0.0.1:9/x", "events": ["call.nonsense"]}, "unknown event type"),
    ({"url": "http://127.0.0.1:9/x", "events": []}, "events"),
    ({"url": "http://no-such-host.invalid/x", "events": ["call.offered"]}, "resolve"),
])
async def test_a_bad_subscription_is_refused_and_nothing_is_stored(
        center: Any, body: dict[str, Any], message: str) -> None:
    admin = await center.login_token("root", role="admin")
    status, answer = await request(center, "POST", "/api/v1/webhooks", admin, json=body)
    assert status == 400, answer
    assert message in answer["error"]["message"]
    assert (await request(center, "GET", "/api/v1/webhooks", admin))[1] == {"webhooks": []}


async def test_a_webhook_pointing_at_the_service_itself_is_refused(center: Any) -> None:
    admin = await center.login_token("root", role="admin")
    status, answer = await request(center, "POST", "/api/v1/webhooks", admin,
                                   json={"url": f"{center.url}/api/v1/login",
                                         "events": ["call.offered"]})
    assert status == 400, answer
    assert "this service itself" in answer["error"]["message"]


async def test_a_webhook_naming_the_service_another_way_is_refused(center: Any) -> None:
    """`localhost` instead of the address the service was reached at: the name resolves
    to the service's own address and port."""
    admin = await center.login_token("root", role="admin")
    port = center.url.rsplit(":", 1)[1]
    status, answer = await request(center, "POST", "/api/v1/webhooks", admin,
                                   json={"url": f"http://localhost:{port}/hook",
                                         "events": ["call.offered"]})
    assert status == 400, answer
    assert "this service itself" in answer["error"]["message"]


@pytest.mark.parametrize(("change", "message"), [
    ({"url": "ftp://example.com/hook"}, "http or https"),
    ({"url": "http://169.254.169.254/latest"}, "link-local"),
    ({"events": ["call.offered", "call.nonsense"]}, "unknown event type"),
    ({"events": []}, "events"),
])
async def test_a_bad_change_is_refused_and_the_subscription_is_unchanged(
        center: Any, receiver: Receiver, change: dict[str, Any], message: str) -> None:
    admin = await center.login_token("root", role="admin")
    hook = await subscribe(center, admin, receiver.url, ["call.offered"])
    status, answer = await request(center, "PATCH", f"/api/v1/webhooks/{hook['id']}", admin,
                                   json={**change, "active": False})
    assert status == 400, answer
    assert message in answer["error"]["message"]
    status, now = await request(center, "GET", f"/api/v1/webhooks/{hook['id']}", admin)
    assert status == 200
    assert (now["url"], now["events"], now["active"]) == (receiver.url, ["call.offered"], True)


async def test_only_admins_manage_webhooks_and_the_secret_is_shown_once(
        center: Any, receiver: Receiver) -> None:
    supervisor = await center.login_token("sue", role="supervisor")
    status, _ = await request(center, "GET", "/api/v1/webhooks", supervisor)
    assert status == 403
    admin = await center.login_token("root", role="admin")
    status, created = await request(center, "POST", "/api/v1/webhooks", admin,
                                    json={"url": receiver.url, "events": ["complaint.*"]})
    assert status == 201 and created["secret"].startswith("whsec_")
    status, shown = await request(center, "GET", f"/api/v1/webhooks/{created['id']}", admin)
    assert status == 200 and "secret" not in shown
    status, _ = await request(center, "DELETE", f"/api/v1/webhooks/{created['id']}", admin)
    assert status == 204
    status, _ = await request(center, "GET", f"/api/v1/webhooks/{created['id']}", admin)
    assert status == 404


def _webhooks_key() -> Any:
    from core.appkeys import WEBHOOKS
    return WEBHOOKS


def _patient() -> Any:
    import datetime as dt

    from webhooks.delivery import Policy
    return Policy(timeout_s=10.0, retry_for=dt.timedelta(minutes=5), backoff_s=0.2)


def _short_window() -> Any:
    import datetime as dt

    from webhooks.delivery import Policy
    return Policy(timeout_s=0.3, retry_for=dt.timedelta(seconds=0.1), backoff_s=1.0)


async def test_complaint_transitions_and_new_customers_reach_the_receiver(
        center: Any, receiver: Receiver) -> None:
    admin = await center.login_token("root", role="admin")
    await subscribe(center, admin, receiver.url, ["complaint.*", "customer.created"])
    status, customer = await request(center, "POST", "/api/v1/customers", admin,
                                     json={"name": "Wang Fang", "phone": "+8613900000009"})
    assert status == 201, customer
    status, complaint = await request(center, "POST", "/api/v1/complaints", admin,
                                      json={"customer_id": customer["id"],
                                            "summary": "late delivery"})
    assert status == 201, complaint
    status, _ = await request(center, "POST",
                              f"/api/v1/complaints/{complaint['id']}/transition", admin,
                              json={"to": "validated", "cause_side": "company"})
    assert status == 200
    await wait_for(lambda: len(receiver.received) == 3, what="three events")
    assert receiver.types() == ["customer.created", "complaint.received",
                                "complaint.validated"]
    assert receiver.received[0]["data"]["phone"] == "+8613900000009"


async def test_a_callbacks_events_reach_the_receiver_under_callback_star(
        center: Any, receiver: Receiver) -> None:
    admin = await center.login_token("root", role="admin")
    await subscribe(center, admin, receiver.url, ["callback.*"])
    ivr = await center.ivr()
    await ivr.offer("cb-hook", "+8613800000001")
    await ivr.event("callback.requested", "cb-hook")
    accepted = await ivr.inbox.expect("callback.accepted", call_id="cb-hook")
    agent = await center.agent("carl")
    await agent.available()
    await ivr.inbox.expect("route.callback", callback_id=accepted["callback_id"])
    await ivr.event("callback.result", accepted["callback_id"],
                    callback_id=accepted["callback_id"], outcome="connected")
    await wait_for(lambda: len(receiver.received) >= 2, what="two callback events")
    assert receiver.types() == ["callback.requested", "callback.connected"]
    requested, connected = (e["data"] for e in receiver.received)
    assert requested["callback_id"] == accepted["callback_id"]
    assert (requested["call_id"], requested["number"], requested["source"]) == (
        "cb-hook", "+8613800000001", "caller")
    assert (connected["agent_id"], connected["attempts"], connected["outcome"]) == (
        agent.agent_id, 1, "connected")


async def test_a_complaint_the_sla_sweep_escalates_reaches_the_receiver(
        center: Any, receiver: Receiver) -> None:
    """Escalation by the SLA sweep (no person involved) is a `complaint.escalated` like a
    supervisor's."""
    import datetime as dt

    from sqlalchemy import update

    from core.appkeys import COMPLAINTS
    from core.models import Complaint

    admin = await center.login_token("root", role="admin")
    await subscribe(center, admin, receiver.url, ["complaint.escalated"])
    await center.add_customer("SLA1", "Zhao Lei", "+8613900000077")
    status, complaint = await request(center, "POST", "/api/v1/complaints", admin,
                                      json={"customer_id": "SLA1", "summary": "no refund"})
    assert status == 201, complaint
    async with center.sessions() as session, session.begin():
        await session.execute(update(Complaint).where(Complaint.id == complaint["id"]).values(
            sla_due_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    [escalation] = await center.server.app[COMPLAINTS].sweep()
    await wait_for(lambda: receiver.types() == ["complaint.escalated"], what="the escalation")
    data = receiver.received[0]["data"]
    assert (data["complaint_id"], data["escalation_level"]) == (complaint["id"],
                                                                escalation.level)
