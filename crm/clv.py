"""Customer lifetime value (Dwyer's discounted form) and the four CLV classes."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

CLV_CLASSES = ("vip", "improve", "maintain", "abandon")


def discounted_value(
    revenues: Sequence[float], costs: Sequence[float], discount_rate: float
) -> float:
    """Dwyer: CLV = sum over t = 1..T of (Q_t - C_t) / (1 + i)^t.

    `revenues[0]` is Q_1, the first period *after* today: money already earned is
    current value, not lifetime value still to come.
    """
    if len(revenues) != len(costs):
        raise ValueError("revenues and costs must cover the same periods")
    if discount_rate <= -1:
        raise ValueError(f"discount rate must be above -1, got {discount_rate}")
    return sum(
        (q - c) / (1 + discount_rate) ** t
        for t, (q, c) in enumerate(zip(revenues, costs, strict=True), start=1)
    )


def dwyer_clv(
    revenue_per_period: float,
    cost_per_period: float,
    retention: float,
    discount_rate: float = 0.1,
    horizon: int = 5,
) -> float:
    """Dwyer CLV with a retention-weighted horizon of `horizon` periods.

    The customer is still with us in period t with probability retention^t, so the
    expected revenue and cost of period t are Q * r^t and C * r^t. A fixed horizon
    (rather than T = 1 / (1 - r)) keeps CLV continuous in r and finite at r = 1.
    """
    if not 0 <= retention <= 1:
        raise ValueError(f"retention must be within [0, 1], got {retention}")
    if horizon < 0:
        raise ValueError(f"horizon must not be negative, got {horizon}")
    survival = [retention**t for t in range(1, horizon + 1)]
    return discounted_value(
        [revenue_per_period * s for s in survival],
        [cost_per_period * s for s in survival],
        discount_rate,
    )


def median_threshold(values: Iterable[float]) -> float:
    """The base median, used as the high/low line for current and potential value."""
    values = list(values)
    return statistics.median(values) if values else 0.0


def is_high(value: float, threshold: float) -> bool:
    """High means at least the median *and* positive: a loss is never high value,
    even in a base where most customers bring nothing."""
    return value > 0 and value >= threshold


def clv_class(
    current: float, potential: float, current_threshold: float, potential_threshold: float
) -> str:
    """Current value vs potential value matrix: vip, improve, maintain or abandon."""
    current_high = is_high(current, current_threshold)
    potential_high = is_high(potential, potential_threshold)
    if current_high:
        return "vip" if potential_high else "maintain"
    return "improve" if potential_high else "abandon"
