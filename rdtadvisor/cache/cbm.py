"""Mask algebra for L3/L2 CAT capacity bitmasks (CBMs): pure functions on Python ints.

Units: a *mask* (CBM) is a non-negative int, bit i = way i (bit 0 = the lowest way);
``cbm_len`` is the CBM length in bits as ``xl psr-hwinfo`` prints it ("CBM length", also
the number of allocation ways); *ways* are counts of bits; *bytes* are bytes of L3
(``l3_bytes`` is the socket's L3 size, ``xl psr-hwinfo``'s "L3 Cache" x 1024). Under CDP
a domain's setting is a ``(code, data)`` pair of masks.

What Xen enforces (``docs/xl-formats.md``, "Setting masks"; ``cat_check_cbm`` / ``psr_check_cbm``): set
bits only in ``[0, cbm_len)``, at least one bit, one contiguous run. Nothing else: no
minimum width (hardware and Linux resctrl's ``min_cbm_bits`` may want 1 or 2, so
`is_valid` takes ``min_bits``). COS 0 holds the default all-ones mask and costs no COS;
domains with identical settings share one COS.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Mask = int | tuple[int, int]     # a CBM, or (code, data) under CDP

MAX_CBM_LEN = 32                 # Xen 4.10+ rejects values that do not fit in 32 bits


def full(cbm_len: int) -> int:
    """The default mask of COS 0: ``cbm_len`` ones (``xl psr-hwinfo``'s "Default CBM")."""
    return (1 << cbm_len) - 1


def ways_of(cbm: int) -> int:
    """Number of ways (set bits) in a mask."""
    return int(cbm).bit_count()


def is_contiguous(cbm: int) -> bool:
    """True when the set bits of a non-zero mask form one run."""
    cbm = int(cbm)
    if cbm <= 0:
        return False
    low = cbm & -cbm
    return (cbm + low) & cbm == 0       # adding the lowest bit carries through exactly one run


def is_valid(cbm: int, cbm_len: int, min_bits: int = 1) -> bool:
    """Would Xen accept ``cbm`` on a socket with this CBM length, with at least ``min_bits`` ways?

    Xen's rule: non-zero, contiguous, no bit at or above ``cbm_len`` (and ``cbm_len`` <= 32).
    ``min_bits`` is a policy on top (Xen checks none; 1 = exactly Xen's rule).
    """
    cbm = int(cbm)
    if not 1 <= cbm_len <= MAX_CBM_LEN or cbm <= 0 or cbm >> cbm_len:
        return False
    return is_contiguous(cbm) and ways_of(cbm) >= min_bits


def why_invalid(cbm: int, cbm_len: int, min_bits: int = 1) -> str | None:
    """None if `is_valid`, else the reason in words (for error messages and ``check``)."""
    cbm = int(cbm)
    if not 1 <= cbm_len <= MAX_CBM_LEN:
        return f"CBM length {cbm_len} is outside 1..{MAX_CBM_LEN}"
    if cbm <= 0:
        return "empty mask (Xen rejects 0)"
    if cbm >> cbm_len:
        return f"bits beyond the {cbm_len}-bit CBM (default {hex(full(cbm_len))})"
    if not is_contiguous(cbm):
        return "not one contiguous run of ones"
    if ways_of(cbm) < min_bits:
        return f"{ways_of(cbm)} way(s), fewer than the minimum of {min_bits}"
    return None


def contiguous(start: int, ways: int) -> int:
    """The mask of ``ways`` ways starting at way (bit) ``start``: ``contiguous(4, 7) == 0x7f0``."""
    if start < 0 or ways < 1:
        raise ValueError(f"contiguous({start}, {ways}): start must be >= 0 and ways >= 1")
    return ((1 << ways) - 1) << start


def run_of(cbm: int) -> tuple[int, int]:
    """(start bit, ways) of a contiguous mask; ValueError if it is not one run."""
    if not is_contiguous(cbm):
        raise ValueError(f"{hex(cbm)} is not one contiguous run")
    start = (cbm & -cbm).bit_length() - 1
    return start, ways_of(cbm)


def overlap(a: int, b: int) -> int:
    """Ways two masks share (count of common bits)."""
    return ways_of(int(a) & int(b))


def layout(way_counts: Sequence[int], cbm_len: int, *, reserved_low: int = 0, reserved_high: int = 0,
           shared: int | None = None) -> list[int]:
    """Contiguous, non-overlapping masks for ``way_counts``, stacked upwards from one end.

    The first run starts at bit ``reserved_low`` (ways below it are kept for, e.g., dom0),
    each next run directly above the previous one; the top ``reserved_high`` ways (e.g.
    the ways DDIO/I/O writes into) are never used. With ``shared`` (ways), one more mask
    is appended: a run of that many ways directly above the private runs (for VMs that
    share a partition, such as streaming VMs confined together). Every mask returned
    passes `is_valid`; ValueError when a count is < 1 or the runs do not fit in
    ``cbm_len - reserved_low - reserved_high`` ways.
    """
    counts = [int(w) for w in way_counts] + ([int(shared)] if shared is not None else [])
    if not 1 <= cbm_len <= MAX_CBM_LEN:
        raise ValueError(f"CBM length {cbm_len} is outside 1..{MAX_CBM_LEN}")
    if reserved_low < 0 or reserved_high < 0:
        raise ValueError("reserved way counts must be >= 0")
    if any(w < 1 for w in counts):
        raise ValueError(f"every run needs at least one way: {counts}")
    room = cbm_len - reserved_low - reserved_high
    if sum(counts) > room:
        raise ValueError(f"{sum(counts)} ways requested but only {room} of {cbm_len} are available "
                         f"({reserved_low} reserved low, {reserved_high} reserved high)")
    out, start = [], reserved_low
    for w in counts:
        out.append(contiguous(start, w))
        start += w
    return out


def normalise(mask: Mask) -> tuple[int, int]:
    """A setting as a (code, data) pair: a plain mask m is (m, m) (what Xen stores under CDP)."""
    if isinstance(mask, tuple):
        code, data = mask
        return int(code), int(data)
    return int(mask), int(mask)


def cos_needed(masks: Iterable[Mask], cbm_len: int) -> int:
    """COS a socket needs for these settings (one per domain): distinct non-default settings.

    The default (all ones; under CDP all ones for code *and* data) stays in COS 0 at no
    cost; domains whose settings are identical share one COS. Under CDP a setting is the
    (code, data) pair, so (a, b) and (a, c) need two COS.
    """
    default = (full(cbm_len), full(cbm_len))
    return len({normalise(m) for m in masks} - {default})


def cos_budget(cos_max: int, cdp: bool, *, from_hwinfo: bool = True,
               xen_version: tuple[int, int] = (4, 22)) -> int:
    """How many distinct non-default settings (COS 1..K) one socket can hold.

    ``cos_max`` as ``xl psr-hwinfo`` prints it ("Maximum COS", the ``l3_cos_max`` fact) is
    the highest COS *index*, and under CDP Xen has **already halved** it; COS 0 is the
    default, so the budget is exactly ``cos_max`` whether CDP is on or not (each COS then
    holds a code and a data mask). Pass ``from_hwinfo=False`` for the hardware's (CPUID's)
    highest COS instead: under CDP Xen 4.7-4.9 keeps ``cos_max >> 1`` and 4.10+
    ``(cos_max - 1) >> 1``. On 4.10+ L3, L2 and MBA share one COS id
    per domain, so settings of the other features can use up L3's budget too.
    """
    if cos_max < 0:
        raise ValueError(f"cos_max must be >= 0, got {cos_max}")
    if from_hwinfo or not cdp:
        return int(cos_max)
    return int(cos_max) >> 1 if xen_version < (4, 10) else (int(cos_max) - 1) >> 1


def bytes_for(ways: float, l3_bytes: float, cbm_len: int) -> float:
    """Bytes of L3 that ``ways`` ways hold: ``ways * l3_bytes / cbm_len`` [B]."""
    if cbm_len < 1:
        raise ValueError(f"CBM length must be >= 1, got {cbm_len}")
    return float(ways) * float(l3_bytes) / cbm_len


def ways_for(nbytes: float, l3_bytes: float, cbm_len: int) -> int:
    """Fewest ways that hold at least ``nbytes`` bytes of L3 (rounds up; 0 for 0 bytes).

    For guarantees given in MiB: ``ways_for(4 * 2**20, l3, n)``. May exceed ``cbm_len``
    when the guarantee is more than the cache: the caller must treat that as unmeetable.
    A relative tolerance of 1e-9 keeps exact multiples (e.g. 2.5 MiB of a 27.5 MiB,
    11-way L3) from rounding up to one way too many.
    """
    if cbm_len < 1 or l3_bytes <= 0:
        raise ValueError(f"need cbm_len >= 1 and l3_bytes > 0, got {cbm_len}, {l3_bytes}")
    if nbytes <= 0:
        return 0
    exact = float(nbytes) * cbm_len / float(l3_bytes)
    return max(1, math.ceil(exact - 1e-9 * max(1.0, exact)))


def hexmask(cbm: int) -> str:
    """A mask as JSON and xl write it: ``"0x7f0"``."""
    return hex(int(cbm))


def parse_mask(text: str | int) -> int:
    """``"0x7f0"`` / ``"2032"`` / 2032 -> 2032 (no octal: a leading 0 is read as decimal)."""
    if isinstance(text, int):
        return text
    t = text.strip().lower()
    return int(t, 16) if t.startswith("0x") else int(t, 10)
