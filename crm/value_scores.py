"""ABC classes, RFM quintile scores and the base's lines over columns.

crm.value_classes.abc_classes and crm.rfm.rfm_scores state the rules over mappings;
these compute the same for a whole base at once (tests/test_value_engine.py compares).
"""

from __future__ import annotations

import math

import numpy as np

from crm.policy import Abc
from crm.value_columns import Bools, Floats, Ints
from crm.value_lines import BaseLines

# Cumulative shares are sums of floats; a share that is 0.8 on paper must not land on
# either side of a 0.8 threshold by rounding noise.
_EPS = 1e-9
_C = 2


def abc_codes(profit: Floats, in_window: Bools, p: Abc, frozen: BaseLines | None) -> Ints:
    """0 = A, 1 = B, 2 = C. Ranked by the period's profit, highest first, a group of
    equal profits is A while the profit share *and* the customer share before it are
    below the A shares (and it reaches a_min_profit); B likewise; C the rest. Zero or
    negative profit is C and does not count in the profit total."""
    codes = np.full(len(profit), _C, dtype=np.int64)
    ranked = np.flatnonzero(in_window & (profit > 0))
    if frozen is not None:
        codes[ranked[profit[ranked] >= frozen.abc_b_cut]] = 1
        codes[ranked[profit[ranked] >= frozen.abc_a_cut]] = 0
        return codes
    if len(ranked) == 0:
        return codes
    values, counts = np.unique(profit[ranked], return_counts=True)
    values, counts = values[::-1], counts[::-1]
    products = values * counts
    total = math.fsum(products.tolist())
    share = np.concatenate(([0.0], np.cumsum(products)[:-1])) / total
    customer_share = np.concatenate(([0], np.cumsum(counts)[:-1])) / int(in_window.sum())
    a = ((share < p.a_profit_share - _EPS) & (customer_share < p.a_customer_share - _EPS)
         & (values >= p.a_min_profit))
    b = ~a & ((share < p.b_profit_share - _EPS)
              & (customer_share < p.b_customer_share - _EPS) & (values >= p.b_min_profit))
    group = np.where(a, 0, np.where(b, 1, _C))[::-1]  # ascending, as np.unique's values
    codes[ranked] = group[np.searchsorted(values[::-1], profit[ranked])]
    return codes


def _quintiles(values: Floats, higher_is_better: bool) -> Ints:
    """Score 1..5 by mid-rank percentile, as crm.rfm.quintile_scores."""
    n = len(values)
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, "left")
    equal = np.searchsorted(ordered, values, "right") - below
    better = below if higher_is_better else n - below - equal
    return (1 + (5 * (2 * better + equal)) // (2 * n)).astype(np.int64)


def rfm_digits(recency: Ints, frequency: Ints, monetary: Floats, buyers: Bools) -> Ints:
    """(n, 3) R, F, M quintile scores among the buyers; 0 for customers without orders."""
    digits = np.zeros((len(recency), 3), dtype=np.int64)
    if buyers.any():
        for dim, (values, higher) in enumerate(
                ((recency, False), (frequency, True), (monetary, True))):
            digits[buyers, dim] = _quintiles(values[buyers].astype(np.float64), higher)
    return digits


def frozen_rfm(recency: Ints, frequency: Ints, monetary: Floats, buyers: Bools,
               lines: BaseLines) -> Ints:
    """Scores against an earlier run's edges: R is at least k when the recency is at
    most r_edges[k - 2], F and M likewise from below."""
    digits = np.zeros((len(recency), 3), dtype=np.int64)
    digits[:, 0] = 1 + sum((recency <= e).astype(np.int64) for e in lines.r_edges)
    digits[:, 1] = 1 + sum((frequency >= e).astype(np.int64) for e in lines.f_edges)
    digits[:, 2] = 1 + sum((monetary >= e).astype(np.int64) for e in lines.m_edges)
    digits[~buyers] = 0
    return digits


def _edges(values: Floats, scores: Ints, lower_is_better: bool) -> tuple[float, ...]:
    """For k = 2..5, the loosest value that still scored at least k in the base."""
    out = []
    for k in range(2, 6):
        reached = values[scores >= k]
        if len(reached) == 0:
            out.append(-math.inf if lower_is_better else math.inf)
        else:
            out.append(float(reached.max() if lower_is_better else reached.min()))
    return tuple(out)


def lines_of(abc: Ints, profit: Floats, in_window: Bools, recency: Ints, frequency: Ints,
             monetary: Floats, rfm: Ints, buyers: Bools, current_line: float,
             potential_line: float, value_line: float, cost_line: float,
             retention: float, retention_by_segment: tuple[float, ...]) -> BaseLines:
    """Where this run's lines fell, for later incremental runs."""
    def cut(code: int) -> float:
        chosen = profit[in_window & (abc == code)]
        return float(chosen.min()) if len(chosen) else math.inf

    columns = (recency, frequency, monetary)
    r, f, m = (_edges(columns[d][buyers].astype(np.float64), rfm[buyers, d], d == 0)
               for d in range(3))
    return BaseLines(abc_a_cut=cut(0), abc_b_cut=cut(1), r_edges=r, f_edges=f, m_edges=m,
                     current_line=current_line, potential_line=potential_line,
                     value_line=value_line, cost_line=cost_line, retention=retention,
                     retention_by_segment=retention_by_segment)
