"""Consult transfer and conference through the ARI adapter (issue 17): the agent's
`call.control` -> `route.control` -> the adapter's bridges and originates on the fake
Asterisk (tests/fake_ari.py, Asterisk's JSON and status codes) -> the consult events back
-> what both agents see; whole calls through complete, conference and cancel, the
consulted agent hanging up, and the event socket dropped in the middle of a consult."""

from __future__ import annotations

from tests.test_ari import _connected_call, _ready, _record_where, fake_ari, settings
from tests.waits import eventually

__all__ = ["fake_ari", "settings"]  # the fixtures, shared with tests/test_ari.py


async def _consult(center, fake, number: str, a_ext: str, b_ext: str):
    """amy talks to a caller and consults bob over ARI; bob's phone rings:
    (amy, bob, caller, amy's channel, bob's consult channel)."""
    amy = await center.agent(f"amy{a_ext}", extension=a_ext)
    await amy.available()
    await _ready(center)
    caller, amy_channel = await _connected_call(center, fake, amy, number)
    bob = await center.agent(f"bob{b_ext}", extension=b_ext)
    await bob.available()
    reply = await amy.control(caller, "transfer", mode="consult", to_agent_id=bob.agent_id,
                              notes="refund")
    assert reply["type"] == "ack", reply
    assert caller in fake.held
    assert fake.made("POST", f"/bridges/{caller}-consult")
    removed = fake.made("POST", f"/bridges/{caller}-bridge/removeChannel")
    assert removed[0].params["channel"] == amy_channel
    assert fake.bridges[f"{caller}-consult"]["channels"] == [amy_channel]
    originate = fake.made("POST", "/channels")[-1]
    assert originate.params["endpoint"] == f"PJSIP/{b_ext}"
    assert originate.params["appArgs"] == f"consult,{caller},{bob.agent_id}"
    pop = await bob.inbox.expect("screen_pop", call_id=caller)
    assert pop["consult"]["notes"] == "refund"
    return amy, bob, caller, amy_channel, originate.params["channelId"]


async def _answered(fake, amy, caller: str, consulted: str) -> None:
    await fake.agent_answers(consulted)
    await amy.inbox.expect("call.consult", call_id=caller, state="talking")
    assert consulted in fake.bridges[f"{caller}-consult"]["channels"]


async def test_consult_then_complete_over_ari_hands_the_caller_to_b(center, fake_ari):
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000201", "1201", "1202")
    await _answered(fake_ari, amy, caller, consulted)

    reply = await amy.control(caller, "consult.complete")

    assert reply["type"] == "ack", reply
    await amy.inbox.expect("call.ended", call_id=caller)
    await bob.inbox.expect("call.connected", call_id=caller)
    assert fake_ari.bridges[f"{caller}-bridge"]["channels"] == [caller, consulted]
    assert caller not in fake_ari.held
    assert amy_channel not in fake_ari.channels
    assert f"{caller}-consult" not in fake_ari.bridges
    # bob's leg is the call's agent leg now: he hangs up, the call ends.
    await fake_ari.hang_up(consulted)
    await bob.inbox.expect("call.ended", call_id=caller)
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert [leg["agent_id"] for leg in record.legs] == [amy.agent_id, bob.agent_id]
    assert record.legs[0]["kind"] == "consult" and record.end_cause == "agent_hangup"
    assert record.hold_count == 1


async def test_conference_then_cancel_over_ari_keeps_the_caller_with_a(center, fake_ari):
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000202", "1203", "1204")
    await _answered(fake_ari, amy, caller, consulted)

    assert (await amy.control(caller, "conference"))["type"] == "ack"
    await amy.inbox.expect("call.consult", call_id=caller, state="conference")
    assert sorted(fake_ari.bridges[f"{caller}-bridge"]["channels"]) == sorted(
        [caller, amy_channel, consulted])
    assert caller not in fake_ari.held

    assert (await amy.control(caller, "consult.cancel"))["type"] == "ack"
    await amy.inbox.expect("call.consult", call_id=caller, state="ended")
    await bob.inbox.expect("call.ended", call_id=caller)
    assert consulted not in fake_ari.channels
    assert sorted(fake_ari.bridges[f"{caller}-bridge"]["channels"]) == sorted(
        [caller, amy_channel])
    await fake_ari.hang_up(caller)
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.conference_s is not None and record.agent_id == amy.agent_id


async def test_the_consulted_agent_hanging_up_gives_the_caller_back(center, fake_ari):
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000203", "1205", "1206")
    await _answered(fake_ari, amy, caller, consulted)

    await fake_ari.hang_up(consulted)

    ended = await amy.inbox.expect("call.consult", call_id=caller, state="ended")
    assert ended["cause"] == "hangup"
    await bob.inbox.expect("call.ended", call_id=caller)
    assert amy_channel in fake_ari.bridges[f"{caller}-bridge"]["channels"]
    assert caller not in fake_ari.held
    assert (await amy.control(caller, "hold"))["type"] == "ack"  # the call goes on


async def test_the_consulted_agent_leaving_from_its_console_gives_the_caller_back(
        center, fake_ari):
    """B hangs up its consult leg from the console (not its phone): the adapter drops B's
    channel and puts the caller back with A, as a cancel does."""
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000207", "1211", "1212")
    await _answered(fake_ari, amy, caller, consulted)

    assert (await bob.control(caller, "hangup"))["type"] == "ack"

    await amy.inbox.expect("call.consult", call_id=caller, state="ended")
    await bob.inbox.expect("call.ended", call_id=caller, reason="consult_ended")
    assert consulted not in fake_ari.channels
    assert amy_channel in fake_ari.bridges[f"{caller}-bridge"]["channels"]
    assert caller not in fake_ari.held
    assert (await amy.control(caller, "hold"))["type"] == "ack"  # the call goes on


async def test_the_caller_hanging_up_mid_consult_releases_every_leg(center, fake_ari):
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000204", "1207", "1208")

    await fake_ari.hang_up(caller)

    await amy.inbox.expect("call.ended", call_id=caller)
    await bob.inbox.expect("call.ended", call_id=caller)
    await fake_ari.wait_request("DELETE", f"/channels/{consulted}")
    await fake_ari.wait_request("DELETE", f"/bridges/{caller}-consult")
    await fake_ari.wait_request("DELETE", f"/channels/{amy_channel}")


async def test_an_event_socket_dropped_mid_consult_is_reconciled(center, fake_ari):
    """The event socket drops while bob's phone rings and bob answers meanwhile (the event
    is lost): after reconnecting, the adapter finds bob's leg up, bridges it and reports
    the answer; the consult then completes as usual."""
    amy, bob, caller, amy_channel, consulted = await _consult(
        center, fake_ari, "+8613800000205", "1209", "1210")
    await fake_ari.go_down()
    await fake_ari.agent_answers(consulted)  # nobody listens: lost
    fake_ari.come_up()
    await eventually(lambda: fake_ari.connections == 2, timeout=15)
    await _ready(center)

    await amy.inbox.expect("call.consult", call_id=caller, state="talking", timeout=15)
    assert consulted in fake_ari.bridges[f"{caller}-consult"]["channels"]
    assert amy_channel in fake_ari.channels and caller in fake_ari.channels
    assert (await amy.control(caller, "consult.complete"))["type"] == "ack"
    await bob.inbox.expect("call.connected", call_id=caller)
    assert fake_ari.bridges[f"{caller}-bridge"]["channels"] == [caller, consulted]
