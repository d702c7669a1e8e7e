"""The slice sequencer against the Python schedule, with random waits and back-pressure."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from defslice.hw.layer.cycles import PHASES
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.schedule import Step, slice_schedule
from defslice.hw.layer.sequencer import Sequencer
from defslice.model.dat_layer import DatLayerSpec
from defslice.model.layer_layout import LayerDims
from defslice.model.slicing import SliceGrid

#: Loop levels of each phase's Step index (the sequencer pads them on the left with 0).
LEVELS = {"q": 4, "dwconv": 3, "offset_proj": 2, "sample": 2, "kv": 4, "logits": 4,
          "pv": 4, "proj_out": 3}


def _plan(h, w, heads, head_dim, groups, stride, kernel, hs, ws, overlap, lanes, cols):
    spec = DatLayerSpec(heads=heads, groups=groups, stride=stride, offset_kernel=kernel)
    grid = SliceGrid([(h, w)], hs, ws, overlap)
    return LayerPlan(LayerDims(spec, h, w, heads * head_dim), grid, lanes, cols,
                     bus_bytes=16, max_beats=16)


class Units:
    """Behaviour of everything the sequencer waits for, driven by the steps it issues:
    each finished pass makes its unit's count go up after a random delay."""

    def __init__(self, rng):
        self.rng = rng
        self.pending = {k: [] for k in ("ln_rows", "positions", "sm_quads", "o_quads")}
        self.count = dict.fromkeys(self.pending, 0)
        self.ready_at = {k: [] for k in self.pending}     # cycle each count went up
        self.since_step = 99

    def issue(self, step, now, cg_words, heads_last):
        self.since_step = 0
        end_of = {"dwconv": ("ln_rows", lambda s: s.index[1] == cg_words - 1, 4, 60),
                  "offset_proj": ("positions", lambda s: True, 3, 20),
                  "logits": ("sm_quads", heads_last, 10, 90),
                  "pv": ("o_quads", heads_last, 5, 15)}
        if step.last and step.phase in end_of:
            key, final, lo, hi = end_of[step.phase]
            if final(step):
                t = now + int(self.rng.integers(lo, hi))
                prev = self.pending[key][-1] if self.pending[key] else 0
                self.pending[key].append(max(t, prev))

    def tick(self, now):
        self.since_step += 1
        for key, times in self.pending.items():
            while times and times[0] <= now:
                times.pop(0)
                self.count[key] += 1
                self.ready_at[key].append(now)


def run(plan, task, ready_prob, seed):
    rng = np.random.default_rng(seed)
    dut = Sequencer(plan)
    d = plan.dims
    units = Units(rng)
    issued = []
    nk = task.num_keys

    def heads_last(step):
        # The step ending a quad's logits / pv (last head, last tile, last pass step).
        i = step.index
        if step.phase == "logits":
            return i[1] == d.heads - 1 and i[2] == -(-nk // plan.cols) - 1
        return i[1] == d.heads - 1 and i[2] == d.head_dim // plan.cols - 1

    async def tb(ctx):
        q, g = task.qbox, task.region
        ctx.set(dut.slice.payload, {
            "q_row0": q.row0, "q_col0": q.col0, "q_rows": q.rows, "q_cols": q.cols,
            "reg_rows": g.rows, "reg_cols": g.cols, "key_rows": task.keys.rows,
            "key_cols": task.keys.cols})
        ctx.set(dut.slice.valid, 1)
        await ctx.tick()
        ctx.set(dut.slice.valid, 0)
        # Enough for every step at the back-pressure's rate and every wait; a sequencer
        # that hangs fails the comparison below instead of running on.
        limit = int(4 * len(list(slice_schedule(plan, task))) / ready_prob) + 5000
        for now in range(limit):
            units.tick(now)
            for key, value in units.count.items():
                ctx.set(getattr(dut, key), value)
            ctx.set(dut.drained, units.since_step >= 8)
            ctx.set(dut.y_room, int(rng.random() < 0.7))
            ready = int(rng.random() < ready_prob)
            ctx.set(dut.step.ready, ready)
            _, _, valid, payload, done = await ctx.tick().sample(
                dut.step.valid, dut.step.payload, dut.done)
            if valid and ready:
                phase = PHASES[payload.phase]
                idx = tuple(int(v) for v in payload.index)[4 - LEVELS[phase]:]
                step = Step(phase, idx, bool(payload.first), bool(payload.last))
                issued.append((step, now, dict(units.count)))
                units.issue(step, now, d.group_channels // plan.lanes, heads_last)
            if done:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return issued, units


def _check_waits(issued):
    """No step read what its unit had not produced yet (counts seen at issue time)."""
    needs = {"offset_proj": "ln_rows", "sample": "positions", "pv": "sm_quads",
             "proj_out": "o_quads"}
    for step, _, counts in issued:
        if step.phase in needs:
            assert counts[needs[step.phase]] > step.index[0], step


CASES = [
    # map, heads, head_dim, groups, stride, kernel, slice, overlap, lanes, cols
    (12, 12, 2, 8, 2, 3, 5, 6, 5, 1, 4, 2),
    (10, 14, 2, 8, 1, 2, 3, 10, 14, 0, 8, 4),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_sequencer_issues_the_schedule(case, ready_prob):
    plan = _plan(*case)
    task = max(plan.tasks, key=lambda t: t.num_keys)
    assert task.num_keys >= 2
    issued, _ = run(plan, task, ready_prob, seed=len(case))
    assert [s for s, _, _ in issued] == list(slice_schedule(plan, task))
    _check_waits(issued)
