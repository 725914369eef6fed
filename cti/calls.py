"""The call state machine: which event may move a call from which state.

    offered -> queued -> ringing -> connected -> wrap_up -> ended
    queued | ringing -> abandoned           (caller hung up before an answer)
    queued -> callback                      (the caller asked to be called back, and left)
    ringing -> queued                       (ring-no-answer: routed again)
    connected -> queued                     (transfer re-enters routing)
    connected <-> on_hold                   (call.held, call.resumed; ends and transfers
                                             as connected does)
    connected | on_hold -> consult_ringing  (a consult: the consulted agent reserved and
                                             rung, the caller held; cti/consult.py)
    consult_ringing -> consulting           (consult.answered)
    consulting -> conference                (conference.started: all three talk)
    consult_* | conference -> connected     (consult.ended: the caller back with the first
                                             agent; consult.completed: with the consulted)
    consult_ringing -> on_hold              (the consulted agent did not answer)

Post-call events (a survey score, a recording) arrive after the call is over and
are accepted in wrap-up and in the final states.
"""

from __future__ import annotations

from enum import Enum


class CallState(str, Enum):
    offered = "offered"
    queued = "queued"
    ringing = "ringing"
    connected = "connected"
    on_hold = "on_hold"
    consult_ringing = "consult_ringing"
    consulting = "consulting"
    conference = "conference"
    wrap_up = "wrap_up"
    ended = "ended"
    abandoned = "abandoned"
    # The caller asked to be called back and left the line (cti/callbacks.py): not an
    # abandon; the callback goes on under its own id.
    callback = "callback"


FINAL = frozenset({CallState.ended, CallState.abandoned, CallState.callback})
LIVE = frozenset(CallState) - FINAL
POST_CALL = frozenset({CallState.wrap_up, CallState.ended, CallState.abandoned,
                       CallState.callback})


class CallError(Exception):
    code = "call_error"


class NoSuchCall(CallError):
    code = "unknown_call"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call {call_id!r}")
        self.call_id = call_id


class CallExists(CallError):
    code = "call_exists"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} was already offered")
        self.call_id = call_id


class WrongIntegration(CallError):
    """An event about a call that another PBX integration offered."""

    code = "wrong_integration"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id} belongs to another integration")


class StorageUnavailable(CallError):
    code = "storage_unavailable"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} could not be stored; resend the event")


class IllegalTransition(CallError):
    code = "illegal_transition"

    def __init__(self, call_id: str, state: str, event: str) -> None:
        super().__init__(f"{event} is not allowed for call {call_id!r} in state {state}")
        self.call_id, self.state, self.event = call_id, state, event


class WrongAgent(CallError):
    code = "wrong_agent"

    def __init__(self, call_id: str, expected: int | None, got: int) -> None:
        super().__init__(f"call {call_id!r} is ringing agent {expected}, not agent {got}")


# A caller talking to an agent: connected, or on hold.
TALKING = frozenset({CallState.connected, CallState.on_hold})
# A consult under way (the caller held while its agent talks to another), or the three
# of them in conference.
CONSULT = frozenset({CallState.consult_ringing, CallState.consulting, CallState.conference})
# The caller is with its agent: the call ends into the agent's wrap-up.
WITH_AGENT = TALKING | CONSULT

# event -> states it may arrive in
ALLOWED: dict[str, frozenset[CallState]] = {
    "call.answered": frozenset({CallState.ringing}),
    "call.ended": frozenset({CallState.offered, CallState.queued, CallState.ringing})
    | WITH_AGENT,
    "call.transferred": TALKING,
    "call.held": frozenset({CallState.connected}),
    "call.resumed": frozenset({CallState.on_hold}),
    # A consult keeps the caller's recording as it was: it may be paused or resumed meanwhile.
    "recording.paused": WITH_AGENT,
    "recording.resumed": WITH_AGENT,
    "recording.ready": WITH_AGENT | POST_CALL,
    "consult.answered": frozenset({CallState.consult_ringing}),
    "consult.ended": CONSULT,
    "consult.completed": frozenset({CallState.consulting, CallState.conference}),
    "conference.started": frozenset({CallState.consulting}),
    "survey.result": POST_CALL,
    "wrapup.done": frozenset({CallState.wrap_up}),
    "ring.timeout": frozenset({CallState.ringing}),
}


def check(call_id: str, state: str, event: str) -> CallState:
    """The call's current state, if ``event`` may happen in it; else IllegalTransition."""
    current = CallState(state)
    if current not in ALLOWED[event]:
        raise IllegalTransition(call_id, current.value, event)
    return current


def after_hangup(state: CallState) -> CallState:
    """Where `call.ended` takes a call: a caller who never reached an agent abandoned."""
    return CallState.wrap_up if state in WITH_AGENT else CallState.abandoned
