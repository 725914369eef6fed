"""Helpers that synthesize and write test recordings.

Speech comes from espeak-ng's Korean voice (22050 Hz mono), so every recognition test
also exercises resampling. The phrases are ones the small Korean Vosk model reliably
recognizes from espeak's voice, checked after differing earlier decodes in the same
process (Vosk's output depends slightly on what the process decoded before).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

AGENT_PHRASE = "여보세요 여보세요"
AGENT_WORD = "여보세요"
CUSTOMER_PHRASE = "좋아요 좋아요"
CUSTOMER_WORD = "좋아요"
ESPEAK_RATE = 22050


def speak(text: str, path: Path) -> np.ndarray:
    """Synthesize ``text`` with espeak-ng into ``path``; return its int16 samples."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for speech tests: apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (ESPEAK_RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def write_wav(path: Path, rate: int, *channels: np.ndarray, width: int = 2) -> Path:
    """Write plain PCM (format tag 1) with the stdlib; ``width`` may be 1 to 4 bytes."""
    frames = _interleave(channels, width)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def write_extensible_wav(
    path: Path, rate: int, *channels: np.ndarray, width: int = 4, float_data: bool = False
) -> Path:
    """Write a WAVE_FORMAT_EXTENSIBLE file, as sox and ffmpeg do for 24/32-bit audio."""
    if float_data:
        frames = np.stack([c.astype("<f4") / 32768 for c in channels], axis=1).tobytes()
    else:
        frames = _interleave(channels, width)
    subformat = (3 if float_data else 1).to_bytes(2, "little") + bytes.fromhex(
        "000000001000800000aa00389b71"
    )
    n, align = len(channels), len(channels) * width
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, n, rate, rate * align, align, 8 * width, 22,
                      8 * width, 0) + subformat  # fmt: skip
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"data", frames)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def stereo(left: np.ndarray, right: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Two channels taking turns: ``left`` speaks first, ``right`` after ``gap`` samples."""
    pause = np.zeros(gap, np.int16)
    return (
        np.concatenate([left, pause, np.zeros(len(right), np.int16)]),
        np.concatenate([np.zeros(len(left), np.int16), pause, right]),
    )


def tone(rate: int, seconds: float, hz: float, amplitude: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _interleave(channels: tuple[np.ndarray, ...], width: int) -> bytes:
    samples = np.stack(channels, axis=1).astype(np.int64)
    if width == 1:  # 8-bit WAV is unsigned
        return ((samples >> 8) + 128).astype(np.uint8).tobytes()
    samples <<= 8 * (width - 2)
    little = samples.astype("<i8").view(np.uint8).reshape(*samples.shape, 8)
    return little[..., :width].tobytes()


def _chunk(cid: bytes, data: bytes) -> bytes:
    return cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)
