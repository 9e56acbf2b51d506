"""Settings resolve option > environment > config file > default; bad config is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdtadvisor.config import host_from_name, load_settings, read_hosts_file
from rdtadvisor.errors import ConfigError

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
])
def test_bad_config_is_one_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml")


def test_hosts_file(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("# fleet\nxen01\n\n  xen02  # rack 2\n")
    assert read_hosts_file(f) == ["xen01", "xen02"]
    f.write_text("xen01\n-oProxyCommand=evil\n")
    with pytest.raises(ConfigError, match=":2: not a host name"):
        read_hosts_file(f)


def test_unknown_host_names_get_default_ssh_options(config):
    s = load_settings(config)
    assert host_from_name("xen01", s).ssh.port == 2222
    new = host_from_name("xen09", s)
    assert new.ssh.user == "monitor" and not new.local
    assert host_from_name("local", s).local
    with pytest.raises(ConfigError):
        host_from_name("-oProxyCommand=x", s)
