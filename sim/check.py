"""Judge one bench run against the golden model: outputs, AXI traffic, counters.

Everything is compared exactly:

* outputs, bit for bit, against :meth:`SlicedProgram.expected_outputs` (the first
  mismatching query / head / channel is reported with expected and actual values);
* the multiset of observed read and write bursts ``(address, beats)`` against
  :meth:`SlicedProgram.transfers`, and the burst and beat totals;
* the design's own counters ``READ_BEATS``, ``WRITE_BEATS``, ``READ_BURSTS``,
  ``WRITE_BURSTS`` against what the monitor saw;
* protocol: no AXI error seen by the monitor, no X on a handshake output at time 0, ``done`` and
  ``irq`` set at the end, the ``ID`` register.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from defslice.hw.regmap import ID_VALUE
from defslice.model.layout import Burst
from defslice.sim.stimulus import Stimulus

__all__ = ["MAX_REPORTED", "check_result", "expected_traffic", "traffic_counter_prediction"]

#: Mismatching outputs listed in a report (the first one is always the first in order).
MAX_REPORTED = 10


def expected_traffic(transfers: list[Burst]) -> dict:
    reads = [b for b in transfers if not b.write]
    writes = [b for b in transfers if b.write]
    return {
        "read_bursts": len(reads), "read_beats": sum(b.beats for b in reads),
        "write_bursts": len(writes), "write_beats": sum(b.beats for b in writes),
    }


def traffic_counter_prediction(prog) -> dict:
    """Bursts and beats the DRAM-traffic counter's sliced dataflow predicts for ``prog``.

    Counted by :class:`defslice.model.traffic.Sliced` on a trace of the very inputs the
    bench ran (``defslice traffic`` uses the same class), so every bench configuration
    checks the counter against the bus.
    """
    from defslice.model.traffic.base import TrafficContext
    from defslice.model.traffic.sliced import Sliced
    from defslice.model.traffic.trace import SamplingTrace

    trace = SamplingTrace(prog.cfg, prog.inputs, prog.reference_points)
    d = Sliced().count(TrafficContext(prog.cfg, trace)).as_dict()
    return {"read_bursts": d["read"]["bursts"], "read_beats": d["read"]["beats"],
            "write_bursts": d["write"]["bursts"], "write_beats": d["write"]["beats"]}


def _multiset_diff(observed: list[tuple[int, int]], expected: list[tuple[int, int]]):
    obs, exp = Counter(observed), Counter(expected)
    missing = sorted((exp - obs).elements())
    extra = sorted((obs - exp).elements())
    return [[hex(a), n] for a, n in missing[:MAX_REPORTED]], \
        [[hex(a), n] for a, n in extra[:MAX_REPORTED]]


def check_result(stim: Stimulus, result: dict | None) -> dict:
    """Compare ``result`` (the bench's observations) with the model; JSON-ready report.

    The report's ``passed`` is true only when every check holds; ``failures`` lists, in
    words, each one that did not.
    """
    prog = stim.program
    cfg = prog.cfg
    failures: list[str] = []
    report: dict = {"passed": False, "failures": failures}
    if result is None:
        failures.append("no observations: the simulation did not finish")
        return report
    if result.get("time0_unresolved"):
        failures.append("handshake outputs X before the first clock edge (amaranth issue "
                        f"1629 not handled): {', '.join(result['time0_unresolved'])}")
    report["time0_x_payloads"] = result.get("time0_unresolved_payload", [])
    if result.get("id") != ID_VALUE and (result.get("id", 0) & ~0xF) != ID_VALUE:
        failures.append(f"ID register {result.get('id')!r}, expected {ID_VALUE:#x}")
    if not result.get("done"):
        failures.append("STATUS.done never set")
    if result.get("irq_at_done") != 1:
        failures.append(f"irq was {result.get('irq_at_done')} when done was seen")

    # Outputs, bit for bit.
    expected = prog.expected_outputs()
    actual = np.asarray(result.get("outputs", []), dtype=np.int64)
    mism: list[dict] = []
    if actual.shape != expected.shape:
        failures.append(f"outputs have shape {actual.shape}, expected {expected.shape}")
        n_bad = int(expected.size)
    else:
        bad = np.argwhere(actual != expected)
        n_bad = len(bad)
        d = cfg.workload.sample_channels
        for k, ch in bad[:MAX_REPORTED]:
            mism.append({
                "stored_query": int(k), "query": stim.workload_query(int(k)),
                "head": int(ch) // d, "channel": int(ch) % d,
                "expected": int(expected[k, ch]), "actual": int(actual[k, ch]),
            })
        if n_bad:
            first = mism[0]
            failures.append(
                f"{n_bad} of {expected.size} outputs differ from the fixed-point model; "
                f"first: query {first['query']} (stored {first['stored_query']}), head "
                f"{first['head']}, channel {first['channel']}: expected "
                f"{first['expected']}, got {first['actual']}")
    report["outputs"] = {"total": int(expected.size), "mismatches": n_bad,
                         "first_mismatches": mism}

    # AXI traffic against the model's transfers, as multisets.
    transfers = prog.transfers()
    exp_t = expected_traffic(transfers)
    mon = result.get("monitor", {})
    obs_r = [tuple(b) for b in mon.get("read_bursts", [])]
    obs_w = [tuple(b) for b in mon.get("write_bursts", [])]
    obs_t = {"read_bursts": len(obs_r), "read_beats": mon.get("read_beats"),
             "write_bursts": len(obs_w), "write_beats": mon.get("write_beats")}
    missing_r, extra_r = _multiset_diff(obs_r, [(b.addr, b.beats) for b in transfers
                                                if not b.write])
    missing_w, extra_w = _multiset_diff(obs_w, [(b.addr, b.beats) for b in transfers
                                                if b.write])
    counters = result.get("counters", {})
    rtl_t = {"read_bursts": counters.get("READ_BURSTS"),
             "read_beats": counters.get("READ_BEATS"),
             "write_bursts": counters.get("WRITE_BURSTS"),
             "write_beats": counters.get("WRITE_BEATS")}
    counted = traffic_counter_prediction(prog)
    report["traffic"] = {"expected": exp_t, "observed": obs_t, "rtl_counters": rtl_t,
                         "traffic_counter": counted,
                         "missing_read_bursts": missing_r, "extra_read_bursts": extra_r,
                         "missing_write_bursts": missing_w, "extra_write_bursts": extra_w,
                         "write_responses": mon.get("write_responses")}
    if missing_r or extra_r or missing_w or extra_w:
        failures.append(f"AXI bursts differ from SlicedProgram.transfers(): missing "
                        f"reads {missing_r}, extra reads {extra_r}, missing writes "
                        f"{missing_w}, extra writes {extra_w}")
    if obs_t != exp_t:
        failures.append(f"observed traffic {obs_t} != expected {exp_t}")
    if counted != obs_t:
        failures.append(f"the DRAM-traffic counter's sliced dataflow predicts {counted}, "
                        f"the bus carried {obs_t}")
    if rtl_t != obs_t:
        failures.append(f"the design's counters {rtl_t} != observed {obs_t}")
    if mon.get("write_responses") != exp_t["write_bursts"]:
        failures.append(f"{mon.get('write_responses')} write responses for "
                        f"{exp_t['write_bursts']} write bursts")
    if mon.get("outstanding_reads"):
        failures.append(f"{mon['outstanding_reads']} read bursts without all their data")
    for err in mon.get("errors", []):
        failures.append(f"AXI protocol: {err}")

    w = cfg.workload
    samples = int(expected.shape[0]) * w.sample_heads * w.num_levels * w.points
    cycles = counters.get("CYCLES")
    busy = counters.get("BUSY_CYCLES")
    report["performance"] = {
        "cycles": cycles, "busy_cycles": busy, "stall_cycles": counters.get("STALL_CYCLES"),
        "bench_cycles": result.get("bench_cycles"),
        "bilinear_samples": samples,
        "ideal_busy_cycles": samples * (w.sample_channels // cfg.hw.lanes),
        "utilisation": (busy / cycles) if cycles and busy is not None else None,
    }
    for key in ("reset_after_read_beats", "reset_after_write_beats", "status_after_reset"):
        if key in result:
            report.setdefault("reset", {})[key] = result[key]
    if "status_after_reset" in result and result["status_after_reset"] & 3:
        failures.append(f"STATUS {result['status_after_reset']:#x} right after reset, "
                        "expected neither busy nor done")
    report["passed"] = not failures
    return report
