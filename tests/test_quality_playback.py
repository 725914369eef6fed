"""A recording plays in the browser for evaluation: a short-lived ticket, HTTP range
requests, access control (who may hear which call, expired, foreign and signed-out
tickets) and the audit log; the path is the one `recording.ready` gave."""

from __future__ import annotations

import asyncio
import struct

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from core.models import AuditEntry, Interaction
from tests.conftest import make_settings
from tests.quality_data import FORM, add_call
from tests.rest import request
from tests.waits import eventually

ANSWERS = {"greet": "yes", "verify": "yes", "offer": "no"}


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    samples = bytes((i * 7) % 256 for i in range(int(seconds * rate) * 2))
    return (b"RIFF" + struct.pack("<I", len(samples) + 36) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(samples)) + samples)


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    (tmp_path / "recordings" / "calls").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=tmp_path / "recordings", transcribe_in_process=False)


@pytest.fixture
def audio(settings):
    data = wav()
    (settings.recordings_dir / "calls" / "c1.wav").write_bytes(data)
    return data


async def ticket(center, token, interaction_id):
    return await request(center, "POST",
                         f"/api/v1/quality/calls/{interaction_id}/recording-ticket", token)


async def play(center, url, **headers):
    return await request(center, "GET", url, headers=headers)


async def test_the_recording_named_by_recording_ready_plays_with_range_requests(center, audio):
    agent, ivr = await center.answered_call("amy", "call-1", "+8613800000001")
    await ivr.event("call.ended", "call-1", cause="normal")
    await ivr.event("recording.ready", "call-1", path="calls/c1.wav")
    async with center.sessions() as session:
        record = await session.scalar(select(Interaction).where(Interaction.call_id == "call-1"))
    assert record.recording_path == "calls/c1.wav"
    sue = await center.login_token("sue", "supervisor")
    status, body = await ticket(center, sue, record.id)
    assert status == 201 and body["expires_in"] == 600, body
    url = body["url"]

    status, whole = await play(center, url)
    assert status == 200 and whole == audio
    status, part = await play(center, url, Range="bytes=100-199")
    assert status == 206 and part == audio[100:200]
    status, tail = await play(center, url, Range="bytes=-10")
    assert status == 206 and tail == audio[-10:]
    status, rest = await play(center, url, Range=f"bytes={len(audio) - 5}-")
    assert status == 206 and rest == audio[-5:]
    status, _ = await play(center, url, Range=f"bytes={len(audio) + 10}-")
    assert status == 416
    status, _ = await play(center, url, Range="bytes=oops")
    assert status == 416
    async with center.sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "recording")))
    # The ticket's issue is audited, once, not each of its range requests.
    assert [(e.actor, e.object_type, e.object_id) for e in entries] == \
        [("sue", "recording", str(record.id))]


