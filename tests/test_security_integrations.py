"""PBX integrations are isolated (issue 24, item 4): each call belongs to the integration
that offered it, and event ids are scoped per integration."""

from __future__ import annotations

from sqlalchemy import select

from core.models import Interaction, ProcessedEvent
from cti.telephony import scoped_event_id
from tests.conftest import make_settings


async def test_another_integration_cannot_answer_end_or_score_a_call(center) -> None:
    agent, owner = await center.ringing_call("amy", "c-1", "+8613800000001")
    other = await center.ivr("pbx-2")
    for type_, fields in [("call.answered", {"agent_id": agent.agent_id}),
                          ("call.ended", {"cause": "normal"}),
                          ("survey.result", {"score": 1})]:
        event_id = await other.send(type_, "c-1", **fields)
        reply = await other.reply_to(event_id)
        assert (reply["type"], reply["code"]) == ("error", "wrong_integration"), reply
    # Nothing changed: the owner answers and ends the call as usual.
    await owner.event("call.answered", "c-1", agent_id=agent.agent_id)
    await owner.event("call.ended", "c-1", cause="normal")
    reply = await other.reply_to(await other.send("survey.result", "c-1", score=1))
    assert reply.get("code") == "wrong_integration", "a finished call is still the owner's"
    await owner.event("survey.result", "c-1", score=5)
    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(Interaction.call_id == "c-1"))
    assert (record.outcome, record.survey_score) == ("answered", 5)


async def test_one_integrations_event_id_is_not_a_duplicate_for_another(center) -> None:
    first, second = await center.ivr("pbx-1"), await center.ivr("pbx-2")
    a = await first.send("call.offered", "c-a", event_id="e-1", ani="+8613800000001")
    assert (await first.reply_to(a))["duplicate"] is False
    b = await second.send("call.offered", "c-b", event_id="e-1", ani="+8613800000002")
    ack = await second.reply_to(b)
    assert (ack["type"], ack["event_id"], ack["duplicate"]) == ("ack", "e-1", False)
    again = await second.send("call.offered", "c-b", event_id="e-1", ani="+8613800000002")
    assert (await second.reply_to(again))["duplicate"] is True, "its own resend still is"
    async with center.sessions() as session:
        stored = set(await session.scalars(select(ProcessedEvent.event_id)))
    assert {"pbx-1/e-1", "pbx-2/e-1"} <= stored
    async with center.sessions() as session:
        calls = set(await session.scalars(select(Interaction.call_id)))
    assert {"c-a", "c-b"} <= calls, "the second PBX's call was offered"


def test_a_scoped_event_id_fits_the_record_whatever_its_length() -> None:
    assert scoped_event_id("pbx-1", "e-1") == "pbx-1/e-1"
    long = scoped_event_id("pbx-1", "x" * 200)
    assert len(long) <= 200 and long.startswith("pbx-1/#")
    assert long != scoped_event_id("pbx-1", "y" * 200)


async def test_a_site_may_let_its_pbxs_hand_calls_over(aiohttp_server, database_url, redis_url,
                                                        redis_prefix, tmp_path, sessions):
    from callcenter.app import create_app
    from tests.conftest import Center

    settings = make_settings(database_url, redis_url, redis_prefix, tmp_path,
                             integration_handover=True)
    center = Center(await aiohttp_server(create_app(settings)), sessions, settings)
    try:
        agent, _ = await center.ringing_call("amy", "c-1", "+8613800000001")
        other = await center.ivr("pbx-2")
        await other.event("call.answered", "c-1", agent_id=agent.agent_id)
    finally:
        await center.close()
