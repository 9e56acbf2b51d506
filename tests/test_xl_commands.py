"""Command lines as users type them decide the parser; collection commands follow the Xen version."""

from __future__ import annotations

import pytest

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.xl.commands import capture_name, cat_set_argv, collection_commands, parse_command


@pytest.mark.parametrize(("line", "name", "metric", "level", "domain"), [
    ("xl psr-cmt-show cache-occupancy", "psr-cmt-show", "cache-occupancy", 3, None),
    ("xl psr-cmt-show cache_occupancy", "psr-cmt-show", "cache-occupancy", 3, None),  # Xen 4.5
    ("xl psr-cmt-show total-mem-bandwidth 7", "psr-cmt-show", "total-mem-bandwidth", 3, "7"),
    ("/usr/sbin/xl -v psr-cmt-show local-mem-bandwidth", "psr-cmt-show", "local-mem-bandwidth", 3, None),
    ("xl psr-cat-show", "psr-cat-show", None, 3, None),
    ("xl psr-cat-show -l 2", "psr-cat-show", None, 2, None),
    ("xl psr-cat-show -l2 1", "psr-cat-show", None, 2, "1"),
    ("xl psr-cat-show --level=3 'my vm'", "psr-cat-show", None, 3, "my vm"),
    ("xl psr-mba-show", "psr-mba-show", None, 3, None),
    ("xl list", "list", None, 3, None),
    ("xl info", "info", None, 3, None),
])
def test_command_lines(line, name, metric, level, domain):
    cmd = parse_command(line)
    assert (cmd.name, cmd.metric, cmd.level, cmd.domain) == (name, metric, level, domain)


@pytest.mark.parametrize(("line", "sections"), [
    ("xl psr-hwinfo", {"cmt", "cat", "mba"}),
    ("xl psr-hwinfo --cat", {"cat"}),
    ("xl psr-hwinfo -ma", {"cmt", "cat"}),
    ("xl psr-hwinfo -b", {"mba"}),
])
def test_hwinfo_flags(line, sections):
    assert parse_command(line).sections == sections


@pytest.mark.parametrize("line", [
    "", "xl", "xl psr-cmt-show", "xl psr-cmt-show cache", "xl psr-cat-show -l 4", "xl psr-cat-show -l",
    "xl psr-hwinfo --bogus", "xl list -l", "xl info host", "xl vcpu-list", "xl psr-cat-show a b",
])
def test_unusable_command_lines_are_config_errors(line):
    with pytest.raises(ConfigError):
        parse_command(line)


def test_capture_names_follow_the_layout():
    assert capture_name(("xl", "psr-cmt-show", "cache_occupancy")) == "xl-psr-cmt-show-cache-occupancy.txt"
    assert capture_name(("xl", "psr-cmt-show", "total-mem-bandwidth"), 2) == \
        "xl-psr-cmt-show-total-mem-bandwidth.2.txt"
    assert capture_name(("xl", "psr-cat-show", "-l", "2")) == "xl-psr-cat-show-l2.txt"
    assert capture_name(("xl", "psr-hwinfo")) == "xl-psr-hwinfo.txt"


def test_collection_commands_follow_the_xen_version():
    v45 = collection_commands((4, 5))
    assert ("xl", "psr-cmt-show", "cache_occupancy") in v45 and ("xl", "psr-hwinfo") not in v45
    v46 = collection_commands((4, 6), readings=2)
    assert v46.count(("xl", "psr-cmt-show", "total-mem-bandwidth")) == 2
    assert ("xl", "psr-cat-show", "-l", "2") not in v46 and ("xl", "psr-mba-show") not in v46
    assert ("xl", "psr-cat-show", "-l", "2") in collection_commands((4, 10))
    assert ("xl", "psr-mba-show") in collection_commands((4, 11))
    assert collection_commands(None) == collection_commands((4, 22))


def test_cat_set_syntax_changed_in_4_10():
    assert cat_set_argv((4, 9), "7", 0xff, socket=1, half="code") == \
        ("xl", "psr-cat-cbm-set", "-s", "1", "-c", "7", "0xff")
    assert cat_set_argv((4, 10), "7", 0xf0, level=2) == ("xl", "psr-cat-set", "-l", "2", "7", "0xf0")
    with pytest.raises(ConfigError):
        cat_set_argv((4, 6), "7", 0xff, half="data")
