"""The base's lines from a full segmentation, to score changed customers against.

Classes and scores are relative to the whole base, so a customer cannot be scored
alone. A full run records where its lines fell (the lowest A and B profit, the RFM
score edges, the CLV and value x cost lines, the measured retention); a nightly run
re-scores only the customers whose orders or complaints changed, against those
lines, and leaves the others as they were. The next full run redraws the lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from crm.rfm import RfmValues


@dataclass(frozen=True)
class BaseLines:
    abc_a_cut: float  # lowest profit classed A (inf: no A)
    abc_b_cut: float
    r_edges: tuple[float, ...]  # R score >= k when recency <= r_edges[k - 2]
    f_edges: tuple[float, ...]  # F score >= k when frequency >= f_edges[k - 2]
    m_edges: tuple[float, ...]
    current_line: float
    potential_line: float
    value_line: float
    cost_line: float
    retention: float

    def to_json(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaseLines:
        values: dict[str, Any] = {
            k: tuple(map(_float, v)) if isinstance(v, list) else _float(v)
            for k, v in data.items()}
        return cls(**values)


def _finite(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_finite(x) for x in v]
    return None if isinstance(v, float) and math.isinf(v) else v


def _float(v: Any) -> float:
    return math.inf if v is None else float(v)


def abc_cut(abc: Mapping[str, str], profits: Mapping[str, float], cls: str) -> float:
    return min((profits[c] for c, k in abc.items() if k == cls), default=math.inf)


def abc_of(profit: float, lines: BaseLines) -> str:
    if profit > 0 and profit >= lines.abc_a_cut:
        return "A"
    if profit > 0 and profit >= lines.abc_b_cut:
        return "B"
    return "C"


def score_edges(values: Sequence[float], scores: Sequence[int], lower_is_better: bool
                ) -> tuple[float, ...]:
    """For k = 2..5, the loosest value that still scored at least k in the base."""
    edges = []
    for k in range(2, 6):
        reached = [v for v, s in zip(values, scores, strict=True) if s >= k]
        if lower_is_better:
            edges.append(max(reached, default=-math.inf))
        else:
            edges.append(min(reached, default=math.inf))
    return tuple(edges)


def rfm_edges(rfm: Mapping[str, RfmValues], scores: Mapping[str, str]
              ) -> tuple[tuple[float, ...], ...]:
    ids = list(rfm)
    out = []
    for dim in range(3):
        values = [float(rfm[c][dim]) for c in ids]
        digits = [int(scores[c][dim]) for c in ids]
        out.append(score_edges(values, digits, lower_is_better=dim == 0))
    return out[0], out[1], out[2]


def frozen_score(value: RfmValues, lines: BaseLines) -> str:
    r = 1 + sum(value.recency_days <= e for e in lines.r_edges)
    f = 1 + sum(value.frequency >= e for e in lines.f_edges)
    m = 1 + sum(value.monetary >= e for e in lines.m_edges)
    return f"{r}{f}{m}"
