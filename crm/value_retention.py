"""Retention measured on the base, per segment where the data allows.

The textbook carries a customer's margin forward at the historical retention rate.
Retention differs a lot between a customer who bought once and one who keeps coming
back, so it is measured per segment of order count: `one_time` (1 order), `repeat`
(2 up to lifecycle.loyal_min_orders - 1) and `loyal` (loyal_min_orders or more). A
segment's retention is the share of the previous period's buyers of that segment
(by their orders at the period's start) who bought again in the period; a segment
with fewer than clv.min_customers_measured such buyers takes the whole base's
retention, and a base with too few takes the policy's default_retention.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from crm.policy import ValuePolicy
from crm.value_churn import ChurnRates
from crm.value_columns import Floats, Ints, OrderColumns

SEGMENTS = ("one_time", "repeat", "loyal")


def order_segment(orders: Ints, loyal_min_orders: int) -> Ints:
    """0 one_time, 1 repeat, 2 loyal (customers without orders: one_time)."""
    return np.where(orders >= loyal_min_orders, 2, np.where(orders >= 2, 1, 0)).astype(np.int64)


def base_retention(rates: ChurnRates | None, policy: ValuePolicy) -> float:
    if rates is None or rates.customers_at_start < policy.clv.min_customers_measured:
        return policy.clv.default_retention
    return rates.retention


def segment_retention(orders: OrderColumns, n: int, today: date, policy: ValuePolicy,
                      base: float) -> tuple[float, ...]:
    """Retention of each of SEGMENTS over the last CLV period (as base_rates measures
    the base's): `base` where a segment has too few buyers to measure."""
    period = policy.clv.period_days
    start = today - timedelta(days=period)
    s, p = start.toordinal(), (start - timedelta(days=period)).toordinal()
    bought_after = np.bincount(orders.customer[orders.day > s], minlength=n) > 0
    previous = np.bincount(orders.customer[(orders.day > p) & (orders.day <= s)],
                           minlength=n) > 0
    held = np.bincount(orders.customer[orders.day <= s], minlength=n)
    segment = order_segment(held, policy.lifecycle.loyal_min_orders)
    out = []
    for k in range(len(SEGMENTS)):
        at_start = previous & (segment == k)
        count = int(at_start.sum())
        if count < policy.clv.min_customers_measured:
            out.append(base)
        else:
            out.append(1 - int((at_start & ~bought_after).sum()) / count)
    return tuple(out)


def customer_retention(orders: Ints, by_segment: tuple[float, ...], base: float,
                       policy: ValuePolicy) -> Floats:
    """Each customer's retention: their segment's (by orders to date), or `base`."""
    if len(by_segment) != len(SEGMENTS):  # lines of a run from before segments
        return np.full(len(orders), base)
    table = np.array(by_segment, dtype=np.float64)
    return table[order_segment(orders, policy.lifecycle.loyal_min_orders)]
