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
