"""Live monitoring through the ARI adapter (issue 20): `POST /api/v1/calls/{id}/monitor` ->
the server's `route.monitor` -> snoop channels, bridges and the supervisor's phone on a
fake Asterisk speaking Asterisk's JSON (tests/fake_ari.py) -> `control.result`; switching
tears down what the previous mode made, and nothing is left behind when the call ends."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from core import appkeys
from core.models import AuditEntry
from tests.fake_ari import FakeAri, Request
from tests.rest import request
from tests.test_ari import _connected_call, _ready, fake_ari, settings
from tests.waits import eventually

__all__ = ["fake_ari", "settings"]  # the fixtures, shared with tests/test_ari.py


async def _monitor(center: Any, call_id: str, token: str, mode: str) -> tuple[int, Any]:
    return await request(center, "POST", f"/api/v1/calls/{call_id}/monitor", token,
                         json={"mode": mode})


def _requests(fake: FakeAri, method: str, pattern: str) -> list[Request]:
    return [r for r in fake.requests if r.method == method and re.fullmatch(pattern, r.path)]


def _live_snoops(fake: FakeAri) -> dict[str, dict[str, str]]:
    return {i: s for i, s in fake.snoops.items() if i in fake.channels}


def _members(fake: FakeAri, bridge_id: str) -> set[str]:
    return set(fake.bridges.get(bridge_id, {}).get("channels", ()))


async def _supervisor_leg(fake: FakeAri, caller: str) -> str:
    originate = await eventually(lambda: [r for r in fake.made("POST", "/channels")
                                          if "-sup-" in r.params["channelId"]])
    assert len(originate) == 1
    return originate[0].params["channelId"]


async def test_a_supervisor_listens_whispers_barges_and_stops_on_asterisk(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("hal", extension="1101")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000201")
    sup = await center.login_token("sue")
    monitor_bridge, call_bridge = f"{caller}-monitor", f"{caller}-bridge"

    status, body = await _monitor(center, caller, sup, "listen")
    assert status == 200, body
    leg = await _supervisor_leg(fake_ari, caller)
    originate = next(r for r in fake_ari.made("POST", "/channels")
                     if r.params["channelId"] == leg)
    assert originate.params["endpoint"] == "PJSIP/ext-sue"
    assert originate.params["appArgs"] == f"monitor,{caller}"
    [snoop] = _requests(fake_ari, "POST", rf"/channels/{re.escape(agent_channel)}/snoop/.+")
    assert snoop.params == {"app": fake_ari.app, "appArgs": f"monitor,{caller}",
                            "spy": "both", "whisper": "none"}
    # The snoop channel joins the monitor bridge once in the application; the
    # supervisor's phone once answered.
    first = await eventually(lambda: _members(fake_ari, monitor_bridge) and
                             next(iter(_members(fake_ari, monitor_bridge))))
    assert "-snoop-" in first and leg not in _members(fake_ari, monitor_bridge)
    await fake_ari.agent_answers(leg)
    await eventually(lambda: _members(fake_ari, monitor_bridge) == {first, leg})

    assert (await _monitor(center, caller, sup, "whisper"))[0] == 200
    assert first not in fake_ari.channels  # the listening snoop is gone
    [(whisperer, how)] = (await eventually(lambda: _live_snoops(fake_ari))).items()
    assert how == {"target": agent_channel, "spy": "both", "whisper": "out"}
    await eventually(lambda: _members(fake_ari, monitor_bridge) == {whisperer, leg})

    assert (await _monitor(center, caller, sup, "barge"))[0] == 200
    assert _live_snoops(fake_ari) == {} and monitor_bridge not in fake_ari.bridges
    assert _members(fake_ari, call_bridge) == {caller, agent_channel, leg}

    assert (await _monitor(center, caller, sup, "listen"))[0] == 200
    assert _members(fake_ari, call_bridge) == {caller, agent_channel}
    [(listener, how)] = (await eventually(lambda: _live_snoops(fake_ari))).items()
    assert how["whisper"] == "none"
    await eventually(lambda: _members(fake_ari, monitor_bridge) == {listener, leg})

    status, body = await _monitor(center, caller, sup, "stop")
    assert status == 200, body
    assert _live_snoops(fake_ari) == {} and monitor_bridge not in fake_ari.bridges
    assert leg not in fake_ari.channels  # the supervisor's phone is hung up
    assert _members(fake_ari, call_bridge) == {caller, agent_channel}  # the call goes on
    assert len(_requests(fake_ari, "POST", r"/channels/.+/snoop/.+")) == 3


async def test_the_calls_end_during_listen_leaves_no_snoop_channel_behind(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("ida", extension="1102")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000202")
    sup = await center.login_token("sue")
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    await eventually(lambda: len(_members(fake_ari, f"{caller}-monitor")) == 2)

    await fake_ari.hang_up(caller)

    await agent.inbox.expect("call.ended", call_id=caller)
    await eventually(lambda: not any("-snoop-" in c or "-sup-" in c for c in fake_ari.channels),
                     what="no snoop channel or supervisor leg left")
    await eventually(lambda: f"{caller}-monitor" not in fake_ari.bridges)
    steps = center.server.app[appkeys.MONITOR].steps
    assert await eventually(lambda: _cleared(steps, caller))
    status, body = await _monitor(center, caller, sup, "listen")
    assert status == 409 and body["error"]["code"] == "call_ended"


async def _cleared(steps: Any, call_id: str) -> bool:
    return await steps.current(call_id) == {}


async def test_a_monitor_of_a_call_not_answered_yet_is_refused_and_makes_nothing(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("jon", extension="1103")
    await agent.available()
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000203")
    await agent.inbox.expect("screen_pop", call_id=caller)
    sup = await center.login_token("sue")
    status, body = await _monitor(center, caller, sup, "listen")
    assert status == 409 and body["error"]["code"] == "illegal_transition", body
    assert fake_ari.snoops == {} and not _requests(fake_ari, "POST", r"/channels/.+/snoop.*")


async def test_the_supervisor_hanging_up_tears_the_monitoring_down(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("kai", extension="1104")
    await agent.available()
    await _ready(center)
    caller, _ = await _connected_call(center, fake_ari, agent, "+8613800000204")
    sup = await center.login_token("sue")
    assert (await _monitor(center, caller, sup, "whisper"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    await eventually(lambda: len(_members(fake_ari, f"{caller}-monitor")) == 2)
    await fake_ari.hang_up(leg)
    await eventually(lambda: _live_snoops(fake_ari) == {}
                     and f"{caller}-monitor" not in fake_ari.bridges)
    # The service is told: the monitor is gone, audited, and the agent sees it end.
    steps = center.server.app[appkeys.MONITOR].steps
    await eventually(lambda: _cleared(steps, caller), what="the service forgot it")
    await agent.inbox.expect("monitor.notice", call_id=caller, mode="whisper")
    await agent.inbox.expect("monitor.notice", call_id=caller, mode="none")
    status, body = await _monitor(center, caller, sup, "stop")
    assert status == 409 and body["error"]["code"] == "not_monitoring", body
    async with center.sessions() as session:
        end = await session.scalar(select(AuditEntry).where(
            AuditEntry.object_id == caller, AuditEntry.action == "monitor.end"))
    assert end is not None and end.detail["reason"] == "supervisor_left"
    # The supervisor may start again; the call is untouched.
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200


def _stray_bridge(fake: FakeAri, bridge_id: str, channels: list[str]) -> None:
    """A bridge Asterisk holds that this adapter never made (an earlier run made it)."""
    fake.bridges[bridge_id] = {"id": bridge_id, "technology": "simple_bridge",
                               "bridge_type": "mixing", "bridge_class": "stasis",
                               "creator": "Stasis", "name": "", "channels": channels,
                               "video_mode": "talker",
                               "creationtime": "2024-05-01T09:00:00.000+0000"}


async def _reconnect(center: Any, fake: FakeAri) -> None:
    await fake.go_down()
    fake.come_up()
    await eventually(lambda: fake.connections == 2, timeout=15)
    await _ready(center)


async def test_monitoring_legs_the_adapter_does_not_know_are_cleaned_up_after_a_reconnect(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("lea", extension="1105")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000205")
    sup = await center.login_token("sue")
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    [snoop] = await eventually(lambda: list(_live_snoops(fake_ari)))
    await eventually(lambda: _members(fake_ari, f"{caller}-monitor") == {snoop, leg})
    # Left on Asterisk by an earlier run of the adapter: a monitor of a call long gone,
    # and a snoop channel on this very call that the adapter never made.
    old = "1714000000.9"
    strays = [f"{old}-sup-9-abcdef", f"{old}-snoop-123abc", f"{caller}-snoop-00aa11"]
    for stray in strays:
        fake_ari._channel(stray, f"Snoop/{stray}", "Up", "", "", "callcenter,monitor")
    _stray_bridge(fake_ari, f"{old}-monitor", strays[:2])

    await _reconnect(center, fake_ari)

    await eventually(lambda: not any(s in fake_ari.channels for s in strays),
                     what="the unknown monitoring legs are hung up")
    await eventually(lambda: f"{old}-monitor" not in fake_ari.bridges)
    # What the adapter knows stays: the monitor goes on, and stops cleanly.
    assert {leg, snoop, caller, agent_channel} <= set(fake_ari.channels)
    assert _members(fake_ari, f"{caller}-monitor") == {snoop, leg}
    assert (await _monitor(center, caller, sup, "stop"))[0] == 200
    assert _live_snoops(fake_ari) == {} and f"{caller}-monitor" not in fake_ari.bridges
    assert leg not in fake_ari.channels


async def test_a_call_that_ended_while_the_socket_was_down_leaves_no_monitoring_behind(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("max", extension="1106")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000206")
    sup = await center.login_token("sue")
    assert (await _monitor(center, caller, sup, "whisper"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    [snoop] = await eventually(lambda: list(_live_snoops(fake_ari)))

    await fake_ari.go_down()
    for gone in (caller, agent_channel, snoop):  # the snoop ends with the agent's channel
        fake_ari.vanish(gone)
    fake_ari.come_up()
    await eventually(lambda: fake_ari.connections == 2, timeout=15)

    await agent.inbox.expect("call.ended", call_id=caller, timeout=15)
    await eventually(lambda: leg not in fake_ari.channels, what="the supervisor's phone hung up")
    await eventually(lambda: f"{caller}-monitor" not in fake_ari.bridges)
    steps = center.server.app[appkeys.MONITOR].steps
    await eventually(lambda: _cleared(steps, caller), what="the service forgot the monitor")


def _monitor_legs(fake: FakeAri) -> set[str]:
    return {c for c in fake.channels if "-snoop-" in c or "-sup-" in c}


async def test_a_switch_asterisk_refuses_goes_back_to_the_previous_mode(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("ned", extension="1107")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000207")
    sup = await center.login_token("sue")
    monitor_bridge, call_bridge = f"{caller}-monitor", f"{caller}-bridge"
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    await eventually(lambda: len(_members(fake_ari, monitor_bridge)) == 2)
    steps = center.server.app[appkeys.MONITOR].steps

    snoop_path = rf"/channels/{re.escape(agent_channel)}/snoop/.+"
    add_path = rf"/bridges/{re.escape(call_bridge)}/addChannel"
    for refused, mode in ((snoop_path, "whisper"), (add_path, "barge")):
        fake_ari.refusing[("POST", refused)] = 1
        status, body = await _monitor(center, caller, sup, mode)
        assert status == 502 and body["error"]["code"] == "control_failed", body
        assert (await steps.current(caller))["mode"] == "listen"
        # Listening again, as before, with nothing of the refused mode left.
        [(snoop, how)] = (await eventually(lambda: _live_snoops(fake_ari))).items()
        assert how == {"target": agent_channel, "spy": "both", "whisper": "none"}
        joined = {snoop, leg}
        await eventually(lambda: _members(fake_ari, monitor_bridge) == joined)  # noqa: B023
        assert _monitor_legs(fake_ari) == joined
        assert _members(fake_ari, call_bridge) == {caller, agent_channel}

    assert (await _monitor(center, caller, sup, "whisper"))[0] == 200  # and it works again
    [(_, how)] = (await eventually(lambda: _live_snoops(fake_ari))).items()
    assert how["whisper"] == "out"


async def test_a_switch_refused_twice_tears_the_monitoring_down_and_the_service_forgets_it(
        center: Any, fake_ari: FakeAri) -> None:
    agent = await center.agent("oli", extension="1108")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000208")
    sup = await center.login_token("sue")
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200
    leg = await _supervisor_leg(fake_ari, caller)
    await fake_ari.agent_answers(leg)
    await eventually(lambda: len(_members(fake_ari, f"{caller}-monitor")) == 2)

    fake_ari.refusing[("POST", rf"/channels/{re.escape(agent_channel)}/snoop/.+")] = 2
    status, body = await _monitor(center, caller, sup, "whisper")
    assert status == 502 and body["error"]["code"] == "control_failed", body
    assert _monitor_legs(fake_ari) == set() and f"{caller}-monitor" not in fake_ari.bridges
    assert _members(fake_ari, f"{caller}-bridge") == {caller, agent_channel}  # call goes on
    steps = center.server.app[appkeys.MONITOR].steps
    assert await steps.current(caller) == {}
    async with center.sessions() as session:
        end = await session.scalar(select(AuditEntry).where(
            AuditEntry.object_id == caller, AuditEntry.action == "monitor.end"))
    assert end is not None and (end.detail["reason"], end.detail["mode"]) == ("failed",
                                                                              "listen")
    assert (await _monitor(center, caller, sup, "listen"))[0] == 200  # may start again
