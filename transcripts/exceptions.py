"""Domain errors of the transcription core.

Each error carries a stable ``code`` (stored with a failed job) and a human ``reason``.
Constructor arguments are kept in ``args`` so the errors survive pickling across
worker processes.
"""

from __future__ import annotations

import os


class TranscriptionError(Exception):
    code = "transcription_error"

    def __init__(self, source: str | os.PathLike[str], reason: str) -> None:
        super().__init__(os.fspath(source), reason)
        self.source = os.fspath(source)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason} ({self.code})"


class ModelNotFound(TranscriptionError):
    code = "model_not_found"


class BadAudio(TranscriptionError):
    """The recording cannot be decoded as audio we support."""

    code = "bad_audio"


class MissingAudio(BadAudio):
    code = "missing"


class EmptyAudio(BadAudio):
    code = "empty"


class NotWav(BadAudio):
    code = "not_wav"


class UnsupportedSampleWidth(BadAudio):
    code = "bad_sample_width"


class UnsupportedEncoding(BadAudio):
    code = "bad_encoding"


class UnsupportedChannels(BadAudio):
    code = "bad_channels"


class NoSpeech(BadAudio):
    """Digital silence, or nothing the model recognized as words."""

    code = "silence"


class TooLarge(BadAudio):
    """Bigger or longer than the configured limits, by its size or its header."""

    code = "too_large"


class Unreadable(BadAudio):
    """Not a recording this service may read: outside the recordings directory, or not
    there. One code for both, so an error never tells whether a file outside exists."""

    code = "unreadable"
