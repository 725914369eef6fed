"""RFM scoring and the eight classic RFM segments.

Pure functions over plain numbers: the batch job and the tests feed them the same
`RfmValues`, and nothing here knows about orders, databases or the web.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import NamedTuple

NO_SEGMENT = "none"

# (R high, F high, M high) -> segment id. "R high" means recent, i.e. few days.
_SEGMENTS: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "important_value",
    (True, False, True): "important_develop",
    (False, True, True): "important_retain",
    (False, False, True): "important_win_back",
    (True, True, False): "general_value",
    (True, False, False): "general_develop",
    (False, True, False): "general_retain",
    (False, False, False): "general_win_back",
}

RFM_SEGMENT_LABELS: dict[str, dict[str, str]] = {
    "important_value": {"en": "Important value", "zh": "重要价值客户"},
    "important_develop": {"en": "Important develop", "zh": "重要发展客户"},
    "important_retain": {"en": "Important retain", "zh": "重要保持客户"},
    "important_win_back": {"en": "Important win-back", "zh": "重要挽留客户"},
    "general_value": {"en": "General value", "zh": "一般价值客户"},
    "general_develop": {"en": "General develop", "zh": "一般发展客户"},
    "general_retain": {"en": "General retain", "zh": "一般保持客户"},
    "general_win_back": {"en": "General win-back", "zh": "一般挽留客户"},
    NO_SEGMENT: {"en": "No orders", "zh": "无订单客户"},
}


class RfmValues(NamedTuple):
    recency_days: float
    frequency: float
    monetary: float


def segment_label(segment_id: str, lang: str = "en") -> str:
    """Display name for a segment id; ids stay stable, labels are for people."""
    return RFM_SEGMENT_LABELS[segment_id][lang]


def quintile_scores(values: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Score each value 1..5 by its percentile rank within `values`.

    The percentile rank counts ties as half below (mid-rank), so equal values always
    get equal scores and the result does not depend on input order. Integer
    arithmetic keeps the bucket edges exact.
    """
    n = len(values)
    ordered = sorted(values)
    scores = []
    for v in values:
        below = bisect_left(ordered, v)
        equal = bisect_right(ordered, v) - below
        better = below if higher_is_better else n - below - equal
        scores.append(1 + (5 * (2 * better + equal)) // (2 * n))
    return scores


def rfm_scores(values: Mapping[str, RfmValues]) -> dict[str, str]:
    """R, F and M quintile scores as a three-digit string per customer, e.g. "545".

    Pass only customers with at least one order: they form the base the quintiles
    are cut from. Recency scores 5 for the most recent buyers.
    """
    ids = list(values)
    r = quintile_scores([values[c].recency_days for c in ids], higher_is_better=False)
    f = quintile_scores([values[c].frequency for c in ids])
    m = quintile_scores([values[c].monetary for c in ids])
    return {c: f"{r[k]}{f[k]}{m[k]}" for k, c in enumerate(ids)}


def rfm_segment(score: str, high_score: int = 3) -> str:
    """One of the eight classic segments, from the customer's own quintile scores: a
    dimension is high when its score is at least `high_score`. Scores and segments
    use the one cut, so an M score of 5 is never "M low"."""
    if not score:
        return NO_SEGMENT
    r, f, m = (int(ch) >= high_score for ch in score)
    return _SEGMENTS[(r, f, m)]
