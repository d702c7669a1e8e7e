"""The bench's program interface without a simulator: the layer engine's program against
the model (memory image, registers, expected y, bursts, traffic counter) and the checks
on synthetic observations; the sampling engine's program as before."""

import dataclasses

import numpy as np
import pytest

from defslice.errors import ConfigError
from defslice.hw.regmap import LAYER_MAP, SAMPLING_MAP
from defslice.model.dat_layer_fixed import LayerFormats, dat_layer_fixed_forward
from defslice.model.layer_layout import layer_transfers
from defslice.sim.check import check_result
from defslice.sim.configs import CONFIGS, LAYER_CONFIGS, LAYER_FULL_CONFIGS
from defslice.sim.job import MonitorSummary, Observation
from defslice.sim.layer_stimulus import LayerStimulus
from defslice.sim.program import make_program
from defslice.sim.report import AxiTraffic
from defslice.sim.stimulus import Stimulus

pytestmark = pytest.mark.sim

LAYER_NAMES = list(LAYER_FULL_CONFIGS)


def _region(image, base, nbytes):
    """``nbytes`` of the memory image from ``base`` (inside one of its regions)."""
    for start, data in image.items():
        if start <= base and base + nbytes <= start + len(data):
            return data[base - start:base - start + nbytes]
    raise AssertionError(f"{base:#x}+{nbytes} is not inside one region of the image")


def test_make_program_selects_the_engine():
    assert isinstance(make_program(CONFIGS["tiny"], 1), Stimulus)
    prog = make_program(LAYER_CONFIGS["ldat-a"], 1)
    assert isinstance(prog, LayerStimulus) and prog.regmap is LAYER_MAP
    with pytest.raises(ConfigError, match="--queries"):
        make_program(LAYER_CONFIGS["ldat-a"], 1, queries=10)


def test_sampling_program_writes_the_registers_it_always_wrote():
    st = make_program(CONFIGS["tiny-3x5"], 2)
    lay = st.program.layout
    assert st.regmap is SAMPLING_MAP
    assert list(st.registers()) == list(SAMPLING_MAP.settings)
    assert st.registers() == {"VALUE_BASE": lay.value_base, "QUERY_BASE": lay.query_base,
                              "DESC_BASE": lay.desc_base, "OUT_BASE": lay.out_base,
                              "NUM_DESC": len(st.program.descriptors)}
    assert st.output_region == (lay.out_base, lay.num_queries * lay.out_stride)
    assert st.traffic_counter() == AxiTraffic.of(st.transfers())


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_program_is_the_model_and_the_layout(name):
    cfg = LAYER_FULL_CONFIGS[name]
    prog = make_program(cfg, seed=3)
    lay, d = prog.layout, prog.plan.dims
    image = prog.memory_image()
    # Registers: the layer map's settings, each the base of a region of the image.
    regs = prog.registers()
    assert list(regs) == list(LAYER_MAP.settings)
    assert regs["NUM_DESC"] == len(prog.plan.tasks) == prog.descriptors
    assert set(image) == {regs["VALUE_BASE"], regs["WEIGHT_BASE"], regs["DESC_BASE"]}
    base, nbytes = prog.output_region
    assert base == regs["OUT_BASE"] and nbytes == d.height * d.width * lay.out_stride
    assert all(a + len(v) <= base for a, v in image.items())
    assert base + nbytes <= prog.dram_bytes
    # The expected y is the fixed-point layer on the map and parameters the image holds.
    raw = np.frombuffer(image[regs["VALUE_BASE"]], dtype=np.uint8)
    raw = raw.reshape(d.height * d.width, lay.pixel_stride)[:, :2 * d.channels]
    x = raw.copy().view("<i2").astype(np.int64).T.reshape(d.channels, d.height, d.width)
    assert np.array_equal(x, prog.x_q[0])
    assert image[regs["WEIGHT_BASE"]] == lay.pack_params(prog.params)
    y, _ = dat_layer_fixed_forward(x[None], prog.params, d.spec, LayerFormats.from_config(cfg),
                                   prog.plan.grid)
    want = prog.expected_outputs()
    assert want.shape == (d.height * d.width, d.channels)
    assert np.array_equal(want, y[0].reshape(d.channels, -1).T)
    assert np.abs(want).max() > 0
    # y as the design would store it reads back as itself.
    stored = want.astype("<i2").view(np.uint8).reshape(want.shape[0], -1)
    stored = np.pad(stored, ((0, 0), (0, lay.out_stride - stored.shape[1]))).tobytes()
    assert np.array_equal(prog.unpack_outputs(stored), want)
    # Bursts: layer_transfers, equal to the DRAM-traffic counter's layer scope.
    bursts = prog.transfers()
    assert bursts == layer_transfers(lay, prog.plan.tasks)
    assert prog.traffic_counter() == AxiTraffic.of(bursts)
    for b in bursts:
        if b.write:
            assert base <= b.addr and b.addr + b.beats * lay.bus_bytes <= base + nbytes
        else:
            _region(image, b.addr, b.beats * lay.bus_bytes)
    written = sum(b.beats for b in bursts if b.write) * lay.bus_bytes
    assert written == nbytes
    # The input-bit fault flips a byte of proj_out's weights, which the run reads.
    site = prog.fault_site()
    sec = lay.sections["proj_out"]
    assert lay.param_base + sec.offset <= site < lay.param_base + sec.offset + sec.nbytes
    assert prog.timeout_cycles() > prog.estimate.total


