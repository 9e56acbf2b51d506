"""Regenerate the hand-checked sample captures in ``samples/captures`` and ``samples/failures``.

    python samples/make_samples.py

Each host is written through the parsers' own printf-exact renderers, then the result
was read line by line against the formats in ``docs/xl-formats.md`` (see samples/README.md).
Deterministic: the figures come from the tables below plus a seeded jitter.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from rdtadvisor.core.units import KIB, MIB
from rdtadvisor.sources.capture import Capture, CommandResult, write_capture
from rdtadvisor.xl import cat, cmt, domains, hostinfo, hwinfo, mba
from rdtadvisor.xl.commands import capture_name

HERE = Path(__file__).parent
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LIBXL = "libxl: error: libxl_psr.c:{line}:{fn}: {msg}\n"


@dataclass
class Vm:
    domid: int
    name: str
    mem_mib: int
    vcpus: int
    occ_kib: tuple[int, ...]       # per socket
    bw_kib_s: tuple[int, ...]      # total, per socket
    local_share: float = 0.9
    cbm: int | None = None         # L3 mask (None: default)
    code_cbm: int | None = None
    data_cbm: int | None = None
    l2_cbm: int | None = None
    thrtl: int = 0
    state: str = "-b----"


@dataclass
class Host:
    name: str
    xen: str                        # "4.19.1"
    sockets: tuple[int, ...]
    cores_per_socket: int
    l3_kib: int
    cbm_len: int
    cos_max: int
    rmids: int
    vms: list[Vm]
    cdp: bool = False
    mba_linear: bool | None = None  # None: no MBA
    l2_cbm_len: int | None = None
    cmt: bool = True
    monitor_types: tuple[str, ...] = ("cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth")
    commandline: str = "psr=cmt,cat"
    quirks: dict[int, dict[str, str]] = field(default_factory=dict)  # capture index -> {file: stderr}

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.xen.split(".")[:2]
        return int(major), int(minor)


def host_info(h: Host) -> str:
    total = 192 * 1024 * len(h.sockets)
    used = sum(v.mem_mib for v in h.vms)
    major, minor, extra = h.xen.split(".")
    fields = {
        "host": h.name, "release": "6.1.0-28-amd64", "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1",
        "machine": "x86_64", "nr_cpus": str(2 * h.cores_per_socket * len(h.sockets)),
        "max_cpu_id": str(2 * h.cores_per_socket * len(h.sockets) - 1), "nr_nodes": str(len(h.sockets)),
        "cores_per_socket": str(h.cores_per_socket), "threads_per_core": "2", "cpu_mhz": "2394.454",
        "virt_caps": "pv hvm hvm_directio pv_directio hap shadow", "total_memory": str(total),
        "free_memory": str(total - used), "sharing_freed_memory": "0", "sharing_used_memory": "0",
        "outstanding_claims": "0", "free_cpus": "0", "xen_major": major, "xen_minor": minor,
        "xen_extra": f".{extra}", "xen_version": h.xen,
        "xen_caps": "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_64", "xen_scheduler": "credit2",
        "xen_pagesize": "4096", "platform_params": "virt_start=0xffff800000000000",
        "xen_changeset": "", "xen_commandline": f"placeholder dom0_mem=4096M,max:4096M {h.commandline}",
        "cc_compiler": "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0", "cc_compile_by": "pkg-xen-devel",
        "cc_compile_domain": "lists.alioth.debian.org", "cc_compile_date": "Tue Oct 14 10:00:00 UTC 2025",
        "build_id": "0f3c6a3c1bde2c8c9a0f0e4c0d7e4c9f3a1b2c3d", "xend_config_format": "4",
    }
    info = hostinfo.HostInfo(
        host=h.name, release=fields["release"], nr_cpus=int(fields["nr_cpus"]), nr_nodes=len(h.sockets),
        cores_per_socket=h.cores_per_socket, threads_per_core=2, sockets=len(h.sockets),
        total_memory_bytes=total * MIB, free_memory_bytes=(total - used) * MIB, xen_version=h.xen,
        fields=fields)
    return hostinfo.render(info)


def xl_list(h: Host, rng: random.Random, t: int) -> str:
    doms = [domains.Domain(v.domid, v.name, v.mem_mib * MIB, v.vcpus, v.state,
                           round(1000.0 * v.vcpus * (t + 1) + rng.random() * 10, 1)) for v in h.vms]
    return domains.render(domains.DomainList(tuple(doms)))


def hw(h: Host) -> str:
    info = hwinfo.HwInfo(
        cmt=hwinfo.CmtInfo(h.cmt, h.rmids if h.cmt else None, h.monitor_types if h.cmt else ()),
        l3_cat=tuple(hwinfo.CatInfo(s, h.l3_kib * KIB, h.cdp if h.version >= (4, 7) else None,
                                    (h.cos_max - 1) >> 1 if h.cdp else h.cos_max, h.cbm_len,
                                    (1 << h.cbm_len) - 1) for s in h.sockets) if h.cmt else (),
        l2_cat=tuple(hwinfo.CatInfo(s, None, None, 7, h.l2_cbm_len, (1 << h.l2_cbm_len) - 1)
                     for s in h.sockets) if h.l2_cbm_len else (),
        mba=tuple(hwinfo.MbaInfo(s, h.mba_linear, 7, 90 if h.mba_linear else 64) for s in h.sockets)
        if h.mba_linear is not None else (),
    )
    return hwinfo.render(info, xen_version=h.version)


def jitter(rng: random.Random, value: int, spread: float = 0.08) -> int:
    return max(0, int(value * (1 + rng.uniform(-spread, spread))))


def cmt_table(h: Host, metric: str, rng: random.Random, missing: int | None = None) -> str:
    k = len(h.sockets)
    names, ids, rows, complete = [], [], [], []
    for v in h.vms:
        if metric == "cache-occupancy":
            vals = [jitter(rng, x) for x in v.occ_kib]
        else:
            share = 1.0 if metric == "total-mem-bandwidth" else v.local_share
            vals = [jitter(rng, int(x * share), 0.25) for x in v.bw_kib_s]
        names.append(v.name)
        ids.append(v.domid)
        rows.append([x * KIB for x in vals])
        complete.append(v.domid != missing)
    table = cmt.CmtTable(metric, h.rmids, h.sockets,
                         dict.fromkeys(h.sockets, h.l3_kib * KIB) if metric == "cache-occupancy" else {},
                         np.array(ids, dtype=np.int64), names, np.array(rows, dtype=np.int64).reshape(-1, k),
                         np.array(complete, dtype=bool))
    return cmt.render(table)


def cat_table(h: Host, level: int) -> str:
    full = (1 << (h.cbm_len if level == 3 else h.l2_cbm_len)) - 1
    socks = []
    for s in h.sockets:
        doms = []
        for v in h.vms:
            if level == 2:
                doms.append(cat.CatDomain(v.domid, v.name, v.l2_cbm or full, None, None))
            elif h.cdp:
                doms.append(cat.CatDomain(v.domid, v.name, None, v.code_cbm or full, v.data_cbm or full))
            elif h.version < (4, 7) and v.cbm == -1:
                doms.append(cat.CatDomain(v.domid, v.name, None, None, None))   # 4.6: read failed, no cell
            else:
                cbm = None if v.cbm == -1 else (v.cbm or full)   # -1: xl printed `error`
                doms.append(cat.CatDomain(v.domid, v.name, cbm, None, None))
        socks.append(cat.CatSocket(s, h.l3_kib * KIB if level == 3 else None, full, h.cdp and level == 3,
                                   tuple(doms)))
    return cat.render(cat.CatTable(level, tuple(socks)), xen_version=h.version)


def mba_table(h: Host) -> str:
    socks = tuple(mba.MbaSocket(s, 0, tuple(mba.MbaDomain(v.domid, v.name, v.thrtl) for v in h.vms))
                  for s in h.sockets)
    return mba.render(mba.MbaTable(socks, h.mba_linear), linear=bool(h.mba_linear))


def capture(h: Host, index: int, when: datetime, readings: int = 3) -> Capture:
    rng = random.Random(f"{h.name}-{index}")
    c = Capture(host=h.name, time=when, source="samples/make_samples.py")
    quirks = h.quirks.get(index, {})

    def put(argv: tuple[str, ...], stdout: str, reading: int = 0, status: int = 0, stderr: str = "") -> None:
        name = capture_name(argv, reading)
        stderr = quirks.get(name, stderr)
        started = when + timedelta(seconds=len(c.results))
        c.results[name] = CommandResult(argv, stdout, stderr, status, started, 0.02)

    put(("xl", "info"), host_info(h))
    put(("xl", "list"), xl_list(h, rng, index))
    if h.version < (4, 6):
        put(("xl", "psr-cmt-show", "cache_occupancy"), cmt_table(h, "cache-occupancy", rng))
        return c
    # psr-hwinfo's status is its last section's: MBA (4.11+) or L2 (4.10) failing gives 253,
    # and since 4.10 an absent feature prints nothing at all, not even on stderr.
    no_last = (h.version >= (4, 11) and h.mba_linear is None) or (h.version == (4, 10) and not h.l2_cbm_len)
    put(("xl", "psr-hwinfo"), hw(h), status=253 if no_last else 0)
    if h.cmt:
        missing = int(quirks["missing-cell"]) if "missing-cell" in quirks else None
        put(("xl", "psr-cmt-show", "cache-occupancy"), cmt_table(h, "cache-occupancy", rng, missing))
        for r in range(readings):
            for metric in ("total-mem-bandwidth", "local-mem-bandwidth"):
                put(("xl", "psr-cmt-show", metric), cmt_table(h, metric, rng), r)
        put(("xl", "psr-cat-show"), cat_table(h, 3))
    if h.l2_cbm_len:
        put(("xl", "psr-cat-show", "-l", "2"), cat_table(h, 2))
    if h.mba_linear is not None:
        put(("xl", "psr-mba-show"), mba_table(h))
    return c


GiB_S = 1024 * 1024  # KiB/s per GiB/s

HOSTS = [
    # Current Xen on a 2-socket Skylake-SP (Xeon Gold 6148: 27.5 MiB L3, 11-way CBM, MBA linear).
    Host("xen-sky01", "4.19.1", (0, 1), 20, 28160, 11, 15, 175, commandline="psr=cmt,cat,mba",
         mba_linear=True, vms=[
             Vm(0, "Domain-0", 4096, 8, (1536, 512), (200_000, 40_000), state="r-----"),
             Vm(3, "web-frontend-01", 8192, 4, (2048, 256), (300_000, 20_000)),
             Vm(5, "db-primary", 65536, 16, (14336, 1024), (1_200_000, 60_000), cbm=0x7f0),
             Vm(7, "stream-batch-07", 32768, 8, (9216, 4096), (6 * GiB_S, 2 * GiB_S), local_share=0.6,
                cbm=0x3, thrtl=20),
             Vm(9, "customer-analytics-reporting-warehouse-replica-02", 49152, 12, (3072, 8192),
                (500_000, 900_000)),
             Vm(11, "build agent 3", 4096, 2, (64, 0), (2_000, 0), state="-b----"),
         ],
         quirks={1: {"missing-cell": "11",
                     "xl-psr-cmt-show-cache-occupancy.txt": LIBXL.format(
                         line=363, fn="libxl_psr_cmt_get_sample",
                         msg="Domain 11:failed to get monitoring data: No data available")},
                 2: {"xl-psr-cmt-show-total-mem-bandwidth.1.txt": "event counter overflowed\n"}}),
    # Broadwell-EP with CDP (code/data masks), Xen 4.14: no MBA, so psr-hwinfo exits 253.
    Host("xen-bdw-cdp", "4.14.6", (0, 1), 22, 56320, 20, 15, 143, cdp=True, commandline="psr=cmt,cdp",
         vms=[
             Vm(0, "Domain-0", 4096, 8, (2048, 1024), (150_000, 30_000), state="r-----"),
             Vm(1, "jvm-app-01", 16384, 8, (8192, 2048), (800_000, 100_000), code_cbm=0xf, data_cbm=0xffff0),
             Vm(2, "jvm-app-02", 16384, 8, (2048, 7168), (90_000, 700_000), code_cbm=0xf, data_cbm=0xffff0),
             Vm(4, "(null)", 2048, 1, (128, 0), (1_000, 0)),
         ]),
    # Xen 4.6 on a 1-socket Haswell-EP: no CDP Status line, no L2/MBA, a CBM read that printed nothing.
    Host("xen-old46", "4.6.6", (0,), 10, 25600, 20, 15, 71, vms=[
        Vm(0, "Domain-0", 2048, 4, (1024,), (120_000,), state="r-----"),
        Vm(1, "legacy-erp", 8192, 4, (12288,), (400_000,), cbm=0xff),
        Vm(2, "legacy-mail", 4096, 2, (4096,), (150_000,), cbm=-1),
    ]),
    # Xen 4.5: only cache_occupancy, no psr-hwinfo.
    Host("xen-legacy45", "4.5.5", (0, 1), 8, 20480, 20, 15, 63, vms=[
        Vm(0, "Domain-0", 2048, 4, (768, 256), (0, 0), state="r-----"),
        Vm(1, "old-guest", 4096, 2, (6144, 1024), (0, 0)),
    ]),
    # Xen 4.10 on an Atom (Denverton) box: L2 CAT only, CMT disabled (as in Xen commit 451a0c39ba's example).
    Host("xen-atom-l2", "4.10.4", (0,), 16, 16384, 16, 15, 0, cmt=False, l2_cbm_len=8,
         commandline="psr=cat", vms=[
             Vm(0, "Domain-0", 1024, 2, (0,), (0,), state="r-----"),
             Vm(1, "edge-router", 2048, 4, (0,), (0,), l2_cbm=0x0f),
             Vm(2, "edge-ids", 2048, 4, (0,), (0,), l2_cbm=0xf0),
         ]),
]


def failures(root: Path) -> None:
    """Captures that must fail cleanly: garbage, truncation, a broken meta.json, missing CMT."""
    base = HOSTS[0]
    when = START
    c = capture(base, 0, when)
    c.host = "xen-garbage"
    c.results["xl-psr-cmt-show-cache-occupancy.txt"].stdout = "<html><body>502 Bad Gateway</body></html>\n"
    write_capture(root, c)
    c = capture(base, 0, when)
    c.host = "xen-truncated"
    text = c.results["xl-psr-cmt-show-total-mem-bandwidth.txt"].stdout
    c.results["xl-psr-cmt-show-total-mem-bandwidth.txt"].stdout = text[: len(text) - 30]  # ssh cut mid-row
    write_capture(root, c)
    c = capture(base, 0, when)
    c.host = "xen-badmeta"
    path = write_capture(root, c)
    (path / "meta.json").write_text('{"host": "xen-badmeta", "commands": ')
    # Booted with psr=cat only: the L3 size needs CMT, so psr-cat-show stops after "Socket ID".
    nocmt = Host("xen-nocmt", "4.17.3", (0,), 12, 30720, 12, 15, 0, cmt=False, commandline="psr=cat",
                 vms=[Vm(0, "Domain-0", 2048, 2, (0,), (0,), state="r-----")])
    c = capture(nocmt, 0, when)
    c.results["xl-psr-hwinfo.txt"].stderr = (
        "Failed to get l3 cache size for socket:0\n"
        + LIBXL.format(line=94, fn="libxl_psr_cmt_get_l3_cache_size",
                       msg="CMT is not supported in this system: No such device"))
    c.results["xl-psr-cat-show.txt"] = CommandResult(
        ("xl", "psr-cat-show"), "Socket ID       : 0\n", "Failed to get l3 cache size for socket:0\n", 253,
        when, 0.01)
    write_capture(root, c)


def main() -> None:
    for sub in ("captures", "failures"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    for h in HOSTS:
        count = 1 if h.version < (4, 6) or not h.cmt else 3
        for i in range(count):
            write_capture(HERE / "captures", capture(h, i, START + timedelta(minutes=5 * i)))
    failures(HERE / "failures")
    print(f"wrote {HERE / 'captures'} and {HERE / 'failures'}")


if __name__ == "__main__":
    main()
