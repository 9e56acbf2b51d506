"""Settings: where the store lives, which hosts to collect from and how to reach them.

Resolution order for every setting: command-line option, then environment
(``RDTADVISOR_STORE``, ``RDTADVISOR_CONFIG``), then the TOML config file, then the
default. The config file (default ``~/.config/rdtadvisor/config.toml``)::

    store = "/var/lib/rdtadvisor/store"

    [collect]
    readings = 3          # bandwidth snapshots per collection (each is a 10 ms sample)
    timeout = 60          # seconds per xl command (finite, at most a day)
    parallel = 64         # hosts collected at once (each is one waiting ssh process)
    max_output_bytes = "4MiB"   # the most one xl command (or capture file) may print; a real
                                # table is a few hundred rows, tens of KiB. Over it: refused
                                # with one line, the host counts as failed

    [ssh]                 # defaults for every host
    user = "monitor"
    port = 22
    identity = "~/.ssh/rdtadvisor"
    jump = "bastion.example.org"
    sudo = true           # run `sudo -n xl ...` (non-root users)
    connect_timeout = 10
    options = ["StrictHostKeyChecking=accept-new"]

    [report]              # figures the reports judge against
    bandwidth_capacity = "60GiB/s"   # per socket (default: the highest sustained figure seen)
    memory_traffic = "12GiB/s"       # per socket, measured outside xl (pcm-memory): CPUs without MBM
    l3_threshold = 0.9               # headroom: summed p95 occupancy up to this share of L3
    bandwidth_threshold = 0.8        # headroom and saturation: share of bandwidth capacity
    timezone = "UTC"                 # for --hours (e.g. "Europe/Berlin")
    [report.hosts."xen01"]
    bandwidth_capacity = "80GiB/s"

    [placement]           # rdtadvisor advise placement (thresholds: [report]'s)
    vcpu_overcommit = 4.0            # vCPUs per physical CPU a host may carry
    memory_headroom = 0.05           # share of each host's memory kept free
    max_migrations = 10              # per plan (default: no limit)
    pinned = ["db-primary"]          # VMs that never move
    anti_affinity = [["web-01", "web-02"]]   # at most one member per host
    pools = { "xen01" = "gold", "xen02" = "gold" }   # VMs stay within their host's pool
    maintenance = ["xen03"]          # hosts to empty (same as --evacuate)
    priorities = { "db-orders" = 1 } # 1 (most important: moved last) .. 5 (default 3)

    [cat]                 # rdtadvisor advise cat: policy for the L3 masks (docs/advise-cat.md)
    min_bits = 1                     # fewest ways in any mask (Xen checks none; hardware or
                                     # resctrl may need 2); >= 1
    reserved_ways = 0                # ways kept out of every mask, at the low end (I/O, DDIO)
    dom0_ways = 0                    # Domain-0 gets a private run of at least this many ways
                                     # (a guarantee of dom0_ways x the socket's way size)
    overlap = true                   # masks may overlap (a streaming VM over another run,
                                     # light VMs left at the default mask); false: disjoint runs
    hysteresis = 0.02                # least predicted weighted-speedup gain worth a change (0..0.5)
    max_slowdown = 0.1               # fair-share floor: no VM may be predicted to slow down by more
                                     # than this share for the others' sake (0..1; 1: no floor)
    [cat.tiers]                      # SLO tier -> priority weight (> 0) in the weighted speedup;
    gold = 4                         # without this table: gold = 4, silver = 2, bronze = 1;
    silver = 2                       # with it, exactly the tiers written here
    bronze = 1
    [cat.vms."db-orders"]            # per VM name (every other VM: priority 1, no guarantee)
    tier = "gold"                    # or priority = 4.0 (not both)
    min_mib = 8                      # guaranteed cache: a private run of >= 8 MiB (>= 0)
    [cat.hosts."xen01"]              # per host: min_bits, reserved_ways, dom0_ways, overlap
    reserved_ways = 2

``advise cat --min-bits N --reserved-ways N --no-overlap`` override ``[cat]`` (per-host tables
included) for one run. A guarantee (``min_mib``, ``dom0_ways``) is a private run: a socket
whose guarantees cannot fit (ways, COS, or a guaranteed VM without a fitted curve) is
declined with the VMs named. Unknown keys and tiers are a `ConfigError` naming the file and
the key path (``[cat] vms."db": unknown setting(s) min_mb``).

Host and VM names in per-host and per-VM settings (``[report.hosts."..."]``, ``[cat.vms."..."]``,
``[cat.hosts."..."]``, ``[placement]`` pinned, anti_affinity, pools, maintenance, priorities)
are written as rdtadvisor shows them (docs/nomenclature.md). One that matches no host or VM in
the store is a warning naming the table and the closest name the store holds (``did you mean
'db-orders'?``); ``rdtadvisor --strict`` makes it an error (`names_in_config`).

    [[hosts]]
    name = "xen01"                # name used in the store and reports
    address = "10.0.0.11"         # what ssh connects to (default: name)
    port = 2222                   # any [ssh] key may be overridden per host
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.core.hostnames import check_host

ENV_STORE = "RDTADVISOR_STORE"
ENV_CONFIG = "RDTADVISOR_CONFIG"
DEFAULT_MAX_OUTPUT_BYTES = 4 * 2**20   # [collect] max_output_bytes
MAX_TIMEOUT_SECONDS = 86_400.0         # [collect] timeout, --timeout, [ssh] connect_timeout


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "rdtadvisor" / "config.toml"


def default_store_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "rdtadvisor" / "store"


@dataclass(frozen=True)
class SshOptions:
    """How to reach a host with the system ssh client."""

    user: str | None = None
    port: int | None = None
    identity: str | None = None
    jump: str | None = None
    sudo: bool = False
    connect_timeout: float = 10.0
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostConfig:
    """One host to collect from. `address` is what ssh connects to; `name` is what we store."""

    name: str
    address: str | None = None
    ssh: SshOptions = field(default_factory=SshOptions)
    local: bool = False
    xl: str = "xl"
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES   # refuse an xl output longer than this

    @property
    def target(self) -> str:
        return self.address or self.name


@dataclass(frozen=True)
class ReportSettings:
    """The ``[report]`` table: what reports and headroom judge figures against."""

    bandwidth_capacity: float | None = None          # B/s per socket, every host
    host_bandwidth_capacity: dict[str, float] = field(default_factory=dict)
    # B/s per socket in use, measured outside xl (pcm-memory, perf uncore_imc): what sizes the
    # relative curves of a CPU without MBM (`rdtadvisor.model.shares`)
    memory_traffic: float | None = None
    host_memory_traffic: dict[str, float] = field(default_factory=dict)
    l3_threshold: float = 0.9
    bandwidth_threshold: float = 0.8
    timezone: str = "UTC"


@dataclass(frozen=True)
class PlacementSettings:
    """The ``[placement]`` table (see the module docstring)."""

    vcpu_overcommit: float = 4.0
    memory_headroom: float = 0.05
    max_migrations: int | None = None
    pinned: tuple[str, ...] = ()
    anti_affinity: tuple[tuple[str, ...], ...] = ()
    pools: dict[str, str] = field(default_factory=dict)
    maintenance: tuple[str, ...] = ()
    priorities: dict[str, int] = field(default_factory=dict)   # VM -> 1 (moved last) .. 5


DEFAULT_TIERS: dict[str, float] = {"gold": 4.0, "silver": 2.0, "bronze": 1.0}
DOM0_NAME = "Domain-0"
CAT_HOST_KEYS = ("min_bits", "reserved_ways", "dom0_ways", "overlap")


@dataclass(frozen=True)
class CatVm:
    """One ``[cat.vms."NAME"]`` table: the VM's tier or priority, and its guaranteed cache."""

    tier: str | None = None
    priority: float | None = None          # None: from the tier, else 1.0
    min_mib: float = 0.0                   # guaranteed L3 [MiB]; 0: none


