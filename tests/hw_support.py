"""Shared helpers of the hardware block tests: programs, simulator runs, stream put/get."""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from defslice.model.fixed import quantize_inputs
from defslice.model.layout import SlicedProgram
from defslice.model.workload import make_workload


def program(cfg, seed=0):
    """A random workload of ``cfg`` as the host prepares it."""
    wl = make_workload(cfg, seed)
    return SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)


def memory_of(prog):
    """The program's DRAM image as one bytearray."""
    mem = bytearray(prog.layout.total_bytes)
    for base, blob in prog.memory_image().items():
        mem[base:base + len(blob)] = blob
    return mem


def simulate(dut, *testbenches, processes=()):
    """Run ``dut`` with a clock until every testbench returns."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for proc in processes:
        sim.add_process(proc)
    sim.run()


def sometimes(rng, p=0.7):
    """A seeded coin (always 1 without a generator)."""
    return int(rng is None or rng.random() < p)


async def stream_put(ctx, stream, payloads, rng=None):
    """Offer each payload on ``stream`` (random gaps when ``rng``), hold it until taken."""
    for payload in payloads:
        while not sometimes(rng):
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, count, rng=None):
    """Take ``count`` payloads from ``stream`` (random back-pressure when ``rng``)."""
    out = []
    while len(out) < count:
        ready = sometimes(rng)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            out.append(payload)
    ctx.set(stream.ready, 0)
    return out


def seeded(seed):
    return random.Random(seed) if seed is not None else None


def window_words(p, prog, index):
    """Reference: (bank, address) -> word of every pixel of descriptor ``index``'s window,
    by the mapping of ``docs/hw.md`` (bank = row/column parity inside the window)."""
    dsc = prog.descriptors[index]
    value = np.asarray(prog.inputs.value).reshape(-1, p.pixel_words, p.lanes)
    mask = (1 << p.value_bits) - 1
    base = index % 2 * p.set_depth if p.sets == 2 else 0
    start = np.cumsum([0] + [h * w for h, w in p.levels])
    words = {}
    for lvl, win in enumerate(dsc.windows):
        row0, col0, rows, cols = win[:4]
        for r in range(rows):
            for c in range(cols):
                pix = start[lvl] + (row0 + r) * p.levels[lvl][1] + col0 + c
                at = base + p.level_base[lvl] + ((r >> 1) * p.bank_cols[lvl] + (c >> 1)) \
                    * p.pixel_words
                for k in range(p.pixel_words):
                    word = sum((int(v) & mask) << (j * p.value_bits)
                               for j, v in enumerate(value[pix, k]))
                    words[2 * (r & 1) + (c & 1), at + k] = word
    return words
