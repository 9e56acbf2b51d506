"""A small capture folder for the fake xl to replay, when ``samples/`` has none.

`write_sample_capture(root, host)` writes ``root/<host>/<time>/`` in the capture layout:
a Xen 4.17 host with two sockets, CMT + L3 CAT + MBA and no L2 CAT, three bandwidth
readings: exactly the files ``rdtadvisor.sources.collect.collect_host(readings=3)`` asks for.
The texts follow xl's printf formats byte for byte (``docs/xl-formats.md``;
``xl info`` and ``xl list`` use xl's printf widths). With ``l2_failure=True`` it also
records ``xl psr-cat-show -l 2`` as failed the way xl fails on such a host (stdout
empty, ``Failed to get info`` on stderr, exit 255: xl's own ``return -1``), to check
that an xl exit 255 is not mistaken for an ssh failure.

`find_sample_captures()` lists the repository's ``samples/`` captures, richest first.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAMP = "20261126T104700Z"


def _info(host: str) -> str:
    rows = [
        ("host", host), ("release", "6.1.0-18-amd64"),
        ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"), ("machine", "x86_64"),
        ("nr_cpus", "40"), ("max_cpu_id", "39"), ("nr_nodes", "2"), ("cores_per_socket", "10"),
        ("threads_per_core", "2"), ("cpu_mhz", "2199.998"),
        ("virt_caps", "pv hvm hvm_directio pv_directio hap shadow"),
        ("total_memory", "262034"), ("free_memory", "196214"), ("sharing_freed_memory", "0"),
        ("sharing_used_memory", "0"), ("outstanding_claims", "0"), ("free_cpus", "0"),
        ("xen_major", "4"), ("xen_minor", "17"), ("xen_extra", ".3"), ("xen_version", "4.17.3"),
        ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
        ("xen_scheduler", "credit2"), ("xen_pagesize", "4096"),
        ("platform_params", "virt_start=0xffff800000000000"), ("xen_changeset", ""),
        ("xen_commandline", "placeholder dom0_mem=4096M,max:4096M psr=cmt,cat,mba"),
        ("cc_compiler", "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"),
        ("xend_config_format", "4"),
    ]
    return "".join(f"{k:<23}: {v}\n" for k, v in rows)


def _list() -> str:
    rows = [("Domain-0", 0, 4096, 4, "r-----", 1234.5), ("guest-web01", 3, 8192, 4, "-b----", 567.8),
            ("guest-db02", 7, 16384, 8, "-b----", 8901.2)]
    out = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
    for name, domid, mem, vcpus, state, cpu in rows:
        out += f"{name:<40} {domid:5d} {mem:5d} {vcpus:5d}     {state}  {cpu:8.1f}\n"
    return out


# Xen 4.11+, 2 sockets, CMT on, CDP off, MBA linear (RECONSTRUCTED); test_xl_hwinfo parses it too
HWINFO = """\
Cache Monitoring Technology (CMT):
Enabled         : 1
Total RMID      : 175
Supported monitor types:
cache-occupancy
total-mem-bandwidth
local-mem-bandwidth
Cache Allocation Technology (CAT):
Socket ID       : 0
L3 Cache        : 25600KB
CDP Status      : Disabled
Maximum COS     : 15
CBM length      : 20
Default CBM     : 0xfffff
Socket ID       : 1
L3 Cache        : 25600KB
CDP Status      : Disabled
Maximum COS     : 15
CBM length      : 20
Default CBM     : 0xfffff
Memory Bandwidth Allocation (MBA):
Socket ID               : 0
Linear Mode             : Enabled
Maximum COS             : 7
Maximum Throttling Value: 90
Default Throttling Value: 0
Socket ID               : 1
Linear Mode             : Enabled
Maximum COS             : 7
Maximum Throttling Value: 90
Default Throttling Value: 0
"""

HEADER = "Name                                        ID        Socket 0        Socket 1\n"


def _cmt_row(name: str, domid: int, s0: str, s1: str) -> str:
    # printf("%-40s %5d", ...) then "%13u KB" (occupancy) or "%11u KB/s" (bandwidth) per socket
    return f"{name:<40} {domid:5d}{s0:>16}{s1:>16}\n"


OCCUPANCY = ("Total RMID: 175\n" + HEADER
             + "Total L3 Cache Size                                   25600 KB        25600 KB\n"
             + _cmt_row("Domain-0", 0, "1792 KB", "224 KB") + _cmt_row("guest-web01", 3, "9984 KB", "0 KB"))


def _bandwidth(values: list[tuple[int, int]]) -> str:
    rows = [("Domain-0", 0), ("guest-web01", 3)]
    cells = zip(rows, values, strict=True)
    return "Total RMID: 175\n" + HEADER + "".join(
        _cmt_row(name, domid, f"{a} KB/s", f"{b} KB/s") for (name, domid), (a, b) in cells)


CAT_SHOW = """\
Socket ID       : 0
L3 Cache        : 25600KB
Default CBM     : 0xfffff
   ID                     NAME             CBM
    0                 Domain-0         0xfffff
    3              guest-web01            0xff
    7               guest-db02         0xfffff
