"""Redaction of card numbers and configured patterns before a transcript is stored.

Everything works on character ranges of one text. For a word list the text is the
words joined by spaces (what Vosk puts in ``text``); a word overlapping a redacted
range is masked, and each run of masked words becomes one ``[REDACTED]`` word, so the
utterance text and its words always agree.

Card numbers are Luhn-valid runs of 13-19 digits, separated by nothing, spaces or
dashes, written as digits or spoken as words the recognizer emits: English digit
words, Chinese numerals, and sino-Korean digit syllables. A run is judged whole, so an
invalid 16-digit number is not cut into an accidentally valid 13-digit one; only runs
longer than 19 digits are searched, on token boundaries, for a card inside them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from transcripts.asr import Transcript, Utterance, Word

MASK = "[REDACTED]"
CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19

_ENGLISH_DIGITS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_CHAR_DIGITS = {
    **dict.fromkeys("零〇", "0"), **dict.fromkeys("一幺", "1"), **dict.fromkeys("二两", "2"),
    "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
    **dict.fromkeys("공영", "0"), "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5",
    "육": "6", "칠": "7", "팔": "8", "구": "9",
}  # fmt: skip
_SPOKEN = "".join(_CHAR_DIGITS)
# A token is a run of digit characters, a run of other letters, or one other character.
# The small Korean model writes some numerals in brackets: "[5]".
_TOKEN = re.compile(rf"\[\d+\]|[\d{_SPOKEN}]+|[^\W\d_{_SPOKEN}]+|\S")
_SEPARATORS = frozenset("-‐–—")

Pattern = str | re.Pattern[str]
Range = tuple[int, int]


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_card_numbers(text: str) -> list[Range]:
    """Character ranges of Luhn-valid card numbers, written or spoken, in ``text``."""
    tokens = [(m.start(), m.end(), _token_digits(m.group())) for m in _TOKEN.finditer(text)]
    return [(tokens[i][0], tokens[j][1]) for i, j in _card_token_spans([t[2] for t in tokens])]


def _token_digits(token: str) -> str | None:
    """The digits a token stands for, "" for a separator, None for anything else."""
    if token in _SEPARATORS:
        return ""
    if len(token) > 2 and token[0] == "[" and token[-1] == "]":
        token = token[1:-1]
    if (word := _ENGLISH_DIGITS.get(token.lower())) is not None:
        return word
    digits = [_CHAR_DIGITS.get(ch) or str(unicodedata.decimal(ch, "")) for ch in token]
    return "".join(digits) if all(digits) else None


def _card_token_spans(digits: list[str | None]) -> list[tuple[int, int]]:
    """Token spans [i, j] holding card numbers, within runs of number tokens.

    A run of 13-19 digits is a card when it passes Luhn as a whole; only a longer run
    (a card read together with an expiry date, say) is searched for a card inside it.
    """
    spans: list[tuple[int, int]] = []
    for run in _runs(digits):
        length = sum(len(digits[k] or "") for k in run)
        if length > CARD_MAX_DIGITS:
            spans += _cards_inside(digits, run)
        elif length >= CARD_MIN_DIGITS and luhn_valid("".join(digits[k] or "" for k in run)):
            spans.append((run[0], run[-1]))
    return spans


def _runs(digits: list[str | None]) -> Iterable[list[int]]:
    """Indexes of maximal runs of number tokens, separators only inside a run."""
    run: list[int] = []
    for k, d in enumerate(digits + [None]):
        if d:
            run.append(k)
        elif d is None and run:
            yield list(range(run[0], run[-1] + 1))
            run = []


def _cards_inside(digits: list[str | None], run: list[int]) -> list[tuple[int, int]]:
    """Leftmost-longest Luhn-valid 13-19 digit spans starting and ending on tokens."""
    spans: list[tuple[int, int]] = []
    i = run[0]
    while i <= run[-1]:
        end = _longest_card_from(digits, i, run[-1]) if digits[i] else None
        spans += [(i, end)] if end is not None else []
        i = (end if end is not None else i) + 1
    return spans


def _longest_card_from(digits: list[str | None], i: int, last: int) -> int | None:
    number, found = "", None
    for j in range(i, last + 1):
        number += digits[j] or ""
        if len(number) > CARD_MAX_DIGITS:
            break
        if digits[j] and len(number) >= CARD_MIN_DIGITS and luhn_valid(number):
            found = j
    return found


def redacted_ranges(text: str, patterns: Sequence[Pattern] = ()) -> list[Range]:
    """Sorted, merged character ranges to mask: card numbers and pattern matches."""
    ranges = find_card_numbers(text)
    for pattern in patterns:
        ranges += [m.span() for m in re.finditer(pattern, text) if m.end() > m.start()]
    return _merge(ranges)


def _merge(ranges: Iterable[Range]) -> list[Range]:
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact_text(text: str, patterns: Sequence[Pattern] = (), mask: str = MASK) -> str:
    out, pos = [], 0
    for start, end in redacted_ranges(text, patterns):
        out += [text[pos:start], mask]
        pos = end
    return "".join(out) + text[pos:]


def redact_words(
    words: Sequence[Word], patterns: Sequence[Pattern] = (), mask: str = MASK
) -> tuple[Word, ...]:
    """Mask words overlapping redacted ranges; each masked run becomes one word."""
    text, offsets, pos = " ".join(w.word for w in words), [], 0
    for w in words:
        offsets.append((pos, pos + len(w.word)))
        pos += len(w.word) + 1
    ranges = redacted_ranges(text, patterns)
    hidden = [any(s < e2 and s2 < e for s2, e2 in ranges) for s, e in offsets]
    out: list[Word] = []
    previous_hidden = False
    for w, masked in zip(words, hidden, strict=True):
        if masked and previous_hidden:
            last = out[-1]
            out[-1] = Word(mask, last.start, w.end, min(last.conf, w.conf))
        elif masked:
            out.append(Word(mask, w.start, w.end, w.conf))
        else:
            out.append(w)
        previous_hidden = masked
    return tuple(out)


def redact_utterance(
    utterance: Utterance, patterns: Sequence[Pattern] = (), mask: str = MASK
) -> Utterance:
    words = redact_words(utterance.words, patterns, mask)
    if utterance.text == " ".join(w.word for w in utterance.words):
        text = " ".join(w.word for w in words)
    else:
        text = redact_text(utterance.text, patterns, mask)
    return Utterance(utterance.speaker, utterance.start, utterance.end, text, words)


def redact_transcript(
    transcript: Transcript, patterns: Sequence[Pattern] = (), mask: str = MASK
) -> Transcript:
    utterances = tuple(redact_utterance(u, patterns, mask) for u in transcript)
    return Transcript(utterances, transcript.duration)
