"""From summed counts to the figures a report shows (docs/reports.md defines each)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.servicelevel import Counts, Formula, service_level


def ratio(numerator: float, denominator: float, places: int = 4) -> float | None:
    return round(numerator / denominator, places) if denominator else None


def queue_figures(s: Mapping[str, float], formula: Formula) -> dict[str, Any]:
    """The figures of calls offered in a period, from the summed rollup columns."""
    counts = Counts(offered=int(s.get("offered", 0)), answered=int(s.get("answered", 0)),
                    answered_within=int(s.get("answered_within", 0)),
                    abandoned=int(s.get("abandoned", 0)),
                    abandoned_short=int(s.get("abandoned_short", 0)))
    all_abandoned = counts.abandoned + counts.abandoned_short
    return {
        "offered": counts.offered, "answered": counts.answered,
        "answered_within": counts.answered_within,
        "answered_beyond": counts.answered - counts.answered_within,
        "abandoned": counts.abandoned, "abandoned_short": counts.abandoned_short,
        "failed": int(s.get("failed", 0)),
        "service_level": service_level(counts, formula),
        "abandon_rate": ratio(all_abandoned, counts.answered + all_abandoned),
        "asa_s": ratio(s.get("wait_sum", 0), counts.answered, 2),
        "longest_wait_s": round(float(s.get("wait_max", 0)), 2),
        **handle_figures(s),
        "transfers": int(s.get("transfers", 0)),
        "csat_responses": int(s.get("csat_n", 0)),
        "csat_average": ratio(s.get("csat_sum", 0), s.get("csat_n", 0), 2),
        "csat_satisfied": ratio(s.get("csat_good", 0), s.get("csat_n", 0)),
        "callbacks": int(s.get("callbacks", 0)),
        "callbacks_connected": int(s.get("callbacks_connected", 0)),
        "complaints_opened": int(s.get("complaints_opened", 0)),
        "complaints_resolved_within_sla": int(s.get("complaints_resolved_within_sla", 0)),
    }


def handle_figures(s: Mapping[str, float]) -> dict[str, float | None]:
    """Talk (without hold), hold and wrap-up, each averaged over the calls that have it
    (talk and hold over the calls with a talk time), and their sum, the average handle
    time. A call's recorded talk time includes its holds (docs/protocol.md)."""
    talk_n = s.get("talk_n", 0)
    hold = ratio(s.get("hold_sum", 0), talk_n, 2)
    talk = ratio(s.get("talk_sum", 0) - s.get("hold_sum", 0), talk_n, 2)
    wrap = ratio(s.get("wrap_sum", 0), s.get("wrap_n", 0), 2)
    aht = None if talk is None else round(talk + (hold or 0.0) + (wrap or 0.0), 2)
    return {"avg_talk_s": talk, "avg_hold_s": hold, "avg_wrap_up_s": wrap, "aht_s": aht}


def add(into: dict[str, float], row: Mapping[str, Any]) -> None:
    """Sum one rollup row into `into`; the longest wait is a maximum, not a sum."""
    for name, value in row.items():
        if value is None:
            continue
        if name == "wait_max":
            into[name] = max(into.get(name, 0.0), float(value))
        else:
            into[name] = into.get(name, 0.0) + float(value)
