"""Queue callbacks through the ARI adapter and a fake Asterisk: the caller's key press in
the Stasis application asks for the callback, and originate places it (agent first, then
the customer), its outcome reported as callback.result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import appkeys
from core.models import Call, Callback
from core.settings import Settings
from tests.conftest import make_settings
from tests.fake_ari import FakeAri
from tests.test_ari import _ready, fake_ari  # noqa: F401 (fixture)
from tests.waits import eventually

NUMBER = "+8613800000501"


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path,
             fake_ari: FakeAri) -> Settings:  # noqa: F811
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         ari_url=fake_ari.url, ari_user=fake_ari.user,
                         ari_password=fake_ari.password, ari_app=fake_ari.app,
                         ari_recordings_dir=tmp_path / "recordings", ari_callback_digit="1",
                         callback_retry_s=0.3, callback_attempts=2)


async def row(center: Any, model: Any, key: str) -> Any:
    async with center.sessions() as session:
        return await session.get(model, key)


async def originated(fake: FakeAri, suffix: str) -> Any:
    """The originate request of the leg whose id ends with `suffix`."""
    async def found() -> Any:
        return next((r for r in fake.made("POST", "/channels")
                     if r.params.get("channelId", "").endswith(suffix)), None)

    return await eventually(found, timeout=15, what=f"an originate of *{suffix}")


async def waiting_caller_asks_for_a_callback(center: Any, fake: FakeAri) -> tuple[Any, str]:
    agent = await center.agent("eve", extension="1006")
    await _ready(center)
    caller = await fake.caller_arrives(NUMBER)
    await fake.wait_request("POST", f"/channels/{caller}/moh")
    await fake.dtmf(caller, "1")
    await fake.wait_request("DELETE", f"/channels/{caller}")  # the caller's line is released
    call = await eventually(lambda: row(center, Call, caller), timeout=15)
    assert call.state == "callback"
    return agent, caller


async def test_the_callback_key_in_the_stasis_app_gets_the_caller_called_back(
        center, fake_ari) -> None:  # noqa: F811
    agent, caller = await waiting_caller_asks_for_a_callback(center, fake_ari)
    await agent.available()
    pop = await agent.inbox.expect("screen_pop")
    callback_id = pop["callback"]["callback_id"]
    assert pop["callback"]["call_id"] == caller and pop["call_id"] == callback_id
    agent_leg = await originated(fake_ari, f"{callback_id}-cbagent-1")
    assert agent_leg.params["endpoint"] == "PJSIP/1006"
    assert agent_leg.params["callerId"] == NUMBER
    await fake_ari.agent_answers(agent_leg.params["channelId"])
    customer_leg = await originated(fake_ari, f"{callback_id}-cbcust-1")
    assert customer_leg.params["endpoint"] == f"Local/{NUMBER}@callcenter-callback"
    await fake_ari.agent_answers(customer_leg.params["channelId"])  # the customer picks up
    await agent.inbox.expect("call.connected", call_id=callback_id)
    bridge = fake_ari.bridges[f"{callback_id}-bridge"]
    assert set(bridge["channels"]) == {agent_leg.params["channelId"],
                                       customer_leg.params["channelId"]}
    # the event socket drops and comes back: the conversation goes on
    adapter = center.server.app[appkeys.ARI]
    await fake_ari.go_down()
    fake_ari.come_up()
    await eventually(lambda: fake_ari.connections >= 2 and adapter.ready.is_set(), timeout=15)
    live = await center.server.app[appkeys.CALLS].store.call(callback_id)
    assert live["state"] == "connected"
    await fake_ari.hang_up(customer_leg.params["channelId"])
    ended = await agent.inbox.expect("call.ended", call_id=callback_id)
    assert "wrap_up_until" in ended
    await fake_ari.wait_request("DELETE", f"/channels/{agent_leg.params['channelId']}")
    stored = await row(center, Callback, callback_id)
    assert (stored.state, stored.attempts, stored.call_id) == ("connected", 1, caller)


async def test_a_busy_customer_is_tried_again_then_the_callback_fails(
        center, fake_ari) -> None:  # noqa: F811
    agent, _ = await waiting_caller_asks_for_a_callback(center, fake_ari)
    await agent.available()
    callback_id = (await agent.inbox.expect("screen_pop"))["callback"]["callback_id"]
    for attempt, cause in ((1, 17), (2, 19)):
        agent_leg = await originated(fake_ari, f"{callback_id}-cbagent-{attempt}")
        await fake_ari.agent_answers(agent_leg.params["channelId"])
        customer_leg = await originated(fake_ari, f"{callback_id}-cbcust-{attempt}")
        await fake_ari.hang_up(customer_leg.params["channelId"], cause=cause)
        await fake_ari.wait_request("DELETE", f"/channels/{agent_leg.params['channelId']}")
        await agent.inbox.expect("call.ended", call_id=callback_id,
                                 reason="callback_busy" if cause == 17 else
                                 "callback_no_answer")
    stored = await eventually(lambda: _failed(center, callback_id), timeout=15)
    assert (stored.attempts, stored.last_outcome) == (2, "no_answer")


async def _failed(center: Any, callback_id: str) -> Any:
    stored = await row(center, Callback, callback_id)
    return stored if stored is not None and stored.state == "failed" else None
