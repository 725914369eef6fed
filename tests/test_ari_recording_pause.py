"""PCI pause of the recording through the ARI adapter (issue 21): the agent's
`recording.pause` / `recording.resume` -> `route.control` -> `POST` / `DELETE
/recordings/live/{name}/pause` on the fake Asterisk -> `control.result` and
`recording.paused` / `recording.resumed` -> what the agent and the record see."""

from __future__ import annotations

from tests.test_ari import _connected_call, _ready, _record_where, fake_ari, settings

__all__ = ["fake_ari", "settings"]  # the fixtures, shared with tests/test_ari.py


def _recording(fake, caller: str) -> dict:
    return fake.recordings[f"{caller}-bridge"]


async def _recorded_call(center, fake, agent, number: str) -> str:
    caller, _ = await _connected_call(center, fake, agent, number)
    await fake.wait_request("POST", f"/bridges/{caller}-bridge/record")
    return caller


async def test_agent_pauses_and_resumes_an_asterisk_recording(center, fake_ari):
    agent = await center.agent("pam", extension="1201")
    await agent.available()
    await _ready(center)
    caller = await _recorded_call(center, fake_ari, agent, "+8613800000201")
    name = f"cc-{caller}"

    paused = await agent.control(caller, "recording.pause")
    assert paused["type"] == "ack", paused
    await agent.inbox.expect("recording.paused", call_id=caller)
    assert fake_ari.made("POST", f"/recordings/live/{name}/pause")
    assert _recording(fake_ari, caller)["state"] == "paused"

    resumed = await agent.control(caller, "recording.resume")
    assert resumed["type"] == "ack", resumed
    await agent.inbox.expect("recording.resumed", call_id=caller)
    assert fake_ari.made("DELETE", f"/recordings/live/{name}/pause")
    assert _recording(fake_ari, caller)["state"] == "recording"

    await fake_ari.hang_up(caller)
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    [pause] = record.recording_pauses
    assert pause["by"] == "agent:pam" and pause["resumed_by"] == "agent:pam"


async def test_a_transfer_resumes_a_paused_asterisk_recording(center, fake_ari):
    amy = await center.agent("quin", extension="1202")
    await amy.available()
    await _ready(center)
    caller = await _recorded_call(center, fake_ari, amy, "+8613800000202")
    bob = await center.agent("rex", extension="1203")
    await bob.available()
    assert (await amy.control(caller, "recording.pause"))["type"] == "ack"
    await amy.inbox.expect("recording.paused", call_id=caller)

    reply = await amy.control(caller, "transfer", to_agent_id=bob.agent_id)

    assert reply["type"] == "ack", reply
    assert fake_ari.made("DELETE", f"/recordings/live/cc-{caller}/pause")
    assert _recording(fake_ari, caller)["state"] == "recording"
    await bob.inbox.expect("screen_pop", call_id=caller)
    record = await _record_where(center, caller, lambda r: bool(r.recording_pauses) and
                                 r.recording_pauses[-1]["to_s"] is not None)
    assert record.recording_pauses[-1]["resumed_by"] == "transfer"


async def test_a_recording_asterisk_no_longer_has_is_not_running(center, fake_ari):
    agent = await center.agent("sam", extension="1204")
    await agent.available()
    await _ready(center)
    caller, _ = await _connected_call(center, fake_ari, agent, "+8613800000204")
    await fake_ari.wait_request("POST", f"/bridges/{caller}-bridge/record")
    fake_ari.recordings.clear()  # the recording failed on Asterisk's side

    reply = await agent.control(caller, "recording.pause")

    assert reply["type"] == "error" and reply["code"] == "recording_not_running", reply
    assert reply["reason"] == "recording_not_running"
    await agent.inbox.nothing("recording.paused")
    assert (await agent.control(caller, "hold"))["type"] == "ack"  # the call goes on