async def test_headers_say_ranges_are_accepted_and_give_the_exact_range(center, audio):
    import aiohttp

    sue = await center.login_token("sue", "supervisor")
    amy_id = await center.add_agent("amy")
    call = await add_call(center, "call-1", amy_id, recording="calls/c1.wav")
    _, body = await ticket(center, sue, call)
    async with aiohttp.ClientSession() as http:
        async with http.get(center.url + body["url"], headers={"Range": "bytes=0-43"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 0-43/{len(audio)}"
            assert r.headers["Accept-Ranges"] == "bytes"
            assert r.headers["Content-Type"].startswith("audio/")
            assert r.headers["Cache-Control"] == "no-store"
            assert (await r.read())[:4] == b"RIFF"


async def test_tickets_that_lapsed_were_signed_out_or_name_another_call_are_refused(
        center, audio, settings):
    sue = await center.login_token("sue", "supervisor")
    amy_id = await center.add_agent("amy")
    first = await add_call(center, "call-1", amy_id, recording="calls/c1.wav")
    second = await add_call(center, "call-2", amy_id, recording="calls/c1.wav")
    _, body = await ticket(center, sue, first)
    status, error = await play(center, f"/api/v1/quality/recordings/{second}"
                                       f"?ticket={body['ticket']}")
    assert status == 403 and "another recording" in error["error"]["message"]
    for forged in ("nope", "x" * 500, "%E4%BD%A0"):
        status, error = await play(center, f"/api/v1/quality/recordings/{first}?ticket={forged}")
        assert status == 401 and error["error"]["code"] == "unauthorized", forged
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await redis.pexpire(f"{settings.redis_prefix}:recticket:{body['ticket']}", 1)
        await eventually(_refused(center, body["url"]), timeout=30, what="lapsed ticket")
    finally:
        await redis.aclose()
    _, fresh = await ticket(center, sue, first)
    assert (await play(center, fresh["url"]))[0] == 200
    assert (await request(center, "POST", "/api/v1/logout", sue))[0] == 200
    status, error = await play(center, fresh["url"])
    assert status == 401 and "sign in again" in error["error"]["message"]


def _refused(center, url):
    async def check():
        return (await play(center, url))[0] == 401
    return check


async def test_only_managers_and_the_evaluated_agent_hear_a_call(center, audio):
    sue = await center.login_token("sue", "supervisor")
    amy = await center.login_token("amy", "agent")
    bob = await center.login_token("bob", "agent")
    _, me = await request(center, "GET", "/api/v1/me", amy)
    call = await add_call(center, "call-1", me["agent_id"], recording="calls/c1.wav")
    assert (await ticket(center, amy, call))[0] == 404  # not evaluated yet: not hers to hear
    _, form = await request(center, "POST", "/api/v1/quality/forms", sue, json=FORM)
    status, _ = await request(center, "POST", "/api/v1/quality/evaluations", sue, json={
        "form_id": form["id"], "interaction_id": call, "answers": ANSWERS})
    assert status == 201
    status, body = await ticket(center, amy, call)
    assert status == 201 and (await play(center, body["url"]))[1] == audio
    assert (await ticket(center, bob, call))[0] == 404
    status, page = await request(center, "GET", f"/api/v1/quality/calls/{call}", bob)
    assert status == 404
    telephony = await center.telephony_token()
    assert (await ticket(center, telephony, call))[0] == 403
    assert (await request(center, "GET", f"/api/v1/quality/recordings/{call}",
                          telephony))[0] == 403
    assert (await play(center, f"/api/v1/quality/recordings/{call}"))[0] == 401
    # A bearer token plays it too (API clients), each request audited.
    status, data = await request(center, "GET", f"/api/v1/quality/recordings/{call}", sue)
    assert status == 200 and data == audio


async def test_a_call_without_a_readable_recording_gets_a_clear_error(center, settings):
    (settings.recordings_dir.parent / "elsewhere" / "secret.wav").write_bytes(wav())
    sue = await center.login_token("sue", "supervisor")
    amy_id = await center.add_agent("amy")
    silent = await add_call(center, "call-0", amy_id, recording=None)
    status, body = await ticket(center, sue, silent)
    assert status == 400 and "no recording" in body["error"]["message"]
    answers = []
    for n, path in enumerate(["calls/missing.wav", "../elsewhere/secret.wav",
                              str(settings.recordings_dir.parent / "elsewhere" / "secret.wav"),
                              "calls"]):
        call = await add_call(center, f"call-{n + 1}", amy_id, recording=path)
        answers.append(await ticket(center, sue, call))
    assert {status for status, _ in answers} == {404}
    assert len({body["error"]["message"] for _, body in answers}) == 1  # nothing told
    for path in ("/api/v1/quality/recordings/abc?ticket=x",
                 "/api/v1/quality/recordings/0?ticket=x",
                 "/api/v1/quality/calls/99999999999/recording-ticket"):
        method = "POST" if path.endswith("ticket") else "GET"
        assert (await request(center, method, path, sue))[0] == 404, path


async def test_a_ticket_from_one_node_plays_on_another_and_a_race_across_them_has_one_winner(
        center, audio, settings, aiohttp_server):
    from callcenter.app import create_app

    other = await aiohttp_server(create_app(settings))
    node_b = str(other.make_url("")).rstrip("/")

    class OnB:
        url = node_b

    sue = await center.login_token("sue", "supervisor")
    amy = await center.login_token("amy", "agent")
    _, me = await request(center, "GET", "/api/v1/me", amy)
    call = await add_call(center, "call-1", me["agent_id"], recording="calls/c1.wav")
    _, body = await ticket(center, sue, call)
    status, part = await play(OnB, body["url"], Range="bytes=0-99")
    assert status == 206 and part == audio[:100]
    _, form = await request(center, "POST", "/api/v1/quality/forms", sue, json=FORM)
    _, done = await request(center, "POST", "/api/v1/quality/evaluations", sue, json={
        "form_id": form["id"], "interaction_id": call, "answers": ANSWERS})
    path = f"/api/v1/quality/evaluations/{done['id']}"
    answers = await asyncio.gather(
        request(center, "POST", f"{path}/acknowledge", amy, json={}),
        request(OnB, "POST", f"{path}/dispute", amy, json={"reason": "no"}))
    assert sorted(status for status, _ in answers) == [200, 409], answers
