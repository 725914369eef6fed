"""What a scored base says beyond each customer's classes: the churn warnings of
valuable customers with their reasons, and the base summary (customer equity,
repeat-purchase rate, relationship length, retention and churn)."""

from __future__ import annotations

import math

import numpy as np

from crm.policy import Churn
from crm.value_churn import ChurnSignals
from crm.value_engine import TIERS, Scored
from crm.value_extras import VALUABLE_TIERS, BaseSummary
from crm.value_retention import SEGMENTS

_VALUABLE = [k for k, t in enumerate(TIERS) if t.value in VALUABLE_TIERS]


def churn_warnings(s: Scored, policy: Churn) -> dict[int, tuple[str, ...]]:
    """Reasons to call a valuable (vip or gold) customer before they leave, by customer
    index: falling spend, silence beyond their rhythm, an open complaint, low
    satisfaction (c)."""
    out = {}
    for i in np.flatnonzero(np.isin(s.tier, _VALUABLE)).tolist():
        reasons = _reasons(s, i, policy)
        if reasons:
            out[i] = tuple(reasons)
    return out


def signals_at(s: Scored, i: int) -> ChurnSignals:
    g = s.sig
    return ChurnSignals(float(g.risk[i]), float(g.rhythm[i]), int(g.silence[i]),
                        float(g.overdue[i]), float(g.spend_decline[i]),
                        float(g.frequency_decline[i]), int(g.window[i]),
                        float(g.leave_risk[i]))


def _reasons(s: Scored, i: int, policy: Churn) -> list[str]:
    reasons = []
    if s.hist.orders[i] > 0 and s.sig.risk[i] >= policy.warn_risk:
        reasons += signals_at(s, i).reasons()
    complaints = int(s.facts.open_complaints[i])
    if complaints:
        reasons.append("open complaint" if complaints == 1 else f"{complaints} open complaints")
    c = float(s.facts.satisfaction[i])
    if not math.isnan(c) and c < policy.warn_satisfaction:
        reasons.append(f"low satisfaction (c = {c:.2f})")
    return reasons


def summary(s: Scored) -> BaseSummary:
    buyers = s.hist.buyers
    n = int(buyers.sum())
    days = s.today - s.hist.first[buyers]
    return BaseSummary(
        buyers=n, retention=s.retention, churn=s.rates,
        retention_by_segment=dict(zip(SEGMENTS, s.retention_by_segment, strict=False)),
        customer_equity=round(math.fsum(s.clv[buyers].tolist()), 2),
        repeat_purchase_rate=int((s.hist.orders >= 2).sum()) / n if n else 0.0,
        mean_relationship_days=math.fsum(days.tolist()) / n if n else 0.0)
