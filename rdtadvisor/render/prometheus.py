"""The Prometheus text exposition format (0.0.4) of each host's latest figures, for the
node_exporter textfile collector.

`render_prometheus` is pure: it takes `model.figures.per_collection` rows and
`model.capacity.socket_capacity` rows and returns the text. Every family is a gauge in base
units (bytes, bytes per second, seconds); NaN figures are left out rather than exported as
``NaN``, so a missing cell reads as "no data" (``absent()``) and not as a value. Samples
carry no timestamps: the textfile collector rejects them, and
``rdtadvisor_host_last_collection_timestamp_seconds`` says how old the data is instead.

Families (labels in braces; every family also has ``host``):

============================================================  ===================================
rdtadvisor_vm_l3_occupancy_bytes                              {socket, domain, domid}
rdtadvisor_vm_memory_bandwidth_bytes_per_second               {socket, domain, domid, kind}
rdtadvisor_socket_l3_size_bytes                               {socket}
rdtadvisor_socket_l3_occupancy_bytes                          {socket}: sum over the socket's VMs
rdtadvisor_socket_memory_bandwidth_bytes_per_second           {socket, kind}: sum over the VMs
rdtadvisor_socket_memory_bandwidth_capacity_bytes_per_second  {socket, source}
rdtadvisor_socket_cos_used, rdtadvisor_socket_cos_budget      {socket}
rdtadvisor_host_rmid_used, rdtadvisor_host_rmid_limit         {}
rdtadvisor_host_last_collection_timestamp_seconds             {}
============================================================  ===================================

``kind`` is ``total``, ``local`` or ``remote``; ``source`` is ``config`` or ``observed-peak``
(an unknown capacity is left out). The RMID limit is not called ``..._rmid_total``:
``promtool check metrics`` reserves the ``_total`` suffix for counters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import pandas as pd

PREFIX = "rdtadvisor"
_SURROGATE = re.compile("[\ud800-\udfff]")
_KINDS = (("total", "bw_total_bytes_s"), ("local", "bw_local_bytes_s"), ("remote", "bw_remote_bytes_s"))

# name -> help text, in the order the families are written.
FAMILIES: dict[str, str] = {
    "vm_l3_occupancy_bytes": "L3 cache occupancy of a VM on a socket (Intel CMT), in bytes.",
    "vm_memory_bandwidth_bytes_per_second":
        "Memory bandwidth of a VM on a socket (Intel MBM, median of the collection's readings); "
        "kind is total, local (this socket's memory) or remote.",
    "socket_l3_size_bytes": "Size of the socket's L3 cache, in bytes.",
    "socket_l3_occupancy_bytes": "L3 cache occupancy summed over the socket's monitored VMs, in bytes.",
    "socket_memory_bandwidth_bytes_per_second":
        "Memory bandwidth summed over the socket's monitored VMs; kind is total, local or remote.",
    "socket_memory_bandwidth_capacity_bytes_per_second":
        "Memory bandwidth capacity of the socket; source is config (operator's figure) or "
        "observed-peak (highest sustained figure seen: a floor).",
    "socket_cos_used": "Distinct non-default L3 CAT classes of service in use on the socket.",
    "socket_cos_budget": "L3 CAT classes of service the socket can hold (halved under CDP).",
    "host_rmid_used": "Domains attached to cache monitoring (RMIDs in use) on the host.",
    "host_rmid_limit": "RMIDs the host offers (psr-hwinfo total_rmid): how many domains can be monitored.",
    "host_last_collection_timestamp_seconds":
        "Unix time of the host's latest collection in the store (alert when it is old).",
}


def escape_label_value(value: str) -> str:
    """A label value as the exposition format requires: backslash, double quote and line feed
    escaped (``\\\\``, ``\\"``, ``\\n``); everything else, UTF-8 included, is kept verbatim.

    Names arrive in the escaped form of `rdtadvisor.core.text` (a byte that is not UTF-8 is
    ``\\xNN``), so this is that form, label-escaped. A stray lone surrogate still becomes
    U+FFFD: the whole file must be valid UTF-8 or the collector drops all of it.
    """
    value = _SURROGATE.sub("\ufffd", value)
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction (byte counts read better), else Python's
    shortest round-trip repr, which Go's ParseFloat reads back exactly."""
    v = float(value)
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"


def _ok(value: object) -> bool:
    """Whether `value` is a finite number worth exporting (NaN, NA, None and inf are not)."""
    if value is None or value is pd.NA:
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _text(value: object) -> str:
    return "" if value is None or value is pd.NA else str(value)


def _latest_only(figures: pd.DataFrame) -> pd.DataFrame:
    """The rows of each host's latest collection, sorted by host, socket, domain, domid."""
    if figures.empty:
        return figures
    latest = figures.groupby("host", observed=True)["time"].transform("max")
    out = figures[(figures["time"] == latest).to_numpy()].copy()
    out["_domain"] = out["domain"].astype("string").fillna("")
    out = out.sort_values(["host", "socket", "_domain", "domid"], kind="stable", ignore_index=True)
    return out.drop(columns="_domain")


def render_prometheus(figures: pd.DataFrame, capacity: pd.DataFrame, *,
                      stale: Mapping[str, float] | None = None) -> str:
    """The exposition text of each host's latest collection (see the module docstring).

    `figures`: `per_collection` rows (older collections may be included: only each host's
    latest time is exported). `capacity`: `socket_capacity` rows. `stale`: host -> Unix time
    [s] of its latest collection, for ``..._last_collection_timestamp_seconds``; it wins over
    the time found in `figures` and adds hosts whose latest collection had no figures (every
    xl command failed), which is exactly when alerting needs the timestamp. Series are
    ordered by host, socket, domain name, domid, kind, so the same input gives the same bytes.
    """
    latest = _latest_only(figures)
    series: dict[str, list[tuple[str, float]]] = {name: [] for name in FAMILIES}

    def add(name: str, labels: list[tuple[str, str]], value: object) -> None:
        if _ok(value):
            series[name].append((_labels(labels), float(value)))  # type: ignore[arg-type]

    for r in latest.itertuples(index=False):
        base = [("host", str(r.host)), ("socket", str(int(r.socket))), ("domain", _text(r.domain)),
                ("domid", str(int(r.domid)))]
        add("vm_l3_occupancy_bytes", base, r.occupancy_bytes)
        for kind, column in _KINDS:
            add("vm_memory_bandwidth_bytes_per_second", [*base, ("kind", kind)], getattr(r, column))

    sums = pd.DataFrame()
    if not latest.empty:
        cols = ["occupancy_bytes", *(c for _, c in _KINDS)]
        sums = latest.groupby(["host", "socket"], observed=True, sort=True)[cols].sum(min_count=1)
    cap = capacity.sort_values(["host", "socket"], kind="stable", ignore_index=True)
    sockets = sorted({(str(h), int(s)) for h, s in zip(cap["host"], cap["socket"], strict=True)}
                     | {(str(h), int(s)) for h, s in sums.index})
    cap_of = {(str(r.host), int(r.socket)): r for r in cap.itertuples(index=False)}
    for host, socket in sockets:
        where = [("host", host), ("socket", str(socket))]
        c = cap_of.get((host, socket))
        if c is not None:
            add("socket_l3_size_bytes", where, c.l3_bytes)
            if _text(c.bw_capacity_source) in ("config", "observed-peak"):
                add("socket_memory_bandwidth_capacity_bytes_per_second",
                    [*where, ("source", str(c.bw_capacity_source))], c.bw_capacity_bytes_s)
            add("socket_cos_used", where, c.cos_used)
            add("socket_cos_budget", where, c.cos_budget)
        if (host, socket) in sums.index:
            s = sums.loc[(host, socket)]
            add("socket_l3_occupancy_bytes", where, s["occupancy_bytes"])
            for kind, column in _KINDS:
                add("socket_memory_bandwidth_bytes_per_second", [*where, ("kind", kind)], s[column])

    # RMIDs are host-wide: socket_capacity repeats them on every socket; take the first.
    for r in cap.drop_duplicates("host").itertuples(index=False):
        add("host_rmid_used", [("host", str(r.host))], r.rmid_used)
        add("host_rmid_limit", [("host", str(r.host))], r.rmid_total)
    when = {str(h): pd.Timestamp(t).timestamp()
            for h, t in latest.groupby("host", observed=True)["time"].max().items()} if len(latest) else {}
    when.update({str(h): float(t) for h, t in (stale or {}).items()})
    for host in sorted(when):
        add("host_last_collection_timestamp_seconds", [("host", host)], when[host])

    out = []
    for name, help_text in FAMILIES.items():
        if not series[name]:
            continue  # a family with no samples is noise (and promtool would still accept it)
        full = f"{PREFIX}_{name}"
        out.append(f"# HELP {full} {_escape_help(help_text)}\n# TYPE {full} gauge\n")
        out.extend(f"{full}{labels} {format_value(v)}\n" for labels, v in series[name])
    return "".join(out)
