"""CAT plans as reviewable POSIX shell scripts, to run **on the Xen host itself** (no ssh).

`script(plans)` applies the plans of one host; `rollback_script(plans)` restores today's
masks from the plans' end state. `scripts_by_host` / `rollbacks_by_host` split a fleet's
plans into one script per host: copy each to its host and run it there as root (it calls
``xl`` from PATH). Both scripts:

* start with ``#!/bin/sh`` and ``set -eu`` and a header saying what they do and how to undo;
* first check that every domain id they touch still names the domain the plan was made for
  (``xl domname ID``; ids are reused after a domain is destroyed), byte for byte: the name
  is given as a printf format of its exact bytes (`printf_format`: printable ASCII as is,
  any other byte as an octal escape), so ``web`` and ``web`` + U+200B differ, a Latin-1 name
  matches the bytes xl prints, and every command stays on one line;
* then check every domain's masks on each planned socket (``xl psr-cat-show``): the apply
  script against the plan's "before", the rollback against its "after" (what the apply
  left). On any difference they stop before changing anything, naming the domain, socket,
  expected and found masks. So the apply acts only on the state the plan was made from, and
  the rollback restores exactly what the apply found, never plan-time masks over a newer
  change;
* run each step's argv through `shlex.join`: the ``xl`` domain argument is always the domid,
  never the name. Names and reasons appear only in ``#`` comments, escaped as JSON string
  contents (no newline or control character can end a comment), and in the checks' quoted
  arguments.

The apply script also undoes, last first, the commands it already ran when one fails (or
when interrupted), so a failed run leaves today's masks in place: those undos visit the same
states backwards, so they fit the COS budget whenever the run did.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from typing import Protocol

from rdtadvisor import __version__
from rdtadvisor.advise.plan import CatPlan
from rdtadvisor.cache import cbm
from rdtadvisor.cache.cbm import Mask
from rdtadvisor.core.text import to_bytes

_HELPERS = """\
fail() { printf 'rdtadvisor: %s\\n' "$*" >&2; exit 1; }
command -v xl >/dev/null 2>&1 || fail "xl not found in PATH: run this on the Xen host (dom0) as root"
domain_is() {
    # $1 domain id, $2 the exact bytes of the name it had when planned, as a printf format.
    # The trailing '.' keeps a name's own trailing newlines: the comparison is byte for byte.
    actual=$(xl domname "$1" 2>/dev/null && echo .) || return 2
    [ "$actual" = "$(printf "$2\\n.")" ]
}
expect_domain() {
    domain_is "$1" "$2" && return 0
    [ -n "$actual" ] || fail "domain id $1 no longer exists; nothing was changed"
    fail "domain id $1 is now named '${actual%?.}', not '$(printf "$2")'; nothing was changed"
}
"""

# The masks one domain has on one socket, as `xl psr-cat-show DOMID` prints them: that socket's
# block holds the domain's row alone, and the row ends in one cell per column (CDP: code, then
# data), so the masks are the last fields of the block's last line; a name may hold spaces and
# even newlines. {show} is the version's command line (`mask_helpers`).
_MASK_HELPERS = """\
cat_masks() {
    # $1 cache level, $2 socket, $3 domain id
    {show} 2>/dev/null | awk -v s="$2" '
        function emit() {
            if (!done && last != "") {
                k = split(last, f, " "); out = f[k - n + 1]
                for (i = k - n + 2; i <= k; i++) out = out " " f[i]
                print out
            }
            done = 1
        }
        BEGIN { sock = "-" }
        /^Socket ID/ { if (sock "" == s "") emit(); sock = $NF; n = 0; last = ""; next }
        /^ *ID +NAME/ { n = gsub(/CBM/, "CBM"); next }
        n { last = $0 }
        END { if (sock "" == s "") emit() }'
}
expect_masks() {
    # $1 cache level, $2 socket, $3 domain id, $4 the masks it must have, $5 the domain, for people
    found=$(cat_masks "$1" "$2" "$3")
    [ "$found" = "$4" ] || fail "$5 on socket $2: expected mask $4, found ${found:-none}; nothing was changed"
}
"""


def printf_format(name: str) -> str:
    """The exact bytes of `name` (the escaped form of `rdtadvisor.core.text`) as a printf format
    made of printable ASCII: ``%`` as ``%%``, a backslash and every byte that is not printable
    ASCII (controls, UTF-8, U+200B, a Latin-1 byte) as an octal escape ``\\ooo``."""
    out = []
    for b in to_bytes(name):
        if b == 0x25:
            out.append("%%")
        elif 0x20 <= b < 0x7F and b != 0x5C:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def mask_helpers(version_new: bool) -> str:
    """`_MASK_HELPERS` for the host's xl: ``psr-cat-show -l LEVEL`` from Xen 4.10, plain before."""
    show = 'xl psr-cat-show -l "$1" "$3"' if version_new else 'xl psr-cat-show "$3"'
    return _MASK_HELPERS.replace("{show}", show)


