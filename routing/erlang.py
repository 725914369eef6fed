"""Queueing formulas for staffing, and the yardstick the simulator is checked against.

Erlang C is the M/M/N queue: Poisson arrivals at ``rate``, exponential handle
times of mean ``aht``, ``agents`` identical agents, first come first served,
and callers who never hang up. Erlang A (M/M/N+M) adds exponential patience of
mean ``patience``: a caller still waiting after their patience abandons.

Any time unit works if it is used throughout: ``rate`` per unit, ``aht``,
``threshold`` and ``patience`` in that unit (the CLI uses seconds).

Service level is the share of *all offered* calls answered within the
threshold, so an abandoned call counts as a miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Erlang A keeps queue states until they are this much less likely than the likeliest.
_LOG_CUTOFF = 40.0
_MAX_QUEUE = 200_000


@dataclass(frozen=True)
class Staffing:
    agents: int
    load: float  # offered load in erlangs: rate * aht
    occupancy: float  # share of agent time spent on calls
    p_wait: float  # probability that a caller waits at all
    service_level: float  # share of offered calls answered within the threshold
    asa: float  # average speed of answer of answered calls (inf when unstable)
    abandon: float = 0.0  # share of offered calls that abandon


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of an M/M/N/N system (the stable recursion)."""
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Probability that a caller waits (all agents busy on arrival)."""
    if load >= agents:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


def service_level(agents: int, load: float, aht: float, threshold: float) -> float:
    if load >= agents:
        return 0.0
    return 1.0 - erlang_c(agents, load) * math.exp(-(agents - load) * threshold / aht)


def average_speed_of_answer(agents: int, load: float, aht: float) -> float:
    if load >= agents:
        return math.inf
    return erlang_c(agents, load) * aht / (agents - load)


def staffing_at(agents: int, rate: float, aht: float, threshold: float,
                patience: float | None = None) -> Staffing:
    """What ``agents`` agents achieve; Erlang A when a mean patience is given."""
    if patience is not None:
        return erlang_a(agents, rate, aht, patience, threshold)
    load = rate * aht
    return Staffing(agents, load, min(1.0, load / agents), erlang_c(agents, load),
                    service_level(agents, load, aht, threshold),
                    average_speed_of_answer(agents, load, aht))


def agents_needed(rate: float, aht: float, target_sl: float, threshold: float,
                  patience: float | None = None) -> int:
    """The fewest agents whose service level reaches ``target_sl`` (e.g. 0.8 for 80/20)."""
    if not 0.0 < target_sl < 1.0:
        raise ValueError(f"target service level {target_sl} must lie strictly between 0 and 1")
    def enough(agents: int) -> bool:
        return staffing_at(agents, rate, aht, threshold, patience).service_level >= target_sl

    # Without abandonment fewer agents than the load never catch up; with it they may.
    low = 1 if patience else math.floor(rate * aht) + 1
    high = low
    while not enough(high):
        low, high = high + 1, high * 2
    while low < high:  # service level grows with staff: bisect
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return low


# Erlang A -------------------------------------------------------------------


def erlang_a(agents: int, rate: float, aht: float, patience: float,
             threshold: float) -> Staffing:
    """M/M/N+M, exactly: the birth-death chain, then each waiting caller's race.

    A caller who finds ``j`` callers waiting ahead moves up at rate
    ``N mu + i theta`` while ``i`` are ahead and gives up at rate ``theta``;
    given that they are answered, the wait is a sum of exponentials.
    """
    mu, theta = 1.0 / aht, 1.0 / patience
    waiting = _queue_distribution(agents, rate, mu, theta)  # P(arrival finds j waiting)
    p_wait = float(waiting.sum())
    ahead = np.arange(len(waiting))
    forward = agents * mu + ahead * theta
    total = forward + theta
    served = np.cumprod(forward / total)  # P(answered | j ahead)
    mean_wait_served = np.cumsum(1.0 / total)
    within = _hypoexponential_cdf(total, threshold)
    answered = (1.0 - p_wait) + float(waiting @ served)
    answered_wait = float(waiting @ (served * mean_wait_served))
    load = rate * aht
    carried = load * answered  # callers who abandon never reach an agent
    return Staffing(
        agents=agents, load=load, occupancy=min(1.0, carried / agents), p_wait=p_wait,
        service_level=(1.0 - p_wait) + float(waiting @ (served * within)),
        asa=answered_wait / answered if answered > 0 else math.inf,
        abandon=1.0 - answered)


def _queue_distribution(agents: int, rate: float, mu: float, theta: float) -> np.ndarray:
    """P(an arrival finds all agents busy and j callers waiting), j = 0, 1, ..."""
    log_below = [0.0]  # log pi_n - log pi_N for n = N, N-1, ..., 0
    for n in range(agents, 0, -1):
        log_below.append(log_below[-1] + math.log(n * mu / rate))
    log_above = [0.0]  # log pi_(N+j) - log pi_N for j = 0, 1, ...
    j, peak = 0, 0.0
    while j < _MAX_QUEUE:
        j += 1
        step = math.log(rate / (agents * mu + j * theta))
        log_above.append(log_above[-1] + step)
        peak = max(peak, log_above[-1])
        if step < 0 and log_above[-1] < peak - _LOG_CUTOFF:
            break
    logs = np.array(log_below[1:] + log_above)
    top = logs.max()
    norm = np.exp(logs - top).sum()
    shares: np.ndarray = np.exp(np.array(log_above) - top) / norm
    return shares


def _hypoexponential_cdf(rates: np.ndarray, t: float) -> np.ndarray:
    """P(Exp(rates[0]) + ... + Exp(rates[j]) <= t) for every j, by uniformization."""
    fastest = float(rates.max())
    mean_jumps = fastest * t
    steps = int(mean_jumps + 12.0 * math.sqrt(mean_jumps) + 30)
    k = np.arange(steps + 1)
    log_k_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    weights = np.exp(-mean_jumps + k * math.log(max(mean_jumps, 1e-300)) - log_k_factorial)
    move = rates / fastest
    done = np.zeros_like(rates)  # P(absorbed within k jumps | start j)
    cdf = np.zeros_like(rates)
    for weight in weights[1:]:
        done = (1.0 - move) * done + move * np.concatenate([[1.0], done[:-1]])
        cdf += weight * done
    return cdf


def staffing_report(rate: float, aht: float, target_sl: float, threshold: float,
                    patience: float | None = None) -> str:
    """The answer to "how many agents?", with the neighbours for context (rate per second)."""
    needed = agents_needed(rate, aht, target_sl, threshold, patience)
    model = f"Erlang A, mean patience {patience:g} s" if patience else "Erlang C"
    lines = [f"{rate * 3600:g} calls/h x {aht:g} s = {rate * aht:.2f} erlangs ({model})",
             f"agents needed for {target_sl:.0%}/{threshold:g}: {needed}", "",
             f"{'agents':>6}{'SL':>8}{'P(wait)':>9}{'ASA s':>8}{'occupancy':>11}"
             + (f"{'abandon':>9}" if patience else "")]
    for agents in range(max(1, needed - 2), needed + 3):
        s = staffing_at(agents, rate, aht, threshold, patience)
        mark = " <" if agents == needed else ""
        lines.append(f"{agents:>6}{s.service_level:>8.1%}{s.p_wait:>9.1%}{s.asa:>8.1f}"
                     f"{s.occupancy:>11.1%}" + (f"{s.abandon:>9.1%}" if patience else "") + mark)
    return "\n".join(lines)
