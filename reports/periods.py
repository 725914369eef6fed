"""Report ranges and intervals in the center's time zone.

`from` is inclusive; `to` given as a date includes that whole day, given as a time it
is the exclusive end. Dates and times without a zone are the center's local time.
A period is named by its local start: ``2026-03-02`` (day), ``2026-03-02T09:15``
(15 minutes, hour), ``2026-W10`` (ISO week, from Monday), ``2026-03`` (month).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class BadReport(ValueError):
    """A report asked for with parameters that make no report; `str()` says which."""

    code = "invalid"


class Interval(str, Enum):
    m15 = "15m"
    hour = "hour"
    day = "day"
    week = "week"
    month = "month"


@dataclass(frozen=True)
class Range:
    since: dt.datetime  # aware, inclusive
    until: dt.datetime  # aware, exclusive
    interval: Interval
    zone: ZoneInfo

    def period(self, moment: dt.datetime) -> str:
        """The name of the period `moment` falls in."""
        local = moment.astimezone(self.zone)
        if self.interval is Interval.m15:
            return local.replace(minute=local.minute // 15 * 15).strftime("%Y-%m-%dT%H:%M")
        if self.interval is Interval.hour:
            return local.strftime("%Y-%m-%dT%H:00")
        if self.interval is Interval.day:
            return local.date().isoformat()
        if self.interval is Interval.week:
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        return local.strftime("%Y-%m")

    def bounds(self) -> dict[str, str]:
        return {"from": self.since.astimezone(self.zone).isoformat(),
                "to": self.until.astimezone(self.zone).isoformat(),
                "interval": self.interval.value, "timezone": self.zone.key}


def parse_interval(raw: str | None, default: Interval = Interval.day) -> Interval:
    if not raw:
        return default
    try:
        return Interval(raw)
    except ValueError:
        names = ", ".join(i.value for i in Interval)
        raise BadReport(f"unknown interval {raw!r}: use one of {names}") from None


def parse_range(since: str | None, until: str | None, interval: str | None, zone: ZoneInfo,
                max_days: int) -> Range:
    if not since or not until:
        raise BadReport("from and to are required (ISO 8601 dates or times)")
    start = _moment(since, "from", zone, end=False)
    end = _moment(until, "to", zone, end=True)
    if end <= start:
        raise BadReport("to must be after from")
    if end - start > dt.timedelta(days=max_days):
        raise BadReport(f"a report covers at most {max_days} days")
    return Range(start, end, parse_interval(interval), zone)


def _moment(raw: str, name: str, zone: ZoneInfo, *, end: bool) -> dt.datetime:
    try:
        if len(raw) == 10:  # a date
            day = dt.date.fromisoformat(raw) + dt.timedelta(days=1 if end else 0)
            value = dt.datetime.combine(day, dt.time(), zone)
        else:
            value = dt.datetime.fromisoformat(raw)
            value = value if value.tzinfo else value.replace(tzinfo=zone)
        value.astimezone(dt.UTC).astimezone(zone)  # both ends stay within the calendar
        return value
    except (ValueError, OverflowError):
        raise BadReport(f"{name} must be an ISO 8601 date or time, not {raw[:40]!r}") from None


def parse_zone(raw: str | None, default: ZoneInfo) -> ZoneInfo:
    """An IANA time zone name (``timezone=Asia/Shanghai``), or the center's."""
    if not raw:
        return default
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadReport(f"unknown time zone {raw[:64]!r}") from None
