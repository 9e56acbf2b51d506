"""The one clock rdtadvisor reads: "now" for default windows, collection times and reports.

By default it is the system clock (UTC). ``RDTADVISOR_NOW`` pins it: set to an ISO 8601
time (``2026-11-24T00:00:00Z``), "now" is that instant when the process first asks, and
time runs on from there, so intervals between repeated collections stay real. Tests pin
it so that no result depends on the date they run; an operator can pin it to replay a
report "as of" a past day. Nothing else in the package reads the wall clock.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

import pandas as pd

ENV = "RDTADVISOR_NOW"

# (pinned instant, monotonic reading when it was pinned), per pinned value.
_anchor: dict[str, tuple[pd.Timestamp, float]] = {}


def now() -> pd.Timestamp:
    """The current time as a timezone-aware UTC ``pandas.Timestamp`` (pinned by ``RDTADVISOR_NOW``).

    Raises ValueError naming the variable when ``RDTADVISOR_NOW`` is not an ISO 8601 time.
    """
    pinned = os.environ.get(ENV, "").strip()
    if not pinned:
        return pd.Timestamp.now(tz="UTC")
    if pinned not in _anchor:
        _anchor[pinned] = (_parse(pinned), time.monotonic())
    start, ticked = _anchor[pinned]
    return start + pd.Timedelta(seconds=time.monotonic() - ticked)


def now_datetime() -> datetime:
    """`now` as a ``datetime`` in UTC (for code that stores plain datetimes)."""
    return now().floor("us").to_pydatetime().astimezone(UTC)


def _parse(text: str) -> pd.Timestamp:
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"{ENV}={text!r}: not a time; use ISO 8601 (2026-11-24T00:00:00Z)") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
