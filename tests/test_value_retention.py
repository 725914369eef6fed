"""Retention for CLV measured per segment of order count where the data allows
(crm/value_retention.py): one-time buyers and repeat buyers come back at very
different rates, and each customer's CLV carries their own segment's rate."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.clv import dwyer_clv
from crm.value import Order, value_model
from crm.value_lines import BaseLines

TODAY = date(2025, 6, 30)


def _ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def _base() -> list[Order]:
    # Previous year: 40 one-time buyers (10 came back this year) and 40 repeat buyers
    # with 3 orders (36 came back).
    orders = [Order(f"one{k}", _ago(500), 100.0, 50.0) for k in range(40)]
    orders += [Order(f"one{k}", _ago(100), 100.0, 50.0) for k in range(10)]
    orders += [Order(f"rep{k}", _ago(d), 100.0, 50.0) for k in range(40) for d in (700, 600, 500)]
    orders += [Order(f"rep{k}", _ago(100), 100.0, 50.0) for k in range(36)]
    return orders


def test_retention_is_measured_per_segment_of_order_count():
    model = value_model([], _base(), TODAY)

    assert model.summary.retention == pytest.approx(1 - 34 / 80)  # the whole base
    by_segment = model.summary.retention_by_segment
    assert by_segment["one_time"] == pytest.approx(0.25)
    assert by_segment["repeat"] == pytest.approx(0.9)
    # Fewer than min_customers_measured (30) loyal buyers: the base's rate.
    assert by_segment["loyal"] == pytest.approx(model.summary.retention)


def test_each_customers_clv_carries_their_segments_retention():
    orders = _base() + [Order("new1", _ago(10), 1000.0, 600.0),
                        Order("new2", _ago(20), 500.0, 300.0), Order("new2", _ago(10), 500.0,
                                                                      300.0)]
    profiles = value_model([], orders, TODAY).profiles

    # Both made 400 of profit this year and are not overdue (risk 0).
    assert profiles["new1"].churn_risk == profiles["new2"].churn_risk == 0
    assert profiles["new1"].clv == round(dwyer_clv(400, 0, 0.25), 2)
    assert profiles["new2"].clv == round(dwyer_clv(400, 0, 0.9), 2)


def test_lines_of_a_run_before_segments_score_with_the_base_retention():
    full = value_model([], _base(), TODAY)
    old = BaseLines.from_json({k: v for k, v in full.lines.to_json().items()
                               if k != "retention_by_segment"})
    alone = value_model([], [Order("x", _ago(10), 1000.0, 600.0)], TODAY, lines=old)

    assert old.retention_by_segment == ()
    assert alone.profiles["x"].clv == round(dwyer_clv(400, 0, full.summary.retention), 2)
    assert value_model([], [Order("x", _ago(10), 1000.0, 600.0)], TODAY,
                       lines=full.lines).profiles["x"].clv == round(dwyer_clv(400, 0, 0.25), 2)


orders_st = st.tuples(st.integers(0, 900), st.integers(1, 2000), st.integers(0, 1500))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(orders_st, min_size=1, max_size=8), extra=st.integers(1, 5000),
       which=st.integers(0, 7))
def test_in_a_measured_base_more_spend_never_lowers_the_tier(history, extra, which):
    which %= len(history)
    richer = list(history)
    d, a, c = richer[which]
    richer[which] = (d, a + extra, c)

    def probe(h):
        orders = _base() + [Order("probe", _ago(d), float(a), float(c)) for d, a, c in h]
        model = value_model([], orders, TODAY)
        assert model.summary.churn.customers_at_start >= 30  # retention is measured
        return model.profiles["probe"]

    assert probe(richer).tier.rank <= probe(history).tier.rank
