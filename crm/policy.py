"""The value policy: every threshold of the value model, read from one versioned file.

`crm/value_policy.yaml` holds the textbook defaults; an operator points the setting
`value_policy_file` (CALLCENTER_VALUE_POLICY_FILE) at a file holding any subset of its
keys, and those replace the defaults. Unknown keys and out-of-range values are refused
with `InvalidValuePolicy`, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_POLICY_FILE = Path(__file__).with_name("value_policy.yaml")


class InvalidValuePolicy(ValueError):
    code = "invalid_value_policy"


@dataclass(frozen=True)
class Analysis:
    period_days: int = 365
    whole_history: bool = False


@dataclass(frozen=True)
class Abc:
    a_profit_share: float = 0.80
    a_customer_share: float = 0.10
    b_profit_share: float = 0.90
    b_customer_share: float = 0.30
    a_min_profit: float = 0.0
    b_min_profit: float = 0.0


@dataclass(frozen=True)
class Rfm:
    cut: str = "quintile"
    high_score: int = 3


@dataclass(frozen=True)
class Clv:
    discount_rate: float = 0.10
    horizon_periods: int = 3
    period_days: int = 365
    default_retention: float = 0.80
    min_customers_measured: int = 30
    high_quantile: float = 0.5
    high_min: float = 0.0
    abandon_max: float = 0.0


@dataclass(frozen=True)
class Churn:
    fallback_interval_days: float = 120.0
    overdue_factor: float = 4.0
    trend_window_days: int = 90
    trend_rhythms: float = 3.0
    spend_decline_weight: float = 0.8
    frequency_decline_weight: float = 0.5
    warn_risk: float = 0.5
    warn_satisfaction: float = 0.8


@dataclass(frozen=True)
class Lifecycle:
    loyal_min_orders: int = 5
    lapsing_after_rhythms: float = 2.0
    inactive_after_days: int = 365


@dataclass(frozen=True)
class TierRule:
    abc: tuple[str, ...] | None = None
    clv: tuple[str, ...] | None = None

    def matches(self, abc_class: str, clv_class: str) -> bool:
        return (self.abc is None or abc_class in self.abc) and (
            self.clv is None or clv_class in self.clv)


@dataclass(frozen=True)
class Tiers:
    low_min_orders: int = 2
    vip: tuple[TierRule, ...] = (TierRule(("A",), ("vip",)),)
    gold: tuple[TierRule, ...] = (TierRule(("A",)), TierRule(("B",), ("vip",)))
    low: tuple[TierRule, ...] = (TierRule(("C",), ("abandon",)),)


@dataclass(frozen=True)
class CostToServe:
    cost_per_minute: float = 1.0
    cost_per_complaint: float = 50.0
    value_quantile: float = 0.5
    cost_quantile: float = 0.5


@dataclass(frozen=True)
class ValuePolicy:
    version: str = "builtin"
    analysis: Analysis = field(default_factory=Analysis)
    abc: Abc = field(default_factory=Abc)
    rfm: Rfm = field(default_factory=Rfm)
    clv: Clv = field(default_factory=Clv)
    churn: Churn = field(default_factory=Churn)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    tiers: Tiers = field(default_factory=Tiers)
    cost_to_serve: CostToServe = field(default_factory=CostToServe)

    def __post_init__(self) -> None:
        _validate(self)


_SECTIONS: dict[str, type[Any]] = {
    "analysis": Analysis, "abc": Abc, "rfm": Rfm, "clv": Clv, "churn": Churn,
    "lifecycle": Lifecycle, "tiers": Tiers, "cost_to_serve": CostToServe,
}


def load_policy(override: Path | None = None) -> ValuePolicy:
    """The shipped defaults, with the keys of `override` (if any) replacing them."""
    return _load(DEFAULT_POLICY_FILE, override)


@cache
def default_policy() -> ValuePolicy:
    return load_policy()


@cache
def _load(default: Path, override: Path | None) -> ValuePolicy:
    data = _read(default)
    if override is not None:
        for key, value in _read(override).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    return policy_from_dict(data)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InvalidValuePolicy(f"cannot read value policy {path}: {e}") from e
    if not isinstance(data, dict):
        raise InvalidValuePolicy(f"value policy {path} must be a mapping")
    return data


def policy_from_dict(data: dict[str, Any]) -> ValuePolicy:
    unknown = set(data) - set(_SECTIONS) - {"version"}
    if unknown:
        raise InvalidValuePolicy(f"unknown value policy sections: {sorted(unknown)}")
    sections = {name: _section(name, cls, data.get(name) or {})
                for name, cls in _SECTIONS.items()}
    return ValuePolicy(version=str(data.get("version", "unversioned")), **sections)


def _section(name: str, cls: type[Any], values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InvalidValuePolicy(f"unknown keys in value policy {name}: {sorted(unknown)}")
    if cls is Tiers:
        values = {k: _rules(k, v) if k != "low_min_orders" else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise InvalidValuePolicy(f"value policy {name}: {e}") from e


def _rules(tier: str, rules: Any) -> tuple[TierRule, ...]:
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise InvalidValuePolicy(f"tier {tier}: a list of rules like {{abc: [A], clv: [vip]}}")
    out = []
    for rule in rules:
        if set(rule) - {"abc", "clv"}:
            raise InvalidValuePolicy(f"tier {tier}: a rule names only abc and clv")
        out.append(TierRule(*(tuple(map(str, rule[k])) if k in rule else None
                              for k in ("abc", "clv"))))
    return tuple(out)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidValuePolicy(f"value policy: {what}")


def _validate(p: ValuePolicy) -> None:
    a = p.abc
    _check(0 < a.a_profit_share <= a.b_profit_share <= 1,
           "0 < a_profit_share <= b_profit_share <= 1")
    _check(0 < a.a_customer_share <= a.b_customer_share <= 1,
           "0 < a_customer_share <= b_customer_share <= 1")
    _check(p.analysis.period_days > 0 and p.clv.period_days > 0, "periods must be positive")
    _check(p.rfm.cut == "quintile", "rfm.cut: only 'quintile' (scores and segments agree)")
    _check(1 <= p.rfm.high_score <= 5, "rfm.high_score within 1..5")
    _check(p.clv.discount_rate > -1 and p.clv.horizon_periods >= 0, "clv discount/horizon")
    _check(0 <= p.clv.default_retention <= 1, "clv.default_retention within [0, 1]")
    _check(0 <= p.clv.high_quantile <= 1, "clv.high_quantile within [0, 1]")
    _check(p.churn.overdue_factor > 1, "churn.overdue_factor above 1")
    _check(p.churn.fallback_interval_days > 0 and p.churn.trend_window_days > 0,
           "churn intervals must be positive")
    _check(p.tiers.low_min_orders >= 1, "tiers.low_min_orders at least 1")
