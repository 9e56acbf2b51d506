"""Hardware presets: the RDT-relevant facts of real server parts, each with its source.

A preset is what ``xl psr-hwinfo`` would say about a socket (CBM length, ``Maximum COS``,
``Total RMID``, CDP/MBA/L2 CAT) plus what the truth model needs (L3 size, sustained memory
bandwidth, clock). Figures are per socket. Tags in `Preset.sources`:

* ``[ark]``: Intel ARK product page (cores, threads, base clock, L3, memory channels/speed).
* ``[src]``: read in a primary source (Xen/Linux code, a real ``xl`` output, a vendor bug).
* ``[derived]``: computed here from other figures (formula given).
* ``[estimate]``: not found in a primary source; plausible, verify with ``xl psr-hwinfo``.

Rules used for every part (see ``docs/simulator.md``):

* **Sustained bandwidth** = 75% of channels x MT/s x 8 B (STREAM Triad reaches 70-85% of
  the theoretical peak; ``docs/algorithms.md``, "Memory bandwidth capacity").
* **Total RMID** = ``min(255, hardware max RMID)``: Xen's ``opt_rmid_max`` defaults to 255
  (``docs/xl-formats.md``, psr-hwinfo). On Broadwell-EP/Skylake-SP/Cascade Lake-SP the hardware has 8 RMIDs
  per L3 slice (one slice per core), the indexing Linux's ``mbm_cf_table`` relies on.
* **MBM erratum** (SKX99 / BDF102): Linux ``arch/x86/kernel/cpu/resctrl/monitor.c`` multiplies
  MBM counts of RMIDs above a threshold by a factor from ``mbm_cf_table`` indexed by
  ``num_rmids / 8 - 1`` (models BROADWELL_X and SKYLAKE_X, which includes Cascade Lake);
  Xen applies no correction, so Xen's figures for those RMIDs are off by ``1 / cf``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim import model

KIB = 1024
MIB = 1024**2
STREAM_EFFICIENCY = 0.75  # sustained / theoretical peak (STREAM Triad: 70-85%)

# Linux mbm_cf_table (arch/x86/kernel/cpu/resctrl/monitor.c): (rmid threshold, correction factor),
# indexed by (max_rmid + 1) / 8 - 1. A count of an RMID above the threshold is multiplied by cf.
MBM_CF_TABLE: tuple[tuple[int, float], ...] = (
    (7, 1.000000), (15, 1.000000), (15, 0.969650), (31, 1.000000), (31, 1.066667), (31, 0.969650),
    (47, 1.142857), (63, 1.000000), (63, 1.185115), (63, 1.066553), (79, 1.454545), (95, 1.000000),
    (95, 1.230769), (95, 1.142857), (95, 1.066667), (127, 1.000000), (127, 1.254863), (127, 1.185255),
    (151, 1.000000), (127, 1.066667), (167, 1.000000), (159, 1.454334), (183, 1.000000),
    (127, 0.969744), (191, 1.280246), (191, 1.230921), (215, 1.000000), (191, 1.143118),
)


def mbm_correction(hw_rmids: int) -> tuple[int, float] | None:
    """Linux's (threshold, factor) for a part with `hw_rmids` RMIDs (max RMID + 1), or None."""
    index = hw_rmids // 8 - 1
    if not 0 <= index < len(MBM_CF_TABLE):
        return None
    return MBM_CF_TABLE[index]


def sustained_bw(channels: int, mts: int) -> float:
    """STREAM-like sustained bandwidth of one socket [B/s]: 75% of channels x MT/s x 8 B."""
    return STREAM_EFFICIENCY * channels * mts * 1e6 * 8