@dataclass(frozen=True)
class CatSettings:
    """The ``[cat]`` table: `rdtadvisor advise cat`'s policy (see the module docstring).

    ``hosts`` maps a host name to its overrides of `CAT_HOST_KEYS`; `for_host` applies them.
    """

    min_bits: int = 1
    reserved_ways: int = 0
    dom0_ways: int = 0
    overlap: bool = True
    hysteresis: float = 0.02
    max_slowdown: float = 0.1
    tiers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    vms: dict[str, CatVm] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_host(self, host: str) -> CatSettings:
        """These settings with ``[cat.hosts."host"]``'s overrides applied (and no per-host table left)."""
        return replace(self, **self.hosts.get(host, {}), hosts={})

    def override(self, **values: Any) -> CatSettings:
        """Set `CAT_HOST_KEYS` values for every host (a command-line option beats the config file,
        per-host tables included); ``None`` values are ignored."""
        given = {k: v for k, v in values.items() if v is not None}
        unknown = set(given) - set(CAT_HOST_KEYS)
        if unknown:
            raise ValueError(f"not per-host [cat] settings: {', '.join(sorted(unknown))}")
        hosts = {h: {k: v for k, v in o.items() if k not in given} for h, o in self.hosts.items()}
        return replace(self, **given, hosts=hosts)

    def priority_of(self, name: str) -> float:
        """The VM's weight in the weighted speedup: its ``priority``, its tier's weight, else 1.0."""
        vm = self.vms.get(name)
        if vm is None:
            return 1.0
        if vm.priority is not None:
            return vm.priority
        return self.tiers[vm.tier] if vm.tier is not None else 1.0

    def min_mib(self) -> dict[str, float]:
        """VM name -> guaranteed MiB, for the VMs with a guarantee (``dom0_ways`` not included:
        its size depends on the socket's way size)."""
        return {name: vm.min_mib for name, vm in self.vms.items() if vm.min_mib > 0}


