"""Attach CMT monitoring to every live domain that lacks it.

Unattached domains are invisible to ``xl psr-cmt-show`` (``docs/xl-formats.md``, "Which rows appear"), so
a fleet whose new VMs were never attached silently loses them from every report.
Each attach takes one RMID; ``Total RMID`` of them exist, and Xen answers
``no free RMID available`` once they are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rdtadvisor.core.errors import ParseError, SourceError
from rdtadvisor.sources import Runner
from rdtadvisor.xl import cmt, domains, failures, hostinfo

# xl list state flags: r b p s c d; shutdown, crashed and dying domains are not worth an RMID.
_GONE_FLAGS = set("scd")


@dataclass
class AttachResult:
    """What `attach_host` did (or, with dry_run, would do) on one host."""

    host: str
    total_rmid: int | None = None
    already: list[tuple[int, str]] = field(default_factory=list)
    attached: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)   # domid, name, reason
    skipped: list[tuple[int, str]] = field(default_factory=list)       # not tried: RMIDs ran out
    error: str | None = None

    @property
    def rmid_exhausted(self) -> bool:
        return any(kind == "no-free-rmid" for _, _, kind in self.failed) or bool(self.skipped)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed and not self.skipped


def to_attach(listing: domains.DomainList, table: cmt.CmtTable) -> list[domains.Domain]:
    """Live domains of `listing` without a row in `table` (an occupancy table), in domid order."""
    attached = {int(d) for d in table.domids}
    return sorted((d for d in listing.domains
                   if d.domid not in attached and not (set(d.state) & _GONE_FLAGS)), key=lambda d: d.domid)


def attach_host(runner: Runner, *, timeout: float = 60.0, dry_run: bool = False) -> AttachResult:
    """Attach every live unattached domain on `runner`'s host; stops trying once RMIDs run out."""
    result = AttachResult(runner.host)
    try:
        info = _run(runner, ("xl", "info"), timeout)
        version = hostinfo.parse(info, source=f"{runner.host}: xl info").xen_major_minor
        listing = domains.parse(_run(runner, ("xl", "list"), timeout), source=f"{runner.host}: xl list")
        metric_arg = "cache_occupancy" if version < (4, 6) else "cache-occupancy"
        table = cmt.parse(_run(runner, ("xl", "psr-cmt-show", metric_arg), timeout), "cache-occupancy",
                          source=f"{runner.host}: xl psr-cmt-show")
    except (SourceError, ParseError) as e:
        result.error = e.reason
        return result
    result.total_rmid = table.total_rmid
    result.already = [(int(d), n) for d, n in zip(table.domids, table.names, strict=True)]
    todo = to_attach(listing, table)
    for i, dom in enumerate(todo):
        if dry_run:
            result.attached.append((dom.domid, dom.name))
            continue
        # Attach by domid, never by name: names are untrusted and may contain anything.
        out = runner.run(("xl", "psr-cmt-attach", str(dom.domid)), timeout)
        if out.ok:
            result.attached.append((dom.domid, dom.name))
            continue
        found = failures.classify_all(out.stderr)
        kind = found[0].kind if found else "attach-failed"
        reason = found[0].message if found else (out.error or f"exit status {out.exit_status}")
        if kind == "already-attached":
            result.already.append((dom.domid, dom.name))
            continue
        result.failed.append((dom.domid, dom.name, kind if kind == "no-free-rmid" else reason))
        if kind in ("no-free-rmid", "cmt-disabled") or out.error is not None:
            result.skipped = [(d.domid, d.name) for d in todo[i + 1:]]
            if kind == "cmt-disabled":
                result.error = "CMT is not enabled on this host (boot Xen with psr=cmt)"
            break
    return result


def _run(runner: Runner, argv: tuple[str, ...], timeout: float) -> str:
    out = runner.run(argv, timeout)
    if out.error is not None:
        raise SourceError(runner.host, out.error, argv)
    if out.exit_status != 0:
        found = failures.classify_all(out.stderr)
        why = found[0].message if found else (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise SourceError(runner.host, f"'{' '.join(argv)}' failed (exit {out.exit_status}): {why}", argv)
    return out.stdout
