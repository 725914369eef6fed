"""The value model over columns: every customer's classes, CLV, churn, tier and
the base's lines, in vectorised passes (crm/value_columns.py holds the inputs).

`crm.value.value_model` (customer objects in, profiles out) and `callcenter segment`
(a million customers straight from the database) both score with `score`, so the two
cannot disagree. The rules are the policy's, documented in docs/value-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from crm.clv import CLV_CLASSES
from crm.policy import ValuePolicy
from crm.value_churn import ChurnRates, churn_rates
from crm.value_classes import Tier, tier_for
from crm.value_columns import (
    Bools,
    FactColumns,
    Floats,
    Histories,
    Ints,
    OrderColumns,
    Signals,
    histories,
    quantile,
    round_to,
    signals,
)
from crm.value_extras import VALUE_COST_TYPES
from crm.value_lines import BaseLines
from crm.value_retention import base_retention, customer_retention, segment_retention
from crm.value_scores import abc_codes, frozen_rfm, lines_of, rfm_digits

ABC = ("A", "B", "C")
TIERS = tuple(Tier)
STAGES = ("suspect", "prospect", "first_time", "repeat", "loyal", "lapsing", "inactive")


@dataclass(frozen=True)
class Scored:
    """The model's output, one entry per customer of `FactColumns.ids`."""

    facts: FactColumns
    today: int  # ordinal
    hist: Histories
    sig: Signals
    abc: Ints  # index into ABC
    rfm: Ints  # (n, 3) digits 1..5; 0 without orders
    monetary: Floats
    clv: Floats
    clv_class: Ints  # index into CLV_CLASSES
    stage: Ints  # index into STAGES
    tier: Ints  # index into TIERS
    current_value: Floats
    service_cost: Floats
    value_cost: Ints  # index into VALUE_COST_TYPES; -1 without orders
    lines: BaseLines
    rates: ChurnRates | None
    retention: float
    retention_by_segment: tuple[float, ...]  # crm.value_retention.SEGMENTS


def score(facts: FactColumns, orders: OrderColumns, today: date, policy: ValuePolicy,
          frozen: BaseLines | None = None) -> Scored:
    """Score the base, or with `frozen` lines (an earlier full run's) score the customers
    given against those lines: the incremental re-segmentation."""
    n = len(facts)
    orders = orders.upto(today)
    h = histories(orders, n, today, policy)
    sig = signals(orders, h, today, policy.churn)
    rates = None if frozen else base_rates(orders, n, today, policy.clv.period_days)
    retention = frozen.retention if frozen else base_retention(rates, policy)
    by_segment = frozen.retention_by_segment if frozen else segment_retention(
        orders, n, today, policy, retention)
    buyers = h.buyers
    recency = np.where(buyers, sig.silence, 0)
    in_window = buyers & (h.window_orders > 0)
    window_profit = h.window_profit / 100
    monetary = round_to(h.window_amount / 100, 2)
    abc = abc_codes(window_profit, in_window, policy.abc, frozen)
    rfm = (frozen_rfm(recency, h.window_orders, monetary, buyers, frozen) if frozen
           else rfm_digits(recency, h.window_orders, monetary, buyers))
    clv = _clv(h, window_profit, sig, today, policy,
               customer_retention(h.orders, by_segment, retention, policy))
    current_value = round_to(h.current_profit / 100, 2)
    current_line = (frozen.current_line if frozen
                    else quantile(current_value[buyers], policy.clv.high_quantile))
    potential_line = (frozen.potential_line if frozen
                      else quantile(clv[buyers], policy.clv.high_quantile))
    clv_class = _clv_classes(current_value, clv, current_line, potential_line, policy)
    clv_class[~buyers] = CLV_CLASSES.index("basic")
    abc[~buyers] = 2
    service_cost = round_to(facts.handle_minutes * policy.cost_to_serve.cost_per_minute
                            + facts.complaints_in_period
                            * policy.cost_to_serve.cost_per_complaint, 2)
    value_line = frozen.value_line if frozen else quantile(
        current_value[buyers], policy.cost_to_serve.value_quantile)
    cost_line = frozen.cost_line if frozen else quantile(
        service_cost[buyers], policy.cost_to_serve.cost_quantile)
    lines = frozen or lines_of(abc, window_profit, in_window, recency, h.window_orders,
                               monetary, rfm, buyers, current_line, potential_line,
                               value_line, cost_line, retention, by_segment)
    return Scored(
        facts=facts, today=today.toordinal(), hist=h, sig=sig, abc=abc, rfm=rfm,
        monetary=monetary, clv=clv,
        clv_class=clv_class, stage=_stages(facts, h, sig, policy),
        tier=_tiers(abc, clv_class, h.orders, policy), current_value=current_value,
        service_cost=service_cost,
        value_cost=_value_cost(current_value, service_cost, value_line, cost_line, buyers),
        lines=lines, rates=rates, retention=retention, retention_by_segment=by_segment)


