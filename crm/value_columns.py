"""The value model's inputs as columns, and what it reads per customer from the orders.

A base of a million customers and ten million orders does not fit in memory as Python
objects (about 500 bytes an order), so the model works on numpy columns: an order is
a customer index, a day ordinal and two amounts in cents (a few bytes each), and every
per-customer figure is one vectorised pass (`np.bincount`, `ufunc.at`) over them.
Amounts are summed in integer cents, so sums are exact and do not depend on the order
of the input rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from crm.policy import Churn, ValuePolicy

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class OrderColumns:
    """One entry per order: the customer's index in `FactColumns.ids`."""

    customer: Ints
    day: Ints  # date.toordinal()
    amount: Ints  # cents
    cost: Ints  # cents

    def __len__(self) -> int:
        return len(self.customer)

    def upto(self, today: date) -> OrderColumns:
        """Orders dated today or before: a past `today` replays history."""
        keep = self.day <= today.toordinal()
        if bool(keep.all()):
            return self
        return OrderColumns(self.customer[keep], self.day[keep], self.amount[keep],
                            self.cost[keep])


@dataclass(frozen=True)
class FactColumns:
    """One entry per customer: contact, open complaints, cost to serve, satisfaction."""

    ids: list[str]
    has_contact: Bools
    open_complaints: Ints
    handle_minutes: Floats
    complaints_in_period: Ints
    satisfaction: Floats  # NaN: no survey

    def __len__(self) -> int:
        return len(self.ids)


def cents(values: npt.ArrayLike) -> Ints:
    return np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64)


def per_customer(orders: OrderColumns, n: int, weights: npt.ArrayLike | None = None,
                 where: Bools | None = None) -> Floats:
    """Sum (or count) over each customer's orders, optionally only where `where`."""
    if where is not None:
        w = np.asarray(weights if weights is not None else 1.0, dtype=np.float64) * where
        return np.asarray(np.bincount(orders.customer, weights=w, minlength=n), np.float64)
    return np.asarray(np.bincount(orders.customer, weights=weights, minlength=n), np.float64)


@dataclass(frozen=True)
class Histories:
    """What the model reads from each customer's orders; 0 for customers without."""

    orders: Ints  # all orders up to today
    first: Ints  # day ordinal of the first order (0: none)
    last: Ints
    amount: Floats  # cents, all orders
    window_orders: Ints  # within the analysis period
    window_amount: Floats  # cents
    window_profit: Floats  # cents
    current_profit: Floats  # cents, within the last CLV period

    @property
    def buyers(self) -> Bools:
        return self.orders > 0


def histories(orders: OrderColumns, n: int, today: date, policy: ValuePolicy) -> Histories:
    counts = np.bincount(orders.customer, minlength=n).astype(np.int64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    np.minimum.at(first, orders.customer, orders.day)
    np.maximum.at(last, orders.customer, orders.day)
    first[counts == 0] = 0
    profit = orders.amount - orders.cost
    in_window = (None if policy.analysis.whole_history else
                 orders.day > (today - timedelta(days=policy.analysis.period_days)).toordinal())
    current = orders.day > (today - timedelta(days=policy.clv.period_days)).toordinal()
    window_orders = counts if in_window is None else per_customer(
        orders, n, where=in_window).astype(np.int64)
    return Histories(
        orders=counts, first=first, last=last, amount=per_customer(orders, n, orders.amount),
        window_orders=window_orders,
        window_amount=per_customer(orders, n, orders.amount, in_window),
        window_profit=per_customer(orders, n, profit, in_window),
        current_profit=per_customer(orders, n, profit, current))


@dataclass(frozen=True)
class Signals:
    """Implicit churn per customer (see crm.value_churn.churn_signals, its one-customer
    form): silence against the customer's own rhythm, falling spend and frequency."""

    risk: Floats
    leave_risk: Floats
    rhythm: Floats
    silence: Ints
    overdue: Floats
    spend_decline: Floats
    frequency_decline: Floats
    window: Ints


def signals(orders: OrderColumns, h: Histories, today: date, policy: Churn) -> Signals:
    t = today.toordinal()
    n = len(h.orders)
    span = (h.last - h.first).astype(np.float64)
    steady = (h.orders >= 2) & (span > 0)
    rhythm = np.where(steady, span / np.maximum(h.orders - 1, 1), policy.fallback_interval_days)
    silence = np.where(h.buyers, t - h.last, 0)
    overdue = np.where(h.buyers, _clamp((silence - rhythm) / ((policy.overdue_factor - 1)
                                                              * rhythm)), 0.0)
    window = np.maximum(policy.trend_window_days,
                        np.rint(policy.trend_rhythms * rhythm)).astype(np.int64)
    earlier = orders.day <= (t - window)[orders.customer]
    n_earlier = per_customer(orders, n, where=earlier)
    spend_earlier = per_customer(orders, n, orders.amount, earlier)
    baseline = np.maximum((t - window - h.first) + rhythm, 1e-12)
    has_earlier = n_earlier > 0
    spend = np.where(has_earlier, _drop(spend_earlier / baseline,
                                        (h.amount - spend_earlier) / window), 0.0)
    freq = np.where(has_earlier, _drop(n_earlier / baseline,
                                       (h.orders - n_earlier) / window), 0.0)
    goes = (1 - overdue) * (1 - policy.frequency_decline_weight * freq)
    stays = goes * (1 - policy.spend_decline_weight * spend)
    return Signals(round_to(1 - stays, 4), round_to(1 - goes, 4), rhythm, silence, overdue,
                   spend, freq, window)


def _drop(before: Floats, recent: Floats) -> Floats:
    safe = np.where(before > 0, before, 1.0)
    return np.where(before > 0, _clamp((before - recent) / safe), 0.0)


def _clamp(x: Floats) -> Floats:
    return np.clip(x, 0.0, 1.0)


def round_to(x: Floats, digits: int) -> Floats:
    """Python's round() on every element: correctly rounded, unlike np.round, so a
    figure is the same whichever form of the model computed it."""
    return np.fromiter((round(v, digits) for v in x.tolist()), dtype=np.float64,
                       count=len(x))


def quantile(values: Floats, q: float) -> float:
    """The q-quantile, linear between neighbours (as crm.clv.quantile_threshold)."""
    if len(values) == 0:
        return 0.0
    ordered = np.sort(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