Socket ID       : 1
L3 Cache        : 25600KB
Default CBM     : 0xfffff
   ID                     NAME             CBM
    0                 Domain-0         0xfffff
    3              guest-web01            0xff
    7               guest-db02         0xfffff
"""

MBA_SHOW = """\
Socket ID       : 0
Default THRTL   : 0
   ID                     NAME           THRTL
    0                 Domain-0               0
    3              guest-web01              10
    7               guest-db02               0
Socket ID       : 1
Default THRTL   : 0
   ID                     NAME           THRTL
    0                 Domain-0               0
    3              guest-web01              10
    7               guest-db02               0
"""


def sample_files(host: str) -> dict[str, str]:
    """File name -> stdout for one capture."""
    files = {
        "xl-info.txt": _info(host),
        "xl-list.txt": _list(),
        "xl-psr-hwinfo.txt": HWINFO,
        "xl-psr-cmt-show-cache-occupancy.txt": OCCUPANCY,
        "xl-psr-cat-show.txt": CAT_SHOW,
        "xl-psr-mba-show.txt": MBA_SHOW,
    }
    for reading in range(3):
        suffix = f".{reading}" if reading else ""
        files[f"xl-psr-cmt-show-total-mem-bandwidth{suffix}.txt"] = _bandwidth(
            [(183250 + 1000 * reading, 1024), (2457600 - 5000 * reading, 0)])
        files[f"xl-psr-cmt-show-local-mem-bandwidth{suffix}.txt"] = _bandwidth(
            [(180000 + 1000 * reading, 512), (2400000 - 5000 * reading, 0)])
    return files


def write_sample_capture(root: Path, host: str, stamp: str = STAMP, *, l2_failure: bool = False) -> Path:
    """Write the sample capture to ``root/<host>/<stamp>/`` and return the folder."""
    folder = Path(root) / host / stamp
    folder.mkdir(parents=True)
    files = sample_files(host)
    commands = {}
    if l2_failure:
        files["xl-psr-cat-show-l2.txt"] = ""
        commands["xl-psr-cat-show-l2.txt"] = {
            "argv": ["xl", "psr-cat-show", "-l", "2"], "exit_status": 255, "stderr": "Failed to get info\n",
            "started": None, "seconds": 0.01, "error": None}
    for name, text in files.items():
        (folder / name).write_bytes(text.encode())
    meta = {"host": host, "time": stamp, "source": "tests/fake_xl/captures.py", "commands": commands}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return folder


def find_sample_captures(samples: Path = REPO / "samples") -> list[Path]:
    """The newest capture of every sample host that has ``xl-info.txt``, richest first.

    Looks in ``samples/captures/<host>/<time>/``, else ``samples/<host>/<time>/``;
    "richest" is the most ``.txt`` files (ties: by host name).
    """
    for base in (samples / "captures", samples):
        if not base.is_dir():
            continue
        found = []
        for host_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            times = sorted(p for p in host_dir.iterdir() if p.is_dir() and (p / "xl-info.txt").exists())
            if times:
                found.append(times[-1])
        if found:
            return sorted(found, key=lambda p: (-len(list(p.glob("*.txt"))), p.parent.name))
    return []
