"""How long a waiting caller will wait, as `route.queued` tells the PBX (`estimated_wait_s`).

A caller at position k (counting the callbacks of the queue waiting for an agent with a
better place: the callers who left the line kept it) waits for k calls to finish among the
N agents serving the queue
(routing/staffing.py: available, ringing, on a call or in wrap-up). With the recent
average handle time h (talk and wrap-up, exponentially weighted: routing/store.py), calls
finish at about N / h a second, so the wait is about::

    estimated_wait_s = k * h / max(1, N)

The Lua step that announces a position (routing/transitions.py QUEUED_NOTICE) computes
the same in Redis, where it notes what it announced. `callcenter simulate` checks the
estimate against the waits it simulates (docs/simulator.md).
"""

from __future__ import annotations

import math

# The handle time an estimate assumes before any call was handled.
DEFAULT_AHT_S = 180.0
# A new estimate is worth telling the caller when it moved this much, and this share.
MATERIAL_S = 30.0
MATERIAL_SHARE = 0.25


def estimated_wait_s(position: int, aht_s: float | None, serving: int) -> int:
    aht = DEFAULT_AHT_S if aht_s is None else aht_s
    return math.floor(position * aht / max(1, serving) + 0.5)  # as Lua rounds it


def wait_moved(announced_s: float, estimate_s: float) -> bool:
    """Worth re-announcing: the estimate moved at least 30 s and 25% of what was said."""
    change = abs(estimate_s - announced_s)
    return change >= MATERIAL_S and change >= MATERIAL_SHARE * announced_s
