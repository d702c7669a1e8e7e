"""``defslice traffic``: files, names, errors, the Ramulator trace."""

import json

import numpy as np
import pytest
from test_traffic import msda_ctx

from defslice.cli import main
from defslice.model.traffic import SamplingTrace, Sliced, TrafficContext
from defslice.model.traffic.ramulator import write_ramulator_trace
from defslice.paper import DRAM_FIG4


def test_dat56_report_has_paper_figures_and_plain_names(tmp_path, capsys):
    assert main(["traffic", "--preset", "dat56", "--out", str(tmp_path), "--quiet"]) == 0
    for name in ("traffic", "traffic_dat56", "traffic_sweep", "traffic_sweep_dat56"):
        assert (tmp_path / f"{name}.json").is_file()
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    res = json.loads((tmp_path / "traffic.json").read_text())
    flows = res["scopes"]["layer"]["dataflows"]
    assert set(flows["sliced"]["normalized"]) >= {"bytes", "beats", "bursts", "accesses"}
    md = (tmp_path / "traffic.md").read_text()
    sliced = 100 * flows["sliced"]["normalized"]["beats"]
    assert f"{sliced:.1f}%" in md
    # the paper's figures quoted from their one home, beside the counted ones
    for name in ("sliced", "defa"):
        assert f"paper {DRAM_FIG4[name].text}" in md
    for section in ("## The layer's tensors", "## Baselines and schedules",
                    "## Storing versus recomputing q", "Layer engine, `layer_transfers()`"):
        assert section in md
    assert set(flows) == {"layer_by_layer", "layer_by_layer_ops", "defa", "dcn", "sliced",
                          "halo_reuse", "compulsory"}
    assert res["layer_graph"]["tensors"]["logits"]["shape"] == [2, 3136, 49]
    assert set(res["schedules"]["layer_by_layer"]["q_variants"]) == {"store", "recompute"}
    sw = json.loads((tmp_path / "traffic_sweep.json").read_text())
    assert len(sw["overlaps"]) == 3 and sw["slice_h"] == list(range(8, 29))
    assert "traffic_dat56.json" in capsys.readouterr().out


def test_dat56_b_counts_four_heads_in_two_groups(tmp_path):
    assert main(["traffic", "--preset", "dat56-b", "--out", str(tmp_path), "--quiet",
                 "--no-sweep"]) == 0
    assert not (tmp_path / "traffic.json").exists()
    res = json.loads((tmp_path / "traffic_dat56-b.json").read_text())
    t = res["layer_graph"]["tensors"]
    assert t["logits"]["shape"] == [4, 3136, 49]
    assert t["offset_act"]["shape"] == [2, 64, 49]
    assert t["sampled"]["shape"] == [49, 2, 64]
    assert (tmp_path / "traffic_dat56-b.md").read_text().count("paper 18%") == 1


def test_other_presets_do_not_overwrite_plain_names(tmp_path):
    assert main(["traffic", "--preset", "tiny", "--out", str(tmp_path), "--quiet",
                 "--no-sweep"]) == 0
    assert (tmp_path / "traffic_tiny.md").is_file()
    assert not (tmp_path / "traffic.json").exists()
    assert not (tmp_path / "traffic_sweep_tiny.json").exists()


def test_user_trace_and_ramulator(tmp_path):
    ctx = msda_ctx()
    trace = ctx.trace
    loc = np.stack([(trace.inputs.x / 256 + 0.5) / 8, (trace.inputs.y / 256 + 0.5) / 8],
                   axis=-1)
    cfg_file = tmp_path / "hand.toml"
    from defslice import config as C
    C.dump(ctx.cfg, cfg_file)
    npz = tmp_path / "points.npz"
    np.savez(npz, sampling_locations=loc, attention_weights=trace.inputs.weight / 2**14,
             reference_points=trace.reference_points)
    rt = tmp_path / "ram.trace"
    assert main(["traffic", "--config", str(cfg_file), "--trace", str(npz), "--out",
                 str(tmp_path), "--quiet", "--no-sweep", "--ramulator", str(rt)]) == 0
    res = json.loads((tmp_path / "traffic_hand.json").read_text())
    assert res["scopes"]["datapath"]["dataflows"]["sliced"]["read"]["beats"] == 57
    lines = rt.read_text().splitlines()
    # 57 + 3 beats of 16 bytes, in 64-byte requests: each region rounds up separately
    assert res["ramulator_trace"]["lines"] == len(lines) > 0
    assert all(ln.split()[0] in ("LD", "ST") and ln.split()[1].startswith("0x")
               for ln in lines)
    assert sum(ln.startswith("ST") for ln in lines) == 2   # two output regions <= 64 B


def test_ramulator_needs_a_recorded_count(tmp_path):
    from defslice.errors import InputError
    with pytest.raises(InputError, match="record=True"):
        write_ramulator_trace(Sliced().count(msda_ctx()), tmp_path / "x")
    c = Sliced().count(msda_ctx(), record=True)
    n = write_ramulator_trace(c, tmp_path / "x")
    # descriptor regions 32 B -> 1 request each; window rows 80 B at 128-byte pitch
    # -> 2 requests each; records 32 B and 16 B -> 1 each; outputs alike.
    assert n == 2 * 1 + 10 * 2 + 2 + 2


@pytest.mark.parametrize("argv, field", [
    (["--ramulator", "x", "--ramulator-dataflow", "nope"], "--ramulator-dataflow"),
    (["--trace", "missing.npz"], "--trace"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_arguments_name_the_field(tmp_path, capsys, argv, field):
    assert main(["traffic", "--preset", "tiny", "--out", str(tmp_path), "--quiet",
                 "--no-sweep", *argv]) == 2
    assert field in capsys.readouterr().err


def test_trace_file_missing_arrays(tmp_path, capsys):
    npz = tmp_path / "bad.npz"
    np.savez(npz, sampling_locations=np.zeros(3))
    assert main(["traffic", "--preset", "tiny", "--out", str(tmp_path), "--quiet",
                 "--trace", str(npz)]) == 2
    assert "attention_weights" in capsys.readouterr().err


def test_seed_changes_the_workload():
    from defslice import config as C
    cfg = C.preset("tiny")
    a = TrafficContext(cfg, SamplingTrace.from_config(cfg, seed=0)).trace.inputs.x
    b = TrafficContext(cfg, SamplingTrace.from_config(cfg, seed=1)).trace.inputs.x
    assert not np.array_equal(a, b)
