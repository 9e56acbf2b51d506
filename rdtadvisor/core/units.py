"""Units: the only place figures change unit.

Xen prints sizes in KiB labelled ``KB`` and rates in KiB/s labelled ``KB/s``
(``docs/xl-formats.md``, psr-cmt-show); everything past the parsers is bytes and bytes/s.
"""

from __future__ import annotations

import re

KIB = 1024
MIB = 1024**2
GIB = 1024**3

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*(/s)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "B": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1024**4}


def kib_to_bytes(kib: int) -> int:
    """Xen's KiB (printed as ``KB``) to bytes. [KiB] -> [B]"""
    return kib * KIB


def mib_to_bytes(mib: int) -> int:
    """``xl list``/``xl info`` MiB figures to bytes. [MiB] -> [B]"""
    return mib * MIB


def parse_size(text: str) -> float:
    """Parse ``8MiB``, ``2GiB/s``, ``512K`` or ``1048576`` into bytes (or bytes/s).

    Binary prefixes throughout: ``M`` and ``MiB`` both mean 2**20, as Xen's ``KB`` does.
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 8MiB or 2GiB/s)")
    number, unit, _per_second = m.groups()
    return float(number) * _FACTORS[(unit or "")[:1].upper()]


def format_bytes(value: float, rate: bool = False) -> str:
    """Human form in binary units: ``format_bytes(25 * MIB) == '25.0 MiB'``."""
    suffix = "/s" if rate else ""
    for unit, factor in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {unit}{suffix}"
    return f"{value:.0f} B{suffix}"
