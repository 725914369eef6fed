"""Customer value model: ABC, RFM, CLV, lifecycle, churn risk and the routing tier.

Pure functions, no I/O: the `segment` batch command loads customers and orders,
calls `value_model` once, and stores the profiles. Every threshold comes from the
value policy (crm/value_policy.yaml); the rules and their sources are in
docs/value-model.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from crm.clv import clv_class, discounted_value, dwyer_clv, median_threshold, quantile_threshold
from crm.policy import ValuePolicy, default_policy
from crm.rfm import (
    NO_SEGMENT,
    RFM_SEGMENT_LABELS,
    RfmValues,
    rfm_scores,
    rfm_segment,
    segment_label,
)
from crm.value_churn import (
    ChurnRates,
    ChurnSignals,
    base_churn_rates,
    churn_rates,
    churn_risk,
    churn_signals,
)
from crm.value_classes import TIER_RANK, Tier, abc_classes, lifecycle_stage, tier_for
from crm.value_extras import (
    BaseSummary,
    churn_warnings,
    summarise,
    value_cost_lines,
    value_cost_types,
)
from crm.value_lines import BaseLines, abc_cut, abc_of, frozen_score, rfm_edges

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


@dataclass(slots=True)
class _History:
    """One customer's orders up to today, gathered in a single pass."""

    dates: list[date] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    window_amounts: list[float] = field(default_factory=list)
    window_profits: list[float] = field(default_factory=list)
    current_profits: list[float] = field(default_factory=list)

    @property
    def window_profit(self) -> float:
        return math.fsum(self.window_profits)

    @property
    def current_value(self) -> float:
        return round(math.fsum(self.current_profits), 2)


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
    orders = [o for o in orders if o.date <= today]
    histories = _group_orders(orders, today, policy)
    for cid in histories:
        facts.setdefault(cid, CustomerFacts(cid))
    rates = None if lines else base_churn_rates(orders, today, policy.clv.period_days)
    retention = lines.retention if lines else _retention(rates, policy)
    scorer = _Scorer(facts, histories, today, policy, retention, lines)
    profiles = scorer.profiles()
    return ValueModel(profiles, summarise(profiles, rates, retention), scorer.lines())


def _retention(rates: ChurnRates | None, policy: ValuePolicy) -> float:
    """The base's measured retention, or the policy default when too few customers
    bought in the previous period to measure it."""
    if rates is None or rates.customers_at_start < policy.clv.min_customers_measured:
        return policy.clv.default_retention
    return rates.retention


def _group_orders(orders: Iterable[Order], today: date, policy: ValuePolicy) -> dict[str, _History]:
    """Group orders by customer in one pass; the rest of the model never rescans them."""
    window_from = None if policy.analysis.whole_history else (
        today - timedelta(days=policy.analysis.period_days))
    current_from = today - timedelta(days=policy.clv.period_days)
    histories: dict[str, _History] = {}
    for o in orders:
        h = histories.get(o.customer_id)
        if h is None:
            h = histories[o.customer_id] = _History()
        h.dates.append(o.date)
        h.amounts.append(o.amount)
        if window_from is None or o.date > window_from:
            h.window_amounts.append(o.amount)
            h.window_profits.append(o.amount - o.cost)
        if o.date > current_from:
            h.current_profits.append(o.amount - o.cost)
    return histories


