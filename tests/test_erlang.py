"""Erlang C and Erlang A, checked against independent computations."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from callcenter.cli import app
from routing import erlang


def erlang_c_by_definition(agents: int, load: int) -> Fraction:
    """The textbook sum, in exact arithmetic."""
    a = Fraction(load)
    top = a ** agents / math.factorial(agents) * agents / (agents - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(agents)) + top)


@pytest.mark.parametrize(("agents", "load"), [(3, 2), (11, 10), (30, 24), (120, 110)])
def test_erlang_c_matches_the_textbook_sum(agents, load):
    assert erlang.erlang_c(agents, load) == pytest.approx(
        float(erlang_c_by_definition(agents, load)), rel=1e-9)


def test_service_level_and_speed_of_answer_follow_erlang_c():
    # 3 agents, 2 erlangs: P(wait) = 4/9, and a waiting caller waits Exp(rate N - A) = Exp(1).
    assert erlang.erlang_c(3, 2.0) == pytest.approx(4 / 9)
    assert erlang.service_level(3, 2.0, aht=1.0, threshold=0.5) == pytest.approx(
        1 - 4 / 9 * math.exp(-0.5))
    assert erlang.average_speed_of_answer(3, 2.0, aht=1.0) == pytest.approx(4 / 9)


def test_too_few_agents_never_catch_up_without_abandonment():
    s = erlang.staffing_at(10, rate=1 / 18, aht=180, threshold=20)
    assert (s.p_wait, s.service_level, s.asa) == (1.0, 0.0, math.inf)


def test_agents_needed_is_the_fewest_agents_meeting_the_target():
    rate, aht = 360 / 3600, 240.0
    needed = erlang.agents_needed(rate, aht, 0.8, 20)
    assert needed == 29
    assert erlang.staffing_at(needed, rate, aht, 20).service_level >= 0.8
    assert erlang.staffing_at(needed - 1, rate, aht, 20).service_level < 0.8


def test_agents_needed_rejects_an_impossible_target():
    with pytest.raises(ValueError):
        erlang.agents_needed(0.1, 240, 1.0, 20)


def test_erlang_a_becomes_erlang_c_as_callers_grow_patient():
    a = erlang.erlang_a(30, 0.1, 240, patience=1e6, threshold=20)
    c = erlang.staffing_at(30, 0.1, 240, 20)
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-3)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-3)
    assert a.asa == pytest.approx(c.asa, rel=1e-2)
    assert a.abandon < 1e-4


def test_erlang_a_abandonment_agrees_with_littles_law():
    agents, rate, aht, patience = 22, 0.1, 240.0, 120.0
    # Independently: the birth-death chain, and abandons = queue length / patience.
    weights = [1.0]
    for n in range(1, 2000):
        weights.append(weights[-1] * rate / (min(n, agents) / aht + max(0, n - agents) / patience))
    queue = sum(max(0, n - agents) * w for n, w in enumerate(weights)) / sum(weights)
    a = erlang.erlang_a(agents, rate, aht, patience, threshold=20)
    assert a.abandon == pytest.approx(queue / patience / rate, rel=1e-6)


def simulate_impatient_queue(agents: int, rate: float, aht: float, patience: float,
                             threshold: float, calls: int, seed: int) -> tuple[float, float]:
    """FIFO M/M/N+M by hand: (service level, abandon share)."""
    rnd, free, ends, queue = random.Random(seed), agents, [], deque()
    arrival, good, abandoned, done = rnd.expovariate(rate), 0, 0, 0
    while done < calls:
        if ends and ends[0] <= arrival:
            now = heapq.heappop(ends)
            while queue and queue[0][1] < now:  # gave up before this agent freed up
                queue.popleft()
                abandoned, done = abandoned + 1, done + 1
            if queue:
                offered, _ = queue.popleft()
                good, done = good + (now - offered <= threshold), done + 1
                heapq.heappush(ends, now + rnd.expovariate(1 / aht))
            else:
                free += 1
        else:
            now, arrival = arrival, arrival + rnd.expovariate(rate)
            if free:
                free, good, done = free - 1, good + 1, done + 1
                heapq.heappush(ends, now + rnd.expovariate(1 / aht))
            else:
                queue.append((now, now + rnd.expovariate(1 / patience)))
    return good / done, abandoned / done


def test_erlang_a_matches_a_simulated_queue_of_impatient_callers():
    sl, abandon = simulate_impatient_queue(24, 0.1, 240, 120, 20, calls=400_000, seed=3)
    a = erlang.erlang_a(24, 0.1, 240, 120, threshold=20)
    assert sl == pytest.approx(a.service_level, abs=0.01)
    assert abandon == pytest.approx(a.abandon, abs=0.01)


def test_abandonment_lowers_the_staff_needed():
    patient = erlang.agents_needed(0.1, 240, 0.8, 20)
    impatient = erlang.agents_needed(0.1, 240, 0.8, 20, patience=120)
    assert impatient < patient
    assert erlang.erlang_a(impatient, 0.1, 240, 120, 20).service_level >= 0.8


def test_staffing_command_prints_agents_needed_with_service_level_and_asa():
    result = CliRunner().invoke(app, ["staffing", "--rate", "360", "--aht", "240",
                                      "--target", "80/20"])
    assert result.exit_code == 0, result.output
    assert "agents needed for 80%/20: 29" in result.output
    row = next(line.split() for line in result.output.splitlines() if line.endswith("<"))
    assert row[:4] == ["29", "84.0%", "24.2%", "11.6"]


def test_staffing_command_rejects_a_malformed_target():
    result = CliRunner().invoke(app, ["staffing", "--rate", "360", "--aht", "240",
                                      "--target", "80%"])
    assert result.exit_code == 1
    assert "not like 80/20" in result.output
