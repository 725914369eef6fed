"""Customer value model: ABC, RFM, CLV, lifecycle, churn risk and the routing tier.

Pure functions, no I/O. `value_model` takes customer and order objects and returns
profiles; it scores with crm.value_engine over columns, as `callcenter segment` does
for a whole base straight from the database. Every threshold comes from the
value policy (crm/value_policy.yaml); the rules and their sources are in
docs/value-model.md.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from crm.clv import (
    CLV_CLASSES,
    clv_class,
    discounted_value,
    dwyer_clv,
    median_threshold,
)
from crm.policy import ValuePolicy, default_policy
from crm.rfm import (
    NO_SEGMENT,
    RFM_SEGMENT_LABELS,
    RfmValues,
    rfm_scores,
    rfm_segment,
    segment_label,
)
from crm.value_churn import ChurnRates, base_churn_rates, churn_rates, churn_risk
from crm.value_classes import TIER_RANK, Tier, abc_classes, lifecycle_stage, tier_for
from crm.value_columns import FactColumns, OrderColumns, cents
from crm.value_engine import ABC, STAGES, TIERS, Scored, score
from crm.value_extras import VALUE_COST_TYPES, BaseSummary
from crm.value_lines import BaseLines
from crm.value_output import churn_warnings, summary

__all__ = [
    "NO_SEGMENT",
    "RFM_SEGMENT_LABELS",
    "TIER_RANK",
    "BaseSummary",
    "ChurnRates",
    "CustomerFacts",
    "Order",
    "RfmValues",
    "Tier",
    "ValueModel",
    "ValueProfile",
    "abc_classes",
    "base_churn_rates",
    "churn_rates",
    "churn_risk",
    "clv_class",
    "compute_profiles",
    "discounted_value",
    "dwyer_clv",
    "lifecycle_stage",
    "median_threshold",
    "rfm_scores",
    "rfm_segment",
    "segment_label",
    "tier_for",
    "value_model",
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
    # Cost to serve in the analysis period: handle minutes and complaints handled.
    handle_minutes: float = 0.0
    complaints_in_period: int = 0
    satisfaction: float | None = None  # mean c = perception / expectation


@dataclass(frozen=True)
class ValueProfile:
    customer_id: str
    abc_class: str  # "A" | "B" | "C"
    recency_days: int | None
    frequency: int  # orders within the analysis period
    monetary: float  # spend within the analysis period
    rfm_score: str  # e.g. "545" (R, F, M quintile scores), "" when no orders
    rfm_segment: str  # e.g. "important_value", or "none" without orders
    clv: float  # rounded to cents
    clv_class: str  # "vip" | "improve" | "maintain" | "basic" | "abandon"
    lifecycle_stage: str  # suspect|prospect|first_time|repeat|loyal|lapsing|inactive
    churn_risk: float  # 0..1
    tier: Tier
    current_value: float = 0.0
    service_cost: float = 0.0
    value_cost_type: str = ""
    relationship_days: int | None = None
    orders_total: int = 0
    churn_reasons: tuple[str, ...] = ()
    satisfaction: float | None = None


@dataclass(frozen=True)
class ValueModel:
    profiles: dict[str, ValueProfile]
    summary: BaseSummary
    lines: BaseLines


def compute_profiles(
    customers: Iterable[CustomerFacts],
    orders: Iterable[Order],
    today: date,
    policy: ValuePolicy | None = None,
) -> dict[str, ValueProfile]:
    """Every customer's value profile, scored against this base as of `today`."""
    return value_model(customers, orders, today, policy).profiles


def value_model(
    customers: Iterable[CustomerFacts],
    orders: Iterable[Order],
    today: date,
    policy: ValuePolicy | None = None,
    lines: BaseLines | None = None,
) -> ValueModel:
    """Profiles and base summary. Orders dated after `today` are ignored, so a past
    `today` replays history; a customer with orders but no facts gets default facts.

    With `lines` (from an earlier full run) the customers given are scored against
    those lines instead of against each other: the incremental re-segmentation."""
    policy = policy or default_policy()
    facts = {c.customer_id: c for c in customers}
    kept = [o for o in orders if o.date <= today]
    for o in kept:
        facts.setdefault(o.customer_id, CustomerFacts(o.customer_id))
    ids = list(facts)
    scored = score(fact_columns(facts.values()), order_columns(kept, ids), today, policy,
                   lines)
    warnings = churn_warnings(scored, policy.churn)
    profiles = {cid: profile_at(scored, k, policy, warnings.get(k, ()))
                for k, cid in enumerate(ids)}
    return ValueModel(profiles, summary(scored), scored.lines)


def fact_columns(facts: Collection[CustomerFacts]) -> FactColumns:
    return FactColumns(
        ids=[f.customer_id for f in facts],
        has_contact=np.array([f.has_contact for f in facts], dtype=np.bool_),
        open_complaints=np.array([f.open_complaints for f in facts], dtype=np.int64),
        handle_minutes=np.array([f.handle_minutes for f in facts], dtype=np.float64),
        complaints_in_period=np.array([f.complaints_in_period for f in facts], dtype=np.int64),
        satisfaction=np.array([math.nan if f.satisfaction is None else f.satisfaction
                               for f in facts], dtype=np.float64))


def order_columns(orders: Sequence[Order], ids: Sequence[str]) -> OrderColumns:
    index = {cid: k for k, cid in enumerate(ids)}
    return OrderColumns(
        customer=np.array([index[o.customer_id] for o in orders], dtype=np.int64),
        day=np.array([o.date.toordinal() for o in orders], dtype=np.int64),
        amount=cents([o.amount for o in orders]), cost=cents([o.cost for o in orders]))


def profile_at(s: Scored, i: int, policy: ValuePolicy,
               reasons: tuple[str, ...] = ()) -> ValueProfile:
    """Customer `i`'s profile out of a scored base."""
    buyer = bool(s.hist.orders[i] > 0)
    digits = "".join(map(str, s.rfm[i].tolist())) if buyer else ""
    c, vc = float(s.facts.satisfaction[i]), int(s.value_cost[i])
    return ValueProfile(
        customer_id=s.facts.ids[i], abc_class=ABC[s.abc[i]],
        recency_days=int(s.sig.silence[i]) if buyer else None,
        frequency=int(s.hist.window_orders[i]), monetary=float(s.monetary[i]),
        rfm_score=digits, rfm_segment=rfm_segment(digits, policy.rfm.high_score),
        clv=float(s.clv[i]), clv_class=CLV_CLASSES[s.clv_class[i]],
        lifecycle_stage=STAGES[s.stage[i]], churn_risk=float(s.sig.risk[i]),
        tier=TIERS[s.tier[i]], current_value=float(s.current_value[i]),
        service_cost=float(s.service_cost[i]),
        value_cost_type=VALUE_COST_TYPES[vc] if vc >= 0 else "",
        relationship_days=s.today - int(s.hist.first[i]) if buyer else None,
        orders_total=int(s.hist.orders[i]), churn_reasons=reasons,
        satisfaction=None if math.isnan(c) else c)
