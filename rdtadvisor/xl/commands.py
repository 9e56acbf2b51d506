"""xl command lines: read the ones users typed, build the ones we run.

`parse_command` turns a typed command line (``xl psr-cat-show -l2 1``) into an
`XlCommand` that says which parser applies; `collection_commands` lists the
argv to run on a host of a given Xen version; `capture_name` names the file a
command's stdout is kept in (the capture layout, `rdtadvisor.sources.capture`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from rdtadvisor.core.errors import ConfigError

CMT_METRICS = ("cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth")
BANDWIDTH_METRICS = CMT_METRICS[1:]
# Xen 4.5 parses the type with libxl's IDL names, case-insensitively (docs/xl-formats.md, "Xen 4.5").
_METRIC_ALIASES = {"cache_occupancy": "cache-occupancy"}

PARSED_COMMANDS = ("psr-hwinfo", "psr-cmt-show", "psr-cat-show", "psr-mba-show", "list", "info")


@dataclass(frozen=True, slots=True)
class XlCommand:
    """A parsed `xl` command line: which output format its stdout has."""

    name: str                          # one of PARSED_COMMANDS, or an action like psr-cmt-attach
    argv: tuple[str, ...]              # as given, without any leading path to xl
    metric: str | None = None          # psr-cmt-show: one of CMT_METRICS
    level: int = 3                     # psr-cat-show: 3 (L3) or 2 (L2)
    domain: str | None = None          # the optional domain argument
    sections: frozenset[str] = field(default_factory=lambda: frozenset({"cmt", "cat", "mba"}))

    def __str__(self) -> str:
        return shlex.join(self.argv)


def parse_command(command: str | Sequence[str]) -> XlCommand:
    """Parse an xl command line as a user would type it.

    Accepts a string or an argv; a leading ``xl`` (or ``/usr/sbin/xl``) and xl's
    global flags (``-v``, ``-t``, ``-T``, ``-N``) are skipped. Raises `ConfigError`
    for a command rdtadvisor cannot parse the output of.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv and (argv[0] == "xl" or argv[0].endswith("/xl")):
        argv = argv[1:]
    while argv and argv[0].startswith("-") and set(argv[0][1:]) <= set("vtTN"):
        argv = argv[1:]
    if not argv:
        raise ConfigError("no xl command given (e.g. 'xl psr-cmt-show cache-occupancy')")
    name, args = argv[0], argv[1:]
    full = ("xl", *argv)
    if name == "psr-cmt-show":
        return _cmt_show(full, args)
    if name == "psr-cat-show":
        return _cat_show(full, args)
    if name == "psr-hwinfo":
        return _hwinfo(full, args)
    if name == "psr-mba-show":
        return XlCommand("psr-mba-show", full, domain=_one_optional(name, args))
    if name in ("list", "info"):
        # Options change the format (`xl list -l` is JSON); `xl info host` prints a bare value.
        # `xl list DOMAIN...` keeps the table format.
        if any(a.startswith("-") for a in args) or (name == "info" and args):
            raise ConfigError(f"'xl {name}' with options {args} prints another format; "
                              f"capture plain 'xl {name}'")
        return XlCommand(name, full)
    raise ConfigError(f"no parser for 'xl {name}'; known: {', '.join(PARSED_COMMANDS)}")


def _cmt_show(full: tuple[str, ...], args: list[str]) -> XlCommand:
    if not args:
        raise ConfigError("'xl psr-cmt-show' needs a monitor type: " + ", ".join(CMT_METRICS))
    typed = args[0]
    metric = _METRIC_ALIASES.get(typed.lower(), typed)
    if metric not in CMT_METRICS:
        raise ConfigError(f"unknown monitor type {typed!r}; expected one of {', '.join(CMT_METRICS)}"
                          " (or cache_occupancy on Xen 4.5)")
    return XlCommand("psr-cmt-show", full, metric=metric, domain=_one_optional("psr-cmt-show", args[1:]))


def _cat_show(full: tuple[str, ...], args: list[str]) -> XlCommand:
    level = 3
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-l", "--level"):
            if i + 1 == len(args):
                raise ConfigError("'-l' needs a level (2 or 3)")
            level_text, i = args[i + 1], i + 2
        elif a.startswith("--level="):
            level_text, i = a.split("=", 1)[1], i + 1
        elif a.startswith("-l") and len(a) > 2:
            level_text, i = a[2:], i + 1
        else:
            rest.append(a)
            i += 1
            continue
        if level_text not in ("2", "3"):
            raise ConfigError(f"cache level {level_text!r} is not 2 or 3 (xl: 'Input lvl is wrong')")
        level = int(level_text)
    return XlCommand("psr-cat-show", full, level=level, domain=_one_optional("psr-cat-show", rest))


