"""Simulation scenarios: who calls, how long calls take, who answers.

A scenario is read from YAML or TOML (see ``examples/scenario.yaml``) or built
from CLI flags. ``plan_calls`` turns it into the arrival stream: every call's
arrival time, queue, tier, customer, handle time and patience, drawn from the
seed alone, so two routing policies can be run on exactly the same calls.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from routing.engine import TIERS, RoutingPolicy


class BadScenario(ValueError):
    code = "bad_scenario"


@dataclass(frozen=True)
class Duration:
    """A distribution of seconds: exponential, log-normal, or a constant."""

    mean: float
    distribution: str = "exponential"
    cv: float = 1.0  # standard deviation / mean, for log-normal

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.distribution == "exponential":
            return rng.exponential(self.mean, size)
        if self.distribution == "lognormal":
            sigma2 = math.log1p(self.cv ** 2)
            return rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), size)
        if self.distribution == "constant":
            return np.full(size, self.mean)
        raise BadScenario(f"unknown distribution {self.distribution!r}")


@dataclass(frozen=True)
class Stream:
    """Poisson arrivals of one tier into one queue."""

    queue: str
    tier: str
    rate_per_hour: float
    handle: Duration | None = None  # None: the scenario's handle time
    intent: str | None = None  # the skill the IVR heard these callers ask for


@dataclass(frozen=True)
class AgentGroup:
    count: int
    skills: tuple[str, ...] = ()
    level: int = 1


@dataclass(frozen=True)
class Ringing:
    answer_s: float = 0.0  # from the agent's phone ringing to the answer
    no_answer_prob: float = 0.0  # chance that an offered agent lets it ring out
    timeout_s: float = 15.0  # ring-no-answer timeout
    recovery_s: float = 30.0  # a missed agent is not ready this long


@dataclass(frozen=True)
class Scenario:
    streams: tuple[Stream, ...]
    agents: tuple[AgentGroup, ...]
    queues: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"default": ()})
    handle: Duration = Duration(180.0)
    patience: Duration | None = None  # None: nobody hangs up while waiting
    wrap_up_s: float = 0.0
    ringing: Ringing = Ringing()
    repeat_share: float = 0.0  # share of calls from a customer who called before
    calls: int = 2000  # calls measured
    warmup_calls: int = 200  # calls simulated first and not measured
    seed: int = 1
    threshold_s: float = 20.0
    target_sl: float = 0.8
    routing: str = "value"  # "value" (the project's policy) or "fifo"
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)

    def __post_init__(self) -> None:
        if self.routing not in ("value", "fifo"):
            raise BadScenario(f"routing must be value or fifo, not {self.routing!r}")
        if self.calls < 1 or self.warmup_calls < 0 or not self.streams or not self.agents:
            raise BadScenario("a scenario needs arrivals, agents and at least one call")

    @property
    def agent_count(self) -> int:
        return sum(g.count for g in self.agents)

    @property
    def tiers(self) -> list[str]:
        seen = {s.tier for s in self.streams}
        return [t for t in TIERS if t in seen] + sorted(seen - set(TIERS))


def fifo_policy() -> RoutingPolicy:
    """FIFO + longest idle, as Asterisk queues and mod_callcenter do by default."""
    return RoutingPolicy(tier_boost_s=dict.fromkeys(TIERS, 0.0),
                         sticky_wait_s=dict.fromkeys(TIERS, 0.0))


@dataclass(frozen=True)
class PlannedCall:
    index: int
    at: float
    queue: str
    tier: str
    customer: int
    handle_s: float
    patience_s: float
    intent: str | None = None


def plan_calls(scenario: Scenario, tail: int | None = None) -> list[PlannedCall]:
    """The arrival stream: warm-up, measured calls, then a tail that keeps load on."""
    tail = max(50, scenario.calls // 20) if tail is None else tail
    total = scenario.warmup_calls + scenario.calls + tail
    rng = np.random.default_rng(scenario.seed)
    rates = np.array([s.rate_per_hour for s in scenario.streams]) / 3600.0
    # Superposed Poisson streams: one stream of the summed rate, each call's source drawn.
    times = np.cumsum(rng.exponential(1.0 / rates.sum(), total))
    sources = rng.choice(len(rates), size=total, p=rates / rates.sum())
    handles = np.empty(total)
    for i, stream in enumerate(scenario.streams):
        mine = sources == i
        handles[mine] = (stream.handle or scenario.handle).draw(rng, int(mine.sum()))
    patience = (scenario.patience.draw(rng, total) if scenario.patience
                else np.full(total, math.inf))
    customers = _customers(rng, [scenario.streams[i].tier for i in sources],
                           scenario.repeat_share)
    return [PlannedCall(i, float(times[i]), scenario.streams[s].queue, scenario.streams[s].tier,
                        customers[i], float(handles[i]), float(patience[i]),
                        scenario.streams[s].intent)
            for i, s in enumerate(sources)]


def _customers(rng: np.random.Generator, tiers: list[str], repeat_share: float) -> list[int]:
    """A customer per call: a repeat call comes from an earlier caller of the same tier."""
    repeat = rng.random(len(tiers)) < repeat_share
    picks = rng.random(len(tiers))
    seen: dict[str, list[int]] = {}
    customers: list[int] = []
    for i, tier in enumerate(tiers):
        earlier = seen.setdefault(tier, [])
        if repeat[i] and earlier:
            customers.append(earlier[int(picks[i] * len(earlier))])
        else:
            customers.append(i)
            earlier.append(i)
    return customers


# Reading scenarios ----------------------------------------------------------


def load_scenario(path: Path, **overrides: Any) -> Scenario:
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise BadScenario(f"{path}: expected a mapping at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return scenario_from_dict(data)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    try:
        return _build(dict(data))
    except (KeyError, TypeError, ValueError) as e:
        raise BadScenario(f"bad scenario: {e}") from e


def _build(d: dict[str, Any]) -> Scenario:
    queues = {name: tuple((spec or {}).get("skills", ())) for name, spec in
              d.pop("queues", {"default": {}}).items()}
    streams = tuple(Stream(s["queue"], s.get("tier", "standard"), float(s["rate"]),
                           _duration(s.get("handle_time")), s.get("intent"))
                    for s in d.pop("arrivals"))
    agents = tuple(AgentGroup(int(a["count"]), tuple(a.get("skills", ())), int(a.get("level", 1)))
                   for a in d.pop("agents"))
    level, threshold = parse_service_level(str(d.pop("service_level", "80/20")))
    policy = RoutingPolicy(**d.pop("policy", {}))
    unknown = {s.queue for s in streams} - set(queues)
    if unknown:
        raise BadScenario(f"arrivals name queues that are not defined: {sorted(unknown)}")
    return Scenario(
        streams=streams, agents=agents, queues=queues,
        handle=_duration(d.pop("handle_time", None)) or Duration(180.0),
        patience=_duration(d.pop("patience", None)),
        ringing=Ringing(**d.pop("ringing", {})),
        threshold_s=threshold, target_sl=level, policy=policy, **d)


def _duration(spec: Any) -> Duration | None:
    if spec is None:
        return None
    if isinstance(spec, int | float):
        return Duration(float(spec))
    return Duration(float(spec["mean"]), spec.get("distribution", "exponential"),
                    float(spec.get("cv", 1.0)))


def parse_service_level(text: str) -> tuple[float, float]:
    """'80/20' -> (0.8, 20.0)"""
    percent, _, seconds = text.partition("/")
    try:
        return float(percent) / 100.0, float(seconds)
    except ValueError:
        raise BadScenario(f"service level {text!r} is not like 80/20") from None


def one_queue(agents: int, rate_per_hour: float, aht_s: float, *, lognormal_cv: float | None = None,
              patience_s: float | None = None, **fields: Any) -> Scenario:
    """A single queue of standard callers: the scenario the CLI builds from flags."""
    handle = (Duration(aht_s, "lognormal", lognormal_cv) if lognormal_cv is not None
              else Duration(aht_s))
    return Scenario(streams=(Stream("default", "standard", rate_per_hour),),
                    agents=(AgentGroup(agents),), handle=handle,
                    patience=Duration(patience_s) if patience_s else None, **fields)
