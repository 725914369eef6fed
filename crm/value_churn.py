"""Implicit churn: a risk score per customer with its reasons, and the base's churn rates.

Customers rarely tell us they are leaving; they stop buying, or buy less. The score
reads that from the order history alone, against each customer's own rhythm: silence
beyond their usual interval, and falling spend and frequency from one window to the
next. Complaints are not a churn signal here: a complaint is a chance to keep the
customer (service recovery), and it never lowers their value or their tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from crm.policy import Churn

_DEFAULT = Churn()


class OrderLike(Protocol):
    @property
    def customer_id(self) -> str: ...
    @property
    def date(self) -> date: ...
    @property
    def amount(self) -> float: ...


@dataclass(frozen=True)
class ChurnSignals:
    risk: float  # 0..1, rounded to 4 places
    rhythm_days: float  # mean days between orders (or the fallback)
    silence_days: int
    overdue: float
    spend_decline: float
    frequency_decline: float
    window_days: int
    leave_risk: float = 0.0  # silence and fewer orders only: the chance they are gone

    def reasons(self) -> list[str]:
        """Why the customer may be leaving, for people: 'spend down 60% in 90 days'."""
        out = []
        if self.spend_decline >= 0.3:
            out.append(f"spend down {round(self.spend_decline * 100)}% in {self.window_days} days")
        if self.overdue > 0:
            out.append(f"silent {self.silence_days} days (usually every "
                       f"{round(self.rhythm_days)} days)")
        if self.frequency_decline >= 0.5 and self.spend_decline < 0.3:
            out.append(f"orders down {round(self.frequency_decline * 100)}% "
                       f"in {self.window_days} days")
        return out


def rhythm_days(order_dates: Sequence[date], fallback: float = 120.0) -> float:
    """Mean days between orders; the fallback with one order or all on one day."""
    if len(order_dates) < 2:
        return fallback
    span = (max(order_dates) - min(order_dates)).days
    return span / (len(order_dates) - 1) if span > 0 else fallback


def churn_signals(
    order_dates: Sequence[date],
    amounts: Sequence[float],
    today: date,
    policy: Churn = _DEFAULT,
) -> ChurnSignals:
    """Silence against the customer's rhythm, and falling spend and frequency.

    Signals are combined as independent chances (1 - product of the complements),
    so any one strong signal is enough, each adds to the others, and the risk never
    leaves [0, 1]."""
    rhythm = rhythm_days(order_dates, policy.fallback_interval_days)
    silence = (today - max(order_dates)).days if order_dates else 0
    overdue = _overdue(silence, rhythm, policy.overdue_factor) if order_dates else 0.0
    window = max(policy.trend_window_days, round(policy.trend_rhythms * rhythm))
    spend, freq = _declines(order_dates, amounts, today, window, rhythm)
    goes = (1 - overdue) * (1 - policy.frequency_decline_weight * freq)
    stays = goes * (1 - policy.spend_decline_weight * spend)
    return ChurnSignals(round(1 - stays, 4), rhythm, silence, overdue, spend, freq, window,
                        round(1 - goes, 4))


def churn_risk(
    order_dates: Sequence[date],
    today: date,
    amounts: Sequence[float] | None = None,
    policy: Churn = _DEFAULT,
) -> float:
    """Risk in [0, 1] that the customer has quietly left, rounded to 4 places."""
    amounts = amounts if amounts is not None else [1.0] * len(order_dates)
    return churn_signals(order_dates, amounts, today, policy).risk


def _overdue(silence: int, rhythm: float, factor: float) -> float:
    """0 while the next order is not yet due, 1 at `factor` rhythms of silence."""
    return _clamp((silence - rhythm) / ((factor - 1) * rhythm))


def _declines(order_dates: Sequence[date], amounts: Sequence[float], today: date,
              window: int, rhythm: float) -> tuple[float, float]:
    """Relative drop of spend and of order count per day, from the customer's own
    baseline (every order before the latest window) to the latest `window` days.

    Each order stands for one rhythm of buying, so the baseline spans from the first
    order to the window plus one rhythm: a steady buyer shows no drop.
    """
    recent_from = today - timedelta(days=window)
    earlier = [(d, a) for d, a in zip(order_dates, amounts, strict=True) if d <= recent_from]
    if not earlier:
        return 0.0, 0.0
    span = (recent_from - min(d for d, _ in earlier)).days + rhythm
    recent = [a for d, a in zip(order_dates, amounts, strict=True) if recent_from < d <= today]
    spend = _drop(sum(a for _, a in earlier) / span, sum(recent) / window)
    count = _drop(len(earlier) / span, len(recent) / window)
    return spend, count


def _drop(before: float, recent: float) -> float:
    return _clamp((before - recent) / before) if before > 0 else 0.0


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


@dataclass(frozen=True)
class ChurnRates:
    """Churn over one period: the previous period's buyers who bought nothing since."""

    period_start: date
    period_end: date
    customers_at_start: int
    customers_lost: int
    revenue_total: float
    revenue_of_lost: float
    absolute: float
    relative: float

    @property
    def retention(self) -> float:
        return 1 - self.absolute


def rates_from(previous_revenue: Mapping[str, float], current_buyers: Iterable[str],
               start: date, end: date) -> ChurnRates | None:
    """Churn rates from each previous-period buyer's revenue and who bought in this
    period; None when nobody bought in the previous period."""
    if not previous_revenue:
        return None
    current = set(current_buyers)
    lost = [c for c in previous_revenue if c not in current]
    total = round(sum(max(v, 0.0) for v in previous_revenue.values()), 2)
    lost_revenue = min(total, round(sum(max(previous_revenue[c], 0.0) for c in lost), 2))
    absolute, relative = churn_rates(len(previous_revenue), len(lost), total, lost_revenue)
    return ChurnRates(start, end, len(previous_revenue), len(lost), total, lost_revenue,
                      absolute, relative)


def base_churn_rates(orders: Iterable[OrderLike], today: date,
                     period_days: int = 365) -> ChurnRates | None:
    """Churn of the period (today - period_days, today]: customers who bought in the
    period before it and not in it. `orders` are crm.value.Order rows."""
    start = today - timedelta(days=period_days)
    previous_from = start - timedelta(days=period_days)
    previous: dict[str, float] = {}
    current: set[str] = set()
    for o in orders:
        if start < o.date <= today:
            current.add(o.customer_id)
        elif previous_from < o.date <= start:
            previous[o.customer_id] = previous.get(o.customer_id, 0.0) + o.amount
    return rates_from(previous, current, start, today)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))
