"""Which speech model decodes a call: one per IVR language, with a default.

`CALLCENTER_VOSK_MODELS` maps languages to models (`zh=/models/vosk-model-cn-0.22,...`);
a call whose `ivr.language` has none is decoded with `CALLCENTER_VOSK_MODEL`. Every model
is located when the worker starts, so a bad setting fails there, not once per job; each
decoder process loads a model the first time a call needs it, and keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from transcripts.asr import locate_model
from transcripts.exceptions import ModelNotFound


def parse(entries: Iterable[str]) -> dict[str, str]:
    """`language=model` entries as a mapping; the language in lower case."""
    models: dict[str, str] = {}
    for entry in entries:
        language, sep, model = entry.partition("=")
        if not sep or not language.strip() or not model.strip():
            raise ModelNotFound(entry, "expected language=model in CALLCENTER_VOSK_MODELS")
        models[language.strip().lower()] = model.strip()
    return models


@dataclass(frozen=True)
class LanguageModels:
    default: str
    by_language: dict[str, str] = field(default_factory=dict)

    @classmethod
    def locate(cls, default: str, entries: Iterable[str]) -> LanguageModels:
        """Each model found on disk (raises ModelNotFound, naming the language)."""
        located: dict[str, str] = {}
        for language, setting in parse(entries).items():
            try:
                located[language] = str(locate_model(setting))
            except ModelNotFound as e:
                raise ModelNotFound(f"{language}={setting}", e.reason) from e
        return cls(str(locate_model(default)), located)

    def for_language(self, language: str | None) -> str:
        return self.by_language.get((language or "").lower(), self.default)

    def describe(self) -> str:
        """For the start-up lines: which model serves which language."""
        parts = [f"{language}: {model}" for language, model in sorted(self.by_language.items())]
        return "; ".join([*parts, f"other languages: {self.default}"])
