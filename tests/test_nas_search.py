"""NAS without PyTorch: search space, operators, resources, Pareto update, searches."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defslice import config as C
from defslice.errors import ConfigError
from defslice.nas.choice import choose, front_table
from defslice.nas.evaluation import EvaluationLog
from defslice.nas.pareto import (
    Point,
    dominates,
    hypervolume,
    hypervolume_trace,
    pareto_front,
    update_front,
)
from defslice.nas.resources import (
    bram18_blocks,
    buffer_bram18,
    eq3_resource,
    in_lutram,
    with_subnet,
)
from defslice.nas.search import (
    Objective,
    evolutionary_search,
    exhaustive_search,
    nsga2_search,
    random_search,
)
from defslice.nas.space import SearchSpace, SubNet
from defslice.nas.stats import pack_correct, paired, standard_error, unpack_correct

DAT56 = C.preset("dat56")


def pt(h, w, o, acc, res):
    return Point(SubNet(h, w, o), acc, res)


# -- resources ------------------------------------------------------------------------
def test_eq3_by_hand():
    # 16-bit values x 64 channels x (14 + 2*2) x (28 + 2*2), plus beta
    assert eq3_resource(DAT56, SubNet(28, 14, 2)) == 16 * 64 * 18 * 32
    cfg = DAT56.replace(nas={"beta": 1000.0})
    assert eq3_resource(cfg, SubNet(8, 8, 0)) == 16 * 64 * 8 * 8 + 1000


def test_bram18_block_rule():
    assert bram18_blocks(512, 36) == 1
    assert bram18_blocks(513, 36) == 2
    assert bram18_blocks(1024, 18) == 1     # 18-bit shape holds 1024 words
    assert bram18_blocks(2048, 9) == 1
    assert bram18_blocks(2049, 9) == 2
    assert bram18_blocks(100, 128) == 4     # 36 + 36 + 36 + 20 bits: four columns
    assert bram18_blocks(0, 16) == 0
    # by depth beats by columns: 2048 x 9-bit blocks (15) + 112 words x 36 bits (4)
    assert bram18_blocks(2160, 128) == 19 < 4 * 5
    assert bram18_blocks(1080, 128) == 12


def test_buffer_bram18_by_hand():
    est = buffer_bram18(DAT56)  # Hs=28, Ws=14, O=2 on 56x56
    # largest window: rows 26..56 (30), cols 12..30 (18); banks hold 15 x 9 pixels of
    # 64 / 8 = 8 words of 128 bits -> 1080 words per set; double buffering stacks two
    # sets in one bank: 2160 words, built as a chunk of 2048 words (2048 x 9 blocks: 15
    # for 128 bits) and one of 112 words (512 x 36 blocks: 4) = 19 per bank (what yosys
    # synth_xilinx infers for the generated design)
    assert est.windows == ((30, 18),)
    assert (est.bank_depth, est.word_bits, est.copies) == (1080, 128, 2)
    assert est.blocks == 4 * 19
    single = buffer_bram18(DAT56.replace(hw={"buffering": "single"}))
    # 1080 words: 2 chunks of 512 (4 blocks each), 56 words in LUT RAM
    assert single.blocks == 4 * 2 * 4


def test_shallow_chunks_go_to_lut_ram():
    # the cases yosys synth_xilinx was seen to map (docs/nas.md)
    assert in_lutram(16, 128) and in_lutram(64, 128) and in_lutram(40, 32)
    assert not in_lutram(112, 128) and not in_lutram(104, 32) and not in_lutram(512, 128)
    # 28 x 28 slices, O = 2: 3600 words per bank = a chunk of 2048 (15 blocks), 3 of 512
    # (4 blocks each) and a 16-word chunk in LUT RAM -> 27 per bank
    assert buffer_bram18(with_subnet(DAT56, SubNet(28, 28, 2))).blocks == 4 * 27


def test_bram18_grows_with_the_window():
    small = buffer_bram18(with_subnet(DAT56, SubNet(8, 8, 0))).blocks
    big = buffer_bram18(with_subnet(DAT56, SubNet(28, 28, 2))).blocks
    assert 0 < small < big


# -- space and operators --------------------------------------------------------------
def test_space_from_config_and_bad_ranges():
    sp = SearchSpace.from_config(DAT56)
    assert sp.size == 21 * 21 * 3 == len(list(sp))
    with pytest.raises(ConfigError, match="nas.slice_h_range"):
        SearchSpace.from_config(DAT56.replace(nas={"slice_h_range": (8, 57)}))
    with pytest.raises(ConfigError, match="nas.slice_w_range"):
        C.NasConfig(slice_w_range=(9, 8))
    with pytest.raises(ConfigError, match="nas.crossover_prob"):
        C.NasConfig(crossover_prob=1.5)
    with pytest.raises(ConfigError, match="nas.resource"):
        C.NasConfig(resource="luts")
    with pytest.raises(ConfigError, match="nas.finetune_lr"):
        C.NasConfig(finetune_lr=0.0)
    with pytest.raises(ConfigError, match="nas.finetune_teacher_weight"):
        C.NasConfig(finetune_teacher_weight=-1.0)


SPACE = SearchSpace((8, 28), (8, 28), (0, 1, 2))


@settings(max_examples=200, deadline=None)
@given(st.integers(8, 28), st.integers(8, 28), st.sampled_from([0, 1, 2]),
       st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_mutation_stays_in_the_space(h, w, o, seed, step):
    rng = np.random.default_rng(seed)
    child = SPACE.mutate(SubNet(h, w, o), rng, step)
    assert child in SPACE
    assert abs(child.slice_h - h) <= step and abs(child.slice_w - w) <= step
    # one coordinate moves (a move off the edge is clipped back: then none does)
    changed = (child.slice_h != h) + (child.slice_w != w) + (child.overlap != o)
    assert changed <= 1
    assert abs([0, 1, 2].index(child.overlap) - [0, 1, 2].index(o)) <= 1


def test_mutation_moves_each_coordinate_and_defaults_to_half_the_range():
    rng = np.random.default_rng(3)
    kids = [SPACE.mutate(SubNet(18, 18, 1), rng) for _ in range(600)]
    dh = {k.slice_h - 18 for k in kids}
    dw = {k.slice_w - 18 for k in kids}
    assert dh == dw == set(range(-10, 11))          # step 10 = half of 8..28; 0 when idle
    assert {k.overlap for k in kids} == {0, 1, 2}
    assert all(k != SubNet(18, 18, 1) for k in kids)  # never a copy away from the edges


def test_mutation_clips_at_the_edges():
    rng = np.random.default_rng(0)
    kids = [SPACE.mutate(SubNet(28, 8, 2), rng, 40) for _ in range(300)]
    assert all(k in SPACE for k in kids)
    # a wide step from a corner lands on the clipped edge often
    assert any(k.slice_h == 28 for k in kids) and any(k.slice_w == 8 for k in kids)
    assert any(k.slice_h < 28 for k in kids)


def test_crossover():
    rng = np.random.default_rng(1)
    a, b = SubNet(8, 9, 0), SubNet(20, 21, 2)
    assert all(SPACE.crossover(a, b, rng, 0.0) == a for _ in range(50))
    kids = {SPACE.crossover(a, b, rng, 1.0) for _ in range(200)}
    assert {(k.slice_h, k.slice_w) for k in kids} == {(8, 21), (20, 9)}
    assert {k.overlap for k in kids} == {0, 2}
    half = [SPACE.crossover(a, b, rng, 0.5) == a for _ in range(2000)]
    assert 0.4 < np.mean(half) < 0.6


# -- Pareto front and hypervolume -------------------------------------------------------
def test_dominates():
    assert dominates(pt(1, 1, 0, 0.9, 10), pt(2, 2, 0, 0.8, 10))
    assert not dominates(pt(1, 1, 0, 0.9, 10), pt(2, 2, 0, 0.9, 10))
    assert not dominates(pt(1, 1, 0, 0.9, 10), pt(2, 2, 0, 0.95, 5))


def test_update_front():
    f = update_front([], [pt(8, 8, 0, 0.80, 10), pt(9, 9, 0, 0.85, 20)])
    assert [p.subnet.slice_h for p in f] == [8, 9]
    f = update_front(f, [pt(10, 10, 0, 0.79, 15)])            # dominated by the first
    assert len(f) == 2
    f = update_front(f, [pt(11, 11, 0, 0.86, 12)])            # dominates the second
    assert [p.subnet.slice_h for p in f] == [8, 11]
    f = update_front(f, [pt(12, 12, 0, 0.80, 10)])            # equal objectives: not added
    assert [p.subnet.slice_h for p in f] == [8, 11]
    # resource bounds: only [11, 100] may enter
    g = update_front([], [pt(8, 8, 0, 0.80, 10), pt(9, 9, 0, 0.85, 20), pt(9, 8, 0, 0.9, 200)],
                     r_min=11, r_max=100)
    assert [p.subnet for p in g] == [SubNet(9, 9, 0)]


def test_front_is_the_non_dominated_set():
    rng = np.random.default_rng(3)
    pts = [pt(i, i, 0, float(rng.random()), float(rng.integers(1, 50))) for i in range(200)]
    front = pareto_front(pts)
    for p in pts:
        assert (p in front) or any(dominates(q, p) or
                                   (q.accuracy == p.accuracy and q.resource == p.resource)
                                   for q in front)
    assert not any(dominates(a, b) for a in front for b in front)


def test_hypervolume_by_hand():
    front = [pt(1, 1, 0, 0.5, 2), pt(2, 2, 0, 0.8, 6)]
    # ref (0, 10): strip 0.5 x (10-2) + strip 0.3 x (10-6)
    assert hypervolume(front, 0.0, 10.0) == pytest.approx(0.5 * 8 + 0.3 * 4)
    assert hypervolume([pt(1, 1, 0, 0.5, 12)], 0.0, 10.0) == 0.0
    assert hypervolume([], 0.0, 10.0) == 0.0


def test_choose_ranks_the_front_by_ramb18():
    front = [pt(8, 8, 0, 0.80, 10), pt(9, 9, 0, 0.90, 20), pt(10, 10, 0, 0.95, 30)]
    blocks = {SubNet(8, 8, 0): 16, SubNet(9, 9, 0): 48, SubNet(10, 10, 0): 32}.__getitem__
    c = choose(front, 0.95, 0.06, blocks)
    # 9,9,0 and 10,10,0 are within 6 points; 10,10,0 has fewer RAMB18 though more bits
    assert c.point.subnet == SubNet(10, 10, 0) and c.within_drop
    assert "fewest RAMB18" in c.note
    c = choose(front, 0.95, 0.2, blocks)
    assert c.point.subnet == SubNet(8, 8, 0) and c.within_drop


def test_choose_says_when_no_point_is_within_the_drop():
    front = [pt(8, 8, 0, 0.80, 10), pt(9, 9, 0, 0.90, 20), pt(10, 10, 0, 0.92, 30)]
    c = choose(front, 0.99, 0.01, lambda x: 1.0)
    assert not c.within_drop and c.point.subnet == SubNet(10, 10, 0)
    assert c.note.startswith("No point of the front is within the allowed drop of 1.00")
    assert c.as_dict()["within_drop"] is False
    with pytest.raises(Exception, match="no front"):
        choose([], 0.9, 0.01, lambda x: 1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(8, 28), st.integers(8, 28), st.sampled_from([0, 1, 2]),
                          st.integers(0, 100), st.integers(1, 60)), min_size=1, max_size=30),
       st.integers(50, 100), st.integers(0, 30))
def test_the_choice_is_never_off_the_front(raw, unsliced, drop):
    pts = [pt(h, w, o, a / 100, float(r)) for h, w, o, a, r in raw]
    front = pareto_front(pts)
    blocks = {p.subnet: (p.subnet.slice_h * 7 + p.subnet.slice_w) % 5 for p in pts}.get
    c = choose(front, unsliced / 100, drop / 100, blocks)
    assert c.point in front
    ok = [p for p in front if p.accuracy >= unsliced / 100 - drop / 100 - 1e-12]
    assert c.within_drop == bool(ok)
    if ok:
        assert blocks(c.point.subnet) == min(blocks(p.subnet) for p in ok)
    else:
        assert c.point.accuracy == max(p.accuracy for p in front)


def test_front_table_pairs_each_member_with_the_cheaper_one_and_the_unsliced_model():
    rng = np.random.default_rng(0)
    unsliced = rng.random(400) < 0.9
    a = unsliced.copy()
    a[:40] = False                                       # 10 points below, clearly
    b = a.copy()
    b[:2] = True                                         # 0.5 points above a: a tie
    front = [pt(8, 8, 0, a.mean(), 10), pt(9, 9, 0, b.mean(), 20)]
    rows = front_table(front, {SubNet(8, 8, 0): a, SubNet(9, 9, 0): b}, unsliced)
    assert rows[0]["gain"] is None and not rows[0]["drop"]["tie"]
    assert rows[0]["drop"]["diff"] == pytest.approx(unsliced.mean() - a.mean())
    assert rows[1]["gain"]["tie"] and rows[1]["gain"]["b_only"] == 0
    assert rows[0]["se"] == pytest.approx((a.mean() * (1 - a.mean()) / 400) ** 0.5)
    assert front_table(front, {}, None)[1]["se"] is None


# -- searches on a synthetic objective --------------------------------------------------
def synthetic(x: SubNet) -> float:
    area = (x.slice_h + 2 * x.overlap) * (x.slice_w + 2 * x.overlap)
    return round(0.95 - 0.3 * np.exp(-area / 150) - 0.003 * ((7 * x.slice_h + x.slice_w) % 3),
                 4)


def objective():
    return Objective(synthetic, lambda x: eq3_resource(DAT56, x))


def test_search_is_reproducible_from_the_seed():
    nas = DAT56.nas
    a = evolutionary_search(SPACE, objective(), nas)
    b = evolutionary_search(SPACE, objective(), nas)
    c = evolutionary_search(SPACE, objective(), C.NasConfig(seed=1))
    assert [p.subnet for p in a.evaluated] == [p.subnet for p in b.evaluated]
    assert [p.subnet for p in a.front] == [p.subnet for p in b.front]
    assert [p.subnet for p in a.evaluated] != [p.subnet for p in c.evaluated]


def test_evolutionary_front_against_exhaustive_and_nsga2():
    nas = C.NasConfig(generations=30)
    obj = objective()
    ex = exhaustive_search(SPACE, obj, nas)
    evo = evolutionary_search(SPACE, obj, nas)
    ns = nsga2_search(SPACE, obj, nas, budget=evo.evaluations)
    assert ex.evaluations == SPACE.size
    assert evo.evaluations <= nas.generations * nas.samples_per_generation < SPACE.size
    assert ns.evaluations <= evo.evaluations
    accs = [p.accuracy for p in ex.evaluated]
    ress = [p.resource for p in ex.evaluated]
    ref = (min(accs), max(ress))
    full = hypervolume(ex.front, *ref)
    assert hypervolume(evo.front, *ref) <= full + 1e-12
    assert hypervolume(evo.front, *ref) / full > 0.95
    # every evolutionary front member ties with an exhaustive front member or is
    # dominated by one (ties: several sub-nets may share both objectives)
    pairs = {(q.accuracy, q.resource) for q in ex.front}
    for p in evo.front:
        assert (p.accuracy, p.resource) in pairs or any(dominates(q, p) for q in ex.front)


def test_nas_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import defslice.nas, defslice.nas.search, defslice.nas.pareto, "
            "defslice.nas.resources, defslice.nas.space, defslice.nas.pipeline, "
            "defslice.nas.report, defslice.nas.cli\n"
            "from defslice.errors import ToolError\n"
            "try:\n    import defslice.nas.dat_torch\nexcept ToolError as e:\n"
            "    assert 'pip install torch==2.13.0' in str(e); print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_seed_study_replays_the_searches_on_the_table():
    from defslice.nas.replay import hv_reference, seed_study, study_lines, table_objective

    table = [objective()(x) for x in SPACE]
    nas = C.NasConfig(generations=30)
    study = seed_study(SPACE, table, nas, range(3))
    assert [r["seed"] for r in study["runs"]] == [0, 1, 2]
    # the replay is the search itself: seed 0 gives what direct runs give
    direct = evolutionary_search(SPACE, objective(), nas)
    ref = hv_reference(table)
    full = hypervolume(pareto_front(table), *ref)
    run = study["runs"][0]
    assert run["budget"] == run["evolutionary"]["evaluations"] == direct.evaluations
    assert run["evolutionary"]["ratio"] == pytest.approx(hypervolume(direct.front, *ref) / full)
    for name, search in (("nsga2", nsga2_search), ("random", random_search)):
        r = search(SPACE, objective(), nas, direct.evaluations)
        assert run[name]["evaluations"] == r.evaluations == direct.evaluations
        assert run[name]["ratio"] == pytest.approx(hypervolume(r.front, *ref) / full)
    for name in ("evolutionary", "nsga2", "random"):
        s = study["summary"][name]
        assert 0 < s["min"] <= s["mean"] <= s["max"] <= 1 + 1e-12
        # the trace is the hypervolume ratio after each evaluation, up to the cap
        for r, trace in zip(study["runs"], study["traces"][name], strict=True):
            assert len(trace) <= study["cap"] == SPACE.size // 2
            assert all(a <= b + 1e-12 for a, b in itertools.pairwise(trace))
            to = r[name]["evaluations_to_0.99"]
            if to is None:
                assert max(trace) <= 0.99
            else:
                # (the trace is rounded to 6 decimals)
                assert trace[to - 1] >= 0.99 - 1e-6 and all(v <= 0.99 for v in trace[:to - 1])
    assert study["summary"]["evolutionary"]["min"] > 0.95
    to = study["summary"]["evolutionary"]["evaluations_to_0.99"]
    reached = [r["evolutionary"]["evaluations_to_0.99"] for r in study["runs"]]
    assert to["reached"] == sum(v is not None for v in reached)
    assert len(study_lines(study)) == 3
    with pytest.raises(Exception, match="not in the recorded table"):
        table_objective(table[:5])(SubNet(28, 28, 2))
    with pytest.raises(Exception, match="needs all 1323"):
        seed_study(SPACE, table[:5], nas, [0])


def test_seed_study_counts_evaluations_to_the_front_within_a_margin():
    from defslice.nas.replay import hv_reference, margin_goal, seed_study

    table = [objective()(x) for x in SPACE]
    nas = C.NasConfig(generations=10)
    study = seed_study(SPACE, table, nas, range(2), margin=0.02)
    ref = hv_reference(table)
    front = pareto_front(table)
    full = hypervolume(front, *ref)
    # the goal is the exhaustive front lowered by the margin: below it, and below 0.99
    assert study["margin"] == 0.02
    assert study["margin_ratio"] == pytest.approx(margin_goal(front, ref, 0.02) / full)
    assert 0 < study["margin_ratio"] < 0.99
    assert margin_goal(front, ref, 0.0) == pytest.approx(full)
    for name in ("evolutionary", "nsga2", "random"):
        for r, trace in zip(study["runs"], study["traces"][name], strict=True):
            n = r[name]["evaluations_within_margin"]
            assert n is not None and trace[n - 1] >= study["margin_ratio"] - 1e-6
            assert all(v < study["margin_ratio"] + 1e-6 for v in trace[:n - 1])
            to = r[name]["evaluations_to_0.99"]
            assert to is None or n <= to
        s = study["summary"][name]["evaluations_within_margin"]
        assert s["reached"] == 2 and s["median"] <= s["max"]
    # without a margin nothing of it is reported
    plain = seed_study(SPACE, table, nas, [0])
    assert "margin" not in plain and "evaluations_within_margin" not in plain["runs"][0]["random"]


def test_random_search_draws_distinct_subnets_at_the_budget():
    nas = C.NasConfig(seed=4)
    r = random_search(SPACE, objective(), nas, 50)
    assert r.evaluations == 50 == len({p.subnet for p in r.evaluated})
    assert [p.subnet for p in r.evaluated] == \
        [p.subnet for p in random_search(SPACE, objective(), nas, 50).evaluated]
    assert r.front == pareto_front(r.evaluated)
    assert random_search(SPACE, objective(), nas, 5000).evaluations == SPACE.size


def test_nsga2_spends_exactly_the_budget_of_distinct_evaluations():
    r = nsga2_search(SPACE, objective(), C.NasConfig(), 60)
    assert r.evaluations == 60 == len({p.subnet for p in r.evaluated})


def test_hypervolume_trace_follows_the_evaluation_order():
    pts = [pt(8, 8, 0, 0.5, 2), pt(9, 9, 0, 0.4, 3), pt(10, 10, 0, 0.8, 6)]
    assert hypervolume_trace(pts, 0.0, 10.0) == pytest.approx([4.0, 4.0, 4.0 + 0.3 * 4])


# -- paired statistics and the evaluation log -------------------------------------------
def test_paired_comparison_and_standard_error():
    a = np.array([1, 1, 0, 0, 1, 1, 1, 1] * 50, bool)
    b = a.copy()
    b[::8] = False                                   # b misses 50 images a gets
    d = paired(a, b)
    assert (d.a_only, d.b_only, d.n) == (50, 0, 400)
    assert d.diff == pytest.approx(50 / 400) and not d.tie
    assert d.se == pytest.approx(np.std(a.astype(int) - b, ddof=1) / 20)
    assert paired(a, a).tie and paired(a, a).se == 0
    c = a.copy()
    c[2], c[0] = True, False                        # one gained, one lost: a tie
    assert paired(c, a).tie and paired(c, a).diff == 0
    assert standard_error(a) == pytest.approx((0.75 * 0.25 / 400) ** 0.5)
    for n in (1, 7, 8, 13):
        x = np.random.default_rng(n).random(n) < 0.5
        assert (unpack_correct(pack_correct(x), n) == x).all()
    with pytest.raises(Exception, match="holds 8 bits for 13"):
        unpack_correct(pack_correct(np.ones(8, bool)), 13)


class _Counting:
    """Per-image results of the synthetic objective, counting the calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        self.calls.append(x)
        rng = np.random.default_rng(x.slice_h * 1000 + x.slice_w * 10 + x.overlap)
        return rng.random(64) < synthetic(x)


