"""The simulator drives the real router; it is checked against Erlang C and against FIFO.

Validation has two halves, because at 95% occupancy waits are so strongly
correlated in time that an estimate within 2 points at 95% confidence needs
over a million calls, far more than the real router on Redis can play in a
test (a few hundred calls a second):

1. call for call, the real router on Redis gives every caller exactly the wait
   of a textbook FIFO M/M/N queue fed the same arrivals and handle times;
2. that queue, run long, agrees with ``routing.erlang`` within 2 points, with
   a batch-means 95% confidence half-width under 1 point.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from callcenter.cli import app
from core.keys import Keys
from core.redisconn import client_from_url
from routing import erlang
from routing.engine import RoutingPolicy
from routing.scenario import (
    AgentGroup,
    Ringing,
    Scenario,
    Stream,
    load_scenario,
    one_queue,
    plan_calls,
    scenario_from_dict,
)
from routing.simreport import Report, format_comparison
from routing.simulate import Simulation, router_for, simulate
from routing.store import RoutingStore

AHT, THRESHOLD, AGENTS = 180.0, 20.0, 10
EXAMPLE = Path(__file__).parent.parent / "examples" / "scenario.yaml"
ROOT = Path(__file__).resolve().parents[1]


def fifo_queue_waits(arrivals: np.ndarray, handles: np.ndarray, agents: int) -> np.ndarray:
    """First come, first served on identical agents: each call takes the first agent free."""
    free = [0.0] * agents
    waits = np.empty(len(arrivals))
    for i, (at, handle) in enumerate(zip(arrivals.tolist(), handles.tolist(), strict=True)):
        start = max(at, heapq.heappop(free))
        waits[i] = start - at
        heapq.heappush(free, start + handle)
    return waits


def erlang_c_queue(occupancy: float, calls: int, warmup: int, seed: int) -> Scenario:
    return replace(one_queue(AGENTS, occupancy * AGENTS / AHT * 3600, AHT),
                   routing="fifo", calls=calls, warmup_calls=warmup, seed=seed)


@pytest.mark.parametrize("occupancy", [0.70, 0.85, 0.95])
async def test_router_gives_each_caller_the_wait_of_a_textbook_fifo_queue(
        redis_url, redis_prefix, occupancy):
    scenario = erlang_c_queue(occupancy, calls=500, warmup=100, seed=11)
    plan = plan_calls(scenario)
    redis = client_from_url(redis_url)
    sim = Simulation(router_for(scenario, RoutingStore(redis, Keys(redis_prefix))), scenario, plan)
    outcome = await sim.run()
    await redis.aclose()
    expected = fifo_queue_waits(np.array([c.at for c in plan]),
                                np.array([c.handle_s for c in plan]), AGENTS)
    waits = np.array(outcome.wait_s)
    assert np.abs(waits - expected[sim.measured.start:sim.measured.stop]).max() < 1e-6
    assert np.mean(waits > 0) > 0.05  # callers really queued


@pytest.mark.parametrize(("occupancy", "calls"), [
    (0.70, 300_000), (0.85, 1_200_000), (0.95, 3_000_000)])
def test_fifo_queue_agrees_with_erlang_c_within_two_points(occupancy, calls):
    rng = np.random.default_rng(2024)
    rate = occupancy * AGENTS / AHT
    warmup = 50_000
    waits = fifo_queue_waits(np.cumsum(rng.exponential(1 / rate, calls + warmup)),
                             rng.exponential(AHT, calls + warmup), AGENTS)[warmup:]
    expected = erlang.staffing_at(AGENTS, rate, AHT, THRESHOLD)
    for sample, formula in [(waits > 0, expected.p_wait), (waits <= THRESHOLD,
                                                           expected.service_level)]:
        batches = np.array_split(sample.astype(float), 20)
        half_width = 2.093 * np.std([b.mean() for b in batches], ddof=1) / math.sqrt(20)
        assert half_width < 0.01, "too few calls for a 2-point check"
        assert abs(sample.mean() - formula) <= 0.02


# Value routing against FIFO + longest idle at 90% occupancy ------------------

# The proposal for the sticky holds: the default holds a returning VIP up to
# 20 s for their last agent, the whole service-level threshold (docs/simulator.md).
# Three runs of ~3,000 calls: a minute on a quiet machine, more on a busy one.
long_run = pytest.mark.timeout(400)
PROPOSED = RoutingPolicy(sticky_wait_s={"vip": 10.0, "gold": 6.0, "standard": 3.0, "low": 0.0})


# The shared simulation runs in the setup of whichever of its tests comes first: about a
# minute here, two on a loaded machine, beyond the suite's per-test timeout.
simulated = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def at_90_percent(redis_url: str) -> dict[str, Report]:
    """The example scenario (90% occupancy, 30% returning callers), each policy on its calls."""
    scenario = load_scenario(EXAMPLE, calls=2500, warmup_calls=300)
    plan = plan_calls(scenario)
    runs = {"value": scenario, "fifo": replace(scenario, routing="fifo"),
            "proposed": replace(scenario, policy=PROPOSED)}

    async def run_all() -> dict[str, Report]:
        redis = client_from_url(redis_url)
        prefix = f"t{uuid.uuid4().hex[:10]}"
        try:
            return {name: await simulate(sc, redis, f"{prefix}:{name}", plan)
                    for name, sc in runs.items()}
        finally:
            await redis.aclose()

    reports = asyncio.run(run_all())
    print(format_comparison(reports["value"], reports["fifo"]))
    return reports


@long_run
@simulated
def test_comparison_runs_at_90_percent_occupancy(at_90_percent):
    # Offered load is 90% (see the example scenario test); what a run of ~3 hours of
    # calls measures varies by a few points with the draws, and alike for every policy.
    occupancy = {report.occupancy for report in at_90_percent.values()}
    assert max(occupancy) - min(occupancy) < 0.005
    assert occupancy.pop() == pytest.approx(0.90, abs=0.04)


@long_run
@simulated
def test_value_routing_keeps_overall_service_level_within_three_points_of_fifo(at_90_percent):
    value, fifo = at_90_percent["value"], at_90_percent["fifo"]
    assert value.overall.service_level >= fifo.overall.service_level - 0.03


@long_run
@simulated
def test_lowest_tier_is_not_starved_by_value_routing(at_90_percent):
    low, fifo = at_90_percent["value"].tier("low"), at_90_percent["fifo"].overall
    # Bounded, measured against FIFO: a low caller counts as offered 30 s after a standard
    # caller and 150 s after a VIP, so no more than that is added to its waits.
    assert low.asa <= fifo.asa + 30.0
    assert low.max_wait <= fifo.max_wait + 150.0
    assert low.abandon == 0.0


@long_run
@simulated
def test_top_tier_reaches_95_20_with_the_default_policy(at_90_percent):
    assert at_90_percent["value"].tier("vip").service_level >= 0.95


@long_run
@simulated
def test_top_tier_reaches_95_20_with_the_proposed_sticky_holds(at_90_percent):
    proposed, fifo = at_90_percent["proposed"], at_90_percent["fifo"]
    assert proposed.tier("vip").service_level >= 0.95
    assert proposed.overall.service_level >= fifo.overall.service_level - 0.03


@long_run
@simulated
def test_returning_callers_reach_their_last_agent_only_with_value_routing(at_90_percent):
    assert at_90_percent["value"].overall.sticky_hits > 0
    assert at_90_percent["fifo"].overall.sticky_calls == 0


# Behaviour of the simulated call center ------------------------------------


def small_center(**changes: object) -> Scenario:
    base = Scenario(streams=(Stream("default", "standard", 200.0),), agents=(AgentGroup(4),),
                    calls=300, warmup_calls=20, seed=5)
    return replace(base, **changes)


async def run_small(redis_url: str, prefix: str, scenario: Scenario) -> Report:
    redis = client_from_url(redis_url)
    try:
        return await simulate(scenario, redis, prefix)
    finally:
        await redis.aclose()


async def test_impatient_callers_abandon_and_count_as_misses(redis_url, redis_prefix):
    from routing.scenario import Duration

    report = await run_small(redis_url, redis_prefix, small_center(
        patience=Duration(20.0), streams=(Stream("default", "standard", 300.0),)))
    assert report.overall.abandon > 0.05
    assert report.overall.service_level <= 1.0 - report.overall.abandon


async def test_calls_that_ring_out_go_back_to_the_queue_and_are_answered(
        redis_url, redis_prefix):
    report = await run_small(redis_url, redis_prefix, small_center(
        ringing=Ringing(answer_s=2.0, no_answer_prob=0.2, timeout_s=15.0, recovery_s=30.0)))
    assert report.overall.abandon == 0.0
    assert report.overall.offered == 300
    assert min(report.waits["standard"]) >= 2.0  # every answer rang first


async def test_simulation_leaves_nothing_behind_in_redis(redis_url, redis_prefix):
    await run_small(redis_url, redis_prefix, small_center(calls=50))
    redis = client_from_url(redis_url)
    assert [k async for k in redis.scan_iter(f"{redis_prefix}:*")] == []
    await redis.aclose()


def test_same_seed_gives_the_same_calls():
    a, b = plan_calls(small_center()), plan_calls(small_center())
    assert a == b
    assert plan_calls(small_center(seed=6)) != a


def test_example_scenario_is_a_support_line_at_90_percent_occupancy():
    scenario = load_scenario(EXAMPLE)
    rate = sum(s.rate_per_hour for s in scenario.streams) / 3600
    handle = scenario.handle.mean + scenario.wrap_up_s + scenario.ringing.answer_s
    assert rate * handle / scenario.agent_count == pytest.approx(0.90)
    assert scenario.tiers == ["vip", "gold", "standard", "low"]


def test_scenario_naming_an_undefined_queue_is_rejected():
    from routing.scenario import BadScenario

    with pytest.raises(BadScenario, match="not defined"):
        scenario_from_dict({"queues": {"sales": {}}, "agents": [{"count": 1}],
                            "arrivals": [{"queue": "support", "rate": 10}]})


def test_simulate_command_prints_service_levels_and_writes_a_plot(
        redis_url, redis_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLCENTER_REDIS_URL", redis_url)
    monkeypatch.setenv("CALLCENTER_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("CALLCENTER_SECRET_KEY", "not-used-by-the-simulator")
    plot = tmp_path / "waits.png"
    result = CliRunner().invoke(app, ["simulate", "--agents", "4", "--rate", "60",
                                      "--calls", "100", "--compare", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "routing: value" in result.output and "routing: fifo" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_simulate_plot_without_matplotlib_says_how_to_install_it_before_simulating(
        tmp_path):
    """`./run.sh` installs no matplotlib (the `plots` extra): `--plot` says what to do."""
    plot = tmp_path / "waits.png"
    hide = ("import sys; sys.modules['matplotlib'] = None; "  # as if not installed
            "from callcenter.cli import main; sys.argv[0] = 'callcenter'; main()")
    done = subprocess.run([sys.executable, "-c", hide, "simulate", "--calls", "50",
                           "--plot", str(plot)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "CALLCENTER_SECRET_KEY": "x" * 32})
    assert done.returncode == 1, done.stderr
    assert "pip install -e '.[plots]'" in done.stderr and "Traceback" not in done.stderr
    assert not plot.exists()


def test_scenario_reads_from_toml_as_from_yaml(tmp_path):
    toml = tmp_path / "center.toml"
    toml.write_text('seed = 3\ncalls = 100\nservice_level = "90/15"\n'
                    '[[arrivals]]\nqueue = "default"\ntier = "gold"\nrate = 120\n'
                    '[[agents]]\ncount = 5\nskills = ["en"]\n')
    scenario = load_scenario(toml)
    assert (scenario.target_sl, scenario.threshold_s) == (0.9, 15.0)
    assert scenario.streams == (Stream("default", "gold", 120.0),)
    assert scenario.agents == (AgentGroup(5, ("en",)),)


async def test_skipping_empty_rings_answers_callers_sooner_on_the_same_calls(
        redis_url, redis_prefix):
    from routing.sim_empty_rings import compare_empty_rings, format_empty_rings

    # Every caller asks the IVR for billing, and no agent has that skill.
    scenario = small_center(streams=(Stream("default", "standard", 50.0, intent="billing"),),
                            calls=200)
    redis = client_from_url(redis_url)
    try:
        skip, hold = await compare_empty_rings(scenario, redis, redis_prefix)
    finally:
        await redis.aclose()
    assert min(hold.waits["standard"]) >= 15.0  # each held in the empty intent ring
    assert skip.overall.p_wait < 1.0 and skip.overall.asa < hold.overall.asa
    assert skip.overall.service_level >= hold.overall.service_level
    assert skip.overall.preferred_calls == hold.overall.preferred_calls == 200
    # nobody has the skill: no call can reach its best-match agent, either way
    assert skip.overall.best_matches == hold.overall.best_matches == 0
    assert "best skip" in format_empty_rings(skip, hold)


def test_simulate_command_compares_skipped_and_held_empty_rings(
        redis_url, redis_prefix, monkeypatch):
    monkeypatch.setenv("CALLCENTER_REDIS_URL", redis_url)
    monkeypatch.setenv("CALLCENTER_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("CALLCENTER_SECRET_KEY", "not-used-by-the-simulator")
    example = Path(__file__).parent.parent / "examples" / "empty_rings.yaml"
    result = CliRunner().invoke(app, ["simulate", str(example), "--calls", "100",
                                      "--empty-rings", "compare"])
    assert result.exit_code == 0, result.output
    assert "empty rings skipped against held" in result.output
    result = CliRunner().invoke(app, ["simulate", "--calls", "50", "--empty-rings", "never"])
    assert result.exit_code != 0 and "--empty-rings" in result.output
