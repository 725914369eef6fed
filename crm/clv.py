"""Customer lifetime value (Dwyer's discounted form) and the CLV classes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CLV_CLASSES = ("vip", "improve", "maintain", "basic", "abandon")


def discounted_value(
    revenues: Sequence[float], costs: Sequence[float], discount_rate: float
) -> float:
    """Dwyer: CLV = sum over t = 0..T of (Q_t - C_t) / (1 + i)^t.

    `revenues[0]` is Q_0, the period starting today, undiscounted, as in the
    textbook: margins of 400 a year for T = 3 at i = 0.1 are worth 1,394.74.
    """
    if len(revenues) != len(costs):
        raise ValueError("revenues and costs must cover the same periods")
    if discount_rate <= -1:
        raise ValueError(f"discount rate must be above -1, got {discount_rate}")
    return sum(
        (q - c) / (1 + discount_rate) ** t
        for t, (q, c) in enumerate(zip(revenues, costs, strict=True))
    )


def dwyer_clv(
    revenue_per_period: float,
    cost_per_period: float,
    retention: float,
    discount_rate: float = 0.1,
    horizon: int = 3,
) -> float:
    """Dwyer CLV over periods t = 0..horizon, the customer still with us in period t
    with probability retention^t (expected Q_t = Q r^t, C_t = C r^t)."""
    if not 0 <= retention <= 1:
        raise ValueError(f"retention must be within [0, 1], got {retention}")
    if horizon < 0:
        raise ValueError(f"horizon must not be negative, got {horizon}")
    survival = [retention**t for t in range(horizon + 1)]
    return discounted_value(
        [revenue_per_period * s for s in survival],
        [cost_per_period * s for s in survival],
        discount_rate,
    )


def quantile_threshold(values: Iterable[float], q: float = 0.5) -> float:
    """The base's q-quantile (linear between neighbours; q = 0.5 is the median)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_threshold(values: Iterable[float]) -> float:
    return quantile_threshold(values, 0.5)


def is_high(value: float, threshold: float, floor: float = 0.0) -> bool:
    """High means at least the base's line *and* above the absolute floor: a loss is
    never high value, even in a base where most customers bring nothing."""
    return value > floor and value >= threshold


def clv_class(
    current: float,
    potential: float,
    current_threshold: float,
    potential_threshold: float,
    *,
    high_min: float = 0.0,
    abandon_max: float = 0.0,
) -> str:
    """Current vs potential value: vip, improve, maintain; low on both is `basic`
    while the customer is profitable and `abandon` only when unprofitable on both."""
    current_high = is_high(current, current_threshold, high_min)
    potential_high = is_high(potential, potential_threshold, high_min)
    if current_high:
        return "vip" if potential_high else "maintain"
    if potential_high:
        return "improve"
    return "abandon" if current <= abandon_max and potential <= abandon_max else "basic"
