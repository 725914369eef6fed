"""One service-level definition: each formula worked out by hand, and the wallboard,
the reports and the simulator giving the same figure for the same calls under each.

Nine calls, threshold 20 s, short abandons under 5 s:
  answered after 5, 10, 20 (within), 30, 45 s (beyond)       -> 5 answered, 3 within
  hung up after 3 s (short), 8 s and 60 s (long abandons)   -> 1 short, 2 long
  one failed (offered, neither answered nor abandoned)       -> offered 9
"""

from __future__ import annotations

import pytest

from agent_console.wallboard import _figures as wallboard_figures
from core.servicelevel import Counts, Formula, service_level
from reports.figures import queue_figures
from routing.simreport import Outcomes, summarize

COUNTS = Counts(offered=9, answered=5, answered_within=3, abandoned=2, abandoned_short=1)
BY_HAND = {Formula.answered_abandoned: round(3 / 8, 4),  # answered + every abandon
           Formula.answered_long_abandoned: round(3 / 7, 4),  # short abandons left out
           Formula.offered: round(3 / 9, 4),  # the failed call too
           Formula.answered: round(3 / 5, 4)}


@pytest.mark.parametrize("formula", list(Formula))
def test_each_formula_gives_the_share_worked_out_by_hand(formula):
    assert service_level(COUNTS, formula) == BY_HAND[formula]


@pytest.mark.parametrize("formula", list(Formula))
def test_wallboard_reports_and_simulator_give_the_same_service_level(formula):
    board = wallboard_figures({"offered": 9, "answered": 5, "answered_sl": 3, "abandoned": 2,
                               "abandoned_short": 1}, formula)
    report = queue_figures({"offered": 9, "answered": 5, "answered_within": 3,
                            "abandoned": 2, "abandoned_short": 1, "failed": 1}, formula)
    # The simulator's calls all end answered or abandoned: the same calls but the failed one.
    waits = [5.0, 10.0, 20.0, 30.0, 45.0, 3.0, 8.0, 60.0]
    out = Outcomes(tier=["standard"] * 8, answered=[True] * 5 + [False] * 3, wait_s=waits,
                   queued=[True] * 8, sticky=[False] * 8, sticky_hit=[False] * 8,
                   preferred=[False] * 8, best_match=[False] * 8)
    simulated = summarize(out, "fifo", 20.0, ["standard"], 0.9, formula=formula,
                          short_abandon_s=5.0).overall.service_level
    assert board["sl"] == report["service_level"] == BY_HAND[formula]
    without_failed = round(3 / 8, 4) if formula is Formula.offered else BY_HAND[formula]
    assert round(simulated, 4) == without_failed
