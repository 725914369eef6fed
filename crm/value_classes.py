"""ABC classes, lifecycle stages and the routing tier that combines them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

# Cumulative shares are sums of floats; a share that is 0.75 on paper must not
# land on either side of a 0.75 threshold by rounding noise.
_EPS = 1e-9


class Tier(str, Enum):  # noqa: UP042 - the interface other packages use; as Role in models
    """The one value label routing uses; see TIER_RANK for priority order."""

    VIP = "vip"
    GOLD = "gold"
    STANDARD = "standard"
    LOW = "low"

    def __str__(self) -> str:
        # Stored and logged as the bare value, as StrEnum would.
        return self.value

    @property
    def rank(self) -> int:
        return TIER_RANK[self]


# Lower rank is served first: sort callers by `TIER_RANK[tier]`.
TIER_RANK: dict[Tier, int] = {Tier.VIP: 0, Tier.GOLD: 1, Tier.STANDARD: 2, Tier.LOW: 3}


def abc_classes(
    profits: Mapping[str, float], a_share: float = 0.75, b_share: float = 0.95
) -> dict[str, str]:
    """Pareto classes by cumulative share of total positive profit.

    Customers are ranked by profit, highest first (ties by customer id). A customer
    is A while the share *before* it is below `a_share`, so the customer that
    carries the cumulative share across the line is still A: A is the smallest top
    group that makes `a_share` of the profit. B likewise up to `b_share`; C the rest.
    Customers with zero or negative profit are always C and do not count in the total.
    """
    if not 0 < a_share <= b_share <= 1:
        raise ValueError(f"need 0 < a_share <= b_share <= 1, got {a_share}, {b_share}")
    classes = dict.fromkeys(profits, "C")
    ranked = sorted((c for c, p in profits.items() if p > 0), key=lambda c: (-profits[c], c))
    total = sum(profits[c] for c in ranked)
    before = 0.0
    for c in ranked:
        share = before / total
        if share < a_share - _EPS:
            classes[c] = "A"
        elif share < b_share - _EPS:
            classes[c] = "B"
        before += profits[c]
    return classes


def lifecycle_stage(
    frequency: int,
    recency_days: int | None,
    known_contact: bool,
    *,
    inactive_after_days: int = 365,
    loyal_min_orders: int = 5,
    loyal_max_recency_days: int = 180,
) -> str:
    """Where the customer is in the relationship, checked in this order:

    no orders: prospect if we can reach them, else suspect; last order more than
    `inactive_after_days` ago: inactive; at least `loyal_min_orders` orders and the
    last within `loyal_max_recency_days`: loyal; 2+ orders: repeat; else first_time.
    """
    if frequency == 0 or recency_days is None:
        return "prospect" if known_contact else "suspect"
    if recency_days > inactive_after_days:
        return "inactive"
    if frequency >= loyal_min_orders and recency_days <= loyal_max_recency_days:
        return "loyal"
    return "repeat" if frequency >= 2 else "first_time"


def tier_for(abc_class: str, clv_class: str, has_orders: bool = True) -> Tier:
    """Routing tier from ABC (profit so far) and CLV class (now vs. to come).

    First match wins: no orders -> standard (we know nothing yet, so no penalty);
    C and abandon -> low; A and vip/maintain -> vip; A, or CLV vip -> gold;
    anything else -> standard.
    """
    if not has_orders:
        return Tier.STANDARD
    if abc_class == "C" and clv_class == "abandon":
        return Tier.LOW
    if abc_class == "A" and clv_class in ("vip", "maintain"):
        return Tier.VIP
    if abc_class == "A" or clv_class == "vip":
        return Tier.GOLD
    return Tier.STANDARD