def _perfect(prog, **changes):
    tr = prog.transfers()
    reads = tuple((b.addr, b.beats) for b in tr if not b.write)
    writes = tuple((b.addr, b.beats) for b in tr if b.write)
    counters = {"CYCLES": 9000, "ARRAY_BUSY": prog.estimate.array_busy, "STALL_CYCLES": 10,
                "LOAD_CYCLES": 9000 - 10 - prog.estimate.array_busy,
                "READ_BEATS": sum(n for _, n in reads), "WRITE_BEATS": sum(n for _, n in writes),
                "READ_BURSTS": len(reads), "WRITE_BURSTS": len(writes)}
    mon = MonitorSummary(read_bursts=reads, write_bursts=writes,
                         read_beats=counters["READ_BEATS"], write_beats=counters["WRITE_BEATS"],
                         write_responses=len(writes), outstanding_reads=0, errors=())
    obs = Observation(config=prog.cfg.name, seed=0, time0_unresolved=(),
                      time0_unresolved_payload=(), id=LAYER_MAP.id_value,
                      reset_after_read_beats=None, reset_after_write_beats=None,
                      status_after_reset=None, done=True, bench_cycles=9000, irq_at_done=1,
                      counters=counters, status=2, monitor=mon,
                      outputs=prog.expected_outputs().tolist(), sim_time_ns=9e4)
    return dataclasses.replace(obs, **changes)


def test_layer_checks_accept_the_exact_run_and_name_a_wrong_pixel():
    prog = make_program(LAYER_CONFIGS["ldat-g2-tanh"], 1)
    rep = check_result(prog, _perfect(prog))
    assert rep.passed, rep.failures
    assert rep.performance.busy_cycles == rep.performance.ideal_busy_cycles
    assert rep.performance.load_cycles == 9000 - 10 - prog.estimate.array_busy
    assert rep.traffic.traffic_counter == rep.traffic.observed == rep.traffic.expected

    res = _perfect(prog)
    w = prog.plan.dims.width
    res.outputs[3 * w + 5][7] += 1                   # one y word: pixel (3, 5), channel 7
    rep = check_result(prog, res)
    assert not rep.passed and rep.outputs.mismatches == 1
    m = rep.outputs.first_mismatches[0]
    assert (m.row, m.col, m.channel, m.head) == (3, 5, 7, None)
    assert m.actual == m.expected + 1
    assert "pixel (3, 5), channel 7" in rep.failures[0]
    assert m.where() == "pixel (3, 5) channel 7"


def test_layer_checks_catch_traffic_counters_and_the_wrong_engine():
    prog = make_program(LAYER_CONFIGS["ldat-a"], 1)
    res = _perfect(prog)
    reads = list(res.monitor.read_bursts)
    addr, beats = reads.pop(0)                       # the first parameter burst, shortened
    res = dataclasses.replace(res, monitor=dataclasses.replace(
        res.monitor, read_bursts=(*reads, (addr, beats - 1)),
        read_beats=res.monitor.read_beats - 1))
    fails = check_result(prog, res).failures
    assert any("AXI bursts differ from layer_transfers()" in f for f in fails)
    assert any("DRAM-traffic counter's sliced dataflow predicts" in f for f in fails)
    assert any("the design's counters" in f for f in fails)

    res = _perfect(prog, id=SAMPLING_MAP.id_value)
    assert any("ID register" in f for f in check_result(prog, res).failures)
