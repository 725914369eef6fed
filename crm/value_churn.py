"""Implicit churn: a risk score per customer, and the base's churn rates.

Customers rarely tell us they are leaving; they just stop buying. The score reads
that from the order history alone (overdue against their own rhythm, fewer orders
lately), and open complaints raise it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date


def churn_risk(
    order_dates: Sequence[date],
    today: date,
    open_complaints: int = 0,
    *,
    fallback_interval_days: float = 120.0,
    overdue_factor: float = 3.0,
    decline_weight: float = 0.5,
    complaint_boost: float = 0.15,
) -> float:
    """Risk in [0, 1] that the customer has quietly left, rounded to 4 places.

    Signals are combined as independent chances (1 - product of the complements),
    so any one strong signal is enough, each adds to the others, and the result
    never leaves [0, 1]. Each open complaint is one more `complaint_boost` chance.
    """
    overdue = overdue_risk(order_dates, today, fallback_interval_days, overdue_factor)
    decline = decline_weight * frequency_decline(order_dates, today)
    stays = (1 - overdue) * (1 - decline) * (1 - complaint_boost) ** max(open_complaints, 0)
    return round(1 - stays, 4)


def overdue_risk(
    order_dates: Sequence[date],
    today: date,
    fallback_interval_days: float = 120.0,
    overdue_factor: float = 3.0,
) -> float:
    """0 while the next order is not yet due, rising linearly to 1 at `overdue_factor`
    times the customer's mean inter-purchase interval since the last order.

    With a single order (or all orders on one day) there is no rhythm of their own,
    so `fallback_interval_days` stands in for it.
    """
    if overdue_factor <= 1:
        raise ValueError(f"overdue_factor must be above 1, got {overdue_factor}")
    if not order_dates:
        return 0.0
    first, last = min(order_dates), max(order_dates)
    span = (last - first).days
    interval = span / (len(order_dates) - 1) if span > 0 else fallback_interval_days
    since_last = (today - last).days
    return _clamp((since_last - interval) / ((overdue_factor - 1) * interval))


def frequency_decline(order_dates: Sequence[date], today: date) -> float:
    """Relative drop in orders from the earlier to the recent half of the tenure.

    Tenure runs from the first order to today; an order exactly at the midpoint
    counts as recent. Needs two orders: one order is not a trend.
    """
    if len(order_dates) < 2:
        return 0.0
    first = min(order_dates)
    half = (today - first).days / 2
    earlier = sum(1 for d in order_dates if (d - first).days < half)
    recent = len(order_dates) - earlier
    if earlier == 0:
        return 0.0
    return _clamp((earlier - recent) / earlier)


def churn_rates(
    customers_at_start: int, customers_lost: int, revenue_total: float, revenue_of_lost: float
) -> tuple[float, float]:
    """(absolute, relative) churn rate for a period.

    Absolute is the share of customers lost; relative weighs it by the share of
    revenue those customers brought, so losing small buyers hurts less:
    1000 customers, 100 lost who bought 200,000 of 1,000,000 -> (0.10, 0.02).
    """
    if customers_at_start <= 0:
        raise ValueError("customers_at_start must be positive")
    if not 0 <= customers_lost <= customers_at_start:
        raise ValueError("customers_lost must be within [0, customers_at_start]")
    if revenue_total < 0 or not 0 <= revenue_of_lost <= revenue_total:
        raise ValueError("revenue_of_lost must be within [0, revenue_total]")
    absolute = customers_lost / customers_at_start
    if revenue_total == 0:
        return absolute, 0.0
    # One division rather than absolute * share: 0.1 * 0.2 is not 0.02 in floats.
    relative = (customers_lost * revenue_of_lost) / (customers_at_start * revenue_total)
    return absolute, relative


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))
