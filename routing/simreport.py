"""What a simulation run measured: service level, waits, abandons, occupancy, stickiness.

Service level is core/servicelevel.py's, the one the wallboard and the reports use
(docs/reports.md). Every measured call ends answered or abandoned, so with the default
formula it is the share of offered calls answered within the threshold (an abandoned
call is a miss), as in ``routing.erlang``. Confidence intervals are
batch means over the measured calls in arrival order: calls close in time see
the same queue, so they are not independent samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.servicelevel import DEFAULT, Counts, Formula, share


@dataclass
class Outcomes:
    """What happened to each measured call, in arrival order."""

    tier: list[str] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)  # to answer, or to hanging up
    queued: list[bool] = field(default_factory=list)
    sticky: list[bool] = field(default_factory=list)  # a known agent was worth waiting for
    sticky_hit: list[bool] = field(default_factory=list)
    # The call had a preferred pool (an inner ring: sticky agent, complaints, IVR intent)...
    preferred: list[bool] = field(default_factory=list)
    # ... and an agent of it (the innermost ring's pool) answered.
    best_match: list[bool] = field(default_factory=list)
    # The wait route.queued told a caller who had to wait (NaN: it did not wait).
    estimate_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Estimates:
    """How the waits route.queued told callers compare with the waits they had."""

    calls: int
    median_wait_s: float
    median_error_s: float  # of |estimate - wait|
    median_bias_s: float  # of estimate - wait: > 0 the estimates say too long

    @classmethod
    def of(cls, out: Outcomes) -> Estimates | None:
        estimate = np.array(out.estimate_s, float)
        told = np.isfinite(estimate) & np.array(out.answered, bool)
        if not told.any():
            return None
        wait = np.array(out.wait_s, float)[told]
        error = estimate[told] - wait
        return cls(int(told.sum()), float(np.median(wait)), float(np.median(np.abs(error))),
                   float(np.median(error)))


BATCHES = 20
_T_975_19 = 2.093  # Student t, 97.5% quantile, 19 degrees of freedom


@dataclass(frozen=True)
class Stats:
    name: str
    offered: int
    service_level: float
    p_wait: float  # share of calls that found no agent free
    asa: float  # mean wait of answered calls
    p95_wait: float  # of answered calls
    max_wait: float
    abandon: float
    sticky_calls: int  # calls whose customer's last agent was worth waiting for
    sticky_hits: int  # ... that this agent answered
    preferred_calls: int = 0  # calls with an inner ring (sticky, complaints, IVR intent)
    best_matches: int = 0  # ... answered by an agent of the innermost ring

    @property
    def best_match_rate(self) -> float:
        return self.best_matches / self.preferred_calls if self.preferred_calls else math.nan

    @property
    def sticky_hit_rate(self) -> float:
        return self.sticky_hits / self.sticky_calls if self.sticky_calls else math.nan


@dataclass(frozen=True)
class Report:
    routing: str
    threshold_s: float
    tiers: list[Stats]
    overall: Stats
    occupancy: float
    sl_ci: float  # 95% half-width of the overall service level
    p_wait_ci: float
    waits: dict[str, np.ndarray]  # answered calls' waits per tier, for the plot
    good: np.ndarray  # per measured call, in arrival order: answered within the threshold
    wall_s: float = 0.0
    estimates: Estimates | None = None  # of callers who waited and were answered

    def tier(self, name: str) -> Stats:
        return next(t for t in self.tiers if t.name == name)


def summarize(out: Outcomes, routing: str, threshold_s: float, tiers: Sequence[str],
              occupancy: float, wall_s: float = 0.0, formula: Formula = DEFAULT,
              short_abandon_s: float = 5.0) -> Report:
    tier = np.array(out.tier)
    answered = np.array(out.answered)
    wait = np.array(out.wait_s)
    good = answered & (wait <= threshold_s)
    queued = np.array(out.queued)
    def stats(name: str, mine: np.ndarray) -> Stats:
        return _stats(name, mine, out, good, formula, short_abandon_s)

    rows = [stats(name, tier == name) for name in tiers]
    return Report(
        routing=routing, threshold_s=threshold_s, tiers=rows,
        overall=stats("all", np.ones(len(tier), bool)),
        occupancy=occupancy, sl_ci=_batch_ci(good), p_wait_ci=_batch_ci(queued),
        waits={name: wait[(tier == name) & answered] for name in tiers}, good=good,
        wall_s=wall_s, estimates=Estimates.of(out) if out.estimate_s else None)


def _stats(name: str, mine: np.ndarray, out: Outcomes, good: np.ndarray, formula: Formula,
           short_abandon_s: float) -> Stats:
    answered = np.array(out.answered)[mine]
    wait = np.array(out.wait_s)[mine]
    answered_wait = wait[answered]
    sticky = np.array(out.sticky)[mine]
    n = int(mine.sum())
    short = int(((~answered) & (wait < short_abandon_s)).sum())
    counts = Counts(offered=n, answered=int(answered.sum()),
                    answered_within=int(good[mine].sum()),
                    abandoned=n - int(answered.sum()) - short, abandoned_short=short)
    level = share(counts, formula)
    return Stats(
        name=name, offered=n, service_level=math.nan if level is None else level,
        p_wait=float(np.array(out.queued)[mine].mean()) if n else math.nan,
        asa=float(answered_wait.mean()) if len(answered_wait) else math.nan,
        p95_wait=float(np.percentile(answered_wait, 95)) if len(answered_wait) else math.nan,
        max_wait=float(wait.max()) if n else math.nan,
        abandon=float(1.0 - answered.mean()) if n else math.nan,
        sticky_calls=int(sticky.sum()),
        sticky_hits=int(np.array(out.sticky_hit)[mine].sum()),
        preferred_calls=int(np.array(out.preferred, bool)[mine].sum()),
        best_matches=int(np.array(out.best_match, bool)[mine].sum()))


def _batch_ci(values: np.ndarray) -> float:
    if len(values) < BATCHES * 2:
        return math.nan
    means = [b.mean() for b in np.array_split(values.astype(float), BATCHES)]
    return float(_T_975_19 * np.std(means, ddof=1) / math.sqrt(BATCHES))


# Printing -----------------------------------------------------------------

_HEADER = (f"{'tier':<10}{'calls':>7}{'SL':>8}{'P(wait)':>9}{'ASA s':>8}{'p95 s':>8}"
           f"{'max s':>8}{'aband.':>8}{'sticky':>8}")


def _line(s: Stats) -> str:
    sticky = "-" if not s.sticky_calls else f"{s.sticky_hit_rate:.0%}"
    return (f"{s.name:<10}{s.offered:>7}{s.service_level:>8.1%}{s.p_wait:>9.1%}{s.asa:>8.1f}"
            f"{s.p95_wait:>8.1f}{s.max_wait:>8.1f}{s.abandon:>8.1%}{sticky:>8}")


def format_report(r: Report) -> str:
    lines = [f"routing: {r.routing}   service level = answered within {r.threshold_s:g} s "
             f"/ offered   occupancy {r.occupancy:.1%}", _HEADER]
    lines += [_line(s) for s in r.tiers] + [_line(r.overall)]
    lines.append(f"overall SL {r.overall.service_level:.1%} ± {r.sl_ci:.1%}, P(wait) "
                 f"{r.overall.p_wait:.1%} ± {r.p_wait_ci:.1%} (95%, batch means)")
    if r.estimates is not None:
        e = r.estimates
        lines.append(f"wait estimates (route.queued) of {e.calls} answered callers who waited: "
                     f"median error {e.median_error_s:.0f} s (bias {e.median_bias_s:+.0f} s), "
                     f"median wait {e.median_wait_s:.0f} s")
    return "\n".join(lines)


def format_comparison(value: Report, fifo: Report) -> str:
    lines = [f"same arrival stream, SL = answered within {value.threshold_s:g} s / offered",
             f"{'tier':<10}{'SL value':>10}{'SL fifo':>10}{'ASA value':>11}{'ASA fifo':>10}"
             f"{'max value':>11}{'max fifo':>10}{'sticky hit':>12}"]
    for v in [*value.tiers, value.overall]:
        f = fifo.overall if v.name == "all" else fifo.tier(v.name)
        sticky = "-" if not v.sticky_calls else f"{v.sticky_hit_rate:.0%}"
        lines.append(f"{v.name:<10}{v.service_level:>10.1%}{f.service_level:>10.1%}"
                     f"{v.asa:>11.1f}{f.asa:>10.1f}{v.max_wait:>11.1f}{f.max_wait:>10.1f}"
                     f"{sticky:>12}")
    lines.append(f"occupancy: value {value.occupancy:.1%}, fifo {fifo.occupancy:.1%}")
    if len(value.good) == len(fifo.good):  # the same calls: compare call by call
        difference = value.good.astype(float) - fifo.good
        lines.append(f"overall SL value - fifo: {difference.mean() * 100:+.1f} "
                     f"± {_batch_ci(difference) * 100:.1f} points (95%, paired batch means)")
    return "\n".join(lines)


def plot_waits(reports: Sequence[Report], path: Path) -> None:
    """Per tier, the share of answered calls that waited longer than t (one panel per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6 * len(reports), 4.2), sharey=True,
                             squeeze=False)
    for ax, report in zip(axes[0], reports, strict=True):
        for name, waits in report.waits.items():
            if len(waits):
                xs = np.sort(waits)
                ax.step(xs, 1.0 - np.arange(1, len(xs) + 1) / len(xs), where="post",
                        label=f"{name} (n={len(xs)})")
        ax.axvline(report.threshold_s, color="grey", linestyle=":", label="SL threshold")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 1.0)
        ax.set_xlabel("wait before answer (s)")
        ax.set_title(f"{report.routing}: SL {report.overall.service_level:.1%}, "
                     f"occupancy {report.occupancy:.0%}")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("share of answered calls waiting longer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
