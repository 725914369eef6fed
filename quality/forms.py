"""Evaluation forms: sections of weighted questions, checked before they are stored.

A question is answered `yes` / `no` / `na` (kind `yes_no`), or with a whole number from
0 to `scale_max` or `na` (kind `scale`). A `critical` question is a yes/no question whose
"no" zeroes the whole evaluation. Weights are positive; they need not add up to 100,
since a score is always a share of the applicable weight (`quality/scoring.py`).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quality.exceptions import InvalidForm

KEY = re.compile(r"^[a-z0-9_-]{1,40}$")
Text = Annotated[str, Field(max_length=2000)]


class Kind(str, Enum):
    yes_no = "yes_no"
    scale = "scale"


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    key: Annotated[str, Field(pattern=KEY.pattern)] | None = None
    text: Annotated[str, Field(min_length=1, max_length=500)]
    weight: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
    kind: Kind = Kind.yes_no
    scale_max: Annotated[int, Field(ge=1, le=10)] = 5
    critical: bool = False
    help: Text = ""

    @model_validator(mode="after")
    def _critical_is_yes_no(self) -> Question:
        if self.critical and self.kind is not Kind.yes_no:
            raise ValueError("a critical question must be a yes/no question")
        return self


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=200)]
    questions: Annotated[list[Question], Field(min_length=1, max_length=100)]


class FormBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Text = ""
    sections: Annotated[list[Section], Field(min_length=1, max_length=30)]
    active: bool = True


def check_form(raw: bytes) -> FormBody:
    """The form in `raw` (JSON) with every question keyed, or `InvalidForm` saying why."""
    try:
        body = FormBody.model_validate_json(raw or b"{}")
    except ValidationError as e:
        raise InvalidForm(describe(e)) from e
    _key_questions(body.sections)
    return body


def _key_questions(sections: list[Section]) -> None:
    """Give each unkeyed question the next free `qN`; two questions may not share a key."""
    given = [q.key for s in sections for q in s.questions if q.key]
    if len(given) != len(set(given)):
        raise InvalidForm("two questions have the same key")
    taken, n = set(given), 0
    for question in (q for s in sections for q in s.questions if not q.key):
        n += 1
        while f"q{n}" in taken:
            n += 1
        question.key = f"q{n}"
        taken.add(question.key)


def sections_json(body: FormBody) -> list[dict[str, Any]]:
    return [section.model_dump(mode="json") for section in body.sections]


def questions(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every question of a stored form, in order, with its section's title."""
    return [{**q, "section": s["title"]} for s in sections for q in s["questions"]]


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
