"""The codes agents pick: not-ready reasons and wrap-up dispositions.

Held per node (`appkeys.CODES`) and replaced whole when an admin changes them (admin/);
until an admin sets a kind's list, the environment's list (the first-run default) holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_READY = "not_ready"
DISPOSITION = "disposition"
KINDS = (NOT_READY, DISPOSITION)


@dataclass
class Codes:
    """One per node, held by the app; `replace` swaps every list at once (no await between
    the assignments, so no reader sees half of a change)."""

    not_ready_reasons: tuple[str, ...]
    dispositions: tuple[str, ...]
    # (kind, code) -> the label shown for it; a code without one shows as itself
    labels: dict[tuple[str, str], str] = field(default_factory=dict)

    def replace(self, other: Codes) -> None:
        self.not_ready_reasons, self.dispositions = other.not_ready_reasons, other.dispositions
        self.labels = other.labels

    def of(self, kind: str) -> tuple[str, ...]:
        return self.not_ready_reasons if kind == NOT_READY else self.dispositions

    def listed(self, kind: str) -> list[dict[str, str]]:
        return [{"code": c, "label": self.labels.get((kind, c), "")} for c in self.of(kind)]
