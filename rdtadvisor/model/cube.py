"""Per-host figure cubes: every collection x every VM column as dense numpy arrays.

A host's history is a grid: collections down, VMs across (a VM is a (socket, domain
name) pair: the name survives reboots and migrations, the domid does not). Each of the
four figures of `figures.per_collection` becomes one (collections x VMs) float array,
NaN where the VM had no figure. Percentiles, sums per socket, buckets and days are then
single numpy passes over contiguous memory instead of group-bys over ten million long rows:
this is what keeps a month-long report within seconds (``benchmarks/bench_report.py``).

`cubes(samples)` builds them from the long ``samples`` table in one pass per host, without
sorting it: collections are numbered by hashing their times, VM columns by hashing
(socket, domid, name), and each value is scattered into its cell. Several bandwidth
readings of one collection (the repeated 10 ms snapshots) are reduced to their median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rdtadvisor.model.stats import nanmedian_columns

FIGURE_NAMES = ("occupancy_bytes", "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s")
_METRICS = {"l3_occupancy": 0, "mem_bw_total": 1, "mem_bw_local": 2}


@dataclass
class Cube:
    """One host's figures. Arrays are (len(times), len(names)); units in `FIGURE_NAMES`."""

    host: str
    times: np.ndarray            # datetime64[ns] (UTC), sorted, collections with samples
    sockets: np.ndarray          # int, per column
    names: np.ndarray            # object (str), per column
    domids: np.ndarray           # int, per column: its domid at its latest figure
    occupancy: np.ndarray
    bw_total: np.ndarray
    bw_local: np.ndarray
    readings: np.ndarray         # int16: total-bandwidth readings behind each median

    @property
    def bw_remote(self) -> np.ndarray:
        """total - local, clipped at 0 (separate 10 ms windows can make it negative)."""
        return np.clip(self.bw_total - self.bw_local, 0, None)

    def figure(self, name: str) -> np.ndarray:
        return {"occupancy_bytes": self.occupancy, "bw_total_bytes_s": self.bw_total,
                "bw_local_bytes_s": self.bw_local, "bw_remote_bytes_s": self.bw_remote}[name]

    def present(self) -> np.ndarray:
        """True where the VM has any figure in that collection."""
        return ~(np.isnan(self.occupancy) & np.isnan(self.bw_total) & np.isnan(self.bw_local))

    def to_long(self, last: bool = False) -> pd.DataFrame:
        """The `figures.per_collection` rows of this host (cells with any figure); only the
        latest collection's with `last`."""
        present = self.present()
        if last and len(present):
            present[:-1] = False
        t_idx, c_idx = np.nonzero(present)
        remote = self.bw_remote
        return pd.DataFrame({
            "time": pd.DatetimeIndex(self.times[t_idx]).tz_localize("UTC"),
            "host": pd.array([self.host] * len(t_idx), dtype="string"),
            "socket": self.sockets[c_idx].astype("int16"), "domid": self.domids[c_idx].astype("int32"),
            "domain": pd.array(self.names[c_idx], dtype="string"),
            "occupancy_bytes": self.occupancy[t_idx, c_idx], "bw_total_bytes_s": self.bw_total[t_idx, c_idx],
            "bw_local_bytes_s": self.bw_local[t_idx, c_idx], "bw_remote_bytes_s": remote[t_idx, c_idx],
            "readings": self.readings[t_idx, c_idx].astype("int16"),
        })


def cubes(samples: pd.DataFrame) -> list[Cube]:
    """One `Cube` per host of `samples` (the store's table; any row order; string or
    categorical host/domain/metric columns), sorted by host."""
    if samples.empty:
        return []
    rows = _Rows.of(samples)
    host = pd.Categorical(samples["host"])
    hcodes = host.codes
    out = []
    if len(host.categories) == 1:
        out.append(_cube(str(host.categories[0]), rows))
    else:
        order = np.argsort(hcodes, kind="stable")
        bounds = np.searchsorted(hcodes[order], np.arange(len(host.categories) + 1))
        for i, name in enumerate(host.categories):
            idx = order[bounds[i]:bounds[i + 1]]
            if len(idx):
                out.append(_cube(str(name), rows.take(idx)))
    return sorted(out, key=lambda c: c.host)


@dataclass
class _Rows:
    """The columns of `samples` a cube is built from, as numpy arrays, decoded once for all
    hosts: times in ns (UTC), domain codes into `names`, metric codes (`_METRICS`, 3 = other)."""

    time: np.ndarray
    name: np.ndarray  # code into `names`, -1 for none
    names: np.ndarray  # object (str)
    domid: np.ndarray
    socket: np.ndarray
    metric: np.ndarray
    reading: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, s: pd.DataFrame) -> _Rows:
        times_idx = pd.DatetimeIndex(s["time"])
        t = (times_idx if times_idx.unit == "ns" else times_idx.as_unit("ns")).asi8   # UTC, no copy
        domain = s["domain"]
        if isinstance(domain.dtype, pd.CategoricalDtype):
            ncodes, cats = domain.cat.codes.to_numpy(), np.asarray(domain.cat.categories, dtype=object)
        else:
            ncodes, cats = pd.factorize(domain, use_na_sentinel=True)
            cats = np.asarray(cats, dtype=object)
        metric = s["metric"]
        if not isinstance(metric.dtype, pd.CategoricalDtype):
            metric = metric.astype("category")
        lut = np.array([_METRICS.get(str(c), 3) for c in metric.cat.categories] + [3], dtype=np.int64)
        mcode = lut[metric.cat.codes.to_numpy()]          # code -1 (NaN) -> 3 via the last entry
        return cls(t, ncodes, cats, s["domid"].to_numpy(), s["socket"].to_numpy(), mcode,
                   s["reading"].to_numpy(), s["value"].to_numpy())

    def take(self, idx: np.ndarray) -> _Rows:
        return _Rows(self.time[idx], self.name[idx], self.names, self.domid[idx], self.socket[idx],
                     self.metric[idx], self.reading[idx], self.value[idx])


