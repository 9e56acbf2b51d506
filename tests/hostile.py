"""Hostile captures for the bad-input tests: names that are not UTF-8, garbage, odd shapes.

Built from the sample capture of tests/fake_xl/captures.py, byte for byte as xl would print
them (column widths are bytes: ``%-40s`` and ``%25s`` pad by bytes, not characters).
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.fake_xl.captures import write_sample_capture

LATIN1 = b"caf\xe9-prima"          # one Latin-1 byte: not UTF-8
LATIN1_STORED = "caf\\xe9-prima"   # how rdtadvisor keeps it (rdtadvisor.core.text)
# Files whose name column is right-aligned (%25s); the others are left-aligned (%-40s).
_RIGHT_ALIGNED = ("xl-psr-cat-show", "xl-psr-mba-show")


def rename_vm(capture: Path, old: bytes, new: bytes) -> None:
    """Rename a domain in every file of `capture` as xl would print the new name (byte widths kept)."""
    for path in capture.glob("*.txt"):
        right = path.name.startswith(_RIGHT_ALIGNED)
        lines = []
        for line in path.read_bytes().split(b"\n"):
            at = line.find(old)
            if at >= 0:
                pad = b" " * (len(old) - len(new))
                line = line[:at] + (pad + new if right else new + pad) + line[at + len(old):]
            lines.append(line)
        path.write_bytes(b"\n".join(lines))


def latin1_capture(root: Path, host: str) -> Path:
    """The sample capture with guest-web01 renamed to ``caf\\xe9-prima`` (Latin-1)."""
    capture = write_sample_capture(root, host)
    rename_vm(capture, b"guest-web01", LATIN1)
    return capture


def garbage(seed: int = 15, size: int = 4096) -> bytes:
    """Binary garbage: the same bytes on every run."""
    return random.Random(seed).randbytes(size)
