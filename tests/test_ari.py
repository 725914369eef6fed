"""Whole calls from a (fake) Asterisk through the ARI adapter and the running service.

The fake speaks ARI's event JSON and records the REST requests the adapter makes;
everything else (Redis, database, agents' websockets) is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core import appkeys
from core.models import Interaction
from core.settings import Settings
from cti.ari_events import StasisStart, parse_event
from cti.ari_legs import Legs, agent_leg, event_id, offered_frame, parse_args
from tests.conftest import make_settings
from tests.fake_ari import FakeAri


@pytest.fixture
async def fake_ari(aiohttp_server: Any) -> AsyncIterator[FakeAri]:
    fake = FakeAri()
    server = await aiohttp_server(fake.make_app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await fake.close()


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str, redis_url: str,
             redis_prefix: str, tmp_path: Path, fake_ari: FakeAri) -> Settings:
    """The app's settings with the adapter pointed at the fake Asterisk."""
    overrides = getattr(request, "param", {})
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         ari_url=fake_ari.url, ari_user=fake_ari.user,
                         ari_password=fake_ari.password, ari_app=fake_ari.app,
                         ari_recordings_dir=tmp_path / "recordings", **overrides)


async def _ready(center: Any) -> None:
    adapter = center.server.app[appkeys.ARI]
    await asyncio.wait_for(adapter.ready.wait(), 5)


async def _record(center: Any, call_id: str) -> Interaction | None:
    async with center.sessions() as session:
        return await session.scalar(select(Interaction).where(Interaction.call_id == call_id))


async def _eventually(check: Callable[[], Awaitable[Any]], within_s: float = 15.0) -> Any:
    """Poll the database (which has no change feed) until `check` holds."""
    async with asyncio.timeout(within_s):
        while True:
            if result := await check():
                return result
            await asyncio.sleep(0.05)


async def _record_where(center: Any, call_id: str,
                        test: Callable[[Interaction], bool]) -> Interaction:
    async def check() -> Interaction | None:
        record = await _record(center, call_id)
        return record if record is not None and test(record) else None

    return await _eventually(check)


async def _connected_call(center: Any, fake: FakeAri, agent: Any,
                          number: str = "+8613800000001") -> tuple[str, str]:
    """A caller talking to `agent` through a bridge: (caller channel, agent channel)."""
    caller = await fake.caller_arrives(number)
    originate = await fake.wait_request("POST", "/channels")
    agent_channel = originate.params["channelId"]
    await agent.inbox.expect("screen_pop", call_id=caller)
    await fake.agent_answers(agent_channel)
    await agent.inbox.expect("call.connected", call_id=caller)
    await fake.wait_request("POST", f"/bridges/{caller}-bridge/addChannel")
    return caller, agent_channel


async def test_asterisk_call_queues_with_music_then_is_bridged_to_the_agent_and_ends(
        center, fake_ari, tmp_path):
    await center.add_customer("C1", "张伟", "+8613800000001", tier="gold")
    agent = await center.agent("amy", extension="1001", skills=("billing",))
    await _ready(center)

    caller = await fake_ari.caller_arrives("+8613800000001", exten="4000",
                                           args=("intent=billing,language=zh",))
    await fake_ari.wait_request("POST", f"/channels/{caller}/moh")
    assert fake_ari.made("POST", f"/channels/{caller}/answer")

    await agent.available()
    originate = await fake_ari.wait_request("POST", "/channels")
    assert originate.params["endpoint"] == "PJSIP/1001"
    assert originate.params["app"] == "callcenter"
    assert originate.params["callerId"] == "+8613800000001"
    bridge = await fake_ari.wait_request("POST", f"/bridges/{caller}-bridge")
    assert bridge.params["type"] == "mixing"
    pop = await agent.inbox.expect("screen_pop", call_id=caller)
    assert pop["customer"]["id"] == "C1"
    assert pop["ivr"] == {"intent": "billing", "language": "zh"}

    agent_channel = originate.params["channelId"]
    await fake_ari.agent_answers(agent_channel)
    await agent.inbox.expect("call.connected", call_id=caller)
    joined = await fake_ari.wait_request("POST", f"/bridges/{caller}-bridge/addChannel")
    assert joined.params["channel"] == f"{caller},{agent_channel}"
    assert fake_ari.made("DELETE", f"/channels/{caller}/moh")
    recording = await fake_ari.wait_request("POST", f"/bridges/{caller}-bridge/record")
    assert recording.params["name"] == f"cc-{caller}"

    await fake_ari.hang_up(caller)
    ended = await agent.inbox.expect("call.ended", call_id=caller)
    assert ended["wrap_up_until"] > 0
    await fake_ari.wait_request("DELETE", f"/channels/{agent_channel}")
    await fake_ari.wait_request("DELETE", f"/bridges/{caller}-bridge")
    record = await _record_where(center, caller, lambda r: r.recording_path is not None)
    assert record.outcome == "answered" and record.end_cause == "caller_hangup"
    assert record.answered_at is not None
    assert record.recording_path == str(tmp_path / "recordings" / f"cc-{caller}.wav")


async def test_caller_hanging_up_while_queued_is_abandoned(center, fake_ari):
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000060")
    await fake_ari.wait_request("POST", f"/channels/{caller}/moh")

    await fake_ari.hang_up(caller)

    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.outcome == "abandoned" and record.end_cause == "abandoned"
    agent = await center.agent("ned", extension="1002")
    await agent.available()
    await agent.inbox.nothing("screen_pop")
    assert not fake_ari.made("POST", "/channels")


