"""What the literature measures beyond the tier: the value x cost matrix, churn
warnings with their reasons, loyalty and customer equity of the whole base."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from crm.clv import quantile_threshold
from crm.policy import Churn, CostToServe
from crm.value_churn import ChurnRates, ChurnSignals

if TYPE_CHECKING:  # the profile types live in crm.value, which imports this module
    from crm.value import CustomerFacts

VALUE_COST_TYPES = ("high_value_low_cost", "high_value_high_cost",
                    "low_value_low_cost", "low_value_high_cost")
VALUABLE_TIERS = frozenset({"vip", "gold"})


class _Profile(Protocol):
    @property
    def customer_id(self) -> str: ...
    @property
    def current_value(self) -> float: ...
    @property
    def service_cost(self) -> float: ...
    @property
    def orders_total(self) -> int: ...
    @property
    def clv(self) -> float: ...
    @property
    def tier(self) -> str: ...


@dataclass(frozen=True)
class BaseSummary:
    buyers: int
    retention: float  # per CLV period, measured or the policy default
    churn: ChurnRates | None
    customer_equity: float  # group CLV: the sum of every buyer's CLV
    repeat_purchase_rate: float  # share of buyers with two or more orders
    mean_relationship_days: float


def summarise(profiles: Mapping[str, _Profile], rates: ChurnRates | None,
              retention: float) -> BaseSummary:
    buyers = [p for p in profiles.values() if p.orders_total > 0]
    n = len(buyers)
    days = [getattr(p, "relationship_days", 0) or 0 for p in buyers]
    return BaseSummary(
        buyers=n, retention=retention, churn=rates,
        customer_equity=round(math.fsum(p.clv for p in buyers), 2),
        repeat_purchase_rate=sum(p.orders_total >= 2 for p in buyers) / n if n else 0.0,
        mean_relationship_days=math.fsum(days) / n if n else 0.0)


def value_cost_lines(profiles: Mapping[str, _Profile], policy: CostToServe
                     ) -> tuple[float, float]:
    """The base's value and cost lines of the value x cost matrix, over buyers."""
    buyers = [p for p in profiles.values() if p.orders_total > 0]
    return (quantile_threshold((p.current_value for p in buyers), policy.value_quantile),
            quantile_threshold((p.service_cost for p in buyers), policy.cost_quantile))


def value_cost_types(profiles: Mapping[str, _Profile], value_line: float,
                     cost_line: float) -> dict[str, str]:
    """The textbook's customer value x cost to serve matrix, for buyers: value is the
    profit of the last period, cost the service cost; high at or above the base's line
    (and positive)."""
    buyers = [p for p in profiles.values() if p.orders_total > 0]
    out = {}
    for p in buyers:
        value = "high_value" if p.current_value > 0 and p.current_value >= value_line else (
            "low_value")
        cost = "high_cost" if p.service_cost > 0 and p.service_cost >= cost_line else "low_cost"
        out[p.customer_id] = f"{value}_{cost}"
    return out


def churn_warnings(
    profiles: Mapping[str, _Profile], facts: Mapping[str, CustomerFacts],
    signals: Mapping[str, ChurnSignals], policy: Churn,
) -> dict[str, tuple[str, ...]]:
    """Reasons to call a valuable (vip or gold) customer before they leave: falling
    spend, silence beyond their rhythm, an open complaint, low satisfaction."""
    out = {}
    for cid, p in profiles.items():
        if str(p.tier) not in VALUABLE_TIERS:
            continue
        reasons = _reasons(facts[cid], signals.get(cid), policy)
        if reasons:
            out[cid] = tuple(reasons)
    return out


def _reasons(facts: CustomerFacts, signals: ChurnSignals | None, policy: Churn) -> list[str]:
    reasons = []
    if signals is not None and signals.risk >= policy.warn_risk:
        reasons += signals.reasons()
    if facts.open_complaints:
        reasons.append("open complaint" if facts.open_complaints == 1
                       else f"{facts.open_complaints} open complaints")
    if facts.satisfaction is not None and facts.satisfaction < policy.warn_satisfaction:
        reasons.append(f"low satisfaction (c = {facts.satisfaction:.2f})")
    return reasons
