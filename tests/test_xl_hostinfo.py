"""`xl info` parser: key padding, colons in values, version keys, required keys, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor import xl
from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.core.units import MIB
from rdtadvisor.xl import hostinfo
from rdtadvisor.xl.hostinfo import HostInfo
from tests.damage import escaped, mutated
from tests.damage import parses_or_parse_error as _parses_or_parse_error

FIXTURES = Path(__file__).parent / "fixtures" / "xl" / "info"


def kv(key: str, value: str) -> str:
    return "%-23s: %s\n" % (key, value)


MINIMAL = (kv("host", "xen01") + kv("release", "6.1.0-18-amd64") + kv("nr_cpus", "80") + kv("nr_nodes", "2")
           + kv("cores_per_socket", "20") + kv("threads_per_core", "2") + "virt_caps              : hvm hap\n"
           + kv("total_memory", "392851") + kv("free_memory", "254310") + kv("xen_major", "4")
           + kv("xen_minor", "17") + kv("xen_extra", ".2") + kv("xen_version", "4.17.2")
           + kv("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_64 ")
           + kv("xen_commandline", "placeholder dom0_mem=4096M,max:4096M psr=cmt,cat,cdp")
           + kv("xen_changeset", "Mon Oct 14 11:31:31 2019 +0100 git:518c935fac"))


def test_typed_fields():
    info = hostinfo.parse(MINIMAL)
    assert (info.host, info.release, info.nr_cpus, info.nr_nodes) == ("xen01", "6.1.0-18-amd64", 80, 2)
    assert (info.cores_per_socket, info.threads_per_core, info.sockets) == (20, 2, 2)
    assert info.total_memory_bytes == 392851 * MIB and info.free_memory_bytes == 254310 * MIB
    assert info.xen_version == "4.17.2" and info.xen_major_minor == (4, 17)
    assert xl.parse("xl info", MINIMAL) == info


def test_values_are_split_on_the_first_colon_and_kept_verbatim():
    f = hostinfo.parse(MINIMAL).fields
    assert f["xen_commandline"] == "placeholder dom0_mem=4096M,max:4096M psr=cmt,cat,cdp"
    assert f["xen_changeset"] == "Mon Oct 14 11:31:31 2019 +0100 git:518c935fac"
    assert f["xen_caps"].endswith("x86_64 ")        # xl's trailing space is kept
    assert f["virt_caps"] == "hvm hap"
    assert hostinfo.parse(MINIMAL).xen_commandline.split()[-1] == "psr=cmt,cat,cdp"


def test_bare_virt_caps_and_empty_values():
    info = hostinfo.parse(MINIMAL.replace(" hvm hap", "") + kv("xen_changeset_x", ""))
    assert info.fields["virt_caps"] == "" and info.fields["xen_changeset_x"] == ""


def test_version_from_major_minor_extra_without_xen_version_line():
    text = MINIMAL.replace(kv("xen_version", "4.17.2"), "")
    text = text.replace(kv("xen_extra", ".2"), kv("xen_extra", "-unstable"))
    info = hostinfo.parse(text)
    assert info.xen_version == "4.17-unstable" and info.xen_major_minor == (4, 17)
    assert "xen_version" not in info.fields
    text = MINIMAL.replace(kv("xen_extra", ".2"), kv("xen_extra", ""))
    assert hostinfo.parse(text).xen_version == "4.17"


def test_release_is_optional():
    assert hostinfo.parse(MINIMAL.replace(kv("release", "6.1.0-18-amd64"), "")).release is None


def test_sockets_derivation():
    text = MINIMAL.replace(kv("nr_cpus", "80"), kv("nr_cpus", "24"))   # fewer online CPUs than one socket
    assert hostinfo.parse(text).sockets == 1
    text = MINIMAL.replace(kv("cores_per_socket", "20"), kv("cores_per_socket", "10"))
    assert hostinfo.parse(text).sockets == 4


@pytest.mark.parametrize("key", hostinfo.REQUIRED)
def test_missing_required_key_is_named(key):
    lines = [line for line in MINIMAL.splitlines(keepends=True) if not line.startswith(key + " ")]
    with pytest.raises(ParseError, match=f"missing required key '{key}'") as e:
        hostinfo.parse("".join(lines), source="i.txt")
    assert "i.txt" in str(e.value)


@pytest.mark.parametrize("text, fragment", [
    ("not xl info\n", "is this xl info output?"),
    (MINIMAL.replace(kv("nr_cpus", "80"), kv("nr_cpus", "eighty")), "expected a number for 'nr_cpus'"),
    (MINIMAL.replace(kv("threads_per_core", "2"), kv("threads_per_core", "0")), "must be positive"),
    (MINIMAL + kv("host", "again"), "printed twice"),
    (MINIMAL + "cpu_topology           :\ncpu:    core    socket     node\n  0:       0        0        0\n",
     "xl info -n"),
    ("xen01\n", "is this xl info output?"),                       # `xl info host` prints the bare value
])
def test_malformed_output_raises_parse_error(text, fragment):
    with pytest.raises(ParseError) as e:
        hostinfo.parse(text, source="cap.txt")
    assert fragment in str(e.value) and "cap.txt" in str(e.value)


def test_known_error_lines_are_skipped_and_alone_raise_xl_reported():
    noise = "libxl: error: libxl.c:1:libxl_get_physinfo: getting physinfo: Permission denied\n"
    assert hostinfo.parse(noise + MINIMAL) == hostinfo.parse(MINIMAL)
    with pytest.raises(XlReportedError) as e:
        hostinfo.parse(noise)
    assert e.value.kind == "libxl-error"
    with pytest.raises(XlReportedError) as e:
        hostinfo.parse("\n")
    assert e.value.kind == "no-output"


def test_crlf():
    assert hostinfo.parse(MINIMAL.replace("\n", "\r\n")) == hostinfo.parse(MINIMAL)
    raw = (FIXTURES / "recon-4.17-crlf.txt").read_bytes()
    assert b"\r\n" in raw
    assert hostinfo.parse(raw) == hostinfo.parse((FIXTURES / "recon-4.17-two-sockets-psr.txt").read_bytes())


def test_to_dict_contract_and_table_rows():
    info = hostinfo.parse(MINIMAL)
    d = info.to_dict()
    assert list(d) == ["host", "release", "nr_cpus", "nr_nodes", "cores_per_socket", "threads_per_core",
                       "sockets", "total_memory_bytes", "free_memory_bytes", "xen_version", "fields"]
    assert d["fields"]["total_memory"] == "392851" and d["total_memory_bytes"] == 411934130176
    assert {r["key"] for r in info.table_rows()} == set(d) - {"fields"}


RENDERABLE = ["recon-4.17-two-sockets-psr", "recon-4.6-psr-cmt-cat", "recon-4.2-no-xen-version-line",
              "recon-4.13-arm-empty-virt-caps", "recon-4.17-crlf"]


@pytest.mark.parametrize("case", RENDERABLE)
def test_render_reproduces_golden_fixtures_byte_exactly(case):
    raw = (FIXTURES / f"{case}.txt").read_bytes()
    assert hostinfo.render(hostinfo.parse(raw)) == raw.decode().replace("\r\n", "\n")


def test_every_golden_case_is_classified():
    cases = {p.stem for p in FIXTURES.glob("*.txt")}
    assert cases == set(RENDERABLE) | {c for c in cases if c.startswith("err-")}


def test_render_without_fields_uses_xl_order():
    info = HostInfo("h", None, 8, 1, 4, 2, 1, 1024 * MIB, 512 * MIB, "4.22.0", {})
    text = hostinfo.render(info)
    assert text.splitlines()[0] == "host                   : h"
    assert "xen_version            : 4.22.0\n" in text
    parsed = hostinfo.parse(text)
    assert parsed.to_dict() | {"fields": {}} == info.to_dict()


# --- properties --------------------------------------------------------------------------

VALUE_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
values = st.text(VALUE_CHARS, max_size=40).map(escaped)
stripped = values.filter(lambda s: s == s.strip())
RESERVED = set(hostinfo.REQUIRED) | {"release", "xen_version", "virt_caps", "cpu_topology", "numa_info"}
extra_keys = st.from_regex(r"[a-z][a-z0-9_]{0,27}", fullmatch=True).filter(lambda k: k not in RESERVED)


@st.composite
def hostinfos(draw) -> HostInfo:
    host = draw(stripped)
    release = draw(st.none() | stripped)
    nr_cpus, nodes = draw(st.integers(1, 8192)), draw(st.integers(1, 64))
    cores, threads = draw(st.integers(1, 256)), draw(st.integers(1, 8))
    total, free = draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40))
    major, minor = draw(st.integers(3, 9)), draw(st.integers(0, 40))
    extra = draw(st.from_regex(r"(\.[0-9]{1,2})?(-[a-z0-9]{1,8})?", fullmatch=True))
    fields = {"host": host}
    if release is not None:
        fields["release"] = release
    fields |= {"nr_cpus": str(nr_cpus), "nr_nodes": str(nodes), "cores_per_socket": str(cores),
               "threads_per_core": str(threads)}
    if draw(st.booleans()):
        fields["virt_caps"] = draw(values)
    fields |= {"total_memory": str(total), "free_memory": str(free)}
    fields |= draw(st.dictionaries(extra_keys, values, max_size=6))
    fields |= {"xen_major": str(major), "xen_minor": str(minor), "xen_extra": extra}
    if draw(st.booleans()):
        fields["xen_version"] = f"{major}.{minor}{extra}"
    return HostInfo(host, release, nr_cpus, nodes, cores, threads, max(1, nr_cpus // (cores * threads)),
                    total * MIB, free * MIB, f"{major}.{minor}{extra}", fields)


@settings(deadline=None, max_examples=200)
@given(hostinfos())
def test_render_then_parse_is_identity(info):
    text = hostinfo.render(info)
    assert hostinfo.parse(text) == info
    assert hostinfo.parse(text.replace("\n", "\r\n").encode()) == info
    assert hostinfo.render(hostinfo.parse(text)) == text


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_garbage_parses_or_raises_parse_error(text):
    _parses_or_parse_error(hostinfo.parse, text)


GOLDEN = [p.read_bytes() for p in sorted(FIXTURES.glob("*.txt"))]


@settings(deadline=None, max_examples=200)
@given(mutated(st.one_of(st.sampled_from(GOLDEN), hostinfos().map(lambda i: hostinfo.render(i).encode()))))
def test_damaged_output_parses_or_raises_parse_error(data):
    _parses_or_parse_error(hostinfo.parse, data)
    _parses_or_parse_error(hostinfo.parse, data.decode("utf-8", "replace"))


def test_known_xl_error_lines_mixed_into_the_output_are_skipped():
    # A `2>&1` capture: xl's own error text (rdtadvisor.xl.failures) is not a field.
    info = hostinfo.parse("libxl_physinfo failed.\n" + MINIMAL, source="cap.txt")
    assert info.host == hostinfo.parse(MINIMAL).host
