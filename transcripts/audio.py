"""Reading call recordings into 16-bit sample arrays at the recognizer's rate.

WAV files are read by a minimal RIFF chunk reader (plain and WAVE_FORMAT_EXTENSIBLE PCM,
which sox and ffmpeg write for 32-bit or multichannel audio). `open_wav` reads only the
header and checks it against size and duration limits; the frames are then read in
blocks (`WavFile.channel`, `silent_channels`), so decoding a recording takes memory
bounded by the block size, not by what the file is or claims to be.

Resampling is a polyphase windowed-sinc filter, the design of Kaldi's ``LinearResample``
(Hann-windowed sinc, 6 zero crossings, cutoff at 99% of the lower Nyquist frequency): it
low-passes before decimating, so 44.1 kHz or 22.05 kHz recordings do not alias into the
band the acoustic model listens to, and it costs well under 1% of decoding time.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from transcripts.exceptions import (
    EmptyAudio,
    MissingAudio,
    NotWav,
    TooLarge,
    UnsupportedEncoding,
    UnsupportedSampleWidth,
)

SILENCE_DBFS = -50.0
_SILENCE_FRAME_SECONDS = 0.1
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_RESAMPLE_ZEROS = 6
_RESAMPLE_BLOCK = 1 << 15
_STREAM_FRAMES = 1 << 20  # frames read at a time: memory per block, whatever the file


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


@dataclass(frozen=True)
class Limits:
    """What a recording may declare in its header; checked before any audio is read."""

    max_bytes: int = 2 * 1024**3
    max_seconds: float = 4 * 3600.0


@dataclass(frozen=True)
class WavFile:
    """An opened recording: its format and where its frames are, none of them read yet.

    Frames are read in blocks, so memory stays bounded whatever size the file has.
    """

    path: Path
    fmt: _Format
    offset: int  # of the first frame
    frames: int  # whole frames present: as declared, but no more than the file holds

    @property
    def duration(self) -> float:
        return self.frames / self.fmt.rate

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as int16, one column per channel."""
        align = self.fmt.width * self.fmt.channels
        with self.path.open("rb") as f:
            f.seek(self.offset + start * align)
            raw = f.read(max(0, stop - start) * align)
        raw = raw[: len(raw) - len(raw) % align]
        return _to_int16(raw, self.fmt.width).reshape(-1, self.fmt.channels)

    def channel(self, index: int, rate: int) -> Iterator[np.ndarray]:
        """One channel at `rate`, in blocks of about a million samples."""
        if self.fmt.rate == rate:
            for start in range(0, self.frames, _STREAM_FRAMES):
                yield np.ascontiguousarray(self.read(start, start + _STREAM_FRAMES)[:, index])
            return
        yield from _resample_stream(self, index, rate)


def open_wav(path: str | os.PathLike[str], limits: Limits | None = None) -> WavFile:
    """Read a recording's header and check it against `limits`; no audio is read."""
    path = Path(path)
    if not path.is_file():
        raise MissingAudio(path, "the recording does not exist")
    size = path.stat().st_size
    if size == 0:
        raise EmptyAudio(path, "the recording is a 0-byte file")
    limits = limits or Limits(max_bytes=size, max_seconds=math.inf)
    if size > limits.max_bytes:
        raise TooLarge(path, f"the recording is over {limits.max_bytes} bytes")
    with path.open("rb") as f:
        fmt, offset, declared = _read_riff(f, path)
    align = fmt.width * fmt.channels
    if declared > limits.max_bytes or declared / align / fmt.rate > limits.max_seconds:
        raise TooLarge(path, f"the recording declares over {limits.max_bytes} bytes or "
                             f"{limits.max_seconds:g} s of audio")
    frames = min(declared, size - offset) // align
    if frames <= 0:
        raise EmptyAudio(path, "the recording holds no audio frames")
    return WavFile(path, fmt, offset, frames)


