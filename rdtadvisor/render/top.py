"""One frame of ``rdtadvisor top``: the latest figures per host, socket and VM as terminal text.

`top_rows` picks and orders the rows; `render_top` lays them out for a terminal of a given
width. Both are pure (no clock, no store, no terminal): the CLI (`rdtadvisor.cli.top`)
reads the store and redraws.

VM names come from ``xl list`` inside guests' control, so they are untrusted: `clean`
drops ANSI escape sequences and control characters (C0, DEL, C1, bidi overrides) before
anything reaches the terminal, where they could move the cursor, retitle the window or
reorder the line.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping

import pandas as pd

SORTS = ("occupancy", "bandwidth", "name")
ROW_COLUMNS = ["host", "socket", "domid", "domain", "time", "occupancy_bytes", "l3_share",
               "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s"]
MIB, GIB = 2**20, 2**30

# ESC-introduced sequences: CSI (ESC [ ... final byte), OSC/DCS/PM/APC strings (to BEL or
# ESC \), and two-byte escapes. Removed whole, so no parameter bytes ("[31m") are left behind.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
                      r"|[\x1b][\]PX^_].*?(?:\x07|\x1b\\|$)|[\x90\x9d\x98\x9e\x9f].*?(?:\x07|\x1b\\|\x9c|$)"
                      r"|\x1b[ -~]?", re.DOTALL)
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean(text: str) -> str:
    """`text` safe to print on a terminal: escape sequences and control characters removed."""
    text = _ESCAPES.sub("", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc" and ch not in _BIDI)


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide (East Asian) characters 2, combining marks 0."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def fit(text: str, width: int) -> str:
    """`text` cut to at most `width` terminal columns, ending in "~" when cut, then padded."""
    if display_width(text) <= width:
        return text + " " * (width - display_width(text))
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "~" + " " * (width - 1 - used)


def top_rows(figures: pd.DataFrame, capacity: pd.DataFrame, sort: str = "occupancy",
             limit: int | None = None) -> pd.DataFrame:
    """The rows of a frame: each host's latest collection, one row per (host, socket, VM).

    `figures`: `per_collection` rows (only each host's latest time is kept). `capacity`:
    `socket_capacity` rows, for ``l3_share`` = occupancy / the socket's L3 size (NaN when
    the size is unknown). `sort`: ``occupancy`` or ``bandwidth`` (total) descending, or
    ``name`` (VM name, then host, socket); ties and NaN (last) are ordered by host, socket,
    domid so frames do not jitter. `limit`: keep the first N rows (None or 0: all).
    Columns: `ROW_COLUMNS`.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if figures.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ROW_COLUMNS})
    latest = figures.groupby("host", observed=True)["time"].transform("max")
    rows = figures[(figures["time"] == latest).to_numpy()].copy()
    l3 = capacity[["host", "socket", "l3_bytes"]].astype({"host": "string", "socket": "int16"})
    rows = rows.astype({"host": "string", "socket": "int16"}).merge(l3, on=["host", "socket"], how="left")
    size = rows["l3_bytes"].astype("float64")
    rows["l3_share"] = (rows["occupancy_bytes"] / size).where(size > 0)
    rows["_name"] = rows["domain"].astype("string").fillna("").str.lower()
    tie = ["host", "socket", "domid"]
    if sort == "name":
        by, ascending = ["_name", *tie], [True] * 4
    else:
        column = "occupancy_bytes" if sort == "occupancy" else "bw_total_bytes_s"
        by, ascending = [column, *tie], [False, True, True, True]
    rows = rows.sort_values(by, ascending=ascending, kind="stable", na_position="last", ignore_index=True)
    if limit:
        rows = rows.head(limit)
    return rows[ROW_COLUMNS].reset_index(drop=True)


def human_bytes(value: float) -> str:
    """Occupancy as MiB with one decimal ("27.5 MiB"); "-" for NaN."""
    return "-" if _missing(value) else f"{value / MIB:.1f} MiB"


