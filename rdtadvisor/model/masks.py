"""Today's settings of a socket and the host's Xen version, read from the stored tables."""

from __future__ import annotations

import re

import pandas as pd

from rdtadvisor.cache.cbm import Mask


def socket_settings(settings: pd.DataFrame, host: str, socket: int) -> tuple[dict[int, Mask], dict[int, str]]:
    """Today's L3 settings of one socket, as `build_steps` wants ``current``, and the names.

    ``settings`` holds one collection (e.g. ``Store.latest("settings", host)``). Returns
    (domid -> ``l3_cbm``, or ``(l3_code_cbm, l3_data_cbm)`` under CDP; domid -> name).
    Domains whose mask xl could not read (null value, xl printed ``error``) are left out:
    a plan must not touch them, and `build_steps` refuses a target for them.
    """
    rows = settings[(settings["host"] == host) & (settings["socket"] == socket)
                    & settings["setting"].isin(["l3_cbm", "l3_code_cbm", "l3_data_cbm"])]
    names: dict[int, str] = {}
    by: dict[int, dict[str, int]] = {}
    cols = (rows["domid"], rows["domain"], rows["setting"], rows["value"])
    for d, name, setting, v in zip(*cols, strict=True):
        if isinstance(name, str):
            names[int(d)] = name
        if not pd.isna(v):
            by.setdefault(int(d), {})[str(setting)] = int(v)
    current: dict[int, Mask] = {}
    for d, m in by.items():
        if "l3_cbm" in m:
            current[d] = m["l3_cbm"]
        elif "l3_code_cbm" in m and "l3_data_cbm" in m:
            current[d] = (m["l3_code_cbm"], m["l3_data_cbm"])
    return current, names


_VERSION = re.compile(r"\s*(\d+)\.(\d+)")


def xen_version_of(facts: pd.DataFrame, host: str) -> tuple[int, int] | None:
    """``(4, 19)`` from the host's latest ``xen_version`` fact (``"4.19.1"``), None if unknown."""
    f = facts[(facts["host"] == host) & (facts["fact"] == "xen_version") & facts["text"].notna()]
    if not len(f):
        return None
    m = _VERSION.match(str(f.sort_values("time", kind="stable")["text"].iloc[-1]))
    return (int(m.group(1)), int(m.group(2))) if m else None
