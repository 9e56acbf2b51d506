"""The miss-curve shape every part of rdtadvisor speaks: a power law down to a floor at the
working-set knee (``docs/algorithms.md``), and the size of a cache line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LINE_BYTES = 64
MIB = 1024**2


@dataclass(frozen=True)
class Curve:
    """Miss ratio over held capacity [B]: power law down to a floor at the working-set knee.

    ``mr(c) = min(1, (c / c0) ** -alpha)`` for ``c < ws``; ``floor`` for ``c >= ws``.
    ``floor`` is the compulsory/coherence share that no capacity removes. Non-increasing
    in ``c`` by construction (the knee may be a cliff: misses drop only once it all fits).
    """

    alpha: float
    ws_bytes: float
    floor: float = 0.02
    c0_bytes: float = 0.25 * MIB

    def miss_ratio(self, capacity: np.ndarray | float) -> np.ndarray:
        c = np.maximum(np.asarray(capacity, dtype=float), 1.0)
        power = np.minimum(1.0, (c / self.c0_bytes) ** -self.alpha)
        # A relative tolerance at the knee: a capacity capped at ws by arithmetic must count as ws.
        return np.where(c >= self.ws_bytes * (1 - 1e-9), self.floor, np.maximum(power, self.floor))