def test_evaluations_are_logged_and_an_interrupted_run_resumes(tmp_path):
    header = {"weights": "abc", "images": 64}
    fn = _Counting()
    log = EvaluationLog(tmp_path, header, 64)
    obj = Objective(fn, lambda x: eq3_resource(DAT56, x), log=log)
    first = evolutionary_search(SPACE, obj, C.NasConfig(generations=6))
    assert len(fn.calls) == first.evaluations == obj.fresh
    lines = log.path.read_text().splitlines()
    assert len(lines) == 1 + first.evaluations and "header" in json.loads(lines[0])
    # interrupted while writing the last record, and before some others were done
    log.path.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:25])
    fn2 = _Counting()
    obj2 = Objective(fn2, lambda x: eq3_resource(DAT56, x),
                     log=EvaluationLog(tmp_path, header, 64))
    assert obj2.resumed == first.evaluations - 3
    again = evolutionary_search(SPACE, obj2, C.NasConfig(generations=6))
    assert [p.subnet for p in again.evaluated] == [p.subnet for p in first.evaluated]
    assert again.front == first.front
    assert len(fn2.calls) == 3 and obj2.fresh == 3
    for x, c in obj.correct.items():
        assert (obj2.correct[x] == c).all()
    assert len(log.path.read_text().splitlines()) == 1 + first.evaluations
    # other weights: another file, nothing resumed
    other = EvaluationLog(tmp_path, {**header, "weights": "def"}, 64)
    assert other.path != log.path and not other.records
    # a damaged line that is not the last one is an error naming the file
    bad = log.path.read_text().splitlines()
    bad[2] = "{not json"
    log.path.write_text("\n".join(bad) + "\n")
    with pytest.raises(Exception, match="line 3: not an evaluation record"):
        EvaluationLog(tmp_path, header, 64)


