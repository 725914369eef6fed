"""Errors an administrator can cause, each with a stable code (core/web.py maps it to a
status)."""

from __future__ import annotations

from collections.abc import Iterable


class AdminError(Exception):
    code = "invalid"


class UnknownSkill(AdminError):
    code = "unknown_skill"

    def __init__(self, skills: Iterable[str], known: Iterable[str]) -> None:
        super().__init__(f"unknown skill(s) {', '.join(map(repr, sorted(skills)))}; the "
                         f"center's skills are {', '.join(sorted(known)) or 'none'} "
                         "(PUT /api/v1/admin/skills adds one)")


class SkillInUse(AdminError):
    code = "skill_in_use"

    def __init__(self, skill: str, users: Iterable[str]) -> None:
        super().__init__(f"skill {skill!r} is still used by {', '.join(sorted(users))}")


class UnknownQueue(AdminError):
    code = "unknown_queue"

    def __init__(self, queues: Iterable[str]) -> None:
        super().__init__(f"unknown queue(s) {', '.join(map(repr, sorted(queues)))}")


class NoSuchQueue(AdminError):
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no queue {name!r}")


class QueueExists(AdminError):
    code = "queue_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"a queue {name!r} exists already")


class QueueBusy(AdminError):
    code = "queue_busy"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"queue {name!r} cannot be removed: {why}")


class NoSuchAgent(AdminError):
    code = "unknown_agent"

    def __init__(self, agent_id: int) -> None:
        super().__init__(f"no agent {agent_id}")


class UsernameTaken(AdminError):
    code = "username_taken"

    def __init__(self, username: str) -> None:
        super().__init__(f"the username {username!r} is taken")


class LastAdmin(AdminError):
    code = "last_admin"

    def __init__(self) -> None:
        super().__init__("this is the last active admin: make another admin first")


class NotYourTeam(AdminError):
    code = "not_your_team"

    def __init__(self, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} is not in your team")


class UnknownReason(AdminError):
    code = "invalid"

    def __init__(self, reason: str, known: Iterable[str]) -> None:
        super().__init__(f"pick a not-ready reason from {', '.join(known)}, not {reason!r}")


class Busy(AdminError):
    code = "busy"

    def __init__(self) -> None:
        super().__init__("another administrative change is being made; try again")


class NoExtension(AdminError):
    code = "no_extension"

    def __init__(self) -> None:
        super().__init__("your account has no phone extension for the PBX to ring: an admin "
                         "sets it (PATCH /api/v1/admin/agents/{id} with extension)")
