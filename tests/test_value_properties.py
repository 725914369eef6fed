"""Property tests of the value model (hypothesis): the tier is a fair function of the
history, whatever the base around it."""

from __future__ import annotations

import random
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.value import CustomerFacts, Order, compute_profiles
from routing.engine import TIERS, RoutingPolicy, priority_score

TODAY = date(2024, 6, 30)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# An order as (days ago, amount, cost); a history is a list of them.
orders_st = st.tuples(st.integers(0, 900), st.integers(1, 2000), st.integers(0, 1500))
history_st = st.lists(orders_st, min_size=1, max_size=8)
base_st = st.lists(history_st, min_size=0, max_size=25)


def _orders(cid: str, history: list[tuple[int, int, int]]) -> list[Order]:
    return [Order(cid, TODAY - timedelta(days=d), float(a), float(c)) for d, a, c in history]


def _base(histories: list[list[tuple[int, int, int]]]) -> list[Order]:
    return [o for k, h in enumerate(histories) for o in _orders(f"b{k:02d}", h)]


@FAST
@given(base=base_st, history=history_st, twins=st.integers(2, 5))
def test_identical_histories_get_identical_profiles(base, history, twins):
    orders = _base(base) + [o for k in range(twins) for o in _orders(f"twin{k}", history)]
    profiles = compute_profiles([], orders, TODAY)
    seen = {(p.tier, p.abc_class, p.clv_class, p.rfm_score, p.clv)
            for cid, p in profiles.items() if cid.startswith("twin")}
    assert len(seen) == 1


@FAST
@given(base=base_st, history=history_st, extra=st.integers(1, 5000), which=st.integers(0, 7))
def test_more_spend_never_lowers_the_tier(base, history, extra, which):
    which %= len(history)
    richer = list(history)
    d, a, c = richer[which]
    richer[which] = (d, a + extra, c)
    before = compute_profiles([], _base(base) + _orders("probe", history), TODAY)["probe"]
    after = compute_profiles([], _base(base) + _orders("probe", richer), TODAY)["probe"]
    assert after.tier.rank <= before.tier.rank


@FAST
@given(base=base_st, history=history_st, sooner=st.integers(1, 900))
def test_a_more_recent_purchase_never_lowers_the_tier(base, history, sooner):
    # The customer's latest purchase happened `sooner` days later (closer to today).
    latest = min(range(len(history)), key=lambda k: history[k][0])
    moved = list(history)
    d, a, c = moved[latest]
    moved[latest] = (max(0, d - sooner), a, c)
    before = compute_profiles([], _base(base) + _orders("probe", history), TODAY)["probe"]
    after = compute_profiles([], _base(base) + _orders("probe", moved), TODAY)["probe"]
    assert after.tier.rank <= before.tier.rank


@FAST
@given(base=base_st, history=history_st, complaints=st.integers(1, 5))
def test_an_open_complaint_never_lowers_tier_or_priority(base, history, complaints):
    orders = _base(base) + _orders("probe", history)
    calm = compute_profiles([CustomerFacts("probe")], orders, TODAY)["probe"]
    upset = compute_profiles([CustomerFacts("probe", open_complaints=complaints)], orders,
                             TODAY)["probe"]
    policy = RoutingPolicy()
    assert upset.tier is calm.tier
    assert priority_score(0.0, upset.tier.value, policy, open_complaint=True) <= priority_score(
        0.0, calm.tier.value, policy)


@given(tier=st.sampled_from(TIERS), offered=st.floats(0, 1e9, allow_nan=False))
def test_open_complaint_priority_is_never_later_for_any_tier(tier, offered):
    policy = RoutingPolicy()
    assert priority_score(offered, tier, policy, open_complaint=True) <= priority_score(
        offered, tier, policy)


@FAST
@given(base=base_st, first=orders_st)
def test_a_first_purchase_never_ranks_below_a_prospect(base, first):
    orders = _base(base) + _orders("newbie", [first])
    facts = [CustomerFacts("newbie"), CustomerFacts("prospect")]
    profiles = compute_profiles(facts, orders, TODAY)
    assert profiles["newbie"].tier.rank <= profiles["prospect"].tier.rank


@FAST
@given(base=st.lists(history_st, min_size=1, max_size=25), seed=st.integers(0, 2**32))
def test_segmentation_does_not_depend_on_the_order_of_input_rows(base, seed):
    orders = _base(base)
    facts = [CustomerFacts(f"b{k:02d}") for k in range(len(base))]
    shuffled_orders, shuffled_facts = list(orders), list(facts)
    rng = random.Random(seed)
    rng.shuffle(shuffled_orders)
    rng.shuffle(shuffled_facts)
    assert compute_profiles(facts, orders, TODAY) == compute_profiles(
        shuffled_facts, shuffled_orders, TODAY)
