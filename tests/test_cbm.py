"""Mask algebra (rdtadvisor.cache.cbm): Xen's CBM rule, layouts, COS counting, ways <-> bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor.cache import cbm
from rdtadvisor.cache.layouts import valid as sim_valid

MIB = 2**20


@pytest.mark.parametrize(("mask", "length", "ok"), [
    (0x7f0, 11, True), (0x3, 11, True), (0x7ff, 11, True), (0x1, 1, True),
    (0, 11, False),                 # Xen: at least one bit
    (0x800, 11, False),             # bit 11 is beyond an 11-bit CBM
    (0xfff, 11, False),
    (0x5, 11, False),               # two runs
    (0x7ef, 11, False),
    (0xffffffff, 32, True), (0x1ffffffff, 32, False), (1, 33, False), (1, 0, False),
])
def test_is_valid_is_xens_rule(mask, length, ok):
    assert cbm.is_valid(mask, length) is ok
    assert (cbm.why_invalid(mask, length) is None) is ok


def test_min_bits_is_policy_on_top():
    assert cbm.is_valid(0x1, 11) and not cbm.is_valid(0x1, 11, min_bits=2)
    assert "fewer than the minimum of 2" in cbm.why_invalid(0x1, 11, min_bits=2)
    assert "not one contiguous run" in cbm.why_invalid(0x5, 11)
    assert "beyond the 11-bit CBM" in cbm.why_invalid(0x800, 11)


@given(st.integers(0, 2**21), st.integers(1, 20))
def test_is_valid_agrees_with_the_simulators_copy_of_xens_check(mask, length):
    assert cbm.is_valid(mask, length) == sim_valid(mask, length)


def test_contiguous_and_run_of():
    assert cbm.contiguous(4, 7) == 0x7f0
    assert cbm.run_of(0x7f0) == (4, 7)
    with pytest.raises(ValueError):
        cbm.contiguous(0, 0)
    with pytest.raises(ValueError):
        cbm.run_of(0x5)
    assert cbm.overlap(0x7ff, 0x3) == 2 and cbm.overlap(0x7f0, 0x3) == 0


def test_layout_stacks_from_the_low_end_and_skips_reserved_ways():
    assert cbm.layout([7, 2], 11) == [0x7f, 0x180]
    # 1 way low for dom0, 2 high for DDIO: runs in bits 1..8; the shared run above the private ones
    assert cbm.layout([3, 2], 11, reserved_low=1, reserved_high=2, shared=2) == [0xe, 0x30, 0xc0]
    with pytest.raises(ValueError, match="only 8 of 11"):
        cbm.layout([5, 4], 11, reserved_low=1, reserved_high=2)
    with pytest.raises(ValueError, match="at least one way"):
        cbm.layout([3, 0], 11)


@given(st.integers(4, 20).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, 3), st.integers(0, 3),
    st.lists(st.integers(1, 5), min_size=1, max_size=6), st.none() | st.integers(1, 3))))
def test_layout_masks_are_valid_disjoint_and_avoid_reserved_ways(args):
    n, low, high, counts, shared = args
    need = sum(counts) + (shared or 0)
    if need > n - low - high:
        with pytest.raises(ValueError):
            cbm.layout(counts, n, reserved_low=low, reserved_high=high, shared=shared)
        return
    masks = cbm.layout(counts, n, reserved_low=low, reserved_high=high, shared=shared)
    assert len(masks) == len(counts) + (shared is not None)
    reserved = ((1 << low) - 1) | (((1 << high) - 1) << (n - high))
    seen = 0
    for m, w in zip(masks, [*counts, *([shared] if shared else [])], strict=True):
        assert cbm.is_valid(m, n) and cbm.ways_of(m) == w
        assert m & reserved == 0 and m & seen == 0
        seen |= m


def test_cos_needed_counts_distinct_non_default_settings():
    assert cbm.cos_needed([0x7ff, 0x7f0, 0x7f0, 0x3], 11) == 2           # default is COS 0; shared mask
    assert cbm.cos_needed([(0xf, 0xffff0), (0xf, 0xffff0), 0xfffff], 20) == 1
    assert cbm.cos_needed([(0xf, 0xffff0), (0xf, 0xfff00), 0xff], 20) == 3   # pairs differ; plain = (m, m)
    assert cbm.cos_needed([0xff, (0xff, 0xff)], 20) == 1


def test_cos_budget_uses_hwinfos_already_halved_value():
    assert cbm.cos_budget(15, False) == 15
    assert cbm.cos_budget(7, True) == 7                                  # psr-hwinfo prints 7 under CDP
    assert cbm.cos_budget(15, True, from_hwinfo=False) == 7              # 4.10+: (15 - 1) >> 1
    assert cbm.cos_budget(15, True, from_hwinfo=False, xen_version=(4, 8)) == 7   # 4.7-4.9: 15 >> 1
    assert cbm.cos_budget(16, True, from_hwinfo=False, xen_version=(4, 8)) == 8
    assert cbm.cos_budget(16, True, from_hwinfo=False) == 7


def test_ways_and_bytes():
    l3 = 27.5 * MIB                                                      # 11 ways of 2.5 MiB
    assert cbm.bytes_for(2, l3, 11) == 5 * MIB
    assert cbm.ways_for(5 * MIB, l3, 11) == 2                             # exact multiple: no extra way
    assert cbm.ways_for(5 * MIB + 1, l3, 11) == 3                         # guarantees round up
    assert cbm.ways_for(0, l3, 11) == 0 and cbm.ways_for(1, l3, 11) == 1
    assert cbm.ways_for(40 * MIB, l3, 11) == 16                           # more than the cache: caller's call


@settings(max_examples=200)
@given(st.floats(0, 200 * MIB), st.sampled_from([(27.5 * MIB, 11), (55 * MIB, 20), (12 * MIB, 12)]))
def test_ways_for_is_the_smallest_sufficient_count(nbytes, cache):
    l3, n = cache
    w = cbm.ways_for(nbytes, l3, n)
    assert cbm.bytes_for(w, l3, n) >= nbytes * (1 - 1e-9)
    assert w == 0 or cbm.bytes_for(w - 1, l3, n) < nbytes


def test_hexmask_and_parse_mask():
    assert cbm.hexmask(0x7f0) == "0x7f0"
    assert cbm.parse_mask("0x7f0") == 0x7f0 == cbm.parse_mask("2032") == cbm.parse_mask(2032)
    assert cbm.parse_mask("010") == 10                                    # never octal