@dataclass
class Settings:
    """Everything a command needs to know besides its own arguments."""

    store: Path
    config_path: Path | None = None
    hosts: list[HostConfig] = field(default_factory=list)
    ssh: SshOptions = field(default_factory=SshOptions)
    readings: int = 3
    timeout: float = 60.0
    parallel: int = 64
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    report: ReportSettings = field(default_factory=ReportSettings)
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    cat: CatSettings = field(default_factory=CatSettings)


def load_settings(config: Path | None = None, store: Path | None = None) -> Settings:
    """Resolve settings from options, environment and the config file (see module docstring)."""
    explicit = config or (Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else None)
    path = explicit or default_config_path()
    data: dict[str, Any] = {}
    if explicit is not None and not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
    where = str(path)
    _only_keys(data, {"store", "collect", "ssh", "hosts", "report", "placement", "cat"}, where)
    store_path = store or (Path(os.environ[ENV_STORE]) if os.environ.get(ENV_STORE) else None)
    if store_path is None and "store" in data:
        store_path = Path(os.path.expanduser(_typed(data, "store", str, where)))
    collect = _table(data, "collect", where)
    _only_keys(collect, {"readings", "timeout", "parallel", "max_output_bytes"}, f"{where} [collect]")
    ssh = _ssh_options(_table(data, "ssh", where), SshOptions(), f"{where} [ssh]")
    hosts_data = data.get("hosts", [])
    if not isinstance(hosts_data, list):
        raise ConfigError(f"{where}: 'hosts' must be an array of tables ([[hosts]])")
    limit = _max_output(collect, f"{where} [collect]")
    hosts = [replace(_host(h, ssh, f"{where} [[hosts]] #{i + 1}"), max_output_bytes=limit)
             for i, h in enumerate(hosts_data)]
    settings = Settings(
        store=store_path or default_store_path(), config_path=path if path.exists() else None,
        hosts=hosts, ssh=ssh,
        readings=_typed(collect, "readings", int, where, 3),
        timeout=_seconds(collect, "timeout", f"{where} [collect]", 60.0),
        parallel=_typed(collect, "parallel", int, where, 64), max_output_bytes=limit,
        report=_report(_table(data, "report", where), f"{where} [report]"),
        placement=_placement(_table(data, "placement", where), f"{where} [placement]"),
        cat=_cat(_table(data, "cat", where), f"{where} [cat]"),
    )
    if settings.readings < 1 or settings.parallel < 1 or settings.timeout <= 0:
        raise ConfigError(f"{where} [collect]: readings, parallel and timeout must be positive")
    return settings


@dataclass(frozen=True)
class ConfigName:
    """A host or VM the config names in a per-host or per-VM table (``[cat.vms."db"]``)."""

    where: str          # the table or key, as written: [cat.vms."db"], [placement] pinned
    kind: str           # "host" or "VM"
    name: str


