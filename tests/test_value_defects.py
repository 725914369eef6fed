"""The ten defects of issue 16, each pinned against the value model's public entry points.

Each test failed before the value policy; see docs/value-model.md for the rules.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from crm.value import CustomerFacts, Order, compute_profiles, dwyer_clv
from crm.value_churn import churn_risk
from crm.value_classes import lifecycle_stage
from routing.engine import RoutingPolicy, priority_score

TODAY = date(2024, 6, 30)


def _base(n: int = 40) -> list[Order]:
    """A varied base: customer k buys k+1 orders of 100*(k+1) over the last year."""
    orders = []
    for k in range(n):
        for j in range(k % 6 + 1):
            day = TODAY - timedelta(days=20 + 50 * j + k)
            orders.append(Order(f"c{k:02d}", day, 100.0 * (k + 1), 60.0 * (k + 1)))
    return orders


def test_defect1_an_open_complaint_never_lowers_a_customers_tier():
    # A base where, before the fix, k1's one complaint cost 15 % retention, pushed its
    # CLV under the median and its tier from standard to low.
    rows = [("k0", 300, 500), ("k0", 21, 400), ("k0", 235, 300), ("k1", 154, 200),
            ("k2", 3, 1000), ("k2", 62, 500), ("k2", 263, 300), ("k3", 279, 300),
            ("k3", 293, 1000), ("k3", 145, 500), ("k4", 278, 400), ("k4", 210, 500),
            ("k4", 298, 500), ("k5", 155, 400), ("k5", 260, 200), ("k6", 72, 500),
            ("k6", 84, 500)]
    orders = [Order(c, TODAY - timedelta(days=d), float(a), a / 2) for c, d, a in rows]
    ids = sorted({c for c, _, _ in rows})
    calm = compute_profiles([CustomerFacts(c) for c in ids], orders, TODAY)
    lowered = []
    for who in ids:
        upset = compute_profiles(
            [CustomerFacts(c, open_complaints=int(c == who)) for c in ids], orders, TODAY)
        if upset[who].tier.rank > calm[who].tier.rank or upset[who].clv < calm[who].clv:
            lowered.append(who)
    assert lowered == []


def test_defect1_an_open_complaint_serves_the_call_no_later():
    policy = RoutingPolicy()
    for tier in ("vip", "gold", "standard", "low"):
        assert priority_score(100.0, tier, policy, open_complaint=True) <= priority_score(
            100.0, tier, policy)


def test_defect2_a_first_small_purchase_never_ranks_below_a_prospect():
    orders = _base() + [Order("newbie", TODAY - timedelta(days=3), 5.0, 4.0)]
    facts = [CustomerFacts(f"c{k:02d}") for k in range(40)] + [
        CustomerFacts("newbie"), CustomerFacts("prospect")]
    profiles = compute_profiles(facts, orders, TODAY)
    assert profiles["newbie"].tier.rank <= profiles["prospect"].tier.rank


def test_defect3_abandon_means_unprofitable_not_below_the_median():
    profiles = compute_profiles([], _base(), TODAY)
    abandoned = [p for p in profiles.values() if p.clv_class == "abandon"]
    assert abandoned == []  # every customer of this base makes a profit


def test_defect3_boosted_tiers_are_at_most_the_top_thirty_percent_of_the_buyers():
    # Profits 1..100: by profit share alone, half the base would be A and boosted.
    orders = [Order(f"e{k:03d}", TODAY - timedelta(days=30), 2.0 * k, 1.0 * k)
              for k in range(1, 101)]
    profiles = compute_profiles([], orders, TODAY).values()
    assert sum(p.tier.value in ("vip", "gold") for p in profiles) <= 30


def test_defect4_identical_customers_get_identical_tiers():
    # Profits 50 then five times 10: by id, the fourth and fifth would start past 75 %.
    orders = [Order("big", TODAY - timedelta(days=10), 50.0, 0.0)]
    orders += [Order(f"same{k}", TODAY - timedelta(days=10), 10.0, 0.0) for k in range(5)]
    profiles = compute_profiles([], orders, TODAY)
    assert len({(profiles[f"same{k}"].abc_class, profiles[f"same{k}"].tier)
                for k in range(5)}) == 1


def test_defect5_dwyer_sums_from_t_zero_textbook_example():
    assert dwyer_clv(400.0, 0.0, 1.0, 0.1, 3) == pytest.approx(1394.74, abs=0.005)


def test_defect5_retention_comes_from_the_measured_churn_of_the_base():
    # Everyone who bought last year bought again this year: measured retention is 1,
    # so the same margin is worth more than with the old fixed 0.8.
    def orders(churned: int) -> list[Order]:
        rows = []
        for k in range(50):
            rows.append(Order(f"r{k:02d}", TODAY - timedelta(days=400), 100.0, 50.0))
            if k >= churned:
                rows.append(Order(f"r{k:02d}", TODAY - timedelta(days=100), 100.0, 50.0))
        rows.append(Order("probe", TODAY - timedelta(days=100), 100.0, 50.0))
        return rows
    loyal_base = compute_profiles([], orders(0), TODAY)["probe"].clv
    leaky_base = compute_profiles([], orders(40), TODAY)["probe"].clv
    assert loyal_base > leaky_base


def test_defect6_a_large_order_decades_ago_does_not_keep_a_customer_a():
    orders = [Order("ancient", date(2000, 1, 1), 1_000_000.0, 0.0)]
    orders += [Order(f"n{k}", TODAY - timedelta(days=30), 100.0, 50.0) for k in range(10)]
    assert compute_profiles([], orders, TODAY)["ancient"].abc_class == "C"


def test_defect6_class_c_holds_up_to_ten_percent_of_profit():
    # Profits 70, 20, 8, 2 (total 100): A+B is the smallest top group reaching 90 %,
    # so the last two (10 %) are C.
    orders = [Order(cid, TODAY - timedelta(days=5), p, 0.0)
              for cid, p in (("w", 70.0), ("x", 20.0), ("y", 8.0), ("z", 2.0))]
    classes = {c: p.abc_class for c, p in compute_profiles([], orders, TODAY).items()}
    assert classes["y"] == "C" and classes["z"] == "C"


def test_defect7_monthly_spend_falling_from_1000_to_10_is_a_churn_risk():
    orders = [Order("f", TODAY - timedelta(days=30 * m + 5), 1000.0 if m >= 6 else 10.0, 0.0)
              for m in range(12)]
    assert compute_profiles([], orders, TODAY)["f"].churn_risk >= 0.5


def test_defect7_weekly_buyer_quiet_three_weeks_is_not_loyal_any_more():
    dates = [TODAY - timedelta(days=21 + 7 * k) for k in range(20)]
    orders = [Order("w", d, 50.0, 10.0) for d in dates]
    profile = compute_profiles([], orders, TODAY)["w"]
    assert profile.lifecycle_stage != "loyal" or profile.churn_risk < 0.5
    assert churn_risk(dates, TODAY) < 1.0


def test_defect8_rfm_counts_frequency_and_money_within_the_period():
    old = [Order("o", date(2010, 1, 1) + timedelta(days=k), 1000.0, 0.0) for k in range(30)]
    recent = [Order("o", TODAY - timedelta(days=10), 10.0, 0.0)]
    profile = compute_profiles([], old + recent, TODAY)["o"]
    assert (profile.frequency, profile.monetary) == (1, 10.0)


def test_defect8_segment_agrees_with_the_score():
    orders = [Order(f"m{k}", TODAY - timedelta(days=10), float(v), 0.0)
              for k, v in enumerate([1, 1, 1, 1, 1, 1, 1, 1, 2, 1000])]
    for p in compute_profiles([], orders, TODAY).values():
        m_high = p.rfm_segment.startswith("important")
        assert m_high == (int(p.rfm_score[2]) >= 3), (p.customer_id, p.rfm_score, p.rfm_segment)


def test_defect9_churn_rates_are_computed_for_the_base():
    from crm.value_churn import base_churn_rates  # noqa: PLC0415 - the function under test
    orders = [Order(f"b{k}", TODAY - timedelta(days=400), 100.0, 0.0) for k in range(10)]
    orders += [Order(f"b{k}", TODAY - timedelta(days=30), 100.0, 0.0) for k in range(9)]
    rates = base_churn_rates(orders, TODAY, period_days=365)
    assert (rates.customers_at_start, rates.customers_lost) == (10, 1)
    assert rates.absolute == pytest.approx(0.1)


def test_defect10_loyal_customer_does_not_fall_back_to_repeat():
    assert lifecycle_stage(8, 181, True) != "repeat"
