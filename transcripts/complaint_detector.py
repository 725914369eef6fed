"""Complaint detection in call transcripts, driven by one lexicon file per language.

Each file in ``lexicons/`` is named after its language code (``en.json``, ``zh.json``); adding
a language is adding a file. A lexicon holds:

- ``categories``: per complaint category (product_quality, service_attitude, delivery,
  billing_refund, other) weighted ``terms``, ``when_negated`` expectations (words that signal a
  complaint only when negated: "hasn't *arrived*", "没*收到*", "도착 안 했어요") and ``topics``
  (words that only help choose the category);
- ``general``: the same for dissatisfaction words that name no category ("unacceptable");
- ``intent``: explicit complaint phrases ("file a complaint", "投诉", "불만", "신고");
- ``agent``: apologies and the like, counted only when the agent says them;
- ``neutral``: phrases that shield their words ("no problem", "카드 분실 신고");
- ``negators`` (before a term), ``post_negators`` (after it, Korean "없어요"), and
  ``expectation_post_negators`` (after an expectation only: "도착 안 했어요"), as exact words or
  glob patterns; ``rhetorical_negators`` ("不是…吗？") negate nothing in a question;
- ``intensifiers`` with their factors, clause ``boundaries`` ("but"), ``targets`` ("you",
  "你们"), English inflection ``suffixes`` ("ed", "ies:y": a lemma-like stem), the tokenizer
  (regex, jieba or whitespace) and the ``match`` mode (exact words, or substrings of whitespace
  words for Korean stems); ``negator_prefixes`` a segmenter leaves on a word ("没" in "没拿到");
- ``hedges`` before a term and ``post_hedges`` after it ("if", "以为", Korean "-면"): a
  conditional or a mistaken belief, which weakens the term;
- ``counter``: reassurance from the customer ("that was quick", "那就好"), negative evidence;
- ``deflections``: a change of subject ("anyway", "不关你们的事"); what the customer said before
  it in the same utterance counts little.

Scoring: each match contributes its weight times the strongest intensifier just before it. A
negator in the window before a term (or a post-negator after it) turns a complaint term into weak
counter-evidence ("not a complaint", "没有不满意", "불만 없어요") and turns an expectation into
evidence ("never arrived"). Windows stop at punctuation and boundary words. Dissatisfaction words
count half unless the utterance names a target (a topic, a category term or "you"), and terms in
a question count less ("what happens if I pay late?"). The customer's matches count in full;
everyone else's are multiplied by ``agent_weight``, so an agent apologising is weak evidence on
its own. The summed evidence ``raw`` becomes ``score = 1 - exp(-raw)``; the call is a complaint
when the score reaches the threshold (default tuned on tests/data/complaints_labelled.jsonl). The
category is the one with the most evidence, topic words adding a little.

On top of the lexicons, a small logistic regression (``complaint_model.py``, weights in
``complaint_model.json``) catches complaints that only describe a problem. It reads the lexicon
result and character/word n-grams, and decides for the languages it was trained on; any other
language stays lexicon-only. Retrain after changing a lexicon or the data:
``python -m transcripts.train_complaints --nested`` (deterministic; it reads only the labelled set
and the first held-out set, never the second).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

from transcripts.complaint_model import ComplaintModel, default_model

log = logging.getLogger(__name__)

LEXICON_DIR = Path(__file__).with_name("lexicons")
DEFAULT_THRESHOLD = 0.35
AGENT_WEIGHT = 0.35
NEGATED_TERM_FACTOR = -0.15
TOPIC_WEIGHT = 0.15
INTENSIFIER_WINDOW = 2
FALLBACK_LANGUAGE = "en"
BOUNDARY = "\x00"
QUESTION = "\x00?"
UNANCHORED_FACTOR = 0.5
QUESTION_FACTOR = 0.6
HEDGED_FACTOR = 0.25
DEFLECTED_FACTOR = 0.2
HEDGE_WINDOW = 8

# ASCII and full-width punctuation ends a clause, and with it any negation window.
_CLAUSE_SPLIT = re.compile(r"([.,!?;:()\"…~。，！？；：（）、]+)")
_EN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_SPEAKER_PREFIX = re.compile(r"^\s*(customer|agent)\s*[:\uff1a]\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str

    @classmethod
    def of(cls, value: Utterance | Mapping[str, Any]) -> Utterance:
        if isinstance(value, Utterance):
            return value
        return cls(str(value.get("speaker", "customer")), str(value.get("text", "")))


@dataclass(frozen=True)
class Entry:
    """One lexicon entry. ``kind`` is term, intent, expectation, apology or neutral."""

    text: str
    parts: tuple[str, ...]
    weight: float
    kind: str
    category: str | None = None


@dataclass(frozen=True)
class Lexicon:
    language: str
    tokenizer: str
    substring: bool
    entries: tuple[Entry, ...]
    topics: Mapping[str, str]
    targets: frozenset[str]
    suffixes: tuple[str, ...]
    negators: tuple[str, ...]
    post_negators: tuple[str, ...]
    expectation_post_negators: tuple[str, ...]
    rhetorical_negators: tuple[str, ...]
    hedges: tuple[str, ...]
    negator_prefixes: tuple[str, ...]
    post_hedges: tuple[str, ...]
    post_hedge_window: int
    intensifiers: Mapping[str, float]
    boundaries: frozenset[str]
    negation_window: int
    post_negation_window: int
    by_first: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, language: str, data: Mapping[str, Any]) -> Lexicon:
        entries = sorted(_entries(data), key=lambda e: (-len(e.parts), -len(e.text)))
        by_first: dict[str, list[Entry]] = {}
        for entry in entries:
            by_first.setdefault(entry.parts[0], []).append(entry)
        groups = data.get("categories", {})
        return cls(
            language=language,
            tokenizer=data.get("tokenizer", "regex"),
            substring=data.get("match", "exact") == "substring",
            entries=tuple(entries),
            topics={w.lower(): name for name, g in groups.items() for w in g.get("topics", [])},
            targets=frozenset(data.get("targets", [])),
            suffixes=tuple(data.get("suffixes", [])),
            negators=tuple(data.get("negators", [])),
            post_negators=tuple(data.get("post_negators", [])),
            expectation_post_negators=tuple(data.get("expectation_post_negators", [])),
            rhetorical_negators=tuple(data.get("rhetorical_negators", [])),
            hedges=tuple(data.get("hedges", [])),
            negator_prefixes=tuple(data.get("negator_prefixes", [])),
            post_hedges=tuple(data.get("post_hedges", [])),
            post_hedge_window=int(data.get("post_hedge_window", 0)),
            intensifiers=dict(data.get("intensifiers", {})),
            boundaries=frozenset(data.get("boundaries", [])),
            negation_window=int(data.get("negation_window", 3)),
            post_negation_window=int(data.get("post_negation_window", 0)),
            by_first={word: tuple(group) for word, group in by_first.items()},
        )

    def words(self) -> set[str]:
        """Every word the lexicon knows, for a segmenter's user dictionary."""
        found = {e.text for e in self.entries} | set(self.topics) | set(self.intensifiers)
        found |= set(self.negators) | set(self.hedges)
        return found | self.boundaries | self.targets

    def stems(self, word: str) -> list[str]:
        """``word`` and its possible lemmas: "leaking", "leaked" -> "leak"; "arrived" -> "arrive".

        A suffix may name a replacement ("ies:y"); a stem that ends in a doubled consonant is
        also tried undoubled ("jammed" -> "jamm" -> "jam").
        """
        found = [word]
        for suffix in self.suffixes:
            end, _, put = suffix.partition(":")
            if word.endswith(end) and len(word) > len(end) + 1:
                stem = word[: -len(end)]
                found += [stem + put] if put else [stem, stem + "e"]
                if not put and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiou":
                    found.append(stem[:-1])
        return found + [word[len(p) :] for p in self.negator_prefixes if word.startswith(p)]

    def candidates(self, word: str) -> Iterable[Entry]:
        if self.substring:
            return self.entries
        found = [e for stem in self.stems(word) for e in self.by_first.get(stem, ())]
        return sorted(found, key=lambda e: (-len(e.parts), -len(e.text)))

    def topic(self, word: str) -> str | None:
        return next((self.topics[s] for s in self.stems(word) if s in self.topics), None)


