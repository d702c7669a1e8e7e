"""The AXI register slice against a cycle-by-cycle Python model under random valid and
ready on both sides: every beat once and in order, full throughput, and its ready and
valid independent of the other side's inputs within a cycle (flip-flop outputs)."""

import random

import pytest
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from hw_support import simulate

from defslice.hw.axi import AddressSignature, ReadDataSignature, WriteResponseSignature
from defslice.hw.axi_slice import AxiSlice


class SliceModel:
    """The skid buffer cycle by cycle: output register, spare entry, registered ready."""

    def __init__(self):
        self.out = None
        self.spare = None
        self.ready = True

    def step(self, valid, beat, sink_ready):
        take = valid and self.ready
        if self.out is None or sink_ready:
            if self.spare is not None:
                self.out, self.spare, self.ready = self.spare, None, True
            else:
                self.out = beat if take else None
        elif take:
            self.spare, self.ready = beat, False


SIGNATURES = {"r": ReadDataSignature(64), "b": WriteResponseSignature(),
              "ar": AddressSignature(32)}


def _ends(dut):
    """(source, sink) of the slice: R and B go bus -> inner, AR inner -> bus."""
    return (dut.bus, dut.inner) if dut._from_bus else (dut.inner, dut.bus)


def _random_beat(rng, dut, src):
    return {name: rng.getrandbits(Shape.cast(getattr(src, name).shape()).width)
            for name in dut.fields}


def _run(channel, seed, p_valid, p_ready, beats=300):
    """Drive ``beats`` random beats through the slice; return (sent, received, cycles)."""
    rng = random.Random(seed)
    dut = AxiSlice(SIGNATURES[channel])
    src, snk = _ends(dut)
    sent = [_random_beat(rng, dut, src) for _ in range(beats)]
    got = []
    model = SliceModel()
    cycles = 0

    def view(ctx):
        return (ctx.get(src.ready), ctx.get(snk.valid),
                {name: ctx.get(getattr(snk, name)) for name in dut.fields})

    async def tb(ctx):
        nonlocal cycles
        pending = 0                     # index of the beat offered (held until taken)
        offering = False
        while len(got) < beats:
            offering = offering or (pending < beats and rng.random() < p_valid)
            sink_ready = rng.random() < p_ready
            ctx.set(src.valid, offering)
            for name, v in (sent[pending] if pending < beats else sent[-1]).items():
                ctx.set(getattr(src, name), v)
            ctx.set(snk.ready, sink_ready)
            seen = view(ctx)
            assert seen[0] == model.ready
            assert seen[1] == (model.out is not None)
            if model.out is not None:
                assert seen[2] == model.out
            # Flip the other side's inputs: nothing the slice drives may move.
            ctx.set(snk.ready, not sink_ready)
            ctx.set(src.valid, not offering)
            ctx.set(getattr(src, dut.fields[0]), ctx.get(getattr(src, dut.fields[0])) ^ 1)
            assert view(ctx) == seen
            ctx.set(snk.ready, sink_ready)
            ctx.set(src.valid, offering)
            ctx.set(getattr(src, dut.fields[0]), sent[min(pending, beats - 1)][dut.fields[0]])
            if seen[1] and sink_ready:
                got.append(seen[2])
            took = offering and seen[0]
            model.step(offering, sent[pending] if offering else None, sink_ready)
            if took:
                pending += 1
                offering = False
            await ctx.tick()
            cycles += 1
            assert cycles < 20 * beats

    simulate(dut, tb)
    return sent, got, cycles


@pytest.mark.parametrize("channel", SIGNATURES)
@pytest.mark.parametrize(("seed", "p_valid", "p_ready"),
                         [(1, 0.5, 0.5), (2, 0.9, 0.3), (3, 0.3, 0.9), (4, 0.8, 0.8)])
def test_every_beat_once_in_order(channel, seed, p_valid, p_ready):
    sent, got, _ = _run(channel, seed, p_valid, p_ready)
    assert got == sent


@pytest.mark.parametrize("channel", ["r", "ar"])
def test_full_throughput(channel):
    """Always valid, always ready: one beat per cycle after ``latency`` cycles."""
    sent, got, cycles = _run(channel, 5, 1.0, 1.0, beats=100)
    assert got == sent
    assert cycles == len(sent) + AxiSlice.latency


def test_the_model_holds_two_beats_then_refuses():
    """The model itself: a stalled sink fills both entries, then ready drops."""
    m = SliceModel()
    m.step(True, "a", False)
    assert (m.out, m.ready) == ("a", True)
    m.step(True, "b", False)
    assert (m.out, m.spare, m.ready) == ("a", "b", False)
    m.step(True, "c", False)
    assert (m.out, m.spare, m.ready) == ("a", "b", False)
    m.step(False, None, True)
    assert (m.out, m.spare, m.ready) == ("b", None, True)


def test_refuses_a_channel_without_handshake():
    with pytest.raises(ValueError, match="valid and ready"):
        AxiSlice(wiring.Signature({"data": Out(8), "valid": Out(1)}))
    with pytest.raises(ValueError, match="flowing as valid"):
        AxiSlice(wiring.Signature({"data": In(8), "valid": Out(1), "ready": In(1)}))