def test_pool_runner_scores_in_worker_processes(tmp_path):
    from defslice.nas.evaluation import PoolRunner

    xs = [SubNet(8, 8, 0), SubNet(20, 9, 2), SubNet(28, 28, 1)]
    with PoolRunner(_table_scorer, (), 2) as runner:
        got = {x: (r, s) for x, r, s in runner.run(xs)}
        obj = Objective(None, lambda x: 1.0, runner=runner,
                        log=EvaluationLog(tmp_path, {"k": 1}, None))
        pts = obj.many(xs + xs[:1])
    assert set(got) == set(xs)
    assert all(got[x][0] == synthetic(x) and got[x][1] >= 0 for x in xs)
    assert [p.accuracy for p in pts] == [synthetic(x) for x in xs + xs[:1]]
    assert obj.fresh == 3 and len(obj.log.records) == 3


def _table_scorer():
    return synthetic


def test_hypervolume_plot_takes_replays_of_different_lengths(tmp_path):
    # NSGA-II's replays ask for sub-nets again: some seeds end with fewer distinct ones
    from defslice.nas.report import _plot_hypervolume, ragged_rows

    rows = [[0.5, 0.9, 1.0], [0.4]]
    t = ragged_rows(rows)
    assert t.shape == (2, 3) and t[0].tolist() == rows[0]
    assert t[1, 0] == 0.4 and np.isnan(t[1, 1:]).all()
    traces = {"evolutionary": [[0.5, 0.9, 1.0], [0.6, 0.95, 0.99]],
              "nsga2": [[0.5, 0.8, 0.9], [0.7]], "random": [[0.2, 0.3, 0.4]] * 2}
    report = {"config": "t", "resource_objective": "bram18",
              "seed_study": {"traces": traces, "runs": [{"budget": 3}]}}
    path = _plot_hypervolume(report, tmp_path / "hv.png")
    assert path.stat().st_size > 1000
