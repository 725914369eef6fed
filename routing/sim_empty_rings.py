"""What skipping empty rings does (RoutingPolicy.skip_empty_rings): the same calls simulated
with empty rings skipped and held, side by side (`callcenter simulate --empty-rings
compare`)."""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from routing.scenario import Scenario, plan_calls
from routing.simreport import Report, Stats
from routing.simulate import simulate

MODES = ("skip", "hold", "compare")


def with_empty_rings(scenario: Scenario, mode: str) -> Scenario:
    """The scenario with empty rings skipped ("skip") or held ("hold")."""
    if mode not in ("skip", "hold"):
        raise ValueError(f"empty rings: skip, hold or compare, not {mode!r}")
    return replace(scenario, policy=replace(scenario.policy, skip_empty_rings=mode == "skip"))


async def compare_empty_rings(scenario: Scenario, redis: Redis,
                              prefix: str) -> tuple[Report, Report]:
    """Empty rings skipped, then held, on the same calls."""
    plan = plan_calls(scenario)
    skip = await simulate(with_empty_rings(scenario, "skip"), redis, f"{prefix}:skip", plan)
    hold = await simulate(with_empty_rings(scenario, "hold"), redis, f"{prefix}:hold", plan)
    return skip, hold


def _rate(value: float) -> str:
    return "-" if value != value else f"{value:.0%}"  # NaN: no call had a preference


def format_empty_rings(skip: Report, hold: Report) -> str:
    lines = [f"same arrival stream, empty rings skipped against held; SL = answered within "
             f"{skip.threshold_s:g} s / offered; best match = answered by an agent of the "
             f"call's innermost ring",
             f"{'tier':<10}{'SL skip':>9}{'SL hold':>9}{'ASA skip':>10}{'ASA hold':>10}"
             f"{'best skip':>11}{'best hold':>11}"]
    for s in [*skip.tiers, skip.overall]:
        h: Stats = hold.overall if s.name == "all" else hold.tier(s.name)
        lines.append(f"{s.name:<10}{s.service_level:>9.1%}{h.service_level:>9.1%}"
                     f"{s.asa:>10.1f}{h.asa:>10.1f}{_rate(s.best_match_rate):>11}"
                     f"{_rate(h.best_match_rate):>11}")
    lines.append(f"occupancy: skip {skip.occupancy:.1%}, hold {hold.occupancy:.1%}")
    return "\n".join(lines)