def _entries(data: Mapping[str, Any]) -> Iterable[Entry]:
    def make(text: str, weight: float, kind: str, category: str | None = None) -> Entry:
        return Entry(text, tuple(text.lower().split()), float(weight), kind, category)

    groups = [(None, data.get("general", {}))] + list(data.get("categories", {}).items())
    for category, group in groups:
        yield from (make(t, w, "term", category) for t, w in group.get("terms", {}).items())
        for text, weight in group.get("when_negated", {}).items():
            yield make(text, weight, "expectation", category)
    yield from (make(t, w, "intent") for t, w in data.get("intent", {}).items())
    yield from (make(t, w, "apology") for t, w in data.get("agent", {}).items())
    yield from (make(t, w, "counter") for t, w in data.get("counter", {}).items())
    yield from (make(t, 0.0, "deflection") for t in data.get("deflections", []))
    yield from (make(t, 0.0, "neutral") for t in data.get("neutral", []))


def load_lexicons(directory: Path = LEXICON_DIR) -> dict[str, Lexicon]:
    """Every ``{language}.json`` in ``directory``, keyed by language code."""
    lexicons = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        lexicons[path.stem] = Lexicon.from_dict(path.stem, data)
    return lexicons


def detect_language(text: str) -> str:
    if _HANGUL.search(text):
        return "ko"
    if _CJK.search(text):
        return "zh"
    return "en"


