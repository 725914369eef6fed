"""Redaction of card numbers and configured patterns, in text and in timed words."""

from __future__ import annotations

import re

import pytest

from transcripts.asr import Transcript, Utterance, Word
from transcripts.redaction import (
    MASK,
    find_card_numbers,
    luhn_valid,
    redact_text,
    redact_transcript,
    redact_utterance,
    redact_words,
)

VISA = "4111111111111111"  # Luhn-valid test numbers
AMEX = "378282246310005"
DIGIT_WORDS_EN = "zero one two three four five six seven eight nine".split()
DIGITS_KO = "공일이삼사오육칠팔구"
DIGITS_ZH = "零一二三四五六七八九"


def spoken(number: str, words: list[str] | str) -> str:
    return " ".join(words[int(d)] for d in number)


def timed(text: str) -> tuple[Word, ...]:
    return tuple(Word(w, i * 0.5, i * 0.5 + 0.4, 0.9) for i, w in enumerate(text.split()))


@pytest.mark.parametrize("number", [VISA, AMEX, "5555555555554444", "6011111111111117"])
def test_known_card_numbers_pass_luhn(number):
    assert luhn_valid(number)


def test_a_changed_digit_fails_luhn():
    assert not luhn_valid(VISA[:-1] + "2")


@pytest.mark.parametrize(
    "text",
    [
        f"my card is {VISA} thanks",
        "my card is 4111 1111 1111 1111 thanks",
        "my card is 4111-1111-1111-1111 thanks",
        "my card is 3782 822463 10005 thanks",
        f"my card is:{VISA}. thanks",
    ],
)
def test_luhn_valid_written_numbers_are_redacted(text):
    assert redact_text(text) in {f"my card is {MASK} thanks", f"my card is:{MASK}. thanks"}


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn-invalid
        "order 411111111111",  # 12 digits
        "call 010-1234-5678",  # a phone number
        "ref 41111111111111111111114",  # 23 digits in one token: not a card
    ],
)
def test_numbers_that_are_not_cards_are_kept(text):
    assert redact_text(text) == text


def test_spoken_english_digits_are_redacted():
    text = f"it is {spoken(VISA, DIGIT_WORDS_EN)} okay"
    assert redact_text(text) == f"it is {MASK} okay"


def test_spoken_english_digits_with_oh_for_zero_are_redacted():
    text = spoken(AMEX, DIGIT_WORDS_EN).replace("zero", "oh")
    assert redact_text(f"number {text}") == f"number {MASK}"


def test_spoken_invalid_english_digits_are_kept():
    text = spoken(VISA[:-1] + "2", DIGIT_WORDS_EN)
    assert redact_text(text) == text


def test_spoken_korean_digits_are_redacted():
    text = f"카드 번호는 {spoken(VISA, DIGITS_KO)} 입니다"
    assert redact_text(text) == f"카드 번호는 {MASK} 입니다"


def test_spoken_korean_zero_as_yeong_is_redacted():
    text = spoken(AMEX, DIGITS_KO).replace("공", "영")
    assert redact_text(f"번호 {text}") == f"번호 {MASK}"


def test_chinese_digits_are_redacted_spaced_or_run_together():
    assert redact_text(f"卡号 {spoken(VISA, DIGITS_ZH)} 谢谢") == f"卡号 {MASK} 谢谢"
    assert redact_text(f"卡号是{spoken(VISA, DIGITS_ZH).replace(' ', '')}") == f"卡号是{MASK}"


def test_chinese_yao_and_liang_count_as_one_and_two():
    number = spoken(VISA, DIGITS_ZH).replace("一", "幺")
    assert redact_text(number) == MASK
    assert find_card_numbers("五五五五 五五五五 五五五五 四四四四") != []
    assert find_card_numbers("五五五五 五五五五 五五五五 四四四两") == []


def test_korean_sentence_made_of_digit_syllables_is_kept():
    text = "사이 이사 오이 구이 일이 많아요 일 이 삼"
    assert redact_text(text) == text


def test_mixed_spoken_and_written_digits_are_one_number():
    text = "4111 one one one one 1111 일 일 일 일"
    assert redact_text(text) == MASK


def test_card_followed_by_more_digits_keeps_the_rest():
    assert redact_text(f"{VISA} 12 25") == f"{MASK} 12 25"


def test_bracketed_numerals_from_the_model_count_as_digits():
    text = " ".join(f"[{d}]" for d in VISA)
    assert redact_text(text) == MASK


def test_configured_patterns_are_redacted():
    patterns = [r"[\w.]+@[\w.]+", re.compile(r"\b\d{6}-\d{7}\b")]
    text = "mail kim@example.com id 900101-1234567 ok"
    assert redact_text(text, patterns) == f"mail {MASK} id {MASK} ok"


def test_overlapping_matches_become_one_mask():
    assert redact_text(f"card {VISA}", [r"card \d+"]) == MASK


def test_custom_mask_is_used():
    assert redact_text(VISA, mask="***") == "***"


def test_masked_words_collapse_into_one_timed_word():
    words = timed(f"카드 {spoken(VISA, DIGITS_KO)} 입니다")
    out = redact_words(words)
    assert [w.word for w in out] == ["카드", MASK, "입니다"]
    assert (out[1].start, out[1].end) == (words[1].start, words[16].end)
    assert out[0] == words[0] and out[2] == words[-1]


def test_pattern_inside_a_word_masks_the_whole_word():
    out = redact_words(timed("email kim@example.com please"), [r"@example\.com"])
    assert [w.word for w in out] == ["email", MASK, "please"]


def test_two_separate_redactions_stay_separate():
    words = timed(f"{spoken(VISA, DIGIT_WORDS_EN)} and {spoken(AMEX, DIGIT_WORDS_EN)}")
    assert [w.word for w in redact_words(words)] == [MASK, "and", MASK]


def test_utterance_text_and_words_agree_after_redaction():
    utterance = Utterance.from_words("customer", timed(f"card {VISA} please"))
    out = redact_utterance(utterance)
    assert out.text == f"card {MASK} please" == " ".join(w.word for w in out.words)
    assert (out.speaker, out.start, out.end) == (utterance.speaker, utterance.start, utterance.end)


def test_utterance_without_a_card_is_unchanged():
    utterance = Utterance.from_words("agent", timed("여보세요 고객님"))
    assert redact_utterance(utterance) == utterance


def test_transcript_is_redacted_utterance_by_utterance():
    transcript = Transcript(
        (
            Utterance.from_words("agent", timed("card number please")),
            Utterance.from_words("customer", timed(spoken(VISA, DIGIT_WORDS_EN))),
        ),
        12.0,
    )
    out = redact_transcript(transcript, [r"number"])
    assert [u.text for u in out] == [f"card {MASK} please", MASK]
    assert out.duration == 12.0
