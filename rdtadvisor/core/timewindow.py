"""Points in time as users write them: ISO 8601, or a span before now.

``parse_when`` accepts

* a span before now: a number and a unit, ``90m``, ``24h``, ``7d``, ``2w``, ``30s``
  (``1.5h`` works too; an optional trailing ``ago`` is allowed: ``24h ago``);
* ``now``;
* an ISO 8601 date or date and time: ``2024-05-01``, ``2024-05-01T12:00``,
  ``2024-05-01 12:00:00+02:00``, ``2024-05-01T10:00:00Z``. Without a zone it is UTC.

Everything comes back as a timezone-aware UTC ``pandas.Timestamp``. ``to_utc`` is the
same for values that may already be a ``datetime``, ``date`` or ``Timestamp`` (naive
means UTC; a ``date`` means its midnight UTC) or ``None``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pandas as pd

from rdtadvisor.core import clock

_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours",
          "d": "days", "w": "weeks"}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(?:ago)?\s*$", re.IGNORECASE)

When = str | datetime | date | pd.Timestamp


def parse_span(text: str) -> timedelta | None:
    """``"90m"`` -> ``timedelta(minutes=90)``; None if `text` is not a span."""
    m = _SPAN.match(text)
    if m is None:
        return None
    return timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


def parse_when(text: str, *, now: datetime | None = None) -> pd.Timestamp:
    """The UTC time `text` names; spans like ``24h`` count back from `now` (default: the clock).

    Raises ValueError with a one-line message for anything else.
    """
    ref = clock.now() if now is None else to_utc(now)
    stripped = text.strip()
    if stripped.lower() == "now":
        return ref
    span = parse_span(stripped)
    if span is not None:
        return ref - span
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}", stripped):
            raise ValueError(stripped)
        stamp = pd.Timestamp(stripped)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r}: not a time; use ISO 8601 (2024-05-01, 2024-05-01T12:00Z) "
                         f"or a span before now (90m, 24h, 7d)") from None
    return _utc(stamp)


def to_utc(value: When | None, *, now: datetime | None = None) -> pd.Timestamp | None:
    """`value` as a UTC ``pandas.Timestamp`` (strings through `parse_when`); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_when(value, now=now)
    if isinstance(value, date) and not isinstance(value, datetime):
        return pd.Timestamp(value.year, value.month, value.day, tz="UTC")
    if isinstance(value, datetime):
        return _utc(pd.Timestamp(value))
    raise TypeError(f"not a time: {value!r}")


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    if stamp is pd.NaT:
        raise ValueError("not a time: NaT")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