def _hwinfo(full: tuple[str, ...], args: list[str]) -> XlCommand:
    long_flags = {"--cmt": "cmt", "--cat": "cat", "--mba": "mba"}
    short_flags = {"m": "cmt", "a": "cat", "b": "mba"}
    chosen: set[str] = set()
    for a in args:
        if a in long_flags:
            chosen.add(long_flags[a])
        elif a.startswith("-") and not a.startswith("--") and set(a[1:]) <= set(short_flags):
            chosen.update(short_flags[c] for c in a[1:])  # getopt lets users write -ma
        else:
            raise ConfigError(f"'xl psr-hwinfo' does not take {a!r}; flags are -m/--cmt, -a/--cat, -b/--mba")
    # With no flag xl prints every section (docs/xl-formats.md, psr-hwinfo).
    return XlCommand("psr-hwinfo", full, sections=frozenset(chosen or {"cmt", "cat", "mba"}))


def _one_optional(name: str, args: list[str]) -> str | None:
    if len(args) > 1 or any(a.startswith("-") for a in args):
        raise ConfigError(f"unexpected arguments for 'xl {name}': {' '.join(args)}")
    return args[0] if args else None


# --- what the collector runs ---------------------------------------------------------------

def capture_name(argv: Sequence[str], reading: int = 0) -> str:
    """The capture-layout file name for a command's stdout.

    ``xl psr-cmt-show total-mem-bandwidth`` -> ``xl-psr-cmt-show-total-mem-bandwidth.txt``;
    reading 2 of it -> ``...-total-mem-bandwidth.2.txt``. Xen 4.5's ``cache_occupancy``
    is stored under the same name as later versions' ``cache-occupancy``.
    """
    cmd = parse_command(argv)
    parts = ["xl", cmd.name]
    if cmd.name == "psr-cmt-show":
        parts.append(cmd.metric or "")
    elif cmd.name == "psr-cat-show" and cmd.level == 2:
        parts.append("l2")
    suffix = f".{reading}" if reading else ""
    return "-".join(parts) + suffix + ".txt"


def collection_commands(xen_version: tuple[int, int] | None, readings: int = 3) -> list[tuple[str, ...]]:
    """The argv lists one collection runs on a host, in order, for its Xen version.

    `xl info` and `xl list` come first (the caller learns the version from `xl info`
    and may call again); bandwidth is read `readings` times because each figure is a
    single 10 ms snapshot (docs/xl-formats.md, "Units and how xl computes them"). Unknown
    version: assume current Xen.
    """
    major_minor = xen_version or (4, 22)
    cmds: list[tuple[str, ...]] = [("xl", "info"), ("xl", "list")]
    if major_minor < (4, 6):
        # 4.5: no psr-hwinfo, no CAT, no MBM; the type is spelt with an underscore.
        cmds.append(("xl", "psr-cmt-show", "cache_occupancy"))
        return cmds
    cmds.append(("xl", "psr-hwinfo"))
    cmds.append(("xl", "psr-cmt-show", "cache-occupancy"))
    for _ in range(readings):
        cmds.append(("xl", "psr-cmt-show", "total-mem-bandwidth"))
        cmds.append(("xl", "psr-cmt-show", "local-mem-bandwidth"))
    cmds.append(("xl", "psr-cat-show"))
    if major_minor >= (4, 10):
        cmds.append(("xl", "psr-cat-show", "-l", "2"))
    if major_minor >= (4, 11):
        cmds.append(("xl", "psr-mba-show"))
    return cmds


def cat_set_argv(xen_version: tuple[int, int], domain: str, cbm: int, *, socket: int | None = None,
                 level: int = 3, half: str | None = None) -> tuple[str, ...]:
    """argv that sets a CAT mask: ``psr-cat-cbm-set`` before 4.10, ``psr-cat-set`` after."""
    if xen_version < (4, 6):
        raise ConfigError(f"Xen {xen_version[0]}.{xen_version[1]} has no CAT")
    argv: list[str] = ["xl", "psr-cat-set" if xen_version >= (4, 10) else "psr-cat-cbm-set"]
    if socket is not None:
        argv += ["-s", str(socket)]
    if level == 2:
        if xen_version < (4, 10):
            raise ConfigError("L2 CAT needs Xen 4.10 or later")
        argv += ["-l", "2"]
    if half is not None:
        if xen_version < (4, 7):
            raise ConfigError("CDP (-c/-d) needs Xen 4.7 or later")
        argv.append({"code": "-c", "data": "-d"}[half])
    argv += [domain, hex(cbm)]
    return tuple(argv)
