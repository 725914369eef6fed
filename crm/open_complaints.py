"""The one definition of an open complaint, used by the value model, routing, the
screen pop, the wallboard and the complaint reports.

A complaint is open until it is resolved (or rejected): received, validated and
resolving. That is also how long its SLA runs. Once resolved it is the follow-up's
business, no longer a reason to route the caller to the complaint desk.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement

from core.models import Complaint

OPEN_COMPLAINT_STATES: tuple[str, ...] = ("received", "validated", "resolving")


def is_open_complaint() -> ColumnElement[bool]:
    """SQL condition on `Complaint`: the complaint is open."""
    return Complaint.state.in_(OPEN_COMPLAINT_STATES)
