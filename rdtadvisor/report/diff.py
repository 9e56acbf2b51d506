"""What changed between two reports (``rdtadvisor report --diff PREVIOUS.json``).

A finding is identified by ``kind/host/socket/vms`` (stable across runs); a finding present
in both with another severity is "changed". VMs are identified by ``host/name``.
"""

from __future__ import annotations

from typing import Any


def finding_key(f: dict[str, Any]) -> str:
    """The stable identity of a finding."""
    socket = "-" if f.get("socket") is None else str(f["socket"])
    return f"{f['kind']}/{f['host']}/{socket}/{','.join(f.get('vms') or [])}"


def diff_reports(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The ``diff`` section: new, resolved and changed findings, VMs added and removed."""
    before = {finding_key(f): f for f in previous.get("findings", [])}
    after = {finding_key(f): f for f in current.get("findings", [])}
    changed = [
        {"key": k, "from": before[k]["severity"], "to": after[k]["severity"]}
        for k in sorted(before.keys() & after.keys())
        if before[k]["severity"] != after[k]["severity"]
    ]
    vms_before, vms_after = _vms(previous), _vms(current)
    return {
        "previous": previous.get("generated"),
        "new": sorted(after.keys() - before.keys()),
        "resolved": sorted(before.keys() - after.keys()),
        "changed": changed,
        "vms_added": sorted(vms_after - vms_before),
        "vms_removed": sorted(vms_before - vms_after),
    }


def _vms(report: dict[str, Any]) -> set[str]:
    return {f"{h['host']}/{v['name']}" for h in report.get("hosts", []) for v in h.get("vms", [])}
