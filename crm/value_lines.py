"""The base's lines from a full segmentation, to score changed customers against.

Classes and scores are relative to the whole base, so a customer cannot be scored
alone. A full run records where its lines fell (the lowest A and B profit, the RFM
score edges, the CLV and value x cost lines, the measured retention); a nightly run
re-scores only the customers whose orders or complaints changed, against those
lines, and leaves the others as they were. The next full run redraws the lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


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
    # Per crm.value_retention.SEGMENTS; empty in the lines of runs from before them.
    retention_by_segment: tuple[float, ...] = ()

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
