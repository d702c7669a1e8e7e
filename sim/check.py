"""Judge one bench run against the golden model: outputs, AXI traffic, counters.

Everything is compared exactly, for either engine through its
:class:`~defslice.sim.program.BenchProgram`:

* outputs, bit for bit, against :meth:`BenchProgram.expected_outputs` (the first
  mismatching output is reported with expected and actual values: query / head /
  channel for the sampling engine, pixel / channel for the layer engine);
* the multiset of observed read and write bursts ``(address, beats)`` against
  :meth:`BenchProgram.transfers` (:meth:`SlicedProgram.transfers`,
  :func:`~defslice.model.layer_layout.layer_transfers`), and the burst and beat totals
  against those and the DRAM-traffic counter's prediction;
* the design's own counters ``READ_BEATS``, ``WRITE_BEATS``, ``READ_BURSTS``,
  ``WRITE_BURSTS`` against what the monitor saw;
* protocol: no AXI error seen by the monitor, no X on a handshake output at time 0, ``done`` and
  ``irq`` set at the end, the engine's ``ID`` register.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from defslice.sim.job import Observation
from defslice.sim.program import BenchProgram
from defslice.sim.report import (
    AxiTraffic,
    Judgement,
    OutputCheck,
    ResetCheck,
    TrafficCheck,
)
from defslice.sim.stimulus import traffic_counter_prediction

__all__ = ["MAX_REPORTED", "check_result", "traffic_counter_prediction"]

#: Mismatching outputs listed in a report (the first one is always the first in order).
MAX_REPORTED = 10

BurstList = tuple[tuple[str, int], ...]


def _multiset_diff(observed: list[tuple[int, int]],
                   expected: list[tuple[int, int]]) -> tuple[BurstList, BurstList]:
    obs, exp = Counter(observed), Counter(expected)
    missing = sorted((exp - obs).elements())
    extra = sorted((obs - exp).elements())
    return (tuple((hex(a), n) for a, n in missing[:MAX_REPORTED]),
            tuple((hex(a), n) for a, n in extra[:MAX_REPORTED]))


def _check_protocol(prog: BenchProgram, obs: Observation) -> list[str]:
    failures = []
    id_value = prog.regmap.id_value
    if obs.time0_unresolved:
        failures.append("handshake outputs X before the first clock edge (amaranth issue "
                        f"1629 not handled): {', '.join(obs.time0_unresolved)}")
    if obs.id != id_value and (obs.id & ~0xF) != id_value:
        failures.append(f"ID register {obs.id!r}, expected {id_value:#x}")
    if not obs.done:
        failures.append("STATUS.done never set")
    if obs.irq_at_done != 1:
        failures.append(f"irq was {obs.irq_at_done} when done was seen")
    return failures


def _check_outputs(prog: BenchProgram, obs: Observation) -> tuple[OutputCheck, list[str]]:
    expected = prog.expected_outputs()
    actual = np.asarray(obs.outputs, dtype=np.int64)
    if actual.shape != expected.shape:
        return (OutputCheck(int(expected.size), int(expected.size), ()),
                [f"outputs have shape {actual.shape}, expected {expected.shape}"])
    bad = np.argwhere(actual != expected)
    mism = tuple(prog.mismatch(int(k), int(ch), int(expected[k, ch]), int(actual[k, ch]))
                 for k, ch in bad[:MAX_REPORTED])
    failures = []
    if len(bad):
        m = mism[0]
        failures.append(
            f"{len(bad)} of {expected.size} outputs differ from the fixed-point model; "
            f"first: {prog.describe(m)}: expected {m.expected}, got {m.actual}")
    return OutputCheck(int(expected.size), len(bad), mism), failures


def _check_traffic(prog: BenchProgram, obs: Observation) -> tuple[TrafficCheck, list[str]]:
    """The bus against the model's transfers (as multisets), the design's counters and
    the DRAM-traffic counter."""
    transfers = prog.transfers()
    exp_t = AxiTraffic.of(transfers)
    mon = obs.monitor
    obs_t = AxiTraffic(len(mon.read_bursts), mon.read_beats, len(mon.write_bursts),
                       mon.write_beats)
    missing_r, extra_r = _multiset_diff(list(mon.read_bursts),
                                        [(b.addr, b.beats) for b in transfers if not b.write])
    missing_w, extra_w = _multiset_diff(list(mon.write_bursts),
                                        [(b.addr, b.beats) for b in transfers if b.write])
    c = obs.counters
    rtl_t = AxiTraffic(c.get("READ_BURSTS"), c.get("READ_BEATS"), c.get("WRITE_BURSTS"),
                       c.get("WRITE_BEATS"))
    counted = prog.traffic_counter()
    check = TrafficCheck(exp_t, obs_t, rtl_t, counted, missing_r, extra_r, missing_w,
                         extra_w, mon.write_responses)
    failures = []
    if missing_r or extra_r or missing_w or extra_w:
        failures.append(f"AXI bursts differ from {prog.transfers_name}: missing "
                        f"reads {_lists(missing_r)}, extra reads {_lists(extra_r)}, missing "
                        f"writes {_lists(missing_w)}, extra writes {_lists(extra_w)}")
    if obs_t != exp_t:
        failures.append(f"observed traffic {obs_t.to_json()} != expected {exp_t.to_json()}")
    if counted != obs_t:
        failures.append(f"the DRAM-traffic counter's sliced dataflow predicts "
                        f"{counted.to_json()}, the bus carried {obs_t.to_json()}")
    if rtl_t != obs_t:
        failures.append(f"the design's counters {rtl_t.to_json()} != observed "
                        f"{obs_t.to_json()}")
    if mon.write_responses != exp_t.write_bursts:
        failures.append(f"{mon.write_responses} write responses for "
                        f"{exp_t.write_bursts} write bursts")
    if mon.outstanding_reads:
        failures.append(f"{mon.outstanding_reads} read bursts without all their data")
    failures += [f"AXI protocol: {err}" for err in mon.errors]
    return check, failures


def _lists(bursts: BurstList) -> list[list[str | int]]:
    return [list(b) for b in bursts]


def _check_reset(obs: Observation) -> tuple[ResetCheck | None, list[str]]:
    if obs.status_after_reset is None:
        return None, []
    reset = ResetCheck(obs.reset_after_read_beats, obs.reset_after_write_beats,
                       obs.status_after_reset)
    if obs.status_after_reset & 3:
        return reset, [f"STATUS {obs.status_after_reset:#x} right after reset, expected "
                       "neither busy nor done"]
    return reset, []


def check_result(prog: BenchProgram, obs: Observation | None) -> Judgement:
    """Compare ``obs`` (the bench's observations, ``None`` when it wrote none) with the
    model, through the run's program (a :class:`~defslice.sim.stimulus.Stimulus` or a
    :class:`~defslice.sim.layer_stimulus.LayerStimulus`)."""
    if obs is None:
        return Judgement(False, ("no observations: the simulation did not finish",))
    outputs, out_failures = _check_outputs(prog, obs)
    traffic, traffic_failures = _check_traffic(prog, obs)
    reset, reset_failures = _check_reset(obs)
    failures = _check_protocol(prog, obs) + out_failures + traffic_failures + reset_failures
    return Judgement(passed=not failures, failures=tuple(failures),
                     time0_x_payloads=obs.time0_unresolved_payload, outputs=outputs,
                     traffic=traffic, performance=prog.performance(obs.counters,
                                                                   obs.bench_cycles),
                     reset=reset)
