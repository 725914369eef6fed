"""How an evaluation is scored: the share of the applicable weight earned, out of 100.

    applicable = the weights of the questions not answered "na"
    earned     = the weight of each "yes", plus weight x value / scale_max of each scale
    score      = 100 x earned / applicable, rounded to 2 decimals
                 0 when a critical question is answered "no", whatever else was earned

A not-applicable question leaves the score as if it were not on the form: its weight
is neither earned nor possible. Weights 50/30/20 with the 30 answered "no" earn 70 of
100: 70. The same with the 20 not applicable earn 50 of 80: 62.5 (docs/quality.md says
why not 87.5). Every question must be answered; all of them "na" scores nothing and is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quality.exceptions import InvalidAnswers
from quality.forms import questions

NA = "na"


@dataclass(frozen=True)
class Score:
    score: float  # 0..100
    earned: float
    applicable: float
    possible: float  # every question's weight
    critical_failed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "earned": self.earned, "applicable": self.applicable,
                "possible": self.possible, "critical_failed": self.critical_failed}


def score(sections: list[dict[str, Any]], answers: dict[str, Any]) -> Score:
    """Score `answers` (question key -> answer) on a stored form's sections."""
    asked = questions(sections)
    keys = {q["key"] for q in asked}
    unknown = sorted(set(answers) - keys)
    if unknown:
        raise InvalidAnswers(f"no question {unknown[0][:40]!r} on this form")
    missing = [q["key"] for q in asked if q["key"] not in answers]
    if missing:
        raise InvalidAnswers(f"question {missing[0]!r} is not answered")
    earned = applicable = 0.0
    failed = False
    for question in asked:
        share = fraction(question, answers[question["key"]])
        if share is None:
            continue
        applicable += question["weight"]
        earned += question["weight"] * share
        failed = failed or (question.get("critical", False) and share == 0)
    if applicable == 0:
        raise InvalidAnswers("every question is not applicable: there is nothing to score")
    value = 0.0 if failed else round(100 * earned / applicable, 2)
    possible = sum(q["weight"] for q in asked)
    return Score(value, round(earned, 4), round(applicable, 4), round(possible, 4), failed)


def fraction(question: dict[str, Any], answer: Any) -> float | None:
    """The share of the question's weight an answer earns (0..1), None if not applicable."""
    if answer == NA:
        return None
    if question["kind"] == "yes_no":
        if answer not in ("yes", "no"):
            raise InvalidAnswers(f"question {question['key']!r} takes yes, no or na")
        return 1.0 if answer == "yes" else 0.0
    top = int(question["scale_max"])
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer <= top:
        raise InvalidAnswers(f"question {question['key']!r} takes a whole number "
                             f"from 0 to {top}, or na")
    return answer / top