@dataclass(frozen=True)
class Preset:
    """One socket's RDT facts. `rmids` and `cos_max` are what Xen prints (indices, not counts)."""

    name: str                 # "skylake-sp-gold-6148"
    cpu: str                  # human name
    l3_bytes: int             # per socket
    ways: int                 # CBM length
    cos_max: int              # Xen "Maximum COS" without CDP
    rmids: int                # Xen "Total RMID" (highest RMID index)
    bw_bytes_s: float         # sustained per-socket memory bandwidth (STREAM-like) [B/s]
    cores_per_socket: int
    threads_per_core: int
    freq_hz: float
    cdp: bool                 # CDP capable
    mba_linear: bool | None   # None: no MBA; True/False: MBA linear mode
    mba_thrtl_max: int | None
    mba_cos_max: int | None
    l2_ways: int | None       # L2 CAT CBM length, None if no L2 CAT
    upscale_bytes: int        # CMT upscaling factor (occupancy quantum) [B]
    mbm_erratum: bool         # SKX99/BDF102 MBM erratum (Linux mbm_cf_table; Xen applies no correction)
    sources: str              # where each number comes from
    # --- additions beyond the agreed API ---
    cmt: bool = True          # CMT present (False: `xl psr-hwinfo` prints "Enabled : 0")
    mbm: bool = True          # MBM (total/local bandwidth) present: Broadwell-EP and later, not Haswell-EP
    l3_cat: bool = True       # L3 CAT present (False: L2-only parts; l3_bytes/ways then model the L2 pool)
    l2_cos_max: int | None = None
    mbm_cf_threshold: int | None = None  # MBM erratum: RMIDs above this are mis-counted ...
    mbm_cf: float = 1.0                  # ... by 1/cf (Linux multiplies by cf; Xen does not)
    latency_ns: float = 90.0  # unloaded local DRAM latency L0 (80-100 ns)

    @property
    def cdp_cos_max(self) -> int:
        """Xen's ``Maximum COS`` with CDP on, 4.10+: ``(cos_max - 1) >> 1`` (4.7-4.9: ``cos_max >> 1``)."""
        return (self.cos_max - 1) >> 1

    @property
    def default_cbm(self) -> int:
        return (1 << self.ways) - 1

    @property
    def mba(self) -> bool:
        return self.mba_linear is not None

    @property
    def threads(self) -> int:
        return self.cores_per_socket * self.threads_per_core

    def socket(self) -> model.Socket:
        """The truth model's view of one socket of this part."""
        return model.Socket(l3_bytes=self.l3_bytes, ways=self.ways, bw_bytes_s=self.bw_bytes_s,
                            freq_hz=self.freq_hz, latency_ns=self.latency_ns)


def _skx_like(cores: int) -> dict:
    """Xen Total RMID and the Linux erratum entry of an 8-RMIDs-per-slice part with `cores` slices."""
    hw = 8 * cores
    cf = mbm_correction(hw)
    return {"rmids": min(255, hw - 1), "mbm_cf_threshold": cf[0] if cf else None,
            "mbm_cf": cf[1] if cf else 1.0}


