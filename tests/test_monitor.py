"""Live monitoring (issue 20): a supervisor listens to, whispers to and barges into a live
call through `POST /api/v1/calls/{id}/monitor` -> `route.monitor` -> `control.result`;
who may; what is refused; the audit; the agent's notice; the call's end and transfer
clearing it; and the races between supervisors, and with the call's end, on one node and
two."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.app import create_app
from core import appkeys
from core.models import AuditEntry
from core.settings import Settings
from tests.conftest import Center
from tests.rest import request
from tests.waits import eventually

ROUNDS = 8


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


async def _monitor(center: Any, call_id: str, token: str, mode: str) -> tuple[int, Any]:
    return await request(center, "POST", f"/api/v1/calls/{call_id}/monitor", token,
                         json={"mode": mode})


async def _audit(center: Any, call_id: str) -> list[AuditEntry]:
    async with center.sessions() as session:
        return list((await session.scalars(select(AuditEntry).where(
            AuditEntry.object_type == "call", AuditEntry.object_id == call_id,
            AuditEntry.action.like("monitor.%")).order_by(AuditEntry.id))).all())


async def _monitor_hash(center: Any, call_id: str) -> dict[str, str]:
    app = center.server.app
    return await app[appkeys.MONITOR].steps.current(call_id)


async def _notices(agent: Any) -> list[dict[str, Any]]:
    return [m for m in agent.inbox.messages if m.get("type") == "monitor.notice"]


async def test_a_supervisor_listens_whispers_barges_and_stops_through_protocol_v1(
        center: Any) -> None:
    agent, ivr = await center.answered_call("amy", "c1", "+8613800000001")
    obeying = ivr.obey_monitor()
    sup = await center.login_token("sue", "supervisor")

    status, body = await _monitor(center, "c1", sup, "listen")
    assert status == 200, body
    assert body == {"ok": True, "call_id": "c1", "mode": "listen", "previous": None,
                    "command_id": ivr.monitored[0]["command_id"]}
    sent = ivr.monitored[0]
    assert {k: sent[k] for k in ("type", "call_id", "supervisor_extension", "mode")} == {
        "type": "route.monitor", "call_id": "c1", "supervisor_extension": "ext-sue",
        "mode": "listen"}
    assert sent["agent_id"] == agent.agent_id and sent["extension"] == "ext-amy"
    assert (await _monitor_hash(center, "c1"))["mode"] == "listen"

    for mode, previous in (("whisper", "listen"), ("barge", "whisper"), ("listen", "barge")):
        status, body = await _monitor(center, "c1", sup, mode)
        assert status == 200 and body["mode"] == mode and body["previous"] == previous, body
        assert ivr.monitored[-1]["mode"] == mode
        assert ivr.monitored[-1]["previous_mode"] == previous
    # Listening is silent; whisper and barge are shown, and their end.
    first = await agent.inbox.expect("monitor.notice", call_id="c1")
    assert first == {"type": "monitor.notice", "call_id": "c1", "mode": "whisper",
                     "supervisor": "Sue"}
    assert (await agent.inbox.expect("monitor.notice", call_id="c1"))["mode"] == "barge"
    assert (await agent.inbox.expect("monitor.notice", call_id="c1"))["mode"] == "none"

    status, body = await _monitor(center, "c1", sup, "listen")  # already: nothing sent
    assert status == 200 and body["command_id"] is None and len(ivr.monitored) == 4
    status, body = await _monitor(center, "c1", sup, "stop")
    assert status == 200 and body == {"ok": True, "call_id": "c1", "mode": "stop",
                                      "previous": "listen",
                                      "command_id": ivr.monitored[-1]["command_id"]}
    assert ivr.monitored[-1]["mode"] == "stop"
    assert await _monitor_hash(center, "c1") == {}
    entries = await _audit(center, "c1")
    assert [(e.action, e.detail["mode"], e.actor) for e in entries] == [
        ("monitor.start", "listen", "sue"), ("monitor.switch", "whisper", "sue"),
        ("monitor.switch", "barge", "sue"), ("monitor.switch", "listen", "sue"),
        ("monitor.stop", "stop", "sue")]
    assert entries[0].detail["agent_id"] == agent.agent_id
    assert entries[0].detail["supervisor_extension"] == "ext-sue"
    assert await _notices(agent) == []  # stop after listen: nothing to show
    obeying.cancel()


async def test_only_supervisors_of_the_agents_team_and_admins_may_monitor(center: Any) -> None:
    agent, ivr = await center.answered_call("amy", "c2", "+8613800000002")
    obeying = ivr.obey_monitor()
    admin = await center.login_token("ada", "admin")
    other = await center.login_token("olga", "supervisor")
    sup = await center.login_token("sue", "supervisor")
    status, _ = await request(center, "PATCH", "/api/v1/admin/agents/"
                              f"{(await _id(center, 'olga'))}", admin, json={"team": "b"})
    assert status == 200

    assert (await _monitor(center, "c2", None, "listen"))[0] == 401
    status, body = await _monitor(center, "c2", agent.token, "listen")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await _monitor(center, "c2", other, "listen")
    assert status == 403 and body["error"]["code"] == "not_your_team"
    assert ivr.monitored == [] and await _monitor_hash(center, "c2") == {}

    assert (await _monitor(center, "c2", sup, "whisper"))[0] == 200
    status, body = await _monitor(center, "c2", admin, "listen")
    assert status == 409 and body["error"]["code"] == "monitored_by_other"
    assert "Sue" in body["error"]["message"]
    # An admin may stop another's monitor; then monitor itself.
    status, body = await _monitor(center, "c2", admin, "stop")
    assert status == 200 and body["previous"] == "whisper"
    assert (await _monitor(center, "c2", admin, "barge"))[0] == 200
    status, body = await _monitor(center, "c2", sup, "stop")
    assert status == 409 and body["error"]["code"] == "monitored_by_other"
    actors = [(e.action, e.actor, e.role) for e in await _audit(center, "c2")]
    assert actors == [("monitor.start", "sue", "supervisor"), ("monitor.stop", "ada", "admin"),
                      ("monitor.start", "ada", "admin")]
    obeying.cancel()


async def _id(center: Any, username: str) -> int:
    from core.models import Agent

    async with center.sessions() as session:
        return int(await session.scalar(select(Agent.id).where(Agent.username == username)))


async def test_bad_monitor_requests_get_clear_errors_and_change_nothing(center: Any) -> None:
    agent, ivr = await center.answered_call("amy", "c3", "+8613800000003")
    obeying = ivr.obey_monitor()
    sup = await center.login_token("sue", "supervisor")
    for bad in ({"mode": "spy"}, {}, {"mode": "listen", "extra": 1}, {"mode": 1}):
        status, body = await request(center, "POST", "/api/v1/calls/c3/monitor", sup, json=bad)
        assert status == 400 and body["error"]["code"] == "invalid", (bad, body)
    status, body = await _monitor(center, "nope", sup, "listen")
    assert status == 404 and body["error"]["code"] == "unknown_call"
    status, body = await _monitor(center, "c3", sup, "stop")
    assert status == 409 and body["error"]["code"] == "not_monitoring"
    await ivr.offer("c3q", "+8613800000033")  # nobody free: it waits
    status, body = await _monitor(center, "c3q", sup, "listen")
    assert status == 409 and body["error"]["code"] == "illegal_transition"
    assert "in progress" in body["error"]["message"]
    await ivr.event("call.ended", "c3", cause="caller_hangup")
    status, body = await _monitor(center, "c3", sup, "listen")
    assert status == 409 and body["error"]["code"] == "call_ended"
    assert "has ended" in body["error"]["message"]
    assert ivr.monitored == [] and await _audit(center, "c3") == []
    obeying.cancel()


async def test_a_supervisor_without_an_extension_is_told_to_get_one(center: Any) -> None:
    _, ivr = await center.answered_call("amy", "c4", "+8613800000004")
    admin = await center.login_token("ada", "admin")
    sup = await center.login_token("sue", "supervisor")
    await request(center, "PATCH", f"/api/v1/admin/agents/{await _id(center, 'sue')}", admin,
                  json={"extension": None})
    status, body = await _monitor(center, "c4", sup, "listen")
    assert status == 400 and body["error"]["code"] == "no_extension"
    assert await _monitor_hash(center, "c4") == {}


async def test_a_pbx_that_refuses_leaves_the_call_unmonitored(center: Any) -> None:
    _, ivr = await center.answered_call("amy", "c5", "+8613800000005")
    refusing = ivr.obey_monitor(refuse="not_supported")
    sup = await center.login_token("sue", "supervisor")
    status, body = await _monitor(center, "c5", sup, "listen")
    assert status == 501 and body["error"]["code"] == "not_supported"
    assert await _monitor_hash(center, "c5") == {} and await _audit(center, "c5") == []
    refusing.cancel()
    obeying = ivr.obey_monitor()
    assert (await _monitor(center, "c5", sup, "listen"))[0] == 200
    obeying.cancel()
    refusing = ivr.obey_monitor(refuse="busy")
    status, body = await _monitor(center, "c5", sup, "barge")
    assert status == 502 and body["error"]["code"] == "control_failed"
    assert "busy" in body["error"]["message"]
    assert (await _monitor_hash(center, "c5"))["mode"] == "listen"  # as it was
    refusing.cancel()


async def test_the_calls_end_or_transfer_ends_its_monitor_and_the_agents_notice(
        center: Any) -> None:
    agent, ivr = await center.answered_call("amy", "c6", "+8613800000006")
    obeying = ivr.obey_monitor()
    sup = await center.login_token("sue", "supervisor")
    assert (await _monitor(center, "c6", sup, "whisper"))[0] == 200
    await agent.inbox.expect("monitor.notice", call_id="c6", mode="whisper")
    again = await center.login("amy")  # a console (re)connecting is told too
    await again.inbox.expect("monitor.notice", call_id="c6", mode="whisper", supervisor="Sue")
    await ivr.event("call.transferred", "c6", to_queue="default")
    await agent.inbox.expect("monitor.notice", call_id="c6", mode="none")
    assert await _monitor_hash(center, "c6") == {}
    end = (await _audit(center, "c6"))[-1]
    assert (end.action, end.actor, end.detail["reason"]) == ("monitor.end", "system",
                                                             "transferred")
    await ivr.event("call.ended", "c6", cause="abandoned")  # waiting, the caller gives up

    bob, ivr2 = await center.answered_call("bob", "c7", "+8613800000007")
    obeying2 = ivr2.obey_monitor()
    assert (await _monitor(center, "c7", sup, "listen"))[0] == 200
    await ivr2.event("call.ended", "c7", cause="caller_hangup")
    assert await _monitor_hash(center, "c7") == {}
    end = (await _audit(center, "c7"))[-1]
    assert (end.action, end.detail["reason"], end.detail["mode"]) == (
        "monitor.end", "call_ended", "listen")
    status, body = await _monitor(center, "c7", sup, "stop")
    assert status == 409 and body["error"]["code"] == "call_ended"
    obeying.cancel()
    obeying2.cancel()


async def test_a_completed_consult_transfer_ends_the_monitor_of_the_first_agent(
        center: Any) -> None:
    amy, ivr = await center.answered_call("amy", "c8", "+8613800000008")
    obeying = ivr.obey_monitor()
    sup = await center.login_token("sue", "supervisor")
    assert (await _monitor(center, "c8", sup, "whisper"))[0] == 200
    bob = await center.agent("bob")
    await bob.available()
    asked = asyncio.create_task(amy.control("c8", "transfer", mode="consult",
                                            to_agent_id=bob.agent_id))
    command = await ivr.command(call_id="c8")
    await ivr.result(command)
    assert (await asked)["type"] == "ack"
    await ivr.event("consult.answered", "c8", agent_id=bob.agent_id)
    # Monitoring goes on while amy consults bob.
    assert (await _monitor_hash(center, "c8"))["mode"] == "whisper"
    # A console reconnecting during the consult: amy is told of the whisper, bob is not.
    amy_again = await center.login("amy")
    await amy_again.inbox.expect("monitor.notice", call_id="c8", mode="whisper",
                                 supervisor="Sue")
    bob_again = await center.login("bob")
    await bob_again.inbox.expect("call.consult", call_id="c8")  # the snapshot's last frame
    assert await _notices(bob_again) == []
    await ivr.event("consult.completed", "c8", agent_id=bob.agent_id)
    await amy.inbox.expect("monitor.notice", call_id="c8", mode="none")
    assert await _monitor_hash(center, "c8") == {}
    end = (await _audit(center, "c8"))[-1]
    assert (end.action, end.detail["reason"], end.detail["agent_id"]) == (
        "monitor.end", "transferred", amy.agent_id)
    # The call is bob's now: monitoring it is monitoring bob.
    assert (await _monitor(center, "c8", sup, "listen"))[0] == 200
    assert ivr.monitored[-1]["agent_id"] == bob.agent_id
    obeying.cancel()


# Races: two supervisors at once, and a monitor against the call's end ------------------


@pytest.fixture(params=["one_node", "two_nodes"])
async def nodes(request: pytest.FixtureRequest, aiohttp_server: Any, app: Any, sessions: Any,
                settings: Settings) -> Any:
    a = Center(await aiohttp_server(app), sessions, settings)
    b = a
    if request.param == "two_nodes":
        other = settings.model_copy(update={"node_id": "b"})
        b = Center(await aiohttp_server(create_app(other)), sessions, other)
    yield a, b
    await a.close()
    if b is not a:
        await b.close()


async def test_two_supervisors_at_once_one_monitors_the_other_is_told(nodes: Any) -> None:
    a, b = nodes
    _, ivr = await a.answered_call("amy", "r1", "+8613800000011")
    obeying = ivr.obey_monitor()
    sue, sam = await a.login_token("sue"), await a.login_token("sam")
    for n in range(ROUNDS):
        mode = ("listen", "whisper", "barge")[n % 3]
        answers = await asyncio.gather(_monitor(a, "r1", sue, mode), _monitor(b, "r1", sam, mode))
        won = [i for i, (status, _) in enumerate(answers) if status == 200]
        assert len(won) == 1, answers
        lost = answers[1 - won[0]]
        assert lost[0] == 409 and lost[1]["error"]["code"] == "monitored_by_other", lost
        winner = (sue, sam)[won[0]]
        held = await _monitor_hash(a, "r1")
        assert held["mode"] == mode and "pending" not in held
        assert held["supervisor"] == ("Sue", "Sam")[won[0]]
        assert (await _monitor((a, b)[won[0]], "r1", winner, "stop"))[0] == 200
    entries = await _audit(a, "r1")
    assert [e.action for e in entries] == ["monitor.start", "monitor.stop"] * ROUNDS
    assert len(ivr.monitored) == 2 * ROUNDS  # only winners reached the PBX
    obeying.cancel()


async def test_one_supervisors_two_changes_at_once_one_waits_for_the_other(nodes: Any) -> None:
    a, b = nodes
    _, ivr = await a.answered_call("amy", "r2", "+8613800000012")
    obeying = ivr.obey_monitor()
    sue = await a.login_token("sue")
    assert (await _monitor(a, "r2", sue, "listen"))[0] == 200
    for _ in range(ROUNDS):
        answers = await asyncio.gather(_monitor(a, "r2", sue, "whisper"),
                                       _monitor(b, "r2", sue, "barge"))
        codes = sorted(str(s) if s == 200 else body["error"]["code"] for s, body in answers)
        # Both done one after the other, or one refused while the other waited for the PBX.
        assert codes in (["200", "200"], ["200", "monitor_pending"]), answers
        held = await _monitor_hash(a, "r2")
        assert held["mode"] in ("whisper", "barge") and "pending" not in held
        assert (await _monitor(a, "r2", sue, "listen"))[0] == 200
    obeying.cancel()


async def test_a_monitor_racing_the_calls_end_leaves_nothing_behind(nodes: Any) -> None:
    a, b = nodes
    agent = await a.agent("amy")
    ivr = await a.ivr()
    obeying = ivr.obey_monitor()
    sue = await a.login_token("sue")
    for n in range(ROUNDS):
        call_id = f"r3-{n}"
        await agent.available()
        await ivr.offer(call_id, f"+86138000001{n:02d}")
        await ivr.inbox.expect("route.connect", call_id=call_id)
        await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        status, body = (await asyncio.gather(
            _monitor(b, call_id, sue, "listen"),
            ivr.event("call.ended", call_id, cause="caller_hangup")))[0]
        assert status == 200 or body["error"]["code"] == "call_ended", body
        assert await _monitor_hash(a, call_id) == {}
        # Audited only when the PBX confirmed before the end: its start and its end.
        started = sorted(e.action for e in await _audit(a, call_id))
        assert started in ([], ["monitor.end", "monitor.start"]), started
        assert (started != []) == (status == 200)
        done = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
        assert done["type"] == "ack", done
        await eventually(lambda: _free(a, agent.agent_id), what="agent back from wrap-up")
    obeying.cancel()


async def test_the_pbx_confirming_as_the_call_ends_leaves_nothing_behind(nodes: Any) -> None:
    """The command reached the PBX; its result and the caller's hang-up race."""
    a, b = nodes
    agent = await a.agent("amy")
    ivr = await a.ivr()
    sue = await a.login_token("sue")
    for n in range(ROUNDS):
        call_id = f"r5-{n}"
        await agent.available()
        await ivr.offer(call_id, f"+86138000003{n:02d}")
        await ivr.inbox.expect("route.connect", call_id=call_id)
        await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        asking = asyncio.create_task(_monitor(b, call_id, sue, "listen"))
        command = await ivr.command(type_="route.monitor", call_id=call_id)
        ending = ivr.event("call.ended", call_id, cause="caller_hangup")
        if n % 2:  # both at once
            await asyncio.gather(ivr.result(command), ending)
        else:  # the end first: the result comes too late
            await ending
            assert (await ivr.result(command))["code"] == "command_expired"
        status, body = await asking
        assert status == 200 or body["error"]["code"] == "call_ended", body
        assert status != 200 or n % 2, "a result after the end is not a success"
        assert await _monitor_hash(a, call_id) == {}
        audited = sorted(e.action for e in await _audit(a, call_id))
        assert audited == (["monitor.end", "monitor.start"] if status == 200 else []), audited
        done = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
        assert done["type"] == "ack", done
        await eventually(lambda: _free(a, agent.agent_id), what="agent back from wrap-up")