def names_in_config(settings: Settings) -> list[ConfigName]:
    """Every host and VM name the config's per-host and per-VM settings refer to, once each.

    A typo there (``[cat.vms."db-ordrs"]``) silently drops the setting; the CLI compares these
    with the store (`rdtadvisor.cli.context.check_config_names`).
    """
    r, c, p = settings.report, settings.cat, settings.placement
    out = [ConfigName(f'[report.hosts."{h}"]', "host", h)
           for h in dict.fromkeys([*r.host_bandwidth_capacity, *r.host_memory_traffic])]
    out += [ConfigName(f'[cat.vms."{v}"]', "VM", v) for v in c.vms]
    out += [ConfigName(f'[cat.hosts."{h}"]', "host", h) for h in c.hosts]
    out += [ConfigName("[placement] pinned", "VM", v) for v in dict.fromkeys(p.pinned)]
    out += [ConfigName("[placement] anti_affinity", "VM", v)
            for v in dict.fromkeys(v for group in p.anti_affinity for v in group)]
    out += [ConfigName("[placement] pools", "host", h) for h in p.pools]
    out += [ConfigName("[placement] maintenance", "host", h) for h in dict.fromkeys(p.maintenance)]
    out += [ConfigName("[placement] priorities", "VM", v) for v in p.priorities]
    return out