def _clv(h: Histories, window_profit: Floats, sig: Signals, today: date,
         policy: ValuePolicy, retention: Floats) -> Floats:
    """Dwyer from t = 0 (crm.clv.dwyer_clv): the margin per period of the analysis
    window, carried forward at the retention of the customer's segment lowered by their
    risk of having left. Falling spend is a warning, not a departure."""
    clv = policy.clv
    tenure = (today.toordinal() - h.first + 1).astype(np.float64)
    window_days = tenure if policy.analysis.whole_history else np.minimum(
        tenure, policy.analysis.period_days)
    margin = window_profit / np.maximum(1.0, window_days / clv.period_days)
    r = retention * (1 - sig.leave_risk)
    total = np.zeros(len(margin))
    for t in range(clv.horizon_periods + 1):
        s = r ** t
        total = total + (margin * s - 0.0 * s) / (1 + clv.discount_rate) ** t
    return np.where(h.buyers, round_to(total, 2), 0.0)


def _clv_classes(current: Floats, potential: Floats, current_line: float,
                 potential_line: float, policy: ValuePolicy) -> Ints:
    """As crm.clv.clv_class, for every customer at once."""
    p = policy.clv
    ch = (current > p.high_min) & (current >= current_line)
    ph = (potential > p.high_min) & (potential >= potential_line)
    abandon = (current <= p.abandon_max) & (potential <= p.abandon_max)
    vip, maintain, improve, basic, abandon_ = (CLV_CLASSES.index(c) for c in (
        "vip", "maintain", "improve", "basic", "abandon"))
    low = np.where(ph, improve, np.where(abandon, abandon_, basic))
    return np.where(ch, np.where(ph, vip, maintain), low).astype(np.int64)


def _stages(facts: FactColumns, h: Histories, sig: Signals, policy: ValuePolicy) -> Ints:
    """As crm.value_classes.lifecycle_stage, for every customer at once."""
    p = policy.lifecycle
    known = facts.has_contact | (facts.open_complaints > 0)
    stage = np.where(h.orders >= p.loyal_min_orders, 4, np.where(h.orders >= 2, 3, 2))
    stage = np.where(sig.silence > p.lapsing_after_rhythms * sig.rhythm, 5, stage)
    stage = np.where(sig.silence > p.inactive_after_days, 6, stage)
    return np.where(h.buyers, stage, np.where(known, 1, 0)).astype(np.int64)


def _tiers(abc: Ints, clv_class: Ints, orders: Ints, policy: ValuePolicy) -> Ints:
    """tier_for over the table of every (ABC, CLV class, enough orders for low)."""
    low = policy.tiers.low_min_orders
    table = np.array([[[TIERS.index(tier_for(a, c, orders=low + enough - 1, policy=policy.tiers))
                        for enough in (False, True)] for c in CLV_CLASSES] for a in ABC])
    enough = (orders >= low).astype(np.int64)
    tiers = table[abc, clv_class, enough]
    return np.where(orders > 0, tiers, TIERS.index(Tier.STANDARD)).astype(np.int64)


def _value_cost(value: Floats, cost: Floats, value_line: float, cost_line: float,
                buyers: Bools) -> Ints:
    """The value x cost to serve matrix for buyers: high at or above the
    base's line and positive."""
    high_value = (value > 0) & (value >= value_line)
    high_cost = (cost > 0) & (cost >= cost_line)
    names = [f"{v}_{c}" for v in ("high_value", "low_value") for c in ("high_cost", "low_cost")]
    codes = np.array([VALUE_COST_TYPES.index(x) for x in names])
    out = codes[(~high_value).astype(np.int64) * 2 + (~high_cost).astype(np.int64)]
    return np.where(buyers, out, -1).astype(np.int64)


def base_rates(orders: OrderColumns, n: int, today: date,
               period_days: int) -> ChurnRates | None:
    """crm.value_churn.base_churn_rates over columns: the previous period's buyers who
    bought nothing in the period (today - period_days, today]."""
    start = today - timedelta(days=period_days)
    s, p = start.toordinal(), (start - timedelta(days=period_days)).toordinal()
    current = np.bincount(orders.customer[orders.day > s], minlength=n) > 0
    before = (orders.day > p) & (orders.day <= s)
    previous = np.bincount(orders.customer[before], minlength=n) > 0
    if not previous.any():
        return None
    revenue = np.bincount(orders.customer[before], weights=orders.amount[before],
                          minlength=n) / 100
    lost = previous & ~current
    total = round(math.fsum(np.maximum(revenue[previous], 0.0).tolist()), 2)
    lost_revenue = min(total, round(math.fsum(np.maximum(revenue[lost], 0.0).tolist()), 2))
    at_start, n_lost = int(previous.sum()), int(lost.sum())
    absolute, relative = churn_rates(at_start, n_lost, total, lost_revenue)
    return ChurnRates(start, today, at_start, n_lost, total, lost_revenue, absolute, relative)
