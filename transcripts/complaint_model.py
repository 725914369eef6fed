"""A small logistic regression on top of the lexicon detector, for complaints the lexicons miss.

Many complaints only describe a problem ("the tracking hasn't changed in ten days") without a
dissatisfaction word. The model sees the lexicon detector's own result (score, evidence per
category and speaker, negated and hedged terms) together with character n-grams (they need no
tokenizer, so they work for Chinese and Korean too) and word n-grams of the customer's lines and,
separately, the agent's. Its weights are ``complaint_model.json``, written by
``python -m transcripts.train_complaints`` from the labelled set and the first held-out set only.

The model knows the languages it was trained on; for any other language the detector stays
lexicon-only, so adding a language is still adding a lexicon file. The lexicon features depend on
the lexicons, so the model records a digest of each lexicon file and warns when one changed since
training: retrain after editing a lexicon.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).with_name("complaint_model.json")
TOP_NGRAMS = 5
BLOCKS = ("c", "a")  # customer and agent n-grams are separate features

_DIGITS = re.compile(r"\d")
_NOISE = re.compile(r"[\s.,!?;:()\"'’…~。，！？；：（）、\-]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class FeatureConfig:
    char_min: int = 1
    char_max: int = 3
    words: bool = True
    agent: bool = True
    lex_scale: float = 1.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        return cls(**data)


def lexicon_features(result: Any, threshold: float) -> dict[str, float]:
    """The lexicon detector's result as numbers: how much evidence, from whom, of what kind."""
    lang = result.language
    found = {"lex:score": result.score, "lex:fires": float(result.score >= threshold)}
    found[f"{lang}|lex:score"] = result.score
    for item in result.evidence:
        who = "c" if item["speaker"] == "customer" else "a"
        for term in item["terms"]:
            weight = term["weight"]
            sign = "pos" if weight > 0 else "neg"
            _add(found, f"lex:{who}:{sign}", abs(weight))
            _add(found, f"lex:kind:{term['kind']}", 1.0)
            if term["category"] and weight > 0:
                _add(found, f"lex:cat:{term['category']}", weight)
            for flag in ("negator", "hedge", "intensifier"):
                if term[flag]:
                    _add(found, f"lex:{flag}", 1.0)
    # Squash counts and sums so one long transcript does not dominate.
    return {k: (math.log1p(v) if k.startswith("lex:") and "score" not in k else v)
            for k, v in found.items()}


def _add(found: dict[str, float], key: str, value: float) -> None:
    found[key] = found.get(key, 0.0) + value


def normalise(text: str) -> str:
    text = _DIGITS.sub("0", text.lower())
    return _SPACE.sub(" ", _NOISE.sub(" ", text)).strip()


def utterance_ngrams(text: str, config: FeatureConfig) -> set[str]:
    text = normalise(text)
    padded = f" {text} "
    grams = {
        padded[i : i + n]
        for n in range(config.char_min, config.char_max + 1)
        for i in range(len(padded) - n + 1)
    }
    grams = {g for g in grams if g.strip()}
    if config.words:
        words = text.split()
        grams |= {f"w:{w}" for w in words}
        grams |= {f"w:{a} {b}" for a, b in zip(words, words[1:], strict=False)}
    return grams


def transcript_ngrams(
    turns: Sequence[Any], config: FeatureConfig
) -> dict[str, dict[str, int]]:
    """Per block ("c" customer, "a" agent): each n-gram and the first utterance it occurs in."""
    blocks: dict[str, dict[str, int]] = {block: {} for block in BLOCKS}
    for index, turn in enumerate(turns):
        block = "c" if turn.speaker == "customer" else "a"
        if block == "a" and not config.agent:
            continue
        for gram in utterance_ngrams(turn.text, config):
            blocks[block].setdefault(gram, index)
    return blocks


def sparse_features(
    lang: str, blocks: Mapping[str, Mapping[str, int]], lexical: Mapping[str, float],
    config: FeatureConfig, vocabulary: Container[str],
) -> dict[str, float]:
    """Feature name -> value. N-gram blocks are binary and L2-normalised over known n-grams; the
    other features are multiplied by ``lex_scale``, which weakens their penalty."""
    dense = {"bias": 1.0, f"lang:{lang}": 1.0, **lexical}
    values = {k: v * config.lex_scale for k, v in dense.items()}
    for block, grams in blocks.items():
        known = [f"{block}|{g}" for g in grams if f"{block}|{g}" in vocabulary]
        for name in known:
            values[name] = 1.0 / math.sqrt(len(known))
    return values


@dataclass(frozen=True)
class ModelScore:
    probability: float
    ngrams: list[dict[str, Any]]


class ComplaintModel:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.languages = frozenset(data["languages"])
        self.config = FeatureConfig.from_dict(data["config"])
        self.threshold = float(data["threshold"])
        self.penalty = float(data["penalty"])
        self.lexicon_threshold = float(data["lexicon_threshold"])
        self.weights: dict[str, float] = dict(data["weights"])
        self.lexicon_digests: dict[str, str] = dict(data.get("lexicon_digests", {}))
        self.cross_validation: dict[str, Any] = dict(data.get("cross_validation", {}))

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> ComplaintModel:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def covers(self, language: str) -> bool:
        return language in self.languages

    def check_lexicons(self, directory: Path) -> None:
        for language, digest in self.lexicon_digests.items():
            path = directory / f"{language}.json"
            if path.exists() and lexicon_digest(path) != digest:
                log.warning("lexicon %s changed since the complaint model was trained; "
                            "retrain with python -m transcripts.train_complaints", path.name)

    def score(self, turns: Sequence[Any], lexicon_result: Any) -> ModelScore:
        blocks = transcript_ngrams(turns, self.config)
        lexical = lexicon_features(lexicon_result, self.lexicon_threshold)
        values = sparse_features(lexicon_result.language, blocks, lexical, self.config,
                                 self.weights)
        contributions = {k: v * self.weights.get(k, 0.0) for k, v in values.items()}
        z = sum(contributions.values())
        probability = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
        return ModelScore(round(probability, 4),
                          _top_ngrams(contributions, blocks, self.config.char_max))


def _top_ngrams(
    contributions: Mapping[str, float], blocks: Mapping[str, Mapping[str, int]], longest: int
) -> list[dict[str, Any]]:
    """The words, word pairs and longest character n-grams that pushed most towards a complaint.

    Shorter character n-grams ("v", "问") also count in the score but say nothing to a reader.
    """

    def readable(gram: str) -> bool:
        return gram.startswith("w:") or (len(gram) == longest and " " not in gram)

    grams = [(k, v) for k, v in contributions.items()
             if k[:2] in ("c|", "a|") and v > 0 and readable(k[2:])]
    grams.sort(key=lambda kv: (-kv[1], kv[0]))
    shown: dict[tuple[str, str], dict[str, Any]] = {}
    for name, value in grams:
        text = name[2:].removeprefix("w:")  # a word and the same three letters show once
        if len(shown) < TOP_NGRAMS and (name[0], text) not in shown:
            index = blocks[name[0]][name[2:]]
            shown[name[0], text] = {"ngram": text, "utterance_index": index,
                                    "weight": round(value, 4)}
    return list(shown.values())


def lexicon_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@cache
def default_model() -> ComplaintModel | None:
    """The shipped model, loaded once per process; ``None`` if the file is missing."""
    if not MODEL_PATH.exists():
        log.warning("no complaint model at %s; complaint detection is lexicon-only", MODEL_PATH)
        return None
    return ComplaintModel.load()

