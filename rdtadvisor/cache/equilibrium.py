"""The per-way sharing equilibrium: how VMs whose masks overlap divide the ways they share.

In each way the VMs whose masks include it hold shares in proportion to their insertion
pressure (their miss rates spread over their own ways), no VM holds more than its working
set, and what a capped VM leaves goes to the others (``docs/algorithms.md``). The simulator's
truth and the advisors' predictions both iterate `allocate` to its fixed point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mask_matrix(masks: Sequence[int], ways: int) -> np.ndarray:
    """(n, ways) booleans: bit w of each mask. Raises ValueError on an empty or too wide mask."""
    out = np.zeros((len(masks), ways), dtype=bool)
    for i, m in enumerate(masks):
        if m <= 0 or m >> ways:
            raise ValueError(f"mask {m:#x} is empty or wider than {ways} ways")
        out[i] = [(m >> w) & 1 for w in range(ways)]
    return out


def allocate(misses: np.ndarray, own: np.ndarray, way_bytes: float, ws: np.ndarray) -> np.ndarray:
    """One step of the sharing equilibrium: capacity each VM holds, given its miss rate.

    In every way, the VMs whose masks include it hold shares proportional to their
    insertion pressure (misses spread evenly over their own ways); no VM holds more than
    its working set `ws`, and what a capped VM leaves goes to the others in those ways.

    misses : (..., n) misses per second; own : (n, W) 0/1 mask matrix, or (..., n, W) for a
    batch of layouts (the scoring harness); returns (..., n) [B].
    """
    pressure = misses[..., :, None] * own / np.maximum(own.sum(axis=-1, keepdims=True), 1) + 1e-9 * own
    share = pressure / np.maximum(pressure.sum(axis=-2, keepdims=True), 1e-300)
    cap = (share * way_bytes).sum(axis=-1)
    # Water-filling: a VM once capped stays capped (no flip-flop on rounding), and only the
    # uncapped ones receive what the capped leave; each round caps at least one more VM.
    capped = np.zeros(cap.shape, dtype=bool)
    for _ in range(own.shape[-2] + 1):
        if not (cap > ws * (1 + 1e-12)).any():
            break
        capped |= cap > ws * (1 - 1e-12)
        scale = np.where(capped, ws / np.maximum(cap, 1e-300), 1.0)
        held = share * scale[..., None] * way_bytes
        free = way_bytes - held.sum(axis=-2, keepdims=True)
        room = pressure * (~capped)[..., None]
        room_share = room / np.maximum(room.sum(axis=-2, keepdims=True), 1e-300)
        share = (held + room_share * free) / way_bytes
        cap = (share * way_bytes).sum(axis=-1)
    return np.minimum(cap, np.maximum(ws, 0.0))
