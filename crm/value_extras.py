"""Names and the base summary of what the literature measures beyond the tier: the
value x cost matrix, churn warnings, loyalty and customer equity of the whole base
(computed in crm/value_engine.py and crm/value_output.py)."""

from __future__ import annotations

from dataclasses import dataclass

from crm.value_churn import ChurnRates

VALUE_COST_TYPES = ("high_value_low_cost", "high_value_high_cost",
                    "low_value_low_cost", "low_value_high_cost")
VALUABLE_TIERS = frozenset({"vip", "gold"})


@dataclass(frozen=True)
class BaseSummary:
    buyers: int
    retention: float  # per CLV period, measured or the policy default
    retention_by_segment: dict[str, float]  # one_time, repeat, loyal (value_retention.py)
    churn: ChurnRates | None
    customer_equity: float  # group CLV: the sum of every buyer's CLV
    repeat_purchase_rate: float  # share of buyers with two or more orders
    mean_relationship_days: float
