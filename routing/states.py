"""Agent states, as routing and the wallboard see them."""

from __future__ import annotations

from enum import Enum


class AgentState(str, Enum):
    logged_out = "logged_out"
    available = "available"
    not_ready = "not_ready"
    ringing = "ringing"
    on_call = "on_call"
    wrap_up = "wrap_up"


# States an agent may ask for from the console; the others are set by calls.
SELECTABLE = frozenset({AgentState.available, AgentState.not_ready, AgentState.logged_out})
# States in which an agent has a call and cannot change state by itself.
BUSY = frozenset({AgentState.ringing, AgentState.on_call})
# States in which a returning caller's agent will free up soon: worth waiting for.
WORKING = frozenset({AgentState.available, AgentState.ringing, AgentState.on_call,
                     AgentState.wrap_up})
