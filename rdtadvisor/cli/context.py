"""What every subcommand shares: the lazily loaded settings, the configured capacities, the store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rdtadvisor.core.config import Settings, load_settings
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.store import Store

if TYPE_CHECKING:
    from rdtadvisor.model.capacity import BandwidthCapacity



class _LazySettings:
    def __init__(self, config: Path | None, store: Path | None) -> None:
        self._args = (config, store)
        self._settings: Settings | None = None

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


def open_store(ctx: click.Context, hosts: Sequence[str]) -> tuple[Store, list[str]]:
    """The configured store (read-only) and the hosts to show: `hosts`, or every stored host.

    An unknown host is a usage error (exit 2); a missing store a data error (exit 3).
    """
    store = Store(settings_of(ctx).store, create=False)
    known = store.hosts()
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise ConfigError(f"host(s) not in the store: {', '.join(unknown)} "
                          f"(known: {', '.join(known) or 'none'})")
    return store, list(hosts) or known
