"""The columnar engine (crm/value_engine.py) that scores a million customers agrees with
the one-customer statements of each rule (churn_signals, abc_classes, rfm_scores,
lifecycle_stage, tier_for, clv_class) on any base (hypothesis)."""

from __future__ import annotations

import math
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.clv import clv_class, quantile_threshold
from crm.policy import default_policy
from crm.rfm import RfmValues, rfm_scores
from crm.value import CustomerFacts, Order, value_model
from crm.value_churn import churn_signals
from crm.value_classes import abc_classes, lifecycle_stage, tier_for

TODAY = date(2025, 6, 30)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
orders_st = st.tuples(st.integers(-3, 1200), st.sampled_from([1, 5, 20, 99.99, 100, 2500]),
                      st.sampled_from([0.0, 0.5, 1.0, 1.3]))
base_st = st.lists(st.lists(orders_st, min_size=0, max_size=12), min_size=1, max_size=30)


def _model(base: list[list[tuple[int, float, float]]]):
    facts = [CustomerFacts(f"c{k}", has_contact=k % 3 > 0) for k in range(len(base))]
    orders = [Order(f"c{k}", TODAY - timedelta(days=d), float(a), round(a * m, 2))
              for k, h in enumerate(base) for d, a, m in h]
    return value_model(facts, orders, TODAY), orders


def _by_customer(orders: list[Order]) -> dict[str, list[Order]]:
    out: dict[str, list[Order]] = {}
    for o in orders:
        if o.date <= TODAY:
            out.setdefault(o.customer_id, []).append(o)
    return out


@FAST
@given(base=base_st)
def test_engine_churn_and_lifecycle_match_the_one_customer_rules(base):
    model, orders = _model(base)
    policy = default_policy()
    for cid, own in _by_customer(orders).items():
        p = model.profiles[cid]
        sig = churn_signals([o.date for o in own], [o.amount for o in own], TODAY, policy.churn)
        assert math.isclose(p.churn_risk, sig.risk, abs_tol=1e-9)
        assert p.recency_days == sig.silence_days
        assert p.lifecycle_stage == lifecycle_stage(
            len(own), sig.silence_days, True, rhythm_days=sig.rhythm_days,
            policy=policy.lifecycle)
    for cid, p in model.profiles.items():
        if p.orders_total == 0:
            assert (p.tier, p.lifecycle_stage) == (
                "standard", "prospect" if int(cid[1:]) % 3 else "suspect")


@FAST
@given(base=base_st)
def test_engine_classes_and_tiers_match_the_one_customer_rules(base):
    model, orders = _model(base)
    policy = default_policy()
    since = TODAY - timedelta(days=policy.analysis.period_days)
    own = _by_customer(orders)
    window = {c: [o for o in os if o.date > since] for c, os in own.items()}
    profits = {c: math.fsum(o.amount - o.cost for o in os) for c, os in window.items() if os}
    abc = abc_classes(profits, policy.abc)
    rfm = rfm_scores({c: RfmValues((TODAY - max(o.date for o in os)).days, len(window[c]),
                                   round(math.fsum(o.amount for o in window[c]), 2))
                      for c, os in own.items()})
    profiles = [model.profiles[c] for c in own]
    current_line = quantile_threshold([p.current_value for p in profiles])
    potential_line = quantile_threshold([p.clv for p in profiles])
    for p in profiles:
        assert p.abc_class == abc.get(p.customer_id, "C")
        assert p.rfm_score == rfm[p.customer_id]
        assert p.clv_class == clv_class(p.current_value, p.clv, current_line, potential_line)
        assert p.tier == tier_for(p.abc_class, p.clv_class, orders=p.orders_total)
