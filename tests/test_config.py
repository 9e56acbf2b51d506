"""Settings resolve option > environment > config file > default; bad config is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdtadvisor.core.config import CatSettings, host_from_name, load_settings, read_hosts_file
from rdtadvisor.core.errors import ConfigError

CONFIG = """
store = "~/rdt-store"
[collect]
readings = 5
parallel = 8
[ssh]
user = "monitor"
sudo = true
options = ["StrictHostKeyChecking=accept-new"]
[[hosts]]
name = "xen01"
address = "10.0.0.11"
port = 2222
[[hosts]]
name = "xen02"
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("RDTADVISOR_STORE", raising=False)
    monkeypatch.delenv("RDTADVISOR_CONFIG", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_config_file_values_and_per_host_ssh_overrides(config):
    s = load_settings(config)
    assert s.store == Path("~/rdt-store").expanduser()
    assert (s.readings, s.parallel, s.timeout) == (5, 8, 60.0)
    xen01, xen02 = s.hosts
    assert (xen01.name, xen01.target, xen01.ssh.port, xen01.ssh.user, xen01.ssh.sudo) == \
        ("xen01", "10.0.0.11", 2222, "monitor", True)
    assert (xen02.target, xen02.ssh.port) == ("xen02", None)
    assert xen02.ssh.options == ("StrictHostKeyChecking=accept-new",)


def test_option_beats_environment_beats_file(config, monkeypatch, tmp_path):
    monkeypatch.setenv("RDTADVISOR_STORE", str(tmp_path / "env"))
    assert load_settings(config).store == tmp_path / "env"
    assert load_settings(config, store=tmp_path / "opt").store == tmp_path / "opt"


def test_environment_names_the_config_file(config, monkeypatch):
    monkeypatch.setenv("RDTADVISOR_CONFIG", str(config))
    assert [h.name for h in load_settings().hosts] == ["xen01", "xen02"]


@pytest.mark.parametrize(("text", "message"), [
    ("store = 5", "'store' has the wrong type"),
    ("[collect]\nreadings = 0", "must be positive"),
    ("[ssh]\nportt = 22", "unknown setting(s) portt"),
    ("[[hosts]]\naddress = 'x'", "each host needs a name"),
    ("this is = not toml =", "not valid TOML"),
    ("[report]\nmemory_traffic = -1", "'memory_traffic' must be positive"),
    ("[report.hosts.x]\nmemory_traffic = 'fast'", "'memory_traffic'"),
])
def test_bad_config_is_one_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_memory_traffic_per_socket_with_per_host_overrides(tmp_path):
    # what a CPU without MBM needs measured outside xl (pcm-memory) to size its relative curves
    path = tmp_path / "c.toml"
    path.write_text('[report]\nmemory_traffic = "10GiB/s"\n[report.hosts.old]\nmemory_traffic = 12e9\n')
    r = load_settings(path).report
    assert r.memory_traffic == 10 * 2**30 and r.host_memory_traffic == {"old": 12e9}


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml")


def test_hosts_file(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("# fleet\nxen01\n\n  xen02  # rack 2\n")
    assert read_hosts_file(f) == ["xen01", "xen02"]
    f.write_text("xen01\n-oProxyCommand=evil\n")
    with pytest.raises(ConfigError, match=":2: '-oProxyCommand=evil' is not a host name"):
        read_hosts_file(f)


def test_unknown_host_names_get_default_ssh_options(config):
    s = load_settings(config)
    assert host_from_name("xen01", s).ssh.port == 2222
    new = host_from_name("xen09", s)
    assert new.ssh.user == "monitor" and not new.local
    assert host_from_name("local", s).local
    with pytest.raises(ConfigError):
        host_from_name("-oProxyCommand=x", s)


# --- [cat]: the policy of `advise cat` -----------------------------------------------------------

CAT = """
[cat]
min_bits = 2
reserved_ways = 1
dom0_ways = 2
overlap = false
hysteresis = 0.05
max_slowdown = 0.25
[cat.tiers]
platinum = 8
gold = 4.5
[cat.vms."db-orders"]
tier = "platinum"
min_mib = 8
[cat.vms."web 01"]
priority = 0.5
[cat.vms."Domain-0"]
min_mib = 1.5
[cat.hosts."xen02"]
min_bits = 1
overlap = true
"""


def load_text(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_settings(path)


def test_cat_policy_values_tiers_guarantees_and_host_overrides(tmp_path):
    cat = load_text(tmp_path, CAT).cat
    assert (cat.min_bits, cat.reserved_ways, cat.dom0_ways) == (2, 1, 2)
    assert (cat.overlap, cat.hysteresis, cat.max_slowdown) == (False, 0.05, 0.25)
    assert cat.tiers == {"platinum": 8.0, "gold": 4.5}          # written tiers replace the defaults
    assert cat.priority_of("db-orders") == 8.0
    assert cat.priority_of("web 01") == 0.5
    assert cat.priority_of("anyone-else") == 1.0
    assert cat.min_mib() == {"db-orders": 8.0, "Domain-0": 1.5}
    xen02 = cat.for_host("xen02")
    assert (xen02.min_bits, xen02.reserved_ways, xen02.dom0_ways, xen02.overlap) == (1, 1, 2, True)
    assert cat.for_host("xen09") == CatSettings(**{**cat.__dict__, "hosts": {}})
    # a command-line option beats the file, per-host tables included
    forced = cat.override(min_bits=3, overlap=None)
    assert forced.for_host("xen02").min_bits == 3 and forced.for_host("xen02").overlap is True


def test_cat_defaults_without_the_table(tmp_path):
    cat = load_text(tmp_path, "").cat
    assert cat == CatSettings()
    assert (cat.min_bits, cat.reserved_ways, cat.dom0_ways) == (1, 0, 0)
    assert (cat.overlap, cat.hysteresis) == (True, 0.02)
    assert cat.tiers == {"gold": 4.0, "silver": 2.0, "bronze": 1.0}
    only_vm = load_text(tmp_path, '[cat.vms."db"]\ntier = "silver"').cat
    assert only_vm.priority_of("db") == 2.0 and only_vm.min_mib() == {}


@pytest.mark.parametrize(("text", "message"), [
    ("[cat]\nmin_bit = 2", "[cat]: unknown setting(s) min_bit"),
    ("[cat]\nmin_bits = 0", "[cat]: 'min_bits' must be at least 1"),
    ("[cat]\nmin_bits = 1.5", "[cat]: 'min_bits' has the wrong type (float)"),
    ("[cat]\nreserved_ways = -1", "[cat]: 'reserved_ways' must be a number of ways >= 0"),
    ("[cat]\ndom0_ways = -2", "[cat]: 'dom0_ways' must be a number of ways >= 0"),
    ("[cat]\noverlap = 'no'", "[cat]: 'overlap' has the wrong type (str)"),
    ("[cat]\nhysteresis = 0.6", "[cat]: 'hysteresis' must be a share from 0 to 0.5"),
    ("[cat]\nhysteresis = -0.01", "[cat]: 'hysteresis' must be a share from 0 to 0.5"),
    ("[cat]\nhysteresis = nan", "[cat]: 'hysteresis' must be a share from 0 to 0.5"),
    ("[cat]\nmax_slowdown = 1.5", "[cat]: 'max_slowdown' must be a share from 0 to 1"),
    ("[cat]\ntiers = 3", "[cat]: [tiers] must be a table"),
    ("[cat.tiers]", "[cat.tiers] is empty"),
    ("[cat.tiers]\ngold = 0", "[cat] tiers: 'gold' must be the tier's priority weight > 0"),
    ("[cat.tiers]\ngold = 'high'", "[cat] tiers: 'gold' has the wrong type (str)"),
    ('[cat.vms]\ndb = 3', '[cat] vms."db": must be a table'),
    ('[cat.vms."db"]\ntier = "platinum"', "[cat] vms.\"db\": 'tier' 'platinum' is not a tier "
                                         "(known: bronze, gold, silver)"),
    ('[cat.tiers]\nplatinum = 8\n[cat.vms."db"]\ntier = "gold"',
     "'tier' 'gold' is not a tier (known: platinum)"),
    ('[cat.vms."db"]\ntier = "gold"\npriority = 2',
     '[cat] vms."db": give \'tier\' or \'priority\', not both'),
    ('[cat.vms."db"]\npriority = 0', "[cat] vms.\"db\": 'priority' must be a priority weight > 0"),
    ('[cat.vms."db"]\npriority = -1.5', "[cat] vms.\"db\": 'priority' must be a priority weight > 0"),
    ('[cat.vms."db"]\nmin_mib = -1', "[cat] vms.\"db\": 'min_mib' must be a size in MiB >= 0"),
    ('[cat.vms."db"]\nmin_mib = inf', "[cat] vms.\"db\": 'min_mib' must be a size in MiB >= 0"),
    ('[cat.vms."db"]\nmin_mb = 4', '[cat] vms."db": unknown setting(s) min_mb'),
    ('[cat.hosts."xen01"]\nhysteresis = 0.1', '[cat] hosts."xen01": unknown setting(s) hysteresis'),
    ('[cat.hosts."xen01"]\nreserved_ways = -1', "[cat] hosts.\"xen01\": 'reserved_ways' must be a number"),
    ('[cat.hosts]\nxen01 = 1', '[cat] hosts."xen01": must be a table'),
])
def test_bad_cat_policy_is_one_error_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    text_of = str(e.value)
    assert message in text_of and text_of.startswith(str(path)) and "\n" not in text_of
