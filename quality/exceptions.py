"""Quality's domain errors, each with a stable `code` the HTTP edge maps to a status."""

from __future__ import annotations


class QualityError(Exception):
    code = "invalid"


class InvalidForm(QualityError):
    """A form that cannot be scored: no questions, a weight that is not positive..."""


class InvalidAnswers(QualityError):
    """Answers that do not fit the form: missing, unknown, out of the question's range."""


class NoRecording(QualityError):
    """The call has no recording to evaluate or play."""


class NotFound(QualityError):
    code = "not_found"


class Conflict(QualityError):
    """The evaluation is not in the state the step needs (someone else moved it first)."""

    code = "conflict"


class Forbidden(QualityError):
    code = "forbidden"
