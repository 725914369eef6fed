"""Service level: the one definition the wallboard, the reports and the simulator share.

Service level = calls answered within the threshold / a denominator chosen by the
``service_level_formula`` setting (docs/reports.md):

- ``answered_abandoned`` (default): answered + every abandoned call, short abandons
  included. A caller who hung up while waiting counts against the service level.
- ``answered_long_abandoned``: answered + abandons of at least ``short_abandon_s``;
  callers who hung up at once (a misdial, an IVR slip) are left out.
- ``offered``: every offered call, including calls still waiting or that failed.
- ``answered``: answered calls only; abandons do not count at all.

A call whose outcome is answered-or-abandoned was offered, so in a finished period
with no failed calls ``answered_abandoned`` and ``offered`` are the same figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Formula(str, Enum):
    answered_abandoned = "answered_abandoned"
    answered_long_abandoned = "answered_long_abandoned"
    offered = "offered"
    answered = "answered"


DEFAULT = Formula.answered_abandoned


@dataclass(frozen=True)
class Counts:
    """Counts of calls offered in one period: `abandoned` are the long abandons only."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_short: int = 0


def denominator(counts: Counts, formula: Formula = DEFAULT) -> int:
    if formula is Formula.answered_abandoned:
        return counts.answered + counts.abandoned + counts.abandoned_short
    if formula is Formula.answered_long_abandoned:
        return counts.answered + counts.abandoned
    if formula is Formula.offered:
        return counts.offered
    return counts.answered


def share(counts: Counts, formula: Formula = DEFAULT) -> float | None:
    """A share from 0 to 1; None when no call counts."""
    below = denominator(counts, formula)
    return counts.answered_within / below if below else None


def service_level(counts: Counts, formula: Formula = DEFAULT) -> float | None:
    """`share`, rounded to 4 places, as reports and the wallboard show it."""
    value = share(counts, formula)
    return round(value, 4) if value is not None else None
