"""PCI pause of a call's recording (issue 21) through protocol v1: `call.control` /
REST `recording.pause` / `recording.resume` -> `route.control` -> `control.result` and the
PBX's `recording.paused` / `recording.resumed`; the intervals and who paused on the
interaction, the audit log, the automatic resume at hang-up and on transfer, refusals, and
the races of a pause against the call's end."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from core import appkeys
from core.models import AuditEntry, Interaction
from tests.conftest import make_settings
from tests.rest import request
from tests.waits import eventually
from transcripts.pauses import with_markers


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path, control_timeout_s=5.0)


async def _call(center, call_id: str) -> dict[str, str]:
    return await center.server.app[appkeys.ROUTER].store.call(call_id)


async def _record(center, call_id: str) -> Interaction:
    async with center.sessions() as session:
        return (await session.scalars(
            select(Interaction).where(Interaction.call_id == call_id))).one()


async def _ended(center, call_id: str) -> Interaction | None:
    record = await _record(center, call_id)
    return record if record.ended_at is not None else None


async def _audit(center, call_id: str) -> list[AuditEntry]:
    async with center.sessions() as session:
        return list(await session.scalars(select(AuditEntry).where(
            AuditEntry.object_type == "call", AuditEntry.object_id == call_id)
            .order_by(AuditEntry.id)))


async def test_agent_pauses_and_resumes_the_recording_and_record_and_audit_keep_it(center):
    agent, ivr = await center.answered_call("amy", "p1", "+8613800000301")
    asked = asyncio.create_task(agent.control("p1", "recording.pause"))
    command = await ivr.command(call_id="p1")
    assert command["action"] == "recording.pause" and command["agent_id"] == agent.agent_id
    assert (await ivr.result(command))["type"] == "ack"
    assert (await asked)["type"] == "ack"
    assert not (await _call(center, "p1")).get("rec_paused_at")  # the ack alone changes nothing
    await ivr.act(command)
    await agent.inbox.expect("recording.paused", call_id="p1")
    live = await _call(center, "p1")
    assert live["state"] == "connected" and live["rec_paused_at"]
    assert live["rec_paused_by"] == "agent:amy"

    obeying = ivr.obey()
    assert (await agent.control("p1", "recording.resume"))["type"] == "ack"
    await agent.inbox.expect("recording.resumed", call_id="p1")
    assert not (await _call(center, "p1"))["rec_paused_at"]
    obeying.cancel()
    await ivr.event("call.ended", "p1", cause="caller_hangup")
    record = await eventually(lambda: _ended(center, "p1"))
    [pause] = record.recording_pauses
    assert pause["by"] == "agent:amy" and pause["resumed_by"] == "agent:amy"
    assert 0 <= pause["from_s"] <= pause["to_s"] <= record.talk_s
    audit = await _audit(center, "p1")
    assert [(a.action, a.actor, a.role) for a in audit] == [
        ("recording.paused", "amy", "agent"), ("recording.resumed", "amy", "agent")]


async def test_pausing_a_recording_that_is_not_running_is_refused_and_nothing_is_sent(center):
    agent, ivr = await center.ringing_call("bob", "p2", "+8613800000302")
    ringing = await agent.control("p2", "recording.pause")
    assert ringing["type"] == "error" and ringing["code"] == "recording_not_running"
    assert "ringing" in ringing["message"]
    await ivr.event("call.answered", "p2", agent_id=agent.agent_id)
    not_paused = await agent.control("p2", "recording.resume")
    assert not_paused["type"] == "error" and not_paused["code"] == "recording_not_paused"
    await ivr.inbox.nothing("route.control")

    obeying = ivr.obey()
    assert (await agent.control("p2", "recording.pause"))["type"] == "ack"
    await agent.inbox.expect("recording.paused", call_id="p2")
    obeying.cancel()
    again = await agent.control("p2", "recording.pause")
    assert again["type"] == "error" and again["code"] == "recording_not_running"
    assert "paused already" in again["message"]
    await ivr.inbox.nothing("route.control")
    # The PBX saying it paused a paused recording is refused too; the call goes on.
    eid = await ivr.send("recording.paused", "p2")
    refused = await ivr.reply_to(eid)
    assert refused["type"] == "error" and refused["code"] == "illegal_transition"
    assert (await _call(center, "p2"))["state"] == "connected"
    assert len(await _audit(center, "p2")) == 1


async def test_a_paused_recording_resumes_by_itself_at_hang_up(center):
    agent, ivr = await center.answered_call("cat", "p3", "+8613800000303")
    await ivr.event("recording.paused", "p3")  # the PBX paused on its own
    await agent.inbox.expect("recording.paused", call_id="p3")
    await ivr.event("call.ended", "p3", cause="caller_hangup")
    record = await eventually(lambda: _ended(center, "p3"))
    [pause] = record.recording_pauses
    assert pause["by"] == "pbx" and pause["resumed_by"] == "hangup"
    assert pause["to_s"] is not None and pause["to_s"] <= record.talk_s + 0.01
    assert not (await _call(center, "p3")).get("rec_paused_at")
    audit = await eventually(lambda: _audit(center, "p3"))
    assert [(a.action, a.actor, a.role) for a in audit] == [
        ("recording.paused", "pbx", "system"), ("recording.resumed", "hangup", "system")]


async def test_a_paused_recording_resumes_by_itself_on_transfer(center):
    agent, ivr = await center.answered_call("dan", "p4", "+8613800000304")
    obeying = ivr.obey()
    assert (await agent.control("p4", "recording.pause"))["type"] == "ack"
    await agent.inbox.expect("recording.paused", call_id="p4")
    assert (await agent.control("p4", "transfer", to_queue="default"))["type"] == "ack"
    await agent.inbox.expect("call.ended", call_id="p4")
    obeying.cancel()
    live = await _call(center, "p4")
    assert live["state"] in ("queued", "ringing") and not live["rec_paused_at"]
    record = await eventually(lambda: _record_with_pauses(center, "p4"))
    [pause] = record.recording_pauses
    assert pause["by"] == "agent:dan" and pause["resumed_by"] == "transfer"
    # After the transfer the recording runs: a new pause is allowed once talking again.
    refused = await agent.control("p4", "recording.resume")
    assert refused["code"] in ("recording_not_paused", "not_your_call")


async def _record_with_pauses(center, call_id: str) -> Interaction | None:
    record = await _record(center, call_id)
    done = record.recording_pauses and record.recording_pauses[-1]["to_s"] is not None
    return record if done else None


async def test_supervisor_pauses_over_rest(center):
    agent, ivr = await center.answered_call("eve", "p5", "+8613800000305")
    token = await center.login_token("sue", "supervisor")
    obeying = ivr.obey()
    status, body = await request(center, "POST", "/api/v1/calls/p5/control", token,
                                 json={"action": "recording.pause"})
    assert status == 200 and body["action"] == "recording.pause", body
    await agent.inbox.expect("recording.paused", call_id="p5")
    assert (await _call(center, "p5"))["rec_paused_by"] == "supervisor:sue"
    status, body = await request(center, "POST", "/api/v1/calls/p5/control", token,
                                 json={"action": "recording.pause"})
    assert status == 409 and body["error"]["code"] == "recording_not_running"
    status, body = await request(center, "POST", "/api/v1/calls/p5/control", token,
                                 json={"action": "recording.resume"})
    assert status == 200
    await agent.inbox.expect("recording.resumed", call_id="p5")
    obeying.cancel()


async def test_a_console_that_reconnects_during_a_pause_is_told_so(center):
    agent, ivr = await center.answered_call("fay", "p6", "+8613800000306")
    await ivr.event("recording.paused", "p6")
    again = await center.login("fay")
    await again.inbox.expect("call.connected", call_id="p6")
    await again.inbox.expect("recording.paused", call_id="p6")


async def test_pause_events_against_hang_up_leave_one_consistent_interval(center):
    """recording.paused and call.ended for one call from two connections of the PBX at
    once: the call ends in wrap-up; a pause that won is on the record (closed at the end,
    or open, which the record reads as lasting to the end), one that lost is refused."""
    agent, ivr = await center.answered_call("gil", "q0", "+8613800000310")
    second = await center.ivr()
    for n in range(8):
        call_id = f"q{n}"
        if n:
            await agent.request("wrapup.done", call_id=f"q{n - 1}", disposition="resolved")
            await agent.inbox.expect("agent.state", state="available")
            await ivr.offer(call_id, "+8613800000310")
            await ivr.inbox.expect("route.connect", call_id=call_id)
            await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        paused_id, ended_id = await asyncio.gather(
            ivr.send("recording.paused", call_id), second.send("call.ended", call_id))
        paused, ended = await asyncio.gather(ivr.reply_to(paused_id),
                                             second.reply_to(ended_id))
        assert ended["type"] == "ack"
        assert paused["type"] == "ack" or paused["code"] == "illegal_transition"
        await agent.inbox.expect("call.ended", call_id=call_id)
        assert (await _call(center, call_id))["state"] == "wrap_up"
        record = await eventually(lambda cid=call_id: _ended(center, cid))
        pauses = record.recording_pauses or []
        assert len(pauses) == (1 if paused["type"] == "ack" else 0)
        for pause in pauses:
            assert pause["to_s"] is None or pause["to_s"] <= record.talk_s + 0.01


async def _obey_whatever_happens(ivr) -> None:
    """A PBX that confirms and carries out every command, even for a call that ended
    meanwhile (its late events are refused; this PBX does not mind)."""
    while True:
        try:
            command = await ivr.command(timeout=3600)
        except TimeoutError:
            continue
        await ivr.result(command)
        await ivr.send("recording.paused", command["call_id"],
                       command_id=command["command_id"])


async def test_pause_command_against_hang_up_has_one_outcome(center):
    """The agent's pause and the caller's hang-up at once, for many rounds: the command is
    confirmed (and the pause, if carried out, closed by the hang-up) or fails as the call
    ended; nothing stays pending and the next call takes commands."""
    agent, ivr = await center.answered_call("hal", "s0", "+8613800000320")
    obeying = asyncio.create_task(_obey_whatever_happens(ivr))
    commands = center.server.app[appkeys.COMMANDS]
    for n in range(8):
        call_id = f"s{n}"
        if n:
            await agent.request("wrapup.done", call_id=f"s{n - 1}", disposition="resolved")
            await agent.inbox.expect("agent.state", state="available")
            await ivr.offer(call_id, "+8613800000320")
            await ivr.inbox.expect("route.connect", call_id=call_id)
            await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        reply, _ = await asyncio.gather(
            agent.control(call_id, "recording.pause"),
            ivr.event("call.ended", call_id, cause="caller_hangup"))
        assert reply["type"] == "ack" or reply["code"] in (
            "call_ended", "recording_not_running", "unknown_call"), reply
        await agent.inbox.expect("call.ended", call_id=call_id)
        record = await eventually(lambda cid=call_id: _ended(center, cid))
        assert len(record.recording_pauses or []) <= 1
        assert not await commands.redis.exists(commands.keys.call_command(call_id))
    obeying.cancel()


def test_the_transcript_marks_each_pause_at_its_cut_in_the_audio():
    """The paused audio is not in the file: each marker sits where the audio was cut
    (the pause's start less the pauses before it), an open pause lasting to the end."""
    said = [{"speaker": "agent", "start": 1.0, "end": 4.0, "text": "your card number"},
            {"speaker": "customer", "start": 5.0, "end": 7.0, "text": "thanks"},
            {"speaker": "agent", "start": 9.0, "end": 10.0, "text": "and the expiry"}]
    pauses = [{"from_s": 4.5, "to_s": 34.5, "by": "agent:amy", "resumed_by": "agent:amy"},
              {"from_s": 42.0, "to_s": None, "by": "pbx", "resumed_by": None}]
    marked = with_markers(said, pauses, talk_s=50.0)
    assert [u.get("marker") or u["text"] for u in marked] == [
        "your card number", "recording_paused", "thanks", "and the expiry",
        "recording_paused"]
    first, second = (u for u in marked if u.get("marker"))
    assert first["start"] == first["end"] == 4.5 and first["paused_s"] == 30.0
    assert first["by"] == "agent:amy" and first["speaker"] == "system"
    assert second["start"] == 12.0 and second["paused_s"] == 8.0
    assert with_markers(said, None, 50.0) == said


async def test_a_paused_recording_resumes_by_itself_on_a_consult_transfer(center):
    """Paused before a consult, still paused while consulting (it may be resumed then),
    closed when the consult completes: the caller is the consulted agent's now."""
    amy, ivr = await center.answered_call("ivy", "p7", "+8613800000307")
    bob = await center.agent("jon")
    await bob.available()
    obeying = ivr.obey()
    assert (await amy.control("p7", "recording.pause"))["type"] == "ack"
    await amy.inbox.expect("recording.paused", call_id="p7")
    reply = await amy.control("p7", "transfer", mode="consult", to_agent_id=bob.agent_id)
    assert reply["type"] == "ack", reply
    await ivr.event("consult.answered", "p7", agent_id=bob.agent_id)
    await bob.inbox.expect("call.consult", call_id="p7", state="talking")
    again = await amy.control("p7", "recording.pause")  # consulting: still paused
    assert again["code"] == "recording_not_running" and "paused already" in again["message"]
    assert (await amy.control("p7", "consult.complete"))["type"] == "ack"
    await bob.inbox.expect("call.connected", call_id="p7")
    obeying.cancel()
    live = await _call(center, "p7")
    assert live["state"] == "connected" and not live["rec_paused_at"]
    record = await eventually(lambda: _record_with_pauses(center, "p7"))
    [pause] = record.recording_pauses
    assert pause["by"] == "agent:ivy" and pause["resumed_by"] == "transfer"
    audit = await eventually(lambda: _audit(center, "p7"))
    assert [(a.action, a.actor) for a in audit] == [
        ("recording.paused", "ivy"), ("recording.resumed", "transfer")]


async def test_pause_events_against_a_transfer_never_leave_the_requeued_call_paused(center):
    """recording.paused and call.transferred at once from two PBX connections: the call is
    back in routing and its recording runs (the PBX resumes on a transfer), whichever won."""
    second = await center.ivr()
    agent, ivr = await center.answered_call("kim", "t0", "+8613800000330")
    outcomes: set[int] = set()
    for n in range(8):
        call_id = f"t{n}"
        if n:
            await agent.request("wrapup.done", call_id=f"t{n - 1}", disposition="resolved")
            await agent.inbox.expect("agent.state", state="available")
            await ivr.offer(call_id, "+8613800000330")
            await ivr.inbox.expect("route.connect", call_id=call_id)
            await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        paused_id, moved_id = await asyncio.gather(
            ivr.send("recording.paused", call_id),
            second.send("call.transferred", call_id, to_queue="default"))
        paused, moved = await asyncio.gather(ivr.reply_to(paused_id), second.reply_to(moved_id))
        assert moved["type"] == "ack", moved
        assert paused["type"] == "ack" or paused["code"] == "illegal_transition", paused
        live = await _call(center, call_id)
        assert live["state"] == "queued" and not live.get("rec_paused_at"), live
        # A pause that won is closed by the transfer, in the record and the call's hash
        # (which a later pause builds on), never left open.
        expected = 1 if paused["type"] == "ack" else 0
        assert len(json.loads(live.get("rec_pauses") or "[]")) == expected, live
        await agent.inbox.expect("call.ended", call_id=call_id)
        await ivr.event("call.ended", call_id, cause="caller_hangup")  # out of the queue
        record = await eventually(lambda cid=call_id: _ended(center, cid))
        assert [p["resumed_by"] for p in record.recording_pauses or []] == \
            ["transfer"] * expected, record.recording_pauses
        outcomes.add(expected)
    # Eight rounds on a loaded machine may all fall one way; each way was checked above.
    assert outcomes


async def test_a_pause_closed_by_a_transfer_is_kept_when_the_call_is_paused_again(center):
    """The transfer wins over the pause only at the version it read: a pause that landed
    after the read is closed by the transfer (decided again), and a pause by the next
    agent adds an interval rather than overwriting it."""
    second = await center.ivr()
    agent, ivr = await center.answered_call("ned", "t9", "+8613800000339")
    paused_id, moved_id = await asyncio.gather(
        ivr.send("recording.paused", "t9"),
        second.send("call.transferred", "t9", to_queue="default"))
    paused, moved = await asyncio.gather(ivr.reply_to(paused_id), second.reply_to(moved_id))
    assert moved["type"] == "ack", moved
    await agent.inbox.expect("call.ended", call_id="t9")
    await agent.request("wrapup.done", call_id="t9", disposition="resolved")
    await agent.inbox.expect("agent.state", state="available")
    await ivr.inbox.expect("route.connect", call_id="t9")
    await ivr.event("call.answered", "t9", agent_id=agent.agent_id)
    await ivr.event("recording.paused", "t9")
    await ivr.event("recording.resumed", "t9")
    record = await eventually(lambda: _record_with_pauses(center, "t9"))
    first = ["transfer"] if paused["type"] == "ack" else []
    assert [p["resumed_by"] for p in record.recording_pauses] == [*first, "pbx"], \
        record.recording_pauses
    assert all(p["to_s"] is not None for p in record.recording_pauses)


async def test_another_integration_cannot_pause_or_resume_a_calls_recording(center):
    agent, owner = await center.answered_call("lea", "p8", "+8613800000308")
    other = await center.ivr("pbx-2")
    for type_ in ("recording.paused", "recording.resumed"):
        reply = await other.reply_to(await other.send(type_, "p8"))
        assert (reply["type"], reply["code"]) == ("error", "wrong_integration"), reply
    assert not (await _call(center, "p8")).get("rec_paused_at")
    await owner.event("recording.paused", "p8")  # the owner still may
    await agent.inbox.expect("recording.paused", call_id="p8")
