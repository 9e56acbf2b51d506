"""What every subcommand shares: the lazily loaded settings, the configured capacities, the store."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rdtadvisor.core.config import Settings, load_settings, names_in_config
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.store import Store

if TYPE_CHECKING:
    from rdtadvisor.model.capacity import BandwidthCapacity



class _LazySettings:
    def __init__(self, config: Path | None, store: Path | None, strict: bool = False) -> None:
        self._args = (config, store)
        self._settings: Settings | None = None
        self.strict = strict            # --strict: config names that match nothing are errors
        self.names_checked = False

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(*self._args)
        return self._settings


def settings_of(ctx: click.Context) -> Settings:
    """The resolved `Settings` for a subcommand."""
    return ctx.find_root().obj.get()


def bandwidth_capacity(settings: Settings) -> BandwidthCapacity:
    """The memory bandwidth per socket the config names: ``[report] bandwidth_capacity`` and
    its per-host overrides (report, export, advise cat and whatif all plan with it)."""
    from rdtadvisor.model.capacity import BandwidthCapacity

    r = settings.report
    return BandwidthCapacity(r.bandwidth_capacity, dict(r.host_bandwidth_capacity))


def memory_traffic(settings: Settings) -> BandwidthCapacity:
    """The sockets' memory traffic measured outside xl, as the config names it (``[report]
    memory_traffic`` and its per-host overrides): what sizes relative curves (no MBM)."""
    from rdtadvisor.model.capacity import BandwidthCapacity

    r = settings.report
    return BandwidthCapacity(r.memory_traffic, dict(r.host_memory_traffic))


def check_config_names(store: Store, ctx: click.Context | None = None) -> None:
    """Warn (one line each, on stderr) about every host or VM the config names that matches
    nothing in `store`, with the closest name it holds; with ``--strict`` they are errors
    (`ConfigError`, exit 2). Once per command; nothing to say for an empty store.

    VM names are looked up in each host's latest collection first and, only for names not
    found there, in all of history (a retired VM is still in the store).
    """
    ctx = ctx or click.get_current_context(silent=True)
    lazy = ctx.find_root().obj if ctx is not None else None
    if not isinstance(lazy, _LazySettings) or lazy.names_checked:
        return
    lazy.names_checked = True
    settings = lazy.get()
    named = names_in_config(settings)
    hosts = store.hosts() if named else []
    if not hosts:
        return
    vms: set[str] = set()
    if any(n.kind == "VM" for n in named):
        vms = _vm_names(store, latest=True)
        if any(n.kind == "VM" and n.name not in vms for n in named):
            vms |= _vm_names(store, latest=False)
    problems = []
    for n in named:
        known = hosts if n.kind == "host" else sorted(vms)
        if n.name in known:
            continue
        close = difflib.get_close_matches(n.name, known, n=1, cutoff=0.6)
        problems.append(f"{settings.config_path} {n.where}: no {n.kind} named {n.name!r} in the store"
                        + (f"; did you mean {close[0]!r}?" if close else ""))
    if lazy.strict and problems:
        for line in problems[:-1]:
            click.echo(f"rdtadvisor: error: {line}", err=True)
        raise ConfigError(problems[-1])
    for line in problems:
        click.echo(f"rdtadvisor: warning: {line}", err=True)


def _vm_names(store: Store, *, latest: bool) -> set[str]:
    names: set[str] = set()
    for table in ("domains", "settings"):
        if latest:
            names.update(store.latest(table)["domain"].dropna())
        else:
            frame = store.read(table, columns=["domain"], categorical=["domain"], sort=False)
            names.update(frame["domain"].cat.categories)
    return {str(n) for n in names}


def open_store(ctx: click.Context, hosts: Sequence[str]) -> tuple[Store, list[str]]:
    """The configured store (read-only) and the hosts to show: `hosts`, or every stored host.

    An unknown host is a usage error (exit 2); a missing store a data error (exit 3).
    """
    store = Store(settings_of(ctx).store, create=False)
    check_config_names(store, ctx)
    known = store.hosts()
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise ConfigError(f"host(s) not in the store: {', '.join(unknown)} "
                          f"(known: {', '.join(known) or 'none'})")
    return store, list(hosts) or known
