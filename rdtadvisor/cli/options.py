"""Click parameter types shared by several commands."""

from __future__ import annotations

import click
import pandas as pd

from rdtadvisor.core.timewindow import parse_when


class _When(click.ParamType):
    """A time: ISO 8601, or a span before now (90m, 24h, 7d); a bad one is a usage error."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> pd.Timestamp:
        if isinstance(value, pd.Timestamp):
            return value
        try:
            return parse_when(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


WHEN = _When()


class Seconds(click.ParamType):
    """A finite number of seconds in [low, high]: ``inf``, ``nan`` and ``1e300`` are usage errors
    here, where the option is parsed, not an OverflowError after the first collection."""

    name = "SECONDS"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not self.low <= seconds <= self.high:   # False for nan
            self.fail(f"{value!r} is not a number of seconds from {self.low:g} to {self.high:g}", param, ctx)
        return seconds
