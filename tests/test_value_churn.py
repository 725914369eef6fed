from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.value_churn import churn_rates, churn_risk, frequency_decline, overdue_risk

START = date(2024, 1, 1)


def days(*offsets: int) -> list[date]:
    return [START + timedelta(d) for d in offsets]


def test_textbook_churn_example_gives_absolute_10_and_relative_2_percent():
    # 1000 customers, 100 lost; the lost bought 200,000 of 1,000,000.
    # absolute = 100 / 1000 = 0.10; relative = 0.10 * 200,000 / 1,000,000 = 0.02
    assert churn_rates(1000, 100, 1_000_000, 200_000) == (0.10, 0.02)


def test_losing_nobody_is_no_churn():
    assert churn_rates(50, 0, 10_000, 0) == (0.0, 0.0)


def test_losing_more_customers_than_there_were_is_refused():
    with pytest.raises(ValueError, match="customers_lost"):
        churn_rates(10, 11, 100, 50)


def test_customer_buying_on_their_usual_30_day_rhythm_has_no_risk():
    # Orders on days 0, 30, 60, 90; today is day 100: next order not yet due.
    assert churn_risk(days(0, 30, 60, 90), START + timedelta(100)) == 0.0


def test_overdue_and_slowing_customer_worked_example():
    # Orders on days 0, 30, 60, 90; today is day 150.
    # overdue: interval 30, 60 days since the last -> (60 - 30) / (2 * 30) = 0.5
    # decline: tenure 150, halves split at day 75: 3 orders before, 1 after
    #          -> (3 - 1) / 3 = 2/3, weighted 0.5 -> 1/3
    # risk = 1 - (1 - 0.5) * (1 - 1/3) = 1 - 1/3 = 0.6667
    assert churn_risk(days(0, 30, 60, 90), START + timedelta(150)) == 0.6667


def test_each_open_complaint_adds_a_15_percent_chance():
    # 1 - 0.85^2 = 0.2775 on top of no history risk
    assert churn_risk(days(0, 30, 60, 90), START + timedelta(100), open_complaints=2) == 0.2775


def test_single_order_customer_is_judged_against_the_120_day_fallback_interval():
    assert churn_risk(days(0), START + timedelta(60)) == 0.0
    # (300 - 120) / (2 * 120) = 0.75
    assert churn_risk(days(0), START + timedelta(300)) == 0.75


def test_customer_gone_three_times_their_interval_is_certain_churn():
    assert overdue_risk(days(0, 30), START + timedelta(400)) == 1.0


def test_orders_all_on_one_day_use_the_fallback_interval():
    assert overdue_risk(days(0, 0, 0), START + timedelta(240)) == 0.5


def test_ten_early_orders_then_two_late_is_an_80_percent_decline():
    # tenure 100, split at day 50: 10 orders before, 2 after -> (10 - 2) / 10
    dates = days(*range(10), 95, 96)
    assert frequency_decline(dates, START + timedelta(100)) == pytest.approx(0.8)


def test_customer_without_orders_carries_only_complaint_risk():
    assert churn_risk([], START) == 0.0
    assert churn_risk([], START, open_complaints=1) == 0.15


@given(
    offsets=st.lists(st.integers(0, 2000), max_size=30),
    extra_days=st.integers(0, 2000),
    complaints=st.integers(0, 20),
)
def test_churn_risk_always_stays_within_zero_and_one(offsets, extra_days, complaints):
    dates = days(*offsets)
    today = START + timedelta(max(offsets, default=0) + extra_days)
    assert 0.0 <= churn_risk(dates, today, complaints) <= 1.0
