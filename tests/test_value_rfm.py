import pytest

from crm.rfm import (
    RFM_SEGMENT_LABELS,
    RfmValues,
    quintile_scores,
    rfm_scores,
    rfm_segment,
    segment_label,
)


def test_five_distinct_values_score_one_to_five():
    assert quintile_scores([30, 10, 50, 20, 40]) == [3, 1, 5, 2, 4]


def test_recency_scores_five_for_the_fewest_days():
    assert quintile_scores([10, 20, 30, 40, 50], higher_is_better=False) == [5, 4, 3, 2, 1]


def test_tied_values_share_the_score_of_their_mid_rank():
    # n = 10; score = 1 + floor(5 * (below + equal / 2) / n)
    # 1: below 0, equal 6 -> 1 + floor(5 * 3 / 10)   = 2
    # 2: below 6, equal 2 -> 1 + floor(5 * 7 / 10)   = 4
    # 3: below 8, equal 1 -> 1 + floor(5 * 8.5 / 10) = 5
    # 5: below 9, equal 1 -> 1 + floor(5 * 9.5 / 10) = 5
    values = [1, 1, 1, 1, 1, 1, 2, 2, 3, 5]
    assert quintile_scores(values) == [2, 2, 2, 2, 2, 2, 4, 4, 5, 5]


def test_a_base_of_equal_customers_all_score_three():
    assert quintile_scores([7, 7, 7, 7]) == [3, 3, 3, 3]


def test_quintile_scores_do_not_depend_on_input_order():
    assert quintile_scores([5, 1, 2, 1, 3]) == [5, 2, 3, 2, 4]
    assert quintile_scores([1, 1, 2, 3, 5]) == [2, 2, 3, 4, 5]


BASE = {
    "a": RfmValues(5, 10, 1000.0),
    "b": RfmValues(10, 8, 800.0),
    "c": RfmValues(20, 6, 600.0),
    "d": RfmValues(40, 4, 400.0),
    "e": RfmValues(80, 2, 5000.0),
}


def test_rfm_scores_read_recency_frequency_monetary_in_that_order():
    # M order: e 5000 > a > b > c > d, so e alone scores M = 5.
    assert rfm_scores(BASE) == {"a": "554", "b": "443", "c": "332", "d": "221", "e": "115"}


@pytest.mark.parametrize(
    ("score", "segment"),
    [
        ("555", "important_value"),
        ("515", "important_develop"),
        ("155", "important_retain"),
        ("113", "important_win_back"),
        ("332", "general_value"),
        ("321", "general_develop"),
        ("251", "general_retain"),
        ("222", "general_win_back"),
        ("", "none"),
    ],
)
def test_each_high_low_combination_maps_to_its_classic_segment(score, segment):
    # High means a quintile score of at least 3 (the policy's rfm.high_score).
    assert rfm_segment(score) == segment


def test_segment_and_score_use_one_cut():
    # e has the top M score, so it is never "M low" (the old mean cut said it could be).
    scores = rfm_scores(BASE)
    assert scores["e"][2] == "5" and rfm_segment(scores["e"]).startswith("important")


def test_high_score_comes_from_the_policy():
    assert rfm_segment("444", high_score=5) == "general_win_back"


def test_segments_have_english_and_simplified_chinese_labels():
    zh = {seg: segment_label(seg, "zh") for seg in RFM_SEGMENT_LABELS if seg != "none"}
    assert zh == {
        "important_value": "重要价值客户",
        "important_develop": "重要发展客户",
        "important_retain": "重要保持客户",
        "important_win_back": "重要挽留客户",
        "general_value": "一般价值客户",
        "general_develop": "一般发展客户",
        "general_retain": "一般保持客户",
        "general_win_back": "一般挽留客户",
    }
    assert segment_label("important_win_back") == "Important win-back"