def shown_masks(setting: Mask, cdp: bool) -> str:
    """A setting as `cat_masks` prints it: ``0x7f0``, or under CDP ``code data``."""
    code, data = cbm.normalise(setting)
    return f"{cbm.hexmask(code)} {cbm.hexmask(data)}" if cdp else cbm.hexmask(data)


def _text(s: object) -> str:
    """Untrusted text made safe for a comment: JSON string escapes, no quotes around it."""
    return json.dumps(str(s), ensure_ascii=True)[1:-1]


def _one_host(plans: Sequence[CatPlan]) -> str:
    hosts = list(dict.fromkeys(p.host for p in plans))
    if len(hosts) != 1:
        raise ValueError(f"a script runs on one host; these plans are for {hosts or 'no host'}: "
                         "use scripts_by_host")
    return hosts[0]


def _header(host: str, plans: Sequence[CatPlan], what: Sequence[str]) -> list[str]:
    sockets = ", ".join(str(p.socket) for p in plans) or "none"
    verbs = sorted({s.argv[1] for p in plans for s in p.steps})
    syntax = (f"# xl syntax of the host's Xen: {', '.join(verbs)} (psr-cat-cbm-set before 4.10, "
              "psr-cat-set from 4.10).") if verbs else "# No xl command to run."
    return ["#!/bin/sh",
            f"# Generated by rdtadvisor {__version__} from a CAT plan (rdtadvisor.render.script).",
            f"# Host: \"{_text(host)}\", socket(s) {sockets}.",
            "# Run it ON that host, as root (it calls xl from PATH; it does not use ssh). Review it first.",
            syntax,
            *(f"# {line}" for line in what),
            "# Domain names and reasons in comments are escaped JSON text, for reading only;",
            "# every xl command names the domain by its id.",
            "set -eu",
            ""]


class _Domain(Protocol):
    """What a domain-id check needs: a `Step`, or a calibration `Sweep` adapted to it."""

    @property
    def domid(self) -> int: ...

    @property
    def domain(self) -> str | None: ...


def _checks(steps: Iterable[_Domain]) -> list[str]:
    out = ["# Every domain id below must still name the domain the plan was made for (its exact bytes,",
           "# as a printf format: octal escapes for anything but printable ASCII)."]
    seen: set[int] = set()
    for s in steps:
        if s.domid in seen:
            continue
        seen.add(s.domid)
        if s.domain is None:
            out.append(f"# domid {s.domid}: name unknown when planned, not checked")
        else:
            out.append(shlex.join(["expect_domain", str(s.domid), printf_format(s.domain)]))
    return [*out, ""]


def who(domid: int, name: str | None) -> str:
    """A domain for the people reading a message: ``domid 7 "db"`` (the name JSON-escaped)."""
    return f'domid {domid} "{_text(name)}"' if name is not None else f"domid {domid}"


def mask_checks(checks: Iterable[tuple[int, int, int, str | None, Mask, bool]], what: str) -> list[str]:
    """``expect_masks`` lines for (level, socket, domid, name, setting, cdp), one per domain and socket."""
    out = [f"# Every domain's masks on the planned sockets must still be {what}."]
    for level, socket, domid, name, setting, cdp in checks:
        out.append(shlex.join(["expect_masks", str(level), str(socket), str(domid), shown_masks(setting, cdp),
                               who(domid, name)]))
    return [*out, ""]


def _plan_masks(p: CatPlan, *, after: bool) -> list[tuple[int, int, int, str | None, Mask, bool]]:
    """Every assigned domain's setting on `p`'s socket before the plan's steps, or after them
    (the target: what `build_steps` ends in)."""
    cdp = any(a.cbm is None for a in p.assignments)
    before: dict[int, dict[str, int]] = {}
    if not after:
        for s in p.steps:       # each half's first undo is its setting before the plan
            flags = set(s.undo[2:-2])
            for half in ("-c", "-d"):
                if half in flags or not flags & {"-c", "-d"}:
                    before.setdefault(s.domid, {}).setdefault(half, cbm.parse_mask(s.undo[-1]))
    out = []
    for a in p.assignments:
        code, data = cbm.normalise(a.setting)
        known = before.get(a.domid, {})
        setting = (known.get("-c", code), known.get("-d", data))
        out.append((p.level, p.socket, a.domid, a.name, setting if cdp else setting[1], cdp))
    return out


def _new_xl(plans: Sequence[CatPlan]) -> bool:
    """The host's xl takes ``psr-cat-set`` and ``psr-cat-show -l`` (Xen 4.10+), by the plan's own verbs."""
    return not any(s.argv[1] == "psr-cat-cbm-set" for p in plans for s in p.steps)


