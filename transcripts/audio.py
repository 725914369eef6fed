"""Reading call recordings into 16-bit sample arrays at the recognizer's rate.

WAV files are read with the stdlib ``wave`` module. Python 3.11's ``wave`` refuses
WAVE_FORMAT_EXTENSIBLE headers, which sox and ffmpeg write for 24/32-bit or multichannel
PCM, so those go through a minimal RIFF chunk reader instead.

Resampling is a polyphase windowed-sinc filter, the design of Kaldi's ``LinearResample``
(Hann-windowed sinc, 6 zero crossings, cutoff at 99% of the lower Nyquist frequency): it
low-passes before decimating, so 44.1 kHz or 22.05 kHz recordings do not alias into the
band the acoustic model listens to, and it costs well under 1% of decoding time.
"""

from __future__ import annotations

import math
import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from transcripts.exceptions import (
    EmptyAudio,
    MissingAudio,
    NotWav,
    UnsupportedEncoding,
    UnsupportedSampleWidth,
)

SILENCE_DBFS = -50.0
_SILENCE_FRAME_SECONDS = 0.1
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_RESAMPLE_ZEROS = 6
_RESAMPLE_BLOCK = 1 << 15


@dataclass(frozen=True)
class Audio:
    """Decoded audio: one contiguous int16 array per channel, all of equal length."""

    rate: int
    channels: tuple[np.ndarray, ...]

    @property
    def frames(self) -> int:
        return len(self.channels[0])

    @property
    def duration(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True)
class _Format:
    tag: int
    channels: int
    rate: int
    width: int


def load(path: str | os.PathLike[str], rate: int) -> Audio:
    """Read a WAV file and resample every channel to ``rate``."""
    audio = read_wav(path)
    if audio.rate == rate:
        return audio
    return Audio(rate, tuple(resample(ch, audio.rate, rate) for ch in audio.channels))


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """Read PCM WAV (8, 16 or 32-bit, any rate and channel count) at its own rate."""
    path = Path(path)
    if not path.is_file():
        raise MissingAudio(path, "the recording does not exist")
    if path.stat().st_size == 0:
        raise EmptyAudio(path, "the recording is a 0-byte file")
    fmt, data = _read_pcm(path)
    if fmt.width not in (1, 2, 4):
        raise UnsupportedSampleWidth(
            path, f"{8 * fmt.width}-bit samples are not supported (use 8, 16 or 32-bit PCM)"
        )
    usable = len(data) - len(data) % (fmt.width * fmt.channels)
    if usable == 0:
        raise EmptyAudio(path, "the recording holds no audio frames")
    samples = _to_int16(data[:usable], fmt.width).reshape(-1, fmt.channels)
    channels = tuple(np.ascontiguousarray(samples[:, i]) for i in range(fmt.channels))
    return Audio(fmt.rate, channels)


def _read_pcm(path: Path) -> tuple[_Format, bytes]:
    try:
        with wave.open(str(path), "rb") as w:
            fmt = _Format(_WAVE_FORMAT_PCM, w.getnchannels(), w.getframerate(), w.getsampwidth())
            return fmt, w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        pass  # not plain PCM to `wave`: the RIFF reader tells extensible PCM from garbage
    with path.open("rb") as f:
        return _read_riff(f, path)


def _read_riff(f: BinaryIO, path: Path) -> tuple[_Format, bytes]:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise NotWav(path, "not a RIFF/WAVE file")
    fmt = None
    while len(chunk := f.read(8)) == 8:
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            fmt = _parse_fmt(f.read(size), path)
        elif cid == b"data":
            if fmt is None:
                break
            return fmt, f.read(size)
        else:
            f.seek(size, os.SEEK_CUR)
        f.seek(size % 2, os.SEEK_CUR)
    raise NotWav(path, "the WAV file has no readable fmt/data chunks")


def _parse_fmt(raw: bytes, path: Path) -> _Format:
    if len(raw) < 16:
        raise NotWav(path, "truncated fmt chunk")
    tag, channels, rate, _, block_align, _ = struct.unpack("<HHIIHH", raw[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(raw) >= 26:
        tag = struct.unpack("<H", raw[24:26])[0]  # first bytes of the SubFormat GUID
    if tag != _WAVE_FORMAT_PCM:
        raise UnsupportedEncoding(path, f"WAV encoding 0x{tag:04x} is not integer PCM")
    if channels == 0 or rate == 0:
        raise NotWav(path, "the fmt chunk declares no channels or a zero rate")
    return _Format(tag, channels, rate, block_align // channels)


def _to_int16(data: bytes, width: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(data, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 4:
        return (np.frombuffer(data, "<i4") >> 16).astype(np.int16)
    return np.frombuffer(data, "<i2").astype(np.int16)


def is_silent(samples: np.ndarray, rate: int, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """True when no 100 ms frame rises above ``threshold_dbfs`` RMS."""
    frame = min(len(samples), max(1, int(rate * _SILENCE_FRAME_SECONDS)))
    if frame == 0:
        return True
    usable = len(samples) - len(samples) % frame
    blocks = samples[:usable].astype(np.float64).reshape(-1, frame)
    loudest = math.sqrt(float(np.max(np.mean(blocks * blocks, axis=1))))
    return loudest < 32768.0 * 10 ** (threshold_dbfs / 20)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample int16 ``samples`` from ``src_rate`` to ``dst_rate`` (windowed sinc)."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    first, weights = _polyphase_filter(src_rate, dst_rate, up, down)
    n_out = len(samples) * up // down
    n_q = -(-n_out // up)
    taps = weights.shape[1]
    left = max(0, -int(first.min()))
    right = max(0, n_q * down + int(first.max()) + taps - len(samples))
    padded = np.concatenate(
        [np.zeros(left, np.float32), samples.astype(np.float32), np.zeros(right, np.float32)]
    )
    windows = sliding_window_view(padded, taps)
    out = np.empty((n_q, up), np.float32)
    for q0 in range(0, n_q, _RESAMPLE_BLOCK):
        starts = np.arange(q0, min(q0 + _RESAMPLE_BLOCK, n_q)) * down + left
        for p in range(up):
            out[q0 : q0 + len(starts), p] = windows[starts + first[p]] @ weights[p]
    return np.clip(np.rint(out.ravel()[:n_out]), -32768, 32767).astype(np.int16)


def _polyphase_filter(
    src_rate: int, dst_rate: int, up: int, down: int
) -> tuple[np.ndarray, np.ndarray]:
    """First input offset and tap weights for each of the ``up`` output phases."""
    cutoff = 0.99 * 0.5 * min(src_rate, dst_rate)
    half_width = _RESAMPLE_ZEROS / (2 * cutoff)
    centre = np.arange(up) * down / up  # output phase position, in input samples
    first = np.ceil(centre - half_width * src_rate).astype(np.int64)
    last = np.floor(centre + half_width * src_rate).astype(np.int64)
    taps = int((last - first).max()) + 1
    offsets = first[:, None] + np.arange(taps)[None, :]
    t = (centre[:, None] - offsets) / src_rate
    window = np.where(
        np.abs(t) < half_width, 0.5 * (1 + np.cos(2 * np.pi * cutoff / _RESAMPLE_ZEROS * t)), 0.0
    )
    weights = 2 * cutoff * np.sinc(2 * cutoff * t) * window / src_rate
    return first, weights.astype(np.float32)
