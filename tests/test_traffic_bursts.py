"""Burst rules of the traffic counter: 4 KiB boundaries, the 256-beat limit, widening."""

import numpy as np
import pytest

from defslice.errors import InputError
from defslice.model.layout import split_bursts
from defslice.model.traffic.counter import TrafficCount, region_bursts
from defslice.model.traffic.reuse_buffer import DirectMappedBuffer


def test_region_stops_at_4k_boundary():
    # 16-byte bus, 10 beats starting 4 beats before 0x1000: 4 + 6.
    bursts, beats = region_bursts([0x0FC0], [160], 16, 256)
    assert (bursts[0], beats[0]) == (2, 10)


def test_region_obeys_256_beat_limit():
    # 8-byte bus: 600 beats from a page start = 256 + 256 (page 0x2000-0x2FFF is 512
    # beats) + 88 in the next page.
    bursts, beats = region_bursts([0x2000], [8 * 600], 8, 256)
    assert (bursts[0], beats[0]) == (3, 600)
    # A whole 4 KiB page on a 4-byte bus is 1024 beats: four 256-beat bursts.
    assert region_bursts([0], [4096], 4, 256)[0][0] == 4


def test_unaligned_region_is_widened_to_whole_beats():
    # 2 bytes at 0x0FFF..0x1000 touch beat 0x0FF0 and beat 0x1000: two beats, and the
    # boundary between them makes two bursts.
    bursts, beats = region_bursts([0x0FFF], [2], 16, 256)
    assert (bursts[0], beats[0]) == (2, 2)
    # a 48-byte pixel straddling 4096 (pixel 85 of a 48-byte stride) also splits
    assert region_bursts([85 * 48], [48], 16, 256)[0][0] == 2
    # zero length costs nothing
    assert region_bursts([0x123], [0], 16, 256)[0][0] == 0


def test_region_bursts_agree_with_split_bursts():
    rng = np.random.default_rng(1)
    for bus in (4, 8, 16, 64):
        for max_beats in (1, 3, 16, 256):
            addr = rng.integers(0, 1 << 16, 200) * bus
            nbytes = rng.integers(1, 3000, 200) * bus
            bursts, beats = region_bursts(addr, nbytes, bus, max_beats)
            for a, n, b, t in zip(addr, nbytes, bursts, beats, strict=True):
                ref = split_bursts(int(a), int(n), bus, max_beats)
                assert b == len(ref)
                assert t == sum(x[1] for x in ref)


def test_region_bursts_reject_bad_regions():
    with pytest.raises(InputError, match="non-negative"):
        region_bursts([-16], [16], 16, 256)
    with pytest.raises(InputError, match="shape"):
        region_bursts([0, 16], [16], 16, 256)


def test_count_keeps_tensors_and_directions_apart():
    c = TrafficCount(16, 256)
    c.add_regions("value", False, [0x0FC0], [160])
    c.add_regions("output", True, [0x4000], [20])
    d = c.as_dict()
    assert d["read"] == {"bursts": 2, "beats": 10, "bytes": 160}
    assert d["write"] == {"bursts": 1, "beats": 2, "bytes": 20}
    assert d["per_tensor"]["output"]["write"]["beats"] == 2
    with pytest.raises(InputError, match="unknown tensor"):
        c.add_regions("weights_typo", False, [0], [16])


def test_direct_mapped_buffer_hits_and_conflicts():
    buf = DirectMappedBuffer(2)
    # 0 and 2 share slot 0: they evict each other; 1 sits in slot 1.
    np.testing.assert_array_equal(buf.access(np.array([0, 2, 0, 1, 1])),
                                  [False, False, False, False, True])
    # the state carries over between calls: slot 0 holds 0, slot 1 holds 1
    np.testing.assert_array_equal(buf.access(np.array([1, 0, 2])), [True, True, False])
    assert not DirectMappedBuffer(0).access(np.array([5, 5])).any()
