"""ABC classes, lifecycle stages and the routing tier that combines them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from enum import Enum

from crm.policy import Abc, Lifecycle, Tiers

# Cumulative shares are sums of floats; a share that is 0.8 on paper must not land on
# either side of a 0.8 threshold by rounding noise.
_EPS = 1e-9
_ABC, _LIFECYCLE, _TIERS = Abc(), Lifecycle(), Tiers()


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


def abc_classes(profits: Mapping[str, float], policy: Abc = _ABC) -> dict[str, str]:
    """Pareto classes by cumulative share of profit *and* of customers.

    `profits` holds the buyers of the analysis period. Ranked by profit, highest
    first, a customer is A while the profit share *before* it is below a_profit_share
    and the customer share before it below a_customer_share (and its profit reaches
    a_min_profit); B likewise; C the rest. Equal profits form one group that takes the
    class of its first place, so identical customers always get the same class and
    the result never depends on input order or ids. Zero or negative profit is C and
    does not count in the profit total.
    """
    classes = dict.fromkeys(profits, "C")
    groups = Counter(p for p in profits.values() if p > 0)
    total = math.fsum(p * n for p, n in groups.items())
    count = len(profits)
    group_class: dict[float, str] = {}
    before, seen = 0.0, 0
    for value in sorted(groups, reverse=True):
        group_class[value] = _abc_of(value, before / total, seen / count, policy)
        before += value * groups[value]
        seen += groups[value]
    for cid, p in profits.items():
        classes[cid] = group_class.get(p, "C")
    return classes


def _abc_of(value: float, share: float, customer_share: float, p: Abc) -> str:
    if (share < p.a_profit_share - _EPS and customer_share < p.a_customer_share - _EPS
            and value >= p.a_min_profit):
        return "A"
    if (share < p.b_profit_share - _EPS and customer_share < p.b_customer_share - _EPS
            and value >= p.b_min_profit):
        return "B"
    return "C"


def lifecycle_stage(
    frequency: int,
    recency_days: int | None,
    known_contact: bool,
    *,
    rhythm_days: float = 120.0,
    policy: Lifecycle = _LIFECYCLE,
) -> str:
    """Where the customer is in the relationship; it moves one way only, unless a new
    purchase brings a lapsing or inactive customer back:

    no orders: prospect if we can reach them, else suspect; silent more than
    inactive_after_days: inactive; silent more than lapsing_after_rhythms of their
    own rhythm: lapsing; loyal_min_orders orders: loyal; 2+: repeat; else first_time.
    `frequency` counts every order the customer ever placed.
    """
    if frequency == 0 or recency_days is None:
        return "prospect" if known_contact else "suspect"
    if recency_days > policy.inactive_after_days:
        return "inactive"
    if recency_days > policy.lapsing_after_rhythms * rhythm_days:
        return "lapsing"
    if frequency >= policy.loyal_min_orders:
        return "loyal"
    return "repeat" if frequency >= 2 else "first_time"


def tier_for(
    abc_class: str, clv_class: str, has_orders: bool = True, *,
    orders: int | None = None, policy: Tiers = _TIERS,
) -> Tier:
    """Routing tier from ABC (profit in the period) and CLV class (now vs to come).

    No orders -> standard (we know nothing yet, so no penalty). Then the policy's vip,
    gold and low rules, first match wins; low needs at least low_min_orders orders, so
    a first purchase never ranks below a prospect. Anything else -> standard.
    """
    if not has_orders:
        return Tier.STANDARD
    if any(r.matches(abc_class, clv_class) for r in policy.vip):
        return Tier.VIP
    if any(r.matches(abc_class, clv_class) for r in policy.gold):
        return Tier.GOLD
    enough = orders is None or orders >= policy.low_min_orders
    if enough and any(r.matches(abc_class, clv_class) for r in policy.low):
        return Tier.LOW
    return Tier.STANDARD