def silent_channels(wav: WavFile, threshold_dbfs: float = SILENCE_DBFS) -> tuple[bool, ...]:
    """For each channel, whether no 100 ms frame rises above `threshold_dbfs` RMS."""
    frame = min(wav.frames, max(1, int(wav.fmt.rate * _SILENCE_FRAME_SECONDS)))
    usable = wav.frames - wav.frames % frame
    step = frame * max(1, _STREAM_FRAMES // frame)
    loudest = np.zeros(wav.fmt.channels)
    for start in range(0, usable, step):
        block = wav.read(start, min(start + step, usable)).astype(np.float32)
        power = (block * block).reshape(-1, frame, wav.fmt.channels).mean(axis=1).max(axis=0)
        loudest = np.maximum(loudest, power)
    limit = 32768.0 * 10 ** (threshold_dbfs / 20)
    return tuple(bool(math.sqrt(p) < limit) for p in loudest)


def load(path: str | os.PathLike[str], rate: int) -> Audio:
    """Read a WAV file whole and resample every channel to ``rate``."""
    audio = read_wav(path)
    if audio.rate == rate:
        return audio
    return Audio(rate, tuple(resample(ch, audio.rate, rate) for ch in audio.channels))


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """Read PCM WAV (8, 16 or 32-bit, any rate and channel count) whole, at its own rate."""
    wav = open_wav(path)
    samples = wav.read(0, wav.frames)
    return Audio(wav.fmt.rate, tuple(np.ascontiguousarray(samples[:, i])
                                     for i in range(wav.fmt.channels)))


def _read_riff(f: BinaryIO, path: Path) -> tuple[_Format, int, int]:
    """The format, the data chunk's offset and its declared size."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise NotWav(path, "not a RIFF/WAVE file")
    fmt = None
    while len(chunk := f.read(8)) == 8:
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            fmt = _parse_fmt(f.read(min(size, 1024)), path)
            f.seek(max(0, size - 1024), os.SEEK_CUR)
        elif cid == b"data":
            if fmt is None:
                break
            return fmt, f.tell(), size
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
    if channels == 0 or rate == 0 or block_align % channels:
        raise NotWav(path, "the fmt chunk declares no channels, a zero rate or a bad block")
    width = block_align // channels
    if width not in (1, 2, 4):
        raise UnsupportedSampleWidth(
            path, f"{8 * width}-bit samples are not supported (use 8, 16 or 32-bit PCM)")
    return _Format(tag, channels, rate, width)


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


def _resample_stream(wav: WavFile, index: int, dst_rate: int) -> Iterator[np.ndarray]:
    """`resample` of one channel, computed a block of output at a time from the file.

    Each block reads only the input its filter taps reach (zeros beyond either end, as
    `resample` pads), so the result is the same and memory does not grow with the file.
    """
    src_rate, n = wav.fmt.rate, wav.frames
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    first, weights = _polyphase_filter(src_rate, dst_rate, up, down)
    taps = weights.shape[1]
    n_out = n * up // down
    n_q = -(-n_out // up)
    block = max(1, min(_RESAMPLE_BLOCK, _STREAM_FRAMES // down))
    for q0 in range(0, n_q, block):
        q1 = min(q0 + block, n_q)
        lo, hi = q0 * down + int(first.min()), (q1 - 1) * down + int(first.max()) + taps
        x = np.zeros(hi - lo, np.float32)
        got = wav.read(max(lo, 0), min(hi, n))[:, index]
        x[max(lo, 0) - lo : max(lo, 0) - lo + len(got)] = got
        windows = sliding_window_view(x, taps)
        starts = np.arange(q0, q1) * down - lo
        out = np.empty((q1 - q0, up), np.float32)
        for p in range(up):
            out[:, p] = windows[starts + first[p]] @ weights[p]
        flat = out.ravel()[: n_out - q0 * up]
        yield np.clip(np.rint(flat), -32768, 32767).astype(np.int16)


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