_COMMON_SOURCES = (
    "bw: 75% of channels x MT/s x 8 B [derived, STREAM Triad 70-85%]; "
    "Total RMID capped at 255 by Xen opt_rmid_max [src xen psr.c]; ")

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        name="haswell-ep-e5-2699-v3", cpu="Intel Xeon E5-2699 v3 (Haswell-EP)",
        l3_bytes=45 * MIB, ways=20, cos_max=3, rmids=63, bw_bytes_s=sustained_bw(4, 2133),
        cores_per_socket=18, threads_per_core=2, freq_hz=2.3e9, cdp=False,
        mba_linear=None, mba_thrtl_max=None, mba_cos_max=None, l2_ways=None,
        upscale_bytes=64 * KIB, mbm_erratum=False, mbm=False,
        sources=_COMMON_SOURCES + (
            "no MBM: it arrived with E5 v4 [src Intel MBM usage-models article]; "
            "18C/36T 2.3 GHz 45 MB L3, 4ch DDR4-2133 [ark]; "
            "20-way CBM [src resctrl doc, 20-bit masks on E5 v3/v4]; "
            "4 COS (cos_max 3) [abs CoCo: E5 v3 at most 4 LLC partitions]; Total RMID 63 [src xl psr-hwinfo "
            "in Xen commit b128c388e9]; no CDP (Broadwell+); upscale 64 KiB [estimate]; "
            "bw 51 GB/s matches Puget's 102 GB/s Triad for 2 sockets [src]")),
    Preset(
        name="broadwell-ep-e5-2698-v4", cpu="Intel Xeon E5-2698 v4 (Broadwell-EP)",
        l3_bytes=50 * MIB, ways=20, cos_max=15, bw_bytes_s=sustained_bw(4, 2400),
        cores_per_socket=20, threads_per_core=2, freq_hz=2.2e9, cdp=True,
        mba_linear=None, mba_thrtl_max=None, mba_cos_max=None, l2_ways=None,
        upscale_bytes=80 * KIB, mbm_erratum=True, **_skx_like(20),
        sources=_COMMON_SOURCES + (
            "20C/40T 2.2 GHz 50 MB L3, 4ch DDR4-2400 [ark]; 20-bit CBM [src Linux resctrl doc]; "
            "16 COS [recalled]; CDP first on Broadwell-EP [src Linux/Xen CDP patches]; "
            "upscale 80 KiB [src intel/intel-cmt-cat#48]; 8 RMIDs per slice, erratum BDF102 "
            "(INTEL_FAM6_BROADWELL_X in rdt_mbm_apply_quirk) [src Linux monitor.c]")),
    Preset(
        name="skylake-sp-gold-6148", cpu="Intel Xeon Gold 6148 (Skylake-SP)",
        l3_bytes=int(27.5 * MIB), ways=11, cos_max=15, bw_bytes_s=sustained_bw(6, 2666),
        cores_per_socket=20, threads_per_core=2, freq_hz=2.4e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=7, l2_ways=None,
        upscale_bytes=56 * KIB, mbm_erratum=True, **_skx_like(20),
        sources=_COMMON_SOURCES + (
            "20C/40T 2.4 GHz 27.5 MB L3, 6ch DDR4-2666 [ark]; 11-way [src CLITE testbed Silver 4114]; "
            "16 COS [recalled]; MBA linear, thrtl_max 90 [src Xen mba_sanitize_thrtl comment]; "
            "MBA 8 COS [recalled]; upscale 56 KiB [estimate]; erratum SKX99 [src Linux monitor.c]")),
    Preset(
        name="skylake-sp-gold-6152", cpu="Intel Xeon Gold 6152 (Skylake-SP)",
        l3_bytes=int(30.25 * MIB), ways=11, cos_max=15, bw_bytes_s=sustained_bw(6, 2666),
        cores_per_socket=22, threads_per_core=2, freq_hz=2.1e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=7, l2_ways=None,
        upscale_bytes=56 * KIB, mbm_erratum=True, **_skx_like(22),
        sources=_COMMON_SOURCES + (
            "22C/44T 2.1 GHz 30.25 MB L3, 6ch DDR4-2666 [ark]; 11-way; 16 COS [recalled]; MBA as 6148; "
            "176 RMIDs -> Total RMID 175, erratum cf 1.454334 above RMID 159 (the worst case) "
            "[src Linux mbm_cf_table]; upscale 56 KiB [estimate]")),
    Preset(
        name="cascade-lake-sp-8269cy", cpu="Intel Xeon Platinum 8269CY (Cascade Lake-SP)",
        l3_bytes=int(35.75 * MIB), ways=11, cos_max=15, bw_bytes_s=sustained_bw(6, 2933),
        cores_per_socket=26, threads_per_core=2, freq_hz=2.5e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=7, l2_ways=None,
        upscale_bytes=104 * KIB, mbm_erratum=True, **_skx_like(26),
        sources=_COMMON_SOURCES + (
            "26C/52T 2.5 GHz 35.75 MB L3, 6ch DDR4-2933 [ark, cloud SKU of the 8269 family]; 11-way; "
            "16 COS [recalled]; upscale 104 KiB [src intel/intel-cmt-cat#278]; same CPUID model as SKX, "
            "so the SKX99 quirk applies [src Linux monitor.c]")),
    Preset(
        name="ice-lake-sp-8380", cpu="Intel Xeon Platinum 8380 (Ice Lake-SP)",
        l3_bytes=60 * MIB, ways=12, cos_max=15, rmids=255, bw_bytes_s=sustained_bw(8, 3200),
        cores_per_socket=40, threads_per_core=2, freq_hz=2.3e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=7, l2_ways=None,
        upscale_bytes=96 * KIB, mbm_erratum=False,
        sources=_COMMON_SOURCES + (
            "40C/80T 2.3 GHz 60 MB L3, 8ch DDR4-3200 [ark]; 12-way [recalled: verify]; 16 COS "
            "[recalled]; MBA [recalled]; hardware RMIDs > 255 so Xen shows 255; upscale 96 KiB [estimate]")),
    Preset(
        name="sapphire-rapids-8480", cpu="Intel Xeon Platinum 8480+ (Sapphire Rapids)",
        l3_bytes=105 * MIB, ways=15, cos_max=15, rmids=255, bw_bytes_s=sustained_bw(8, 4800),
        cores_per_socket=56, threads_per_core=2, freq_hz=2.0e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=15, l2_ways=16, l2_cos_max=15,
        upscale_bytes=112 * KIB, mbm_erratum=False,
        sources=_COMMON_SOURCES + (
            "56C/112T 2.0 GHz 105 MB L3, 8ch DDR5-4800 [ark]; "
            "307 GB/s peak per socket [derived: 8 x 4800 MT/s x 8 B]; "
            "15-way [recalled: verify]; 16 COS, L2 CAT 16-way (2 MB L2) [recalled]; "
            "upscale 112 KiB [estimate]")),
    Preset(
        name="denverton-c3958", cpu="Intel Atom C3958 (Denverton), L2 CAT only",
        l3_bytes=16 * MIB, ways=16, cos_max=3, rmids=0, bw_bytes_s=sustained_bw(2, 2400),
        cores_per_socket=16, threads_per_core=1, freq_hz=2.0e9, cdp=False,
        mba_linear=None, mba_thrtl_max=None, mba_cos_max=None, l2_ways=8, l2_cos_max=3,
        upscale_bytes=64 * KIB, mbm_erratum=False, cmt=False, mbm=False, l3_cat=False, latency_ns=100.0,
        sources=(
            "16C 2.0 GHz, 8 x 2 MB L2 (no L3), 2ch DDR4-2400 [ark]; L2 CAT Maximum COS 3, CBM length 8, "
            "CMT Enabled 0 [src xl psr-hwinfo in Xen commit 451a0c39ba, a Goldmont part]; "
            "no CMT/L3 CAT: l3_bytes/ways model the summed L2 for the truth model only [derived]")),
    Preset(
        name="tiny", cpu="Test part (tiny)",
        l3_bytes=2 * MIB, ways=4, cos_max=7, rmids=7, bw_bytes_s=10e9,
        cores_per_socket=4, threads_per_core=2, freq_hz=2.0e9, cdp=True,
        mba_linear=True, mba_thrtl_max=90, mba_cos_max=3, l2_ways=4, l2_cos_max=3,
        upscale_bytes=16 * KIB, mbm_erratum=True, mbm_cf_threshold=3, mbm_cf=1.25,
        sources="made up for tests: every feature, small numbers"),
]}


def get(name: str) -> Preset:
    """The preset called `name`; ConfigError listing the known names otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        known = ", ".join(sorted([*PRESETS, *ALIASES]))
        raise ConfigError(f"unknown hardware preset {name!r} (known: {known})")
    return PRESETS[key]


# Family names accepted by `get` (and in scenario files) for the representative part of each family.
ALIASES: dict[str, str] = {
    "haswell-ep": "haswell-ep-e5-2699-v3",
    "broadwell-ep": "broadwell-ep-e5-2698-v4",
    "skylake-sp": "skylake-sp-gold-6148",
    "cascade-lake-sp": "cascade-lake-sp-8269cy",
    "ice-lake-sp": "ice-lake-sp-8380",
    "sapphire-rapids": "sapphire-rapids-8480",
    "denverton": "denverton-c3958",
    "atom": "denverton-c3958",
}