def human_rate(value: float) -> str:
    """A bandwidth in GiB/s from 1 GiB/s up, else MiB/s ("12.3 GiB/s", "456.7 MiB/s"); "-" for NaN."""
    if _missing(value):
        return "-"
    return f"{value / GIB:.1f} GiB/s" if value >= GIB else f"{value / MIB:.1f} MiB/s"


def human_age(age: pd.Timedelta) -> str:
    """"12s ago", "5m ago", "3h ago", "2d ago"; "in 5s" when the clock is behind the data."""
    seconds = age.total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# (header, width, align) of the fixed columns; the VM column takes what is left.
_FIXED = [("OCC", 9, ">"), ("L3%", 4, ">"), ("TOTAL", 11, ">"), ("LOCAL", 11, ">"), ("REMOTE", 11, ">")]
_MIN_VM, _MIN_HOST = 8, 8


def render_top(rows: pd.DataFrame, hosts_latest: Mapping[str, pd.Timestamp | None], now: pd.Timestamp,
               width: int = 120, *,
               stale_after: pd.Timedelta | Mapping[str, pd.Timedelta] | None = None) -> str:
    """The frame's text: a title, one line per host with its latest collection time and age
    (flagged ``STALE`` when older than `stale_after` -- one limit, or one per host -- or
    with no collection at all), then a table of `rows` (from `top_rows`) no wider than
    `width` columns.

    Names are `clean`-ed and cut with "~" to fit; numbers are never cut (a terminal too
    narrow for them gets lines longer than `width` rather than misleading figures).
    """
    out = [fit(f"rdtadvisor top - {_stamp(now)}", width).rstrip()]
    names = {host: clean(host) for host in hosts_latest}
    name_w = max([0, *(display_width(n) for n in names.values())])
    for host in sorted(hosts_latest):
        t = hosts_latest[host]
        if t is None or t is pd.NaT:
            line = f"{fit(names[host], name_w)}  no collection  STALE"
        else:
            age = now - t
            limit = stale_after.get(host) if isinstance(stale_after, Mapping) else stale_after
            flag = "  STALE" if limit is not None and age > limit else ""
            line = f"{fit(names[host], name_w)}  last {_stamp(t)} ({human_age(age)}){flag}"
        out.append(fit(line, width).rstrip())
    out.append("")
    hosts = [clean(str(h)) for h in rows["host"]]
    host_w = max([4, *(display_width(h) for h in hosts)])
    fixed = sum(w + 2 for _, w, _ in _FIXED) + 3 + 2  # + SKT column and its gap
    # Host names are short and from the operator's config: shrink them only when the VM
    # column would otherwise fall under its minimum.
    host_w = max(min(host_w, width - fixed - 2 - _MIN_VM), min(host_w, _MIN_HOST))
    vm_w = max(_MIN_VM, width - fixed - host_w - 2)

    def line(host: str, socket: str, vm: str, cells: list[str]) -> str:
        fixed_cells = "".join(f"  {c:{a}{w}}" for c, (_, w, a) in zip(cells, _FIXED, strict=True))
        return f"{fit(host, host_w)}  {socket:>3}  {fit(vm, vm_w)}{fixed_cells}".rstrip()

    out.append(line("HOST", "SKT", "VM", [h for h, _, _ in _FIXED]))
    for h, r in zip(hosts, rows.itertuples(index=False), strict=True):
        share = "-" if _missing(r.l3_share) else f"{r.l3_share * 100:.0f}%"
        name = "" if _missing(r.domain) else clean(str(r.domain))
        out.append(line(h, str(int(r.socket)), name,
                        [human_bytes(r.occupancy_bytes), share, human_rate(r.bw_total_bytes_s),
                         human_rate(r.bw_local_bytes_s), human_rate(r.bw_remote_bytes_s)]))
    if rows.empty:
        out.append("(no figures)")
    return "\n".join(out) + "\n"


def _stamp(t: pd.Timestamp) -> str:
    t = pd.Timestamp(t)
    return (t.tz_convert("UTC") if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S UTC")

