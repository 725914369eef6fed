from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.value_churn import churn_rates, churn_risk, churn_signals

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


def test_overdue_against_their_own_rhythm_worked_example():
    # Orders every 30 days (0..90), today day 150: silent 60 days, rhythm 30,
    # overdue (60 - 30) / ((4 - 1) * 30) = 1/3. Trend window max(90, 3 * 30) = 90 days,
    # after day 60: 1 order; baseline up to day 60 (days 0, 30, 60) over 60 days plus
    # one rhythm = 90 days: 3 orders. Frequency drop 1 - (1/90) / (3/90) = 2/3
    # (weighted 0.5), spend likewise (weighted 0.8):
    # risk = 1 - (2/3) * (1 - 1/3) * (1 - 0.8 * 2/3) = 1 - (2/3)(2/3)(7/15) = 0.7926
    assert churn_risk(days(0, 30, 60, 90), START + timedelta(150)) == 0.7926


def test_single_order_customer_is_judged_against_the_120_day_fallback_interval():
    assert churn_risk(days(0), START + timedelta(60)) == 0.0
    # (300 - 120) / (3 * 120) = 0.5; the trend window is 3 rhythms = 360 days, which
    # holds the only order, so there is no baseline to fall from.
    assert churn_risk(days(0), START + timedelta(300)) == 0.5


def test_weekly_buyer_quiet_three_weeks_is_a_warning_not_certain_churn():
    dates = days(*range(0, 140, 7))  # 20 weekly orders, the last on day 133
    signals = churn_signals(dates, [50.0] * 20, START + timedelta(154))
    assert signals.rhythm_days == 7 and signals.silence_days == 21
    assert signals.overdue == pytest.approx(2 / 3)
    assert 0.5 < signals.risk < 1.0


def test_monthly_spend_falling_from_1000_to_10_is_read_as_falling_spend():
    dates = days(*range(0, 360, 30))
    amounts = [1000.0] * 6 + [10.0] * 6
    signals = churn_signals(dates, amounts, START + timedelta(335))
    assert signals.spend_decline > 0.95 and signals.frequency_decline == 0.0
    assert signals.reasons() == ["spend down 98% in 90 days"]


def test_steady_buyer_shows_no_falling_spend():
    dates = days(*range(0, 360, 30))
    signals = churn_signals(dates, [100.0] * 12, START + timedelta(335))
    assert (signals.spend_decline, signals.frequency_decline, signals.risk) == (0.0, 0.0, 0.0)


def test_customer_without_orders_has_no_risk():
    assert churn_risk([], START) == 0.0


@given(
    offsets=st.lists(st.integers(0, 2000), max_size=30),
    extra_days=st.integers(0, 2000),
)
def test_churn_risk_always_stays_within_zero_and_one(offsets, extra_days):
    dates = days(*offsets)
    today = START + timedelta(max(offsets, default=0) + extra_days)
    assert 0.0 <= churn_risk(dates, today) <= 1.0