async def test_a_monitor_racing_a_transfer_never_outlives_the_agents_leg(nodes: Any) -> None:
    a, b = nodes
    agent = await a.agent("amy")
    ivr = await a.ivr()
    obeying = ivr.obey_monitor()
    sue = await a.login_token("sue")
    for n in range(ROUNDS):
        call_id = f"r4-{n}"
        await agent.available()
        await ivr.offer(call_id, f"+86138000002{n:02d}")
        await ivr.inbox.expect("route.connect", call_id=call_id)
        await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        status, body = (await asyncio.gather(
            _monitor(b, call_id, sue, "whisper"),
            ivr.event("call.transferred", call_id, to_queue="default")))[0]
        assert status == 200 or body["error"]["code"] in ("call_ended",
                                                          "illegal_transition"), body
        assert await _monitor_hash(a, call_id) == {}  # the transfer took it, won or lost
        if status == 200:
            await agent.inbox.expect("monitor.notice", call_id=call_id, mode="whisper")
            await agent.inbox.expect("monitor.notice", call_id=call_id, mode="none")
        await ivr.event("call.ended", call_id, cause="abandoned")
        done = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
        assert done["type"] == "ack", done
        await eventually(lambda: _free(a, agent.agent_id), what="agent back from wrap-up")
    obeying.cancel()


async def _free(center: Any, agent_id: int) -> bool:
    agent = await center.server.app[appkeys.ROUTER].store.agent(agent_id)
    return agent.get("state") in ("available", "not_ready")
