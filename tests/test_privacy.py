"""The rights to erasure and to access, over REST and the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from core import appkeys, db
from core.models import (
    AuditEntry,
    Complaint,
    Customer,
    CustomerPhone,
    Interaction,
    Order,
    WebhookDelivery,
    WebhookSubscription,
)
from core.settings import Settings
from privacy.records import begin_erasure, end_erasure
from tests.conftest import _database_params, _database_url, make_settings
from tests.rest import cli, request

PHONE = "+8613800000001"


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _database_url(request.param, tmp_path)


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    (tmp_path / "rec").mkdir()
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=tmp_path / "rec", callback_integration="pbx-1")


async def served_customer(center: Any) -> dict[str, Any]:
    """Customer C1 with an order, a finished call with notes, transcript and recording,
    a complaint, and a search for them in the audit log."""
    await center.add_customer("C1", "Li Lei", PHONE, email="li.lei@example.com")
    agent, ivr = await center.answered_call("alice", "call-1", PHONE)
    await ivr.event("call.ended", "call-1", cause="caller_hangup")
    reply = await agent.request("wrapup.done", call_id="call-1", disposition="resolved",
                                notes="Li Lei lives at 5 Elm Street")
    assert reply["type"] == "ack", reply
    recording = center.settings.recordings_dir / "call-1.wav"
    recording.write_bytes(b"RIFF....")
    async with db.session_scope(center.sessions) as session:
        session.add(Order(customer_id="C1", ordered_on=dt.date(2025, 1, 2), amount=99.5))
        await session.execute(update(Interaction).where(Interaction.call_id == "call-1").values(
            recording_path="call-1.wav", transcript_status="done",
            transcript=[{"speaker": "customer", "text": "my card is broken"}]))
        interaction = await session.scalar(select(Interaction.id).where(
            Interaction.call_id == "call-1"))
        session.add(Complaint(customer_id="C1", interaction_id=interaction,
                              summary="Li Lei: parcel late", evidence=["parcel late"]))
    admin = await center.login_token("root", role="admin")
    status, found = await request(center, "GET", "/api/v1/customers", admin,
                                  params={"q": "Li Lei"})
    assert status == 200 and found["customers"], found
    return {"admin": admin, "agent": agent, "ivr": ivr, "recording": recording}


async def test_an_erased_customer_is_gone_anonymised_and_their_number_is_a_new_caller(
        center: Any) -> None:
    setup = await served_customer(center)
    status, body = await request(center, "DELETE", "/api/v1/customers/C1", setup["admin"])
    assert status == 200, body
    assert body["erased"]["interactions"] == 1 and body["erased"]["recordings"] == 1
    assert not setup["recording"].exists()
    async with center.sessions() as session:
        assert await session.get(Customer, "C1") is None
        assert await session.get(CustomerPhone, PHONE) is None
        assert (await session.scalars(select(Order))).all() == []
        record = await session.scalar(select(Interaction))
        assert (record.customer_id, record.ani, record.notes, record.transcript,
                record.recording_path) == (None, "", None, None, None)
        assert record.disposition == "resolved"  # the center's statistics stay
        complaint = await session.scalar(select(Complaint))
        assert (complaint.summary, complaint.evidence) == ("[erased]", [])
        entries = (await session.scalars(select(AuditEntry))).all()
    erase = [e for e in entries if e.action == "erase"]
    assert len(erase) == 1 and erase[0].actor == "root"
    dumped = orjson.dumps([(e.actor, e.detail) for e in entries]).decode()
    assert "Li Lei" not in dumped and PHONE not in dumped
    status, found = await request(center, "GET", "/api/v1/customers", setup["admin"],
                                  params={"q": "Li Lei"})
    assert (status, found) == (200, {"customers": []})
    status, found = await request(center, "GET", "/api/v1/customers", setup["admin"],
                                  params={"q": PHONE})
    assert (status, found) == (200, {"customers": []})
    await setup["agent"].available()
    await setup["ivr"].offer("call-2", PHONE)
    pop = await setup["agent"].inbox.expect("screen_pop", call_id="call-2")
    assert pop["new_caller"] is True and pop["customer"] is None


async def test_erasing_a_customer_on_a_live_call_is_refused_and_changes_nothing(
        center: Any) -> None:
    await center.add_customer("C2", "Han Meimei", "+8613800000002")
    await center.answered_call("bob", "call-live", "+8613800000002")
    admin = await center.login_token("root", role="admin")
    status, body = await request(center, "DELETE", "/api/v1/customers/C2", admin)
    assert status == 409, body
    assert "live call (call-live)" in body["error"]["message"]
    async with center.sessions() as session:
        assert await session.get(Customer, "C2") is not None
        assert await session.get(CustomerPhone, "+8613800000002") is not None
        assert (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "erase"))).all() == []


async def test_a_caller_still_waiting_or_ringing_is_not_erased_by_the_api_or_the_cli(
        center: Any) -> None:
    """A live call is any call not over: queued (nobody free) or ringing, too; and the CLI
    refuses like the API (exit 1, the call named), nothing changed."""
    await center.add_customer("C6", "Li Na", "+8613800000006")
    await center.add_customer("C7", "Liu Yang", "+8613800000007")
    _, ivr = await center.ringing_call("amy", "call-ringing", "+8613800000007")
    await ivr.offer("call-queued", "+8613800000006")  # amy is busy: it waits
    await ivr.inbox.expect("route.queued", call_id="call-queued")
    admin = await center.login_token("root", role="admin")
    status, body = await request(center, "DELETE", "/api/v1/customers/C6", admin)
    assert status == 409 and "live call (call-queued)" in body["error"]["message"], body
    env = {"CALLCENTER_REDIS_URL": center.settings.redis_url,
           "CALLCENTER_REDIS_PREFIX": center.settings.redis_prefix}
    code, _, stderr = await cli(center, "privacy", "erase", "C7", env=env)
    assert code == 1 and "call-ringing" in stderr, stderr
    async with center.sessions() as session:
        assert await session.get(Customer, "C6") is not None
        assert await session.get(Customer, "C7") is not None
        assert (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "erase"))).all() == []


async def test_erasure_drops_webhook_deliveries_that_name_the_customer(center: Any) -> None:
    await center.add_customer("C3", "Zhang San", "+8613800000003")
    async with db.session_scope(center.sessions) as session:
        sub = WebhookSubscription(url="http://127.0.0.1:9/x", events=["*"], secret="s" * 20)
        session.add(sub)
        await session.flush()
        for n, key in enumerate(("customer:C3", "other-call")):
            session.add(WebhookDelivery(
                subscription_id=sub.id, event_id=f"e{n}", event_type="customer.created",
                order_key=key, seq=f"{n:014d}-0000000000",
                body=orjson.dumps({"data": {"customer_id": "C3" if n == 0 else "C30"}}
                                  ).decode()))
    admin = await center.login_token("root", role="admin")
    status, _ = await request(center, "DELETE", "/api/v1/customers/C3", admin)
    assert status == 200
    async with center.sessions() as session:
        # The erasure's own `customer.erased` event (it names the id only) may be fanned
        # out meanwhile: it is not one of the deliveries about the customer.
        left = (await session.scalars(select(WebhookDelivery.order_key).where(
            WebhookDelivery.event_type != "customer.erased"))).all()
    assert left == ["other-call"]


async def test_the_export_is_everything_stored_about_the_customer(center: Any) -> None:
    setup = await served_customer(center)
    status, document = await request(center, "GET", "/api/v1/customers/C1/export",
                                     setup["admin"])
    assert status == 200, document
    assert document["customer"]["name"] == "Li Lei"
    assert document["customer"]["phones"] == [PHONE]
    assert document["customer"]["email"] == "li.lei@example.com"
    assert [o["amount"] for o in document["orders"]] == [99.5]
    [interaction] = document["interactions"]
    assert interaction["notes"] == "Li Lei lives at 5 Elm Street"
    assert interaction["transcript"][0]["text"] == "my card is broken"
    assert [c["id"] for c in document["calls"]] == ["call-1"]
    assert document["complaints"][0]["summary"] == "Li Lei: parcel late"
    assert any(a["action"] == "search" for a in document["accesses"])


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/v1/customers/C9"), ("GET", "/api/v1/customers/C9/export")])
async def test_only_admins_erase_or_export_and_an_unknown_customer_is_404(
        center: Any, method: str, path: str) -> None:
    await center.add_customer("C9", "Wei", "+8613800000009")
    supervisor = await center.login_token("sue", role="supervisor")
    assert (await request(center, method, path, supervisor))[0] == 403
    admin = await center.login_token("root", role="admin")
    status, body = await request(center, method, path.replace("C9", "nobody"), admin)
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_the_cli_exports_then_erases_a_customer(center: Any, tmp_path: Path) -> None:
    await center.add_customer("C5", "Chen Jing", "+8613800000005")
    env = {"CALLCENTER_REDIS_URL": center.settings.redis_url,
           "CALLCENTER_REDIS_PREFIX": center.settings.redis_prefix}
    out = tmp_path / "c5.json"
    code, stdout, stderr = await cli(center, "privacy", "export", "C5", "--output", str(out),
                                     env=env)
    assert code == 0, stderr
    assert orjson.loads(out.read_bytes())["customer"]["name"] == "Chen Jing"
    code, stdout, stderr = await cli(center, "privacy", "erase", "C5", env=env)
    assert code == 0, stderr
    assert "erased customer C5" in stdout
    code, _, stderr = await cli(center, "privacy", "erase", "C5", env=env)
    assert code == 1 and "no customer 'C5'" in stderr
    async with center.sessions() as session:
        assert await session.get(Customer, "C5") is None
        actors = (await session.scalars(select(AuditEntry.actor).where(
            AuditEntry.action == "erase"))).all()
    assert len(actors) == 1 and actors[0].startswith("cli:")


async def _live_call(center: Any, call_id: str) -> dict[str, str]:
    return await center.server.app[appkeys.ROUTER].store.call(call_id)


async def test_a_call_offered_while_its_customer_is_being_erased_is_a_new_caller(
        center: Any) -> None:
    """The erasure marks the customer in the step that finds them on no live call; an
    offer whose lookup still found them (the deletion not committed yet) is refused by
    Redis and offered again as a new caller: it never pops or records them."""
    await center.add_customer("C8", "Zhou Jie", "+8613800000008")
    app = center.server.app
    redis, keys = app[appkeys.REDIS], app[appkeys.KEYS]
    assert await begin_erasure(redis, keys, "C8", ["+8613800000008"]) == []
    agent = await center.agent("ann")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("call-erasing", "+8613800000008")
    pop = await agent.inbox.expect("screen_pop", call_id="call-erasing")
    assert pop["new_caller"] is True and pop["customer"] is None
    assert not (await _live_call(center, "call-erasing")).get("customer_id")
    # Now the erasure cannot go on past a call it did not see: it was marked before.
    await end_erasure(redis, keys, "C8")  # (as a failed erasure does)
    status, body = await request(center, "DELETE", "/api/v1/customers/C8",
                                 await center.login_token("root", role="admin"))
    assert status == 409 and "call-erasing" in body["error"]["message"], body


async def test_erasure_and_an_offer_at_once_have_one_winner(center: Any) -> None:
    """DELETE and call.offered from the customer's number at the same moment, many
    rounds: either the erasure is refused (the call was live first) and the customer is
    intact, or it went through and the call is a new caller's, never the erased one's."""
    admin = await center.login_token("root", role="admin")
    ivr = await center.ivr()
    outcomes = set()
    for n in range(12):
        customer_id, phone, call_id = f"R{n}", f"+86139000001{n:02d}", f"race-{n}"
        await center.add_customer(customer_id, f"Race {n}", phone)
        (status, body), _ = await asyncio.gather(
            request(center, "DELETE", f"/api/v1/customers/{customer_id}", admin),
            ivr.offer(call_id, phone))
        await ivr.inbox.expect("route.queued", call_id=call_id)
        live = await _live_call(center, call_id)
        async with center.sessions() as session:
            kept = await session.get(Customer, customer_id)
        if status == 409:
            assert kept is not None and live["customer_id"] == customer_id, live
        else:
            assert status == 200, body
            assert kept is None and not live.get("customer_id"), live
            assert orjson.loads(live["pop"])["customer"] is None
        outcomes.add(status)
        await ivr.event("call.ended", call_id, cause="caller_hangup")
    assert outcomes <= {200, 409}


async def test_erasure_clears_a_finished_calls_lingering_live_state(center: Any) -> None:
    """A finished call's hash still in Redis (a callback's marker is kept for a day) holds
    the number and the screen pop: the erasure deletes it."""
    setup = await served_customer(center)
    app = center.server.app
    redis, keys = app[appkeys.REDIS], app[appkeys.KEYS]
    await redis.hset(keys.call("call-1"), mapping={
        "state": "callback", "ani": PHONE, "customer_id": "C1",
        "pop": orjson.dumps({"customer": {"name": "Li Lei"}}).decode()})
    status, body = await request(center, "DELETE", "/api/v1/customers/C1", setup["admin"])
    assert status == 200, body
    assert await redis.exists(keys.call("call-1")) == 0


async def test_a_customer_with_a_pending_callback_is_not_erased(center: Any) -> None:
    """A callback promised to the customer would dial their number and pop them: the
    erasure is refused naming it, like a live call, and nothing changes."""
    await center.add_customer("C10", "Sun Li", "+8613800000010")
    agent = await center.agent("pam")
    status, made = await request(center, "POST", "/api/v1/callbacks", agent.token, json={
        "customer_id": "C10", "due_at": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
        .isoformat()})
    assert status == 201, made
    admin = await center.login_token("root", role="admin")
    status, body = await request(center, "DELETE", "/api/v1/customers/C10", admin)
    assert status == 409 and made["callback_id"] in body["error"]["message"], body
    async with center.sessions() as session:
        assert await session.get(Customer, "C10") is not None