@dataclass
class Hit:
    entry: Entry
    start: int
    end: int
    tail: str = ""  # the rest of the last word after a substring match (Korean endings)
    head: str = ""  # a prefix the segmenter left on the word ("没" in "没拿到")


@dataclass
class DetectionResult:
    """``score`` is the model's probability when the model covers the language, else the lexicon
    score (``lexicon_score`` always); ``scorer`` says which decided. Each evidence entry is an
    utterance with the lexicon ``terms`` it matched and, when the model fired, the ``ngrams``
    from it that pushed the model most."""

    is_complaint: bool
    score: float
    category: str | None
    language: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    lexicon_score: float = 0.0
    scorer: str = "lexicon"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_DEFAULT_MODEL: Any = object()


class ComplaintDetector:
    """Lexicons, then the learned model (``complaint_model.py``) for the languages it covers.

    ``threshold`` overrides the decision threshold of whichever score decides; by default the
    model's cross-validated threshold, or ``lexicon_threshold`` without a model. ``model=None``
    makes the detector lexicon-only.
    """

    def __init__(
        self,
        lexicons: Mapping[str, Lexicon] | None = None,
        threshold: float | None = None,
        agent_weight: float = AGENT_WEIGHT,
        model: ComplaintModel | None = _DEFAULT_MODEL,
        lexicon_threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.lexicons = dict(lexicons) if lexicons is not None else load_lexicons()
        if not self.lexicons:
            raise ValueError("a complaint detector needs at least one lexicon")
        self.model = default_model() if model is _DEFAULT_MODEL else model
        if self.model is not None and lexicons is None:
            self.model.check_lexicons(LEXICON_DIR)
        self.lexicon_threshold = lexicon_threshold
        self.threshold = threshold
        self.agent_weight = agent_weight
        self._segmenters: dict[str, Any] = {}

    def detect(
        self, utterances: Iterable[Utterance | Mapping[str, Any]], language: str | None = None
    ) -> DetectionResult:
        turns = [Utterance.of(u) for u in utterances]
        result = self.detect_lexicon(turns, language)
        if self.model is None or not turns or not self.model.covers(result.language):
            return result
        scored = self.model.score(turns, result)
        threshold = self.model.threshold if self.threshold is None else self.threshold
        result.score, result.scorer = scored.probability, "model"
        result.is_complaint = scored.probability >= threshold
        if result.is_complaint:
            result.category = result.category or self._category(result)
            _attach_ngrams(result.evidence, turns, scored.ngrams)
        else:
            result.category = None
        return result

    def _category(self, result: DetectionResult) -> str:
        """The lexicon did not fire: its weaker evidence, else topic words, choose the category."""
        lexicon = self.lexicons[result.language]
        categories = dict.fromkeys(self._categories(lexicon), 0.0)
        for term in (t for e in result.evidence for t in e["terms"]):
            if term["category"] and term["weight"] > 0:
                categories[term["category"]] += term["weight"]
        return _best_category(categories)

    def detect_lexicon(
        self, utterances: Iterable[Utterance | Mapping[str, Any]], language: str | None = None
    ) -> DetectionResult:
        """The lexicon detector alone (the model's input)."""
        turns = [Utterance.of(u) for u in utterances]
        lexicon = self._lexicon_for(language, turns)
        raw, categories, evidence = 0.0, dict.fromkeys(self._categories(lexicon), 0.0), []
        for index, turn in enumerate(turns):
            factor = 1.0 if turn.speaker == "customer" else self.agent_weight
            terms = self._score_utterance(lexicon, turn, factor, categories)
            raw += sum(t["weight"] for t in terms)
            if terms:
                evidence.append(
                    {
                        "utterance_index": index,
                        "speaker": turn.speaker,
                        "text": turn.text,
                        "terms": terms,
                    }
                )
        score = round(1.0 - math.exp(-max(raw, 0.0)), 4)
        threshold = self.lexicon_threshold if self.threshold is None else self.threshold
        is_complaint = score >= threshold
        category = _best_category(categories) if is_complaint else None
        return DetectionResult(is_complaint, score, category, lexicon.language, evidence, score)

    def _lexicon_for(self, language: str | None, turns: list[Utterance]) -> Lexicon:
        if language in self.lexicons:
            return self.lexicons[language]
        detected = detect_language(" ".join(t.text for t in turns))
        if language is not None:
            log.warning("no complaint lexicon for %r, using %r", language, detected)
        fallback = self.lexicons.get(FALLBACK_LANGUAGE) or next(iter(self.lexicons.values()))
        return self.lexicons.get(detected) or fallback

    @staticmethod
    def _categories(lexicon: Lexicon) -> list[str]:
        found = [e.category for e in lexicon.entries if e.category]
        return list(dict.fromkeys(found + list(lexicon.topics.values())))

    def _score_utterance(
        self, lexicon: Lexicon, turn: Utterance, factor: float, categories: dict[str, float]
    ) -> list[dict[str, Any]]:
        context = _Context.build(self.tokenize(lexicon, turn.text))
        topics = [t for t in map(lexicon.topic, context.tokens) if t is not None]
        for name in topics:
            categories[name] += TOPIC_WEIGHT * factor
        hits = [h for h in _find_hits(lexicon, context) if h.entry.kind != "neutral"]
        # Apologies count from the agent only; reassurance ("that was quick") from the customer.
        dropped = "apology" if turn.speaker == "customer" else "counter"
        hits = [h for h in hits if h.entry.kind != dropped]
        # Dissatisfaction words count in full only when aimed at something: "this weather is
        # terrible" is not a complaint, "your delivery is terrible" is.
        anchored = bool(topics or lexicon.targets & set(context.tokens))
        anchored = anchored or any(h.entry.category for h in hits)
        # "My neighbour's dog barks all night. Anyway, ..." : what came before is not the call's
        # business.
        deflected = max((h.start for h in hits if h.entry.kind == "deflection"), default=-1)
        terms = []
        for hit in hits:
            term = _evaluate(lexicon, context, hit, factor, anchored)
            if term is None or hit.entry.kind == "deflection":
                continue
            if hit.start < deflected and term["weight"] > 0:
                term["weight"] = round(term["weight"] * DEFLECTED_FACTOR, 4)
            terms.append(term)
            if hit.entry.category and term["weight"] > 0:
                categories[hit.entry.category] += term["weight"]
        return terms

    def tokenize(self, lexicon: Lexicon, text: str) -> list[str]:
        """Lower-cased words, each clause closed by ``BOUNDARY`` (``QUESTION`` after a "?")."""
        tokens: list[str] = []
        pieces = _CLAUSE_SPLIT.split(text.lower())
        for clause, punctuation in zip(pieces[::2], pieces[1::2] + [""], strict=True):
            for word in self._clause_words(lexicon, clause):
                tokens.append(BOUNDARY if word in lexicon.boundaries else word)
            tokens.append(QUESTION if "?" in punctuation or "？" in punctuation else BOUNDARY)
        return tokens

    def _clause_words(self, lexicon: Lexicon, clause: str) -> list[str]:
        if lexicon.tokenizer == "jieba":
            return [w for w in self._segmenter(lexicon).lcut(clause) if w.strip()]
        if lexicon.tokenizer == "whitespace":
            return clause.split()
        return _EN_WORD.findall(clause.replace("\u2019", "'"))

    def _segmenter(self, lexicon: Lexicon) -> Any:
        if lexicon.language not in self._segmenters:
            import jieba  # imported lazily: loading its dictionary takes about a second

            jieba.setLogLevel(logging.WARNING)
            segmenter = jieba.Tokenizer()
            for word in sorted(lexicon.words()):
                if len(word) > 1:
                    segmenter.add_word(word.lower())
            self._segmenters[lexicon.language] = segmenter
        return self._segmenters[lexicon.language]


def _find_hits(lexicon: Lexicon, context: _Context) -> list[Hit]:
    """Longest entries first; a word used by one entry is not matched again."""
    hits, i = [], 0
    while i < len(context.tokens):
        found = _match_at(lexicon, context.tokens, i)
        hits.extend(found)
        i += max((h.end - h.start for h in found), default=1)
    for hit in hits:
        # Words inside a matched entry ("no problem", "doesn't work") negate nothing else.
        context.free[hit.start : hit.end] = [False] * (hit.end - hit.start)
    return hits


def _match_at(lexicon: Lexicon, tokens: list[str], i: int) -> list[Hit]:
    word = tokens[i]
    if word.startswith(BOUNDARY):
        return []
    found, taken = [], [False] * len(word)
    for entry in lexicon.candidates(word):
        n = len(entry.parts)
        if n > 1 and _parts_match(lexicon, entry.parts, tokens[i : i + n]):
            tail = _tail(tokens[i + n - 1], entry.parts[-1])
            return [Hit(entry, i, i + n, tail)]
        if n == 1 and lexicon.substring:
            at, size = word.find(entry.text), len(entry.text)
            if at >= 0 and not any(taken[at : at + size]):
                taken[at : at + size] = [True] * size
                found.append(Hit(entry, i, i + 1, word[at + size :]))
        elif n == 1 and entry.parts[0] in lexicon.stems(word):
            head = word[: -len(entry.parts[0])] if word.endswith(entry.parts[0]) else ""
            return [Hit(entry, i, i + 1, head=head)]
    return found


def _parts_match(lexicon: Lexicon, parts: tuple[str, ...], words: list[str]) -> bool:
    if len(words) < len(parts):
        return False
    if not lexicon.substring:
        return list(parts[:-1]) == words[:-1] and parts[-1] in lexicon.stems(words[-1])
    first, last = parts[0] in words[0], words[-1].startswith(parts[-1])
    return first and last and list(parts[1:-1]) == words[1:-1]


def _tail(word: str, part: str) -> str:
    return word[len(part) :] if word.startswith(part) else ""


@dataclass
class _Context:
    tokens: list[str]
    free: list[bool]
    question: list[bool]

    @classmethod
    def build(cls, tokens: list[str]) -> _Context:
        question, inside = [False] * len(tokens), False
        for i in range(len(tokens) - 1, -1, -1):
            inside = tokens[i] == QUESTION or (inside and not tokens[i].startswith(BOUNDARY))
            question[i] = inside
        return cls(tokens, [True] * len(tokens), question)

    def window(self, start: int, step: int, size: int) -> list[str]:
        """Up to ``size`` words from ``start`` in direction ``step``, stopping at a clause end.

        Words already part of a matched entry come back empty so they match no negator.
        """
        words: list[str] = []
        i = start
        while 0 <= i < len(self.tokens) and len(words) < size:
            if self.tokens[i].startswith(BOUNDARY):
                break
            words.append(self.tokens[i] if self.free[i] else "")
            i += step
        return words


def _evaluate(
    lexicon: Lexicon, context: _Context, hit: Hit, factor: float, anchored: bool
) -> dict[str, Any] | None:
    entry = hit.entry
    negator = _negator(lexicon, context, hit)
    intensifier, intensity = _intensifier(lexicon, context, hit.start)
    if entry.kind == "expectation":
        if negator is None:
            return None
        weight = entry.weight * intensity
    elif entry.kind == "counter":
        # "thanks, that was quick" reassures; "that's not fine" does not.
        if negator is not None:
            return None
        weight, intensifier = -entry.weight, None
    else:
        weight = entry.weight * (NEGATED_TERM_FACTOR if negator else intensity)
    hedge = _hedge(lexicon, context, hit) if weight > 0 else None
    if hedge is not None:
        weight *= HEDGED_FACTOR  # "if it arrives damaged", "I thought I'd been charged twice"
    if entry.kind == "term" and entry.category is None and not anchored:
        weight *= UNANCHORED_FACTOR
    if entry.kind == "term" and context.question[hit.start]:
        weight *= QUESTION_FACTOR  # "what happens if I pay late?" asks, it does not complain
    return {
        "term": entry.text,
        "kind": entry.kind,
        "category": entry.category,
        "weight": round(weight * factor, 4),
        "negator": negator,
        "intensifier": intensifier,
        "hedge": hedge,
    }


def _hedge(lexicon: Lexicon, context: _Context, hit: Hit) -> str | None:
    """A conditional or a mistaken belief around the term, in the same clause."""
    before = context.window(hit.start - 1, -1, HEDGE_WINDOW)
    found = next((w for w in before if _is_any(w, lexicon.hedges)), None)
    if found is not None or not lexicon.post_hedges:
        return found
    if hit.tail and _is_any(hit.tail, lexicon.post_hedges):
        return hit.tail
    after = context.window(hit.end, 1, lexicon.post_hedge_window)
    return next((w for w in after if _is_any(w, lexicon.post_hedges)), None)


def _negator(lexicon: Lexicon, context: _Context, hit: Hit) -> str | None:
    found = _plain_negator(lexicon, context, hit)
    # "这不是虚假宣传吗？", "isn't that misleading?": a negated question asserts.
    rhetorical = context.question[hit.start] and hit.entry.kind != "expectation"
    rhetorical = rhetorical and _is_any(found, lexicon.rhetorical_negators)
    return None if found is None or rhetorical else found


def _plain_negator(lexicon: Lexicon, context: _Context, hit: Hit) -> str | None:
    if hit.head in lexicon.negator_prefixes:
        return hit.head
    before = context.window(hit.start - 1, -1, lexicon.negation_window)
    for word in before:
        if _is_any(word, lexicon.negators):
            return word
    patterns = lexicon.post_negators
    if hit.entry.kind == "expectation":
        patterns += lexicon.expectation_post_negators
    if hit.tail and _is_any(hit.tail, patterns):
        return hit.tail
    after = context.window(hit.end, 1, lexicon.post_negation_window)
    return next((w for w in after if _is_any(w, patterns)), None)


def _intensifier(lexicon: Lexicon, context: _Context, start: int) -> tuple[str | None, float]:
    best: tuple[str | None, float] = (None, 1.0)
    for word in context.window(start - 1, -1, INTENSIFIER_WINDOW):
        factor = lexicon.intensifiers.get(word, 1.0)
        if factor > best[1]:
            best = (word, factor)
    return best


def _is_any(word: str | None, patterns: Iterable[str]) -> bool:
    if word is None:
        return False
    return any(fnmatchcase(word, p) if "*" in p else word == p for p in patterns)


def _best_category(categories: Mapping[str, float]) -> str:
    name, weight = max(categories.items(), key=lambda item: item[1], default=("other", 0.0))
    return name if weight > 0 else "other"


def _attach_ngrams(
    evidence: list[dict[str, Any]], turns: list[Utterance], ngrams: list[dict[str, Any]]
) -> None:
    by_index = {e["utterance_index"]: e for e in evidence}
    for gram in ngrams:
        index = gram["utterance_index"]
        if index not in by_index:
            turn = turns[index]
            by_index[index] = {"utterance_index": index, "speaker": turn.speaker,
                               "text": turn.text, "terms": []}
            evidence.append(by_index[index])
        by_index[index].setdefault("ngrams", []).append(
            {"ngram": gram["ngram"], "weight": gram["weight"]})
    evidence.sort(key=lambda e: e["utterance_index"])


@cache
def default_detector() -> ComplaintDetector:
    """One detector per process: the lexicons and the jieba dictionary are loaded once."""
    return ComplaintDetector()


def detect_complaint(
    utterances: Iterable[Utterance | Mapping[str, Any]], language: str | None = None
) -> DetectionResult:
    return default_detector().detect(utterances, language)


def parse_transcript(text: str) -> list[Utterance]:
    """One utterance a line, optionally prefixed ``customer:`` or ``agent:`` (default customer)."""
    turns = []
    for line in text.splitlines():
        match = _SPEAKER_PREFIX.match(line)
        speaker = match.group(1).lower() if match else "customer"
        content = line[match.end() :] if match else line
        if content.strip():
            turns.append(Utterance(speaker, content.strip()))
    return turns


def detect_command(lang: str | None = None) -> None:
    """Detect a complaint in a transcript read from standard input; print the result as JSON."""
    result = detect_complaint(parse_transcript(sys.stdin.read()), lang)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