def script(plans: Sequence[CatPlan]) -> str:
    """The apply script of one host's plans (ValueError for plans of several hosts)."""
    host = _one_host(plans)
    steps = [s for p in plans for s in p.steps]
    n = len(steps)
    lines = _header(host, plans, [
        "What it does: checks the domain ids, and that every domain's masks on the planned sockets",
        f"are still the plan's \"before\" (it refuses otherwise), then runs {n} xl command(s) in order",
        "(resets that free a COS first). If one fails, or on Ctrl-C, it undoes the ones already run,",
        "last first, and exits non-zero, leaving the masks it found.",
        "To roll back after it succeeded: run the matching rollback script (rdtadvisor's",
        "rollback_script of the same plan) on this host; it restores the masks this script found.",
    ])
    lines.append(_HELPERS)
    lines.append(mask_helpers(_new_xl(plans)))
    if not steps:
        lines += ["# Nothing to change: the masks are already as planned.", "exit 0", ""]
        return "\n".join(lines)
    lines += ["done_steps=0", "undo_step() {", '    case "$1" in']
    lines += [f"        {i}) {shlex.join(s.undo)} ;;" for i, s in enumerate(steps, 1)]
    lines += ["    esac", "}",
              "on_exit() {",
              "    status=$?",
              "    trap - EXIT",
              '    if [ "$status" -ne 0 ] && [ "$done_steps" -gt 0 ]; then',
              f"        printf 'rdtadvisor: stopped after %s of {n} command(s); undoing them\\n' "
              '"$done_steps" >&2',
              '        while [ "$done_steps" -gt 0 ]; do',
              '            undo_step "$done_steps" || '
              "printf 'rdtadvisor: undo of command %s failed\\n' \"$done_steps\" >&2",
              "            done_steps=$((done_steps - 1))",
              "        done",
              "    fi",
              '    exit "$status"',
              "}",
              "trap on_exit EXIT",
              "trap 'exit 130' INT",
              "trap 'exit 143' TERM",
              ""]
    lines += _checks(steps)
    lines += mask_checks((c for p in plans for c in _plan_masks(p, after=False)),
                         'the plan\'s "before" (what the rollback restores)')
    i = 0
    for p in plans:
        lines.append(f"# --- socket {p.socket}: {len(p.steps)} command(s); COS {p.cos_used} of "
                     f"{p.cos_budget} used after{_predicted(p)}")
        for s in p.steps:
            i += 1
            name = f" \"{_text(s.domain)}\"" if s.domain is not None else ""
            lines.append(f"# {i}. domid {s.domid}{name}: {_text(s.reason)}")
            lines.append(shlex.join(s.argv))
            lines.append(f"done_steps={i}")
        lines.append("")
    lines += [f"printf 'rdtadvisor: %s command(s) applied\\n' {n}", ""]
    return "\n".join(lines)


def rollback_script(plans: Sequence[CatPlan]) -> str:
    """The rollback script of one host's plans: every step's undo, last step first."""
    host = _one_host(plans)
    steps = [s for p in plans for s in p.steps]
    n = len(steps)
    lines = _header(host, plans, [
        "What it does: ROLLBACK. After the matching apply script ran to the end, it restores the",
        f"masks the domains had before it, with {n} xl command(s) (its steps' undo, last first):",
        "the masks the apply script found (it refuses to run on any others).",
        "It checks the domain ids first, and that every domain's masks are still what the apply",
        "left (the plan's \"after\"); it changes nothing if one is gone, renamed or changed since.",
    ])
    lines.append(_HELPERS)
    lines.append(mask_helpers(_new_xl(plans)))
    if not steps:
        lines += ["# Nothing to undo: the plan changes nothing.", "exit 0", ""]
        return "\n".join(lines)
    lines += _checks(reversed(steps))
    lines += mask_checks((c for p in plans for c in _plan_masks(p, after=True)),
                         'what the apply script left (the plan\'s "after"); a mask changed since is a newer '
                         "decision,\n# not overwritten")
    i = 0
    for p in reversed(plans):
        lines.append(f"# --- socket {p.socket}: {len(p.steps)} command(s)")
        for s in reversed(p.steps):
            i += 1
            name = f" \"{_text(s.domain)}\"" if s.domain is not None else ""
            lines.append(f"# {i}. domid {s.domid}{name}: undo: {_text(s.reason)}")
            lines.append(shlex.join(s.undo))
        lines.append("")
    lines += [f"printf 'rdtadvisor: %s command(s) undone\\n' {n}", ""]
    return "\n".join(lines)


def scripts_by_host(plans: Sequence[CatPlan]) -> dict[str, str]:
    """One apply script per host (run each on its host)."""
    return {h: script([p for p in plans if p.host == h]) for h in dict.fromkeys(p.host for p in plans)}


def rollbacks_by_host(plans: Sequence[CatPlan]) -> dict[str, str]:
    """One rollback script per host."""
    return {h: rollback_script([p for p in plans if p.host == h])
            for h in dict.fromkeys(p.host for p in plans)}


def _predicted(p: CatPlan) -> str:
    ws = p.predicted.get("weighted_speedup") if p.predicted else None
    if isinstance(ws, int | float):
        unc = p.predicted.get("uncertainty")
        band = f" +/- {unc:.3g}" if isinstance(unc, int | float) else ""
        return f"; predicted weighted speedup {ws:.3g}{band}"
    return ""