class _Scorer:
    """The steps that need the whole base at once, then one profile per customer."""

    def __init__(self, facts: dict[str, CustomerFacts], histories: dict[str, _History],
                 today: date, policy: ValuePolicy, retention: float,
                 frozen: BaseLines | None = None) -> None:
        self.facts, self.histories, self.today = facts, histories, today
        self.policy, self.retention, self.frozen = policy, retention, frozen
        self.signals = {cid: churn_signals(h.dates, h.amounts, today, policy.churn)
                        for cid, h in histories.items()}
        self.rfm = {cid: self._rfm(h) for cid, h in histories.items()}
        self.window_profits = {cid: h.window_profit for cid, h in histories.items()
                               if h.window_profits}
        if frozen is None:
            self.rfm_scores = rfm_scores(self.rfm)
            self.abc = abc_classes(self.window_profits, policy.abc)
        else:
            self.rfm_scores = {cid: frozen_score(v, frozen) for cid, v in self.rfm.items()}
            self.abc = {cid: abc_of(p, frozen) for cid, p in self.window_profits.items()}
        self.clvs = {cid: self._clv(cid, h) for cid, h in histories.items()}
        self.clv_classes = self._clv_classes()

    def _rfm(self, h: _History) -> RfmValues:
        recency = (self.today - max(h.dates)).days
        return RfmValues(recency, len(h.window_amounts), round(math.fsum(h.window_amounts), 2))

    def _clv(self, cid: str, h: _History) -> float:
        """Potential value: the margin per period of the analysis window, carried
        forward at the base's retention lowered by the customer's risk of having left
        (silence, fewer orders). Falling spend is a warning, not a departure: it shows
        in churn_risk and the reasons, and never makes more spend worth less."""
        clv = self.policy.clv
        tenure_days = (self.today - min(h.dates)).days + 1
        window_days = tenure_days if self.policy.analysis.whole_history else min(
            tenure_days, self.policy.analysis.period_days)
        margin = h.window_profit / max(1.0, window_days / clv.period_days)
        r = self.retention * (1 - self.signals[cid].leave_risk)
        return round(dwyer_clv(margin, 0.0, r, clv.discount_rate, clv.horizon_periods), 2)

    def _clv_classes(self) -> dict[str, str]:
        p = self.policy.clv
        current = {cid: h.current_value for cid, h in self.histories.items()}
        if self.frozen is None:
            self.current_line = quantile_threshold(current.values(), p.high_quantile)
            self.potential_line = quantile_threshold(self.clvs.values(), p.high_quantile)
        else:
            self.current_line = self.frozen.current_line
            self.potential_line = self.frozen.potential_line
        return {cid: clv_class(current[cid], self.clvs[cid], self.current_line,
                               self.potential_line, high_min=p.high_min,
                               abandon_max=p.abandon_max)
                for cid in self.histories}

    def lines(self) -> BaseLines:
        """Where this run's lines fell, for later incremental runs."""
        if self.frozen is not None:
            return self.frozen
        r, f, m = rfm_edges(self.rfm, self.rfm_scores)
        return BaseLines(
            abc_a_cut=abc_cut(self.abc, self.window_profits, "A"),
            abc_b_cut=abc_cut(self.abc, self.window_profits, "B"),
            r_edges=r, f_edges=f, m_edges=m, current_line=self.current_line,
            potential_line=self.potential_line, value_line=self.value_line,
            cost_line=self.cost_line, retention=self.retention)

    def profiles(self) -> dict[str, ValueProfile]:
        out = {cid: self._profile(f) if cid in self.histories else self._no_orders(f)
               for cid, f in self.facts.items()}
        if self.frozen is None:
            self.value_line, self.cost_line = value_cost_lines(out, self.policy.cost_to_serve)
        else:
            self.value_line, self.cost_line = self.frozen.value_line, self.frozen.cost_line
        types = value_cost_types(out, self.value_line, self.cost_line)
        warnings = churn_warnings(out, self.facts, self.signals, self.policy.churn)
        for cid, value_cost_type in types.items():
            out[cid] = replace(out[cid], value_cost_type=value_cost_type,
                               churn_reasons=warnings.pop(cid, ()))
        for cid, reasons in warnings.items():
            out[cid] = replace(out[cid], churn_reasons=reasons)
        return out

    def _profile(self, facts: CustomerFacts) -> ValueProfile:
        cid = facts.customer_id
        h, rfm, score = self.histories[cid], self.rfm[cid], self.rfm_scores[cid]
        abc, cls = self.abc.get(cid, "C"), self.clv_classes[cid]
        return ValueProfile(
            customer_id=cid, abc_class=abc, recency_days=int(rfm.recency_days),
            frequency=int(rfm.frequency), monetary=rfm.monetary, rfm_score=score,
            rfm_segment=rfm_segment(score, self.policy.rfm.high_score),
            clv=self.clvs[cid], clv_class=cls,
            lifecycle_stage=self._stage(facts, len(h.dates), int(rfm.recency_days),
                                        self.signals[cid]),
            churn_risk=self.signals[cid].risk,
            tier=tier_for(abc, cls, orders=len(h.dates), policy=self.policy.tiers),
            current_value=h.current_value, service_cost=self._service_cost(facts),
            relationship_days=(self.today - min(h.dates)).days, orders_total=len(h.dates),
            satisfaction=facts.satisfaction)

    def _no_orders(self, facts: CustomerFacts) -> ValueProfile:
        """Nothing bought yet: nothing to score, and no reason to route them down."""
        return ValueProfile(
            customer_id=facts.customer_id, abc_class="C", recency_days=None, frequency=0,
            monetary=0.0, rfm_score="", rfm_segment=NO_SEGMENT, clv=0.0, clv_class="basic",
            lifecycle_stage=self._stage(facts, 0, None, None), churn_risk=0.0,
            tier=tier_for("C", "basic", has_orders=False),
            service_cost=self._service_cost(facts), satisfaction=facts.satisfaction)

    def _service_cost(self, facts: CustomerFacts) -> float:
        c = self.policy.cost_to_serve
        return round(facts.handle_minutes * c.cost_per_minute
                     + facts.complaints_in_period * c.cost_per_complaint, 2)

    def _stage(self, facts: CustomerFacts, orders: int, recency: int | None,
               signals: ChurnSignals | None) -> str:
        # An open complaint is contact we know about, even without a phone or email.
        known = facts.has_contact or facts.open_complaints > 0
        rhythm = signals.rhythm_days if signals else self.policy.churn.fallback_interval_days
        return lifecycle_stage(orders, recency, known, rhythm_days=rhythm,
                               policy=self.policy.lifecycle)