def _cube(host: str, s: _Rows) -> Cube:
    # Ten million rows: every full-length temporary costs ~0.1 s here, so arrays are built
    # in place where numpy allows and the common case (one reading per metric) is one scatter.
    cell, tuniq = pd.factorize(s.time)
    rank = np.empty(len(tuniq), dtype=np.int64)
    rank[np.argsort(tuniq)] = np.arange(len(tuniq))
    cell = rank[cell]
    times = np.sort(tuniq).view("datetime64[ns]")

    cats = s.names
    # (socket, domid, name) -> one slot; slots of one (socket, name) merge into a VM column below
    key = s.name.astype(np.int64)
    key += 1                                  # -1 (no name) -> 0
    key <<= 16
    np.bitwise_or(key, s.domid & 0xFFFF, out=key)
    key <<= 12
    np.bitwise_or(key, s.socket & 0xFFF, out=key)
    slot, keys = pd.factorize(key)
    n_t, n_s = len(times), len(keys)
    n_cells = n_t * n_s
    cell *= n_s
    cell += slot
    del slot, key

    mcode = s.metric
    reading = s.reading
    value = s.value
    multi = reading != 0
    known = mcode < 3
    flat = mcode * n_cells
    flat += cell
    grids = np.full(4 * n_cells, np.nan)      # [occupancy, total, local, unknown metrics]
    first = known & ~multi
    grids[flat[first]] = value[first]
    counts = np.zeros(n_cells, dtype=np.int16)
    counts[cell[first & (mcode == 1)]] = 1
    arrays = [grids[k * n_cells:(k + 1) * n_cells] for k in range(3)]
    if multi.any():
        # several snapshots in one collection: the median of each cell's readings
        for k in np.unique(mcode[multi & known]):
            sel = known & (mcode == k)
            depth = int(reading[sel].max()) + 1
            buf = np.full((depth, n_cells), np.nan)
            buf[reading[sel], cell[sel]] = value[sel]
            n = (~np.isnan(buf)).sum(axis=0)
            some = n > 0
            arrays[k] = np.full(n_cells, np.nan)
            arrays[k][some] = nanmedian_columns(buf[:, some])   # numpy's nanmedian, one sort
            if k == 1:
                counts = n.astype(np.int16)
    arrays = [a.reshape(n_t, n_s) for a in arrays]
    counts = counts.reshape(n_t, n_s)

    k_sock = (keys & 0xFFF).astype(np.int64)
    k_domid = ((keys >> 12) & 0xFFFF).astype(np.int64)
    k_name = (keys >> 28) - 1
    names = np.where(k_name >= 0, cats[np.maximum(k_name, 0)] if len(cats) else "", "(null)")
    # merge slots of one VM (a reboot gave it a new domid): they never hold figures at once
    vm_key, vm_first = pd.factorize(pd.Series(list(zip(k_sock, names, strict=True))), sort=False)
    n_vm = len(vm_first)
    present = ~(np.isnan(arrays[0]) & np.isnan(arrays[1]) & np.isnan(arrays[2]))
    last_seen = np.where(present.any(axis=0), n_t - 1 - np.argmax(present[::-1], axis=0), -1)
    if n_vm == n_s:
        order = np.argsort(vm_key)
        merged = [a[:, order] for a in arrays]
        readings = counts[:, order]
        domids = k_domid[order]
        vm_sock, vm_names = k_sock[order], names[order]
    else:
        merged = [np.full((n_t, n_vm), np.nan) for _ in arrays]
        readings = np.zeros((n_t, n_vm), dtype=np.int16)
        domids = np.zeros(n_vm, dtype=np.int64)
        best = np.full(n_vm, -2)
        vm_sock = np.zeros(n_vm, dtype=np.int64)
        vm_names = np.empty(n_vm, dtype=object)
        for j in range(n_s):
            v = vm_key[j]
            for a, m in zip(arrays, merged, strict=True):
                col = a[:, j]
                m[:, v] = np.where(np.isnan(m[:, v]), col, m[:, v])
            readings[:, v] = np.maximum(readings[:, v], counts[:, j])
            vm_sock[v], vm_names[v] = k_sock[j], names[j]
            if last_seen[j] > best[v]:
                best[v], domids[v] = last_seen[j], k_domid[j]
    # columns in a stable order: socket, then name
    order = np.lexsort((vm_names.astype(str), vm_sock))
    return Cube(host=host, times=times, sockets=vm_sock[order], names=vm_names[order], domids=domids[order],
                occupancy=merged[0][:, order], bw_total=merged[1][:, order], bw_local=merged[2][:, order],
                readings=readings[:, order])
