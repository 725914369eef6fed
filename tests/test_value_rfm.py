import pytest

from crm.rfm import (
    RFM_SEGMENT_LABELS,
    RfmValues,
    quintile_scores,
    rfm_averages,
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


def test_rfm_averages_are_plain_means_of_the_base():
    # R (5+10+20+40+80)/5 = 31, F (10+8+6+4+2)/5 = 6, M 7800/5 = 1560
    assert rfm_averages(BASE) == RfmValues(31.0, 6.0, 1560.0)


AVERAGES = RfmValues(recency_days=30, frequency=4, monetary=500.0)


@pytest.mark.parametrize(
    ("customer", "segment"),
    [
        (RfmValues(10, 6, 900.0), "important_value"),
        (RfmValues(10, 2, 900.0), "important_develop"),
        (RfmValues(60, 6, 900.0), "important_retain"),
        (RfmValues(60, 2, 900.0), "important_win_back"),
        (RfmValues(10, 6, 100.0), "general_value"),
        (RfmValues(10, 2, 100.0), "general_develop"),
        (RfmValues(60, 6, 100.0), "general_retain"),
        (RfmValues(60, 2, 100.0), "general_win_back"),
    ],
)
def test_each_high_low_combination_maps_to_its_classic_segment(customer, segment):
    assert rfm_segment(customer, AVERAGES) == segment


def test_recent_means_fewer_days_than_average_not_more():
    assert rfm_segment(RfmValues(29, 6, 900.0), AVERAGES) == "important_value"
    assert rfm_segment(RfmValues(31, 6, 900.0), AVERAGES) == "important_retain"


def test_a_customer_exactly_at_the_average_counts_as_high():
    assert rfm_segment(AVERAGES, AVERAGES) == "important_value"


def test_rounding_of_the_mean_does_not_push_equal_customers_below_it():
    base = {c: RfmValues(3, 1, 0.1) for c in "xyz"}
    averages = rfm_averages(base)
    assert averages.monetary > 0.1  # 0.30000000000000004 / 3
    assert rfm_segment(base["x"], averages) == "important_value"


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