def read_hosts_file(path: Path) -> list[str]:
    """One host per line; blank lines and ``#`` comments ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read hosts file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: hosts file is not UTF-8 text (byte {e.start})") from e
    hosts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        hosts.append(check_host(name, f"{path}:{lineno}"))
    return hosts


def host_from_name(name: str, settings: Settings) -> HostConfig:
    """A `--host` value: a host from the config file by name, else a new one with default ssh options.

    ``local`` (or ``localhost`` with no config entry) means the machine we run on, without ssh.
    """
    for h in settings.hosts:
        if h.name == name:
            return h
    check_host(name, "--host")
    return HostConfig(name=name, ssh=settings.ssh, local=name in ("local", "localhost"),
                      max_output_bytes=settings.max_output_bytes)


def resolve_hosts(settings: Settings, names: Sequence[str], hosts_file: Path | None) -> list[HostConfig]:
    """The hosts a command should reach: `names` and `hosts_file`, else the config's [[hosts]].

    Raises ConfigError when nothing names a host.
    """
    wanted = list(names) + (read_hosts_file(hosts_file) if hosts_file is not None else [])
    if wanted:
        return [host_from_name(n, settings) for n in wanted]
    if settings.hosts:
        return list(settings.hosts)
    raise ConfigError("no hosts: give --host, --hosts-file or --replay, or list [[hosts]] in the config file")


def _ssh_options(data: dict[str, Any], base: SshOptions, where: str) -> SshOptions:
    known = {f.name for f in fields(SshOptions)}
    _only_keys(data, known, where)
    kwargs: dict[str, Any] = {}
    for key, kind in (("user", str), ("identity", str), ("jump", str)):
        if key in data:
            kwargs[key] = _typed(data, key, kind, where)
    if "port" in data:
        kwargs["port"] = _typed(data, "port", int, where)
    if "sudo" in data:
        kwargs["sudo"] = _typed(data, "sudo", bool, where)
    if "connect_timeout" in data:
        kwargs["connect_timeout"] = _seconds(data, "connect_timeout", where)
    if "options" in data:
        opts = data["options"]
        if not isinstance(opts, list) or not all(isinstance(o, str) and "=" in o for o in opts):
            raise ConfigError(f"{where}: 'options' must be a list of 'Key=value' strings")
        kwargs["options"] = tuple(opts)
    return replace(base, **kwargs)


def _host(data: Any, ssh: SshOptions, where: str) -> HostConfig:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"{where}: each host needs a name")
    own = {k: v for k, v in data.items() if k not in ("name", "address", "local", "xl")}
    name = check_host(data["name"], f"{where} name")
    address = _typed(data, "address", str, where, None)
    if address is not None:
        check_host(address, f"{where} ({name}) address")
    return HostConfig(
        name=name, address=address,
        ssh=_ssh_options(own, ssh, f"{where} ({data['name']})"),
        local=_typed(data, "local", bool, where, False), xl=_typed(data, "xl", str, where, "xl"))


def _report(data: dict[str, Any], where: str) -> ReportSettings:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    rates = ("bandwidth_capacity", "memory_traffic")
    known = {*rates, "l3_threshold", "bandwidth_threshold", "timezone", "hosts"}
    _only_keys(data, known, where)
    hosts = _table(data, "hosts", where)
    per_host: dict[str, dict[str, float]] = {k: {} for k in rates}
    for name, table in hosts.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [report.hosts.{name}] must be a table")
        _only_keys(table, set(rates), f"{where} hosts.{name}")
        for key in rates:
            if key in table:
                per_host[key][name] = _rate(table[key], f"{where} hosts.{name}", key)
    top = {key: _rate(data[key], where, key) for key in rates if key in data}
    out = ReportSettings(
        bandwidth_capacity=top.get("bandwidth_capacity"),
        host_bandwidth_capacity=per_host["bandwidth_capacity"],
        memory_traffic=top.get("memory_traffic"), host_memory_traffic=per_host["memory_traffic"],
        l3_threshold=float(_typed(data, "l3_threshold", (int, float), where, 0.9)),
        bandwidth_threshold=float(_typed(data, "bandwidth_threshold", (int, float), where, 0.8)),
        timezone=_typed(data, "timezone", str, where, "UTC"))
    for key in ("l3_threshold", "bandwidth_threshold"):
        if not 0 < getattr(out, key) <= 2:
            raise ConfigError(f"{where}: '{key}' must be a share such as 0.8 (0 < x <= 2)")
    try:
        ZoneInfo(out.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: 'timezone' {out.timezone!r} is not a known time zone") from None
    return out


def _placement(data: dict[str, Any], where: str) -> PlacementSettings:
    _only_keys(data, {"vcpu_overcommit", "memory_headroom", "max_migrations", "pinned", "anti_affinity",
                      "pools", "maintenance", "priorities"}, where)

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConfigError(f"{where}: '{key}' must be a list of names")
        return tuple(value)

    groups = data.get("anti_affinity", [])
    if not isinstance(groups, list) or not all(isinstance(g, list) and all(isinstance(x, str) for x in g)
                                               for g in groups):
        raise ConfigError(f"{where}: 'anti_affinity' must be a list of lists of VM names")
    priorities = _table(data, "priorities", where)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in priorities.values()):
        raise ConfigError(f"{where}: 'priorities' maps VM names to 1 (most important) .. 5")
    pools = _table(data, "pools", where)
    if not all(isinstance(v, str) for v in pools.values()):
        raise ConfigError(f"{where}: 'pools' maps host names to pool names (strings)")
    out = PlacementSettings(
        vcpu_overcommit=float(_typed(data, "vcpu_overcommit", (int, float), where, 4.0)),
        memory_headroom=float(_typed(data, "memory_headroom", (int, float), where, 0.05)),
        max_migrations=_typed(data, "max_migrations", int, where, None),
        pinned=names("pinned"), anti_affinity=tuple(tuple(g) for g in groups), pools=dict(pools),
        maintenance=names("maintenance"), priorities=dict(priorities))
    if out.vcpu_overcommit <= 0 or not 0 <= out.memory_headroom < 1 or (
            out.max_migrations is not None and out.max_migrations < 0):
        raise ConfigError(f"{where}: vcpu_overcommit must be positive, memory_headroom in [0, 1), "
                          "max_migrations >= 0")
    return out


def _cat(data: dict[str, Any], where: str) -> CatSettings:
    _only_keys(data, {*CAT_HOST_KEYS, "hysteresis", "max_slowdown", "tiers", "vms", "hosts"}, where)
    base = _cat_host_keys(data, where)
    hysteresis = float(_typed(data, "hysteresis", (int, float), where, 0.02))
    if not 0 <= hysteresis <= 0.5:
        raise ConfigError(f"{where}: 'hysteresis' must be a share from 0 to 0.5 (0.02 is 2%)")
    max_slowdown = float(_typed(data, "max_slowdown", (int, float), where, 0.1))
    if not 0 <= max_slowdown <= 1:
        raise ConfigError(f"{where}: 'max_slowdown' must be a share from 0 to 1 (0.1 is 10%)")
    tiers = dict(DEFAULT_TIERS)
    if "tiers" in data:
        given = _table(data, "tiers", where)
        if not given:
            raise ConfigError(f"{where}: [cat.tiers] is empty: name at least one tier or leave it out "
                              "(the defaults are gold = 4, silver = 2, bronze = 1)")
        tiers = {name: _weight(given, name, f"{where} tiers", "the tier's priority weight")
                 for name in given}
    vms: dict[str, CatVm] = {}
    for name, table in _table(data, "vms", where).items():
        at = f'{where} vms."{name}"'
        if not isinstance(table, dict):
            raise ConfigError(f"{at}: must be a table (tier, priority, min_mib)")
        _only_keys(table, {"tier", "priority", "min_mib"}, at)
        if "tier" in table and "priority" in table:
            raise ConfigError(f"{at}: give 'tier' or 'priority', not both")
        tier = _typed(table, "tier", str, at, None)
        if tier is not None and tier not in tiers:
            raise ConfigError(f"{at}: 'tier' {tier!r} is not a tier (known: {', '.join(sorted(tiers))})")
        priority = _weight(table, "priority", at, "a priority weight") if "priority" in table else None
        min_mib = float(_typed(table, "min_mib", (int, float), at, 0.0))
        if not 0 <= min_mib < float("inf"):
            raise ConfigError(f"{at}: 'min_mib' must be a size in MiB >= 0")
        vms[name] = CatVm(tier=tier, priority=priority, min_mib=min_mib)
    hosts: dict[str, dict[str, Any]] = {}
    for name, table in _table(data, "hosts", where).items():
        at = f'{where} hosts."{name}"'
        if not isinstance(table, dict):
            raise ConfigError(f"{at}: must be a table ({', '.join(CAT_HOST_KEYS)})")
        _only_keys(table, set(CAT_HOST_KEYS), at)
        hosts[name] = {k: v for k, v in _cat_host_keys(table, at).items() if k in table}
    return CatSettings(hysteresis=hysteresis, max_slowdown=max_slowdown, tiers=tiers, vms=vms, hosts=hosts,
                       **base)


def _cat_host_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
    """min_bits (>= 1), reserved_ways (>= 0), dom0_ways (>= 0) and overlap, defaults filled in."""
    out: dict[str, Any] = {
        "min_bits": _typed(data, "min_bits", int, where, 1),
        "reserved_ways": _typed(data, "reserved_ways", int, where, 0),
        "dom0_ways": _typed(data, "dom0_ways", int, where, 0),
        "overlap": _typed(data, "overlap", bool, where, True),
    }
    if out["min_bits"] < 1:
        raise ConfigError(f"{where}: 'min_bits' must be at least 1 (Xen rejects an empty mask)")
    for key in ("reserved_ways", "dom0_ways"):
        if out[key] < 0:
            raise ConfigError(f"{where}: '{key}' must be a number of ways >= 0")
    return out


def _seconds(data: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    """A finite number of seconds, 0 < s <= MAX_TIMEOUT_SECONDS (TOML reads inf and nan too)."""
    value = float(_typed(data, key, (int, float), where) if default is None
                  else _typed(data, key, (int, float), where, default))
    if not 0 < value <= MAX_TIMEOUT_SECONDS:   # False for nan
        raise ConfigError(f"{where}: '{key}' must be a number of seconds, 0 < s <= {MAX_TIMEOUT_SECONDS:g} "
                          f"(got {value!r})")
    return value


def _max_output(data: dict[str, Any], where: str) -> int:
    """``max_output_bytes``: a size (``"4MiB"``) or a number of bytes, at least 1 KiB."""
    from rdtadvisor.core.units import parse_size

    value = data.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES)
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"not a size: {value!r}")
        size = parse_size(value) if isinstance(value, str) else float(value)
    except ValueError as e:
        raise ConfigError(f"{where}: 'max_output_bytes': {e} (e.g. \"4MiB\")") from None
    if not 1024 <= size < 2**40:
        raise ConfigError(f"{where}: 'max_output_bytes' must be a size from 1KiB to 1TiB (got {value!r})")
    return int(size)


def _weight(data: dict[str, Any], key: str, where: str, what: str) -> float:
    """A positive finite number (a priority weight)."""
    value = float(_typed(data, key, (int, float), where))
    if not 0 < value < float("inf"):
        raise ConfigError(f"{where}: '{key}' must be {what} > 0")
    return value


def _rate(value: Any, where: str, key: str = "bandwidth_capacity") -> float:
    """A bandwidth: a number of B/s or a string such as ``60GiB/s``."""
    from rdtadvisor.core.units import parse_size

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: '{key}' must be a rate such as \"60GiB/s\"")
    try:
        rate = float(value) if not isinstance(value, str) else parse_size(value)
    except ValueError as e:
        raise ConfigError(f"{where}: '{key}': {e}") from None
    if rate <= 0:
        raise ConfigError(f"{where}: '{key}' must be positive")
    return rate


_MISSING = object()


def _typed(data: dict[str, Any], key: str, kind: Any, where: str, default: Any = _MISSING) -> Any:
    if key not in data:
        if default is _MISSING:
            raise ConfigError(f"{where}: '{key}' is required")
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _only_keys(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