async def test_hangup_while_the_event_socket_was_down_is_reconciled_after_reconnect(
        center, fake_ari):
    agent = await center.agent("bob", extension="1003")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent)

    await fake_ari.go_down()
    fake_ari.vanish(caller)  # the caller hangs up; nobody hears about it
    await asyncio.sleep(0.3)  # time passing on purpose: the socket stays down a while
    fake_ari.come_up()

    ended = await agent.inbox.expect("call.ended", call_id=caller, timeout=10)
    assert ended["wrap_up_until"] > 0
    await fake_ari.wait_request("DELETE", f"/channels/{agent_channel}")
    await fake_ari.wait_request("DELETE", f"/bridges/{caller}-bridge")
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.outcome == "answered" and record.end_cause == "normal"
    assert fake_ari.connections == 2


async def test_queued_caller_still_there_after_a_reconnect_is_routed_normally(
        center, fake_ari):
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000070")
    await fake_ari.wait_request("POST", f"/channels/{caller}/moh")

    await fake_ari.go_down()
    await asyncio.sleep(0.2)  # time passing on purpose: the socket stays down a while
    fake_ari.come_up()
    await _eventually(lambda: _true(fake_ari.connections == 2), within_s=10)
    await _ready(center)

    agent = await center.agent("cat", extension="1004")
    await agent.available()
    originate = await fake_ari.wait_request("POST", "/channels")
    assert originate.params["endpoint"] == "PJSIP/1004"
    await agent.inbox.expect("screen_pop", call_id=caller)


async def test_agent_hanging_up_ends_the_call_and_releases_the_caller(center, fake_ari):
    agent = await center.agent("dan", extension="1005")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent)

    await fake_ari.hang_up(agent_channel)

    await agent.inbox.expect("call.ended", call_id=caller)
    await fake_ari.wait_request("DELETE", f"/channels/{caller}")
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.end_cause == "agent_hangup"


async def test_digits_pressed_while_queued_are_kept_with_the_call(center, fake_ari):
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000080", args=("language=ko",))
    await fake_ari.wait_request("POST", f"/channels/{caller}/moh")

    for digit in "42#":
        await fake_ari.dtmf(caller, digit)

    record = await _record_where(center, caller, lambda r: r.ivr.get("digits") == "42#")
    assert record.ivr["language"] == "ko"


@pytest.mark.parametrize("settings", [{"ring_timeout_s": 0.5}], indirect=True)
async def test_unanswered_agent_leg_is_hung_up_when_the_call_goes_back_to_the_queue(
        center, fake_ari):
    agent = await center.agent("eve", extension="1006")
    await agent.available()
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000090")
    originate = await fake_ari.wait_request("POST", "/channels")

    await agent.inbox.expect("call.ended", call_id=caller, reason="ring_no_answer")
    await fake_ari.wait_request("DELETE", f"/channels/{originate.params['channelId']}")
    await fake_ari.wait_request("POST", f"/channels/{caller}/moh")


async def test_replaced_application_stops_the_adapter_instead_of_fighting_back(
        center, fake_ari):
    await _ready(center)
    await fake_ari.replace_app()
    # Time passing on purpose: proving it does NOT reconnect needs a wait well past the
    # first reconnect delay; a slow machine only makes the wait longer, never a false failure.
    await asyncio.sleep(1.5)
    assert fake_ari.connections == 1
    assert not center.server.app[appkeys.ARI].ready.is_set()


# The mapping itself, without I/O ----------------------------------------------


def test_stasis_arguments_become_queue_and_ivr_data():
    assert parse_args(["queue=sales,intent=billing", "language=zh"]) == (
        "sales", {"intent": "billing", "language": "zh"})
    assert parse_args([]) == ("default", {})


def test_bad_stasis_arguments_do_not_lose_the_call():
    start = parse_event(_stasis_start(["intent=two words"]))
    assert isinstance(start, StasisStart)
    legs = Legs(start.channel.id)
    legs.queue, legs.ivr = parse_args(start.args)
    frame = offered_frame(legs, start.channel, "e1")
    assert frame.ani == "+15551234" and frame.dnis == "4000" and frame.ivr.intent is None


def test_the_same_ari_event_always_gets_the_same_event_id():
    first, again = parse_event(_stasis_start([])), parse_event(_stasis_start([]))
    assert isinstance(first, StasisStart) and isinstance(again, StasisStart)
    assert event_id(first, first.channel.id) == event_id(again, again.channel.id)


def test_agent_legs_are_recognised_by_their_ids():
    legs = Legs("1714554001.7")
    assert agent_leg(legs.new_agent_channel(12)) == ("1714554001.7", 12)
    assert agent_leg("1714554001.7") is None


def test_events_the_adapter_does_not_use_are_skipped():
    assert parse_event('{"type": "ChannelVarset", "variable": "X", "value": "1"}') is None


def _stasis_start(args: list[str]) -> str:
    import json

    return json.dumps({
        "type": "StasisStart", "application": "callcenter",
        "timestamp": "2024-05-01T09:00:00.007+0000", "args": args,
        "channel": {"id": "1714554001.7", "name": "PJSIP/trunk-00000001", "state": "Ring",
                    "caller": {"name": "", "number": "+15551234"},
                    "connected": {"name": "", "number": ""}, "accountcode": "",
                    "dialplan": {"context": "from-pstn", "exten": "4000", "priority": 2},
                    "creationtime": "2024-05-01T09:00:00.000+0000", "language": "en"}})


async def _true(value: bool) -> bool:
    return value
