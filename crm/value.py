"""Customer value model: ABC, RFM, CLV, lifecycle, churn risk and the routing tier.

Pure functions, no I/O: the `segment` batch command loads customers and orders,
calls `compute_profiles` once, and stores the profiles. The rules and their
sources are in docs/value-model.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from crm.clv import clv_class, discounted_value, dwyer_clv, median_threshold
from crm.rfm import (
    NO_SEGMENT,
    RFM_SEGMENT_LABELS,
    RfmValues,
    rfm_averages,
    rfm_scores,
    rfm_segment,
    segment_label,
)
from crm.value_churn import churn_rates, churn_risk
from crm.value_classes import TIER_RANK, Tier, abc_classes, lifecycle_stage, tier_for

__all__ = [
    "NO_SEGMENT",
    "RFM_SEGMENT_LABELS",
    "TIER_RANK",
    "CustomerFacts",
    "Order",
    "RfmValues",
    "Tier",
    "ValueModelParams",
    "ValueProfile",
    "abc_classes",
    "churn_rates",
    "churn_risk",
    "clv_class",
    "compute_profiles",
    "discounted_value",
    "dwyer_clv",
    "lifecycle_stage",
    "rfm_averages",
    "rfm_scores",
    "rfm_segment",
    "segment_label",
    "tier_for",
]


@dataclass(frozen=True)
class Order:
    customer_id: str
    date: date
    amount: float
    cost: float


@dataclass(frozen=True)
class CustomerFacts:
    customer_id: str
    has_contact: bool = True  # we know a phone/email (prospect vs suspect)
    open_complaints: int = 0


@dataclass(frozen=True)
class ValueProfile:
    customer_id: str
    abc_class: str  # "A" | "B" | "C"
    recency_days: int | None
    frequency: int
    monetary: float
    rfm_score: str  # e.g. "545" (R, F, M quintile scores), "" when no orders
    rfm_segment: str  # e.g. "important_value", or "none" without orders
    clv: float  # rounded to cents
    clv_class: str  # "vip" | "improve" | "maintain" | "abandon"
    lifecycle_stage: str  # suspect|prospect|first_time|repeat|loyal|inactive
    churn_risk: float  # 0..1
    tier: Tier


@dataclass(frozen=True)
class ValueModelParams:
    abc_a_share: float = 0.75
    abc_b_share: float = 0.95
    # One CLV period, and the "last 12 months" window of current value.
    period_days: int = 365
    discount_rate: float = 0.1  # per period
    retention_rate: float = 0.8  # per period, for a customer with no churn signal
    clv_horizon_periods: int = 5
    inactive_after_days: int = 365
    loyal_min_orders: int = 5
    loyal_max_recency_days: int = 180
    churn_fallback_interval_days: float = 120.0
    churn_overdue_factor: float = 3.0
    churn_decline_weight: float = 0.5
    churn_complaint_boost: float = 0.15


@dataclass(slots=True)
class _History:
    """One customer's orders up to today, gathered in a single pass."""

    dates: list[date] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    recent_profits: list[float] = field(default_factory=list)

    @property
    def monetary(self) -> float:
        return round(math.fsum(self.amounts), 2)

    @property
    def profit(self) -> float:
        return math.fsum(self.amounts) - math.fsum(self.costs)

    @property
    def current_value(self) -> float:
        return round(math.fsum(self.recent_profits), 2)

    def rfm(self, today: date) -> RfmValues:
        return RfmValues((today - max(self.dates)).days, len(self.dates), self.monetary)


def compute_profiles(
    customers: Iterable[CustomerFacts],
    orders: Iterable[Order],
    today: date,
    params: ValueModelParams = ValueModelParams(),
) -> dict[str, ValueProfile]:
    """Every customer's value profile, scored against this base as of `today`.

    Orders dated after `today` are ignored, so a past `today` replays history.
    A customer who has orders but no `CustomerFacts` gets the default facts.
    """
    facts = {c.customer_id: c for c in customers}
    histories = _group_orders(orders, today, params.period_days)
    for cid in histories:
        facts.setdefault(cid, CustomerFacts(cid))
    base = _score_base(facts, histories, today, params)
    return {
        cid: _profile(f, base, params) if cid in histories else _no_order_profile(f, base, params)
        for cid, f in facts.items()
    }


@dataclass(frozen=True)
class _BaseScores:
    """Per-customer results of the steps that need the whole base at once."""

    abc: dict[str, str]
    rfm: dict[str, RfmValues]
    rfm_scores: dict[str, str]
    rfm_averages: RfmValues
    churn_risks: dict[str, float]
    clvs: dict[str, float]
    clv_classes: dict[str, str]


