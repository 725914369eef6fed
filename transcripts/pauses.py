"""The recording's PCI pauses marked in its transcript.

A paused recording leaves the paused audio out of the file (Asterisk writes no frames
while a live recording is paused), so each pause is a cut in the audio: the marker is a
segment of no length at the cut, in audio time (the pause's start from the answer, less
the pauses before it), saying how long the recording was paused and who paused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MARKER = "recording_paused"
SPEAKER = "system"


def markers(pauses: Sequence[dict[str, Any]] | None, talk_s: float | None
            ) -> list[dict[str, Any]]:
    """One marker segment per pause interval (an open one lasts until the call's end)."""
    out: list[dict[str, Any]] = []
    cut = 0.0
    for pause in sorted(pauses or (), key=lambda p: float(p.get("from_s") or 0)):
        start = float(pause.get("from_s") or 0)
        end = pause.get("to_s")
        end = float(end) if end is not None else float(talk_s or start)
        length = max(0.0, end - start)
        at = round(max(0.0, start - cut), 3)
        out.append({"speaker": SPEAKER, "start": at, "end": at, "text": "", "words": [],
                    "marker": MARKER, "paused_s": round(length, 3),
                    "by": pause.get("by") or ""})
        cut += length
    return out


def with_markers(utterances: list[dict[str, Any]], pauses: Sequence[dict[str, Any]] | None,
                 talk_s: float | None) -> list[dict[str, Any]]:
    """The utterances with the pause markers in time order (a marker before an utterance
    that starts at the same moment)."""
    marks = markers(pauses, talk_s)
    if not marks:
        return utterances
    merged = [(float(u.get("start") or 0), 1, i, u) for i, u in enumerate(utterances)]
    merged += [(m["start"], 0, i, m) for i, m in enumerate(marks)]
    return [item for *_, item in sorted(merged, key=lambda t: t[:3])]
