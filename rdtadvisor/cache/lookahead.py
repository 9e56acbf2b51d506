"""UCP lookahead (Qureshi & Patt, MICRO 2006): ways per partition by best marginal utility.

Every partition starts at `min_alloc` ways; while ways remain, the partition whose best
``max_k (m(a) - m(a + k)) / k`` is largest gets its k ways (ties: the lower index, then the
smaller k), as zsim's ``lookahead.cpp`` does. The advisor and the simulator's baseline share it.
"""

from __future__ import annotations

import numpy as np


def lookahead(curves: np.ndarray, ways: int, min_alloc: int = 1) -> list[int]:
    """UCP lookahead: ways per partition for miss curves ``curves`` (m, >= ways + 1).

    ``curves[p, a]`` = misses of partition p with a ways. Every way is handed out.
    """
    m = len(curves)
    alloc = [min_alloc] * m
    balance = ways - m * min_alloc
    if balance < 0:
        raise ValueError(f"{m} partitions of >= {min_alloc} ways do not fit {ways} ways")
    c = np.asarray(curves, dtype=float)
    while balance > 0:
        best_mu, best_p, best_k = -np.inf, 0, 1
        for p in range(m):
            a = alloc[p]
            ks = np.arange(1, balance + 1)
            mu = (c[p, a] - c[p, a + ks]) / ks
            k = int(np.argmax(mu))          # first maximum: the smallest k
            if mu[k] > best_mu:
                best_mu, best_p, best_k = float(mu[k]), p, k + 1
        alloc[best_p] += best_k
        balance -= best_k
    return alloc