def _score_base(
    facts: dict[str, CustomerFacts],
    histories: dict[str, _History],
    today: date,
    params: ValueModelParams,
) -> _BaseScores:
    profits = {cid: histories[cid].profit if cid in histories else 0.0 for cid in facts}
    rfm = {cid: h.rfm(today) for cid, h in histories.items()}
    risks = {cid: _churn_risk(histories.get(cid), f, today, params) for cid, f in facts.items()}
    clvs = {cid: _clv(h, risks[cid], today, params) for cid, h in histories.items()}
    return _BaseScores(
        abc=abc_classes(profits, params.abc_a_share, params.abc_b_share),
        rfm=rfm,
        rfm_scores=rfm_scores(rfm),
        rfm_averages=rfm_averages(rfm),
        churn_risks=risks,
        clvs=clvs,
        clv_classes=_clv_classes(histories, clvs),
    )


def _profile(facts: CustomerFacts, base: _BaseScores, params: ValueModelParams) -> ValueProfile:
    cid = facts.customer_id
    rfm = base.rfm[cid]
    return ValueProfile(
        customer_id=cid,
        abc_class=base.abc[cid],
        recency_days=int(rfm.recency_days),
        frequency=int(rfm.frequency),
        monetary=rfm.monetary,
        rfm_score=base.rfm_scores[cid],
        rfm_segment=rfm_segment(rfm, base.rfm_averages),
        clv=base.clvs[cid],
        clv_class=base.clv_classes[cid],
        lifecycle_stage=_stage(rfm, facts, params),
        churn_risk=base.churn_risks[cid],
        tier=tier_for(base.abc[cid], base.clv_classes[cid]),
    )


def _no_order_profile(
    facts: CustomerFacts, base: _BaseScores, params: ValueModelParams
) -> ValueProfile:
    """Nothing bought yet: nothing to score, and no reason to route them down."""
    return ValueProfile(
        customer_id=facts.customer_id,
        abc_class="C",
        recency_days=None,
        frequency=0,
        monetary=0.0,
        rfm_score="",
        rfm_segment=NO_SEGMENT,
        clv=0.0,
        clv_class="abandon",
        lifecycle_stage=_stage(None, facts, params),
        churn_risk=base.churn_risks[facts.customer_id],
        tier=tier_for("C", "abandon", has_orders=False),
    )


def _group_orders(orders: Iterable[Order], today: date, period_days: int) -> dict[str, _History]:
    """Group orders by customer in one pass; the rest of the model never rescans them."""
    histories: dict[str, _History] = {}
    for o in orders:
        age = (today - o.date).days
        if age < 0:
            continue
        h = histories.get(o.customer_id)
        if h is None:
            h = histories[o.customer_id] = _History()
        h.dates.append(o.date)
        h.amounts.append(o.amount)
        h.costs.append(o.cost)
        if age < period_days:
            h.recent_profits.append(o.amount - o.cost)
    return histories


def _churn_risk(
    history: _History | None, facts: CustomerFacts, today: date, params: ValueModelParams
) -> float:
    return churn_risk(
        history.dates if history else [],
        today,
        facts.open_complaints,
        fallback_interval_days=params.churn_fallback_interval_days,
        overdue_factor=params.churn_overdue_factor,
        decline_weight=params.churn_decline_weight,
        complaint_boost=params.churn_complaint_boost,
    )


def _clv(history: _History, risk: float, today: date, params: ValueModelParams) -> float:
    """Potential value: the customer's average revenue and cost per period so far,
    carried forward with retention lowered by their churn risk."""
    tenure = max(1.0, (today - min(history.dates)).days / params.period_days)
    value = dwyer_clv(
        math.fsum(history.amounts) / tenure,
        math.fsum(history.costs) / tenure,
        params.retention_rate * (1 - risk),
        params.discount_rate,
        params.clv_horizon_periods,
    )
    return round(value, 2)


def _clv_classes(histories: dict[str, _History], clvs: dict[str, float]) -> dict[str, str]:
    """CLV class per ordering customer, with the base medians as high/low lines."""
    current = {cid: h.current_value for cid, h in histories.items()}
    current_line = median_threshold(current.values())
    potential_line = median_threshold(clvs.values())
    return {
        cid: clv_class(current[cid], clvs[cid], current_line, potential_line) for cid in histories
    }


def _stage(rfm: RfmValues | None, facts: CustomerFacts, params: ValueModelParams) -> str:
    # An open complaint is contact we know about, even without a phone or email.
    known = facts.has_contact or facts.open_complaints > 0
    return lifecycle_stage(
        int(rfm.frequency) if rfm else 0,
        int(rfm.recency_days) if rfm else None,
        known,
        inactive_after_days=params.inactive_after_days,
        loyal_min_orders=params.loyal_min_orders,
        loyal_max_recency_days=params.loyal_max_recency_days,
    )
