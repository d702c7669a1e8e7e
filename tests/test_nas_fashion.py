"""The Fashion-MNIST objective on generated IDX files: classifier, evaluator, workers,
fixed-point figure (no training: the classifier keeps its seeded initial weights)."""

import numpy as np
import pytest
import torch

from defslice import config as C
from defslice.nas.classifier import POOL, ClassifierSpec, DatPlusClassifier
from defslice.nas.evaluation import PoolRunner
from defslice.nas.evaluators import fashion_objective, worker_accuracy
from defslice.nas.fashion import DIR_ENV
from defslice.nas.idx import write_idx
from defslice.nas.space import SubNet

torch.set_num_threads(1)

SMALL = C.Config(
    name="fashion-small",
    workload=C.WorkloadConfig(kind="dat", levels=((16, 16),), heads=2, channels=8, points=1,
                              stride=4, offset_kernel=5, offset_range_factor=-1.0),
    slicing=C.SlicingConfig(slice_h=8, slice_w=8, overlap=1),
    hw=C.HwConfig(lanes=2),
    nas=C.NasConfig(slice_h_range=(4, 8), slice_w_range=(4, 8), overlaps=(0, 2),
                    val_images=40, train_epochs=1, generations=2, samples_per_generation=4),
)


@pytest.fixture
def fashion_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for part, n in (("train", 120), ("t10k", 30)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):  # a bright band whose row is the class
            images[i, 2 * c + 4:2 * c + 7] = 220
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    monkeypatch.setenv("DEFSLICE_CACHE", str(tmp_path / "cache"))
    calls = []

    def no_training(model, images, labels, epochs, seed, **kw):
        calls.append((len(labels), epochs, seed, kw["lr"]))
        return [0.0] * epochs

    monkeypatch.setattr("defslice.nas.evaluators.train_classifier", no_training)
    return calls


def test_classifier_shapes_and_the_pooled_path_is_the_full_one():
    torch.manual_seed(0)
    model = DatPlusClassifier(ClassifierSpec.from_config(SMALL)).eval()
    images = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        cache = model.cache_inputs(images)
        assert cache["x_pool"].shape == (5, 16, 16 // POOL, 16 // POOL)
        for x in (None, SubNet(8, 8, 1), SubNet(4, 6, 0)):
            layout = None if x is None else model.layout(x.slice_h, x.slice_w, x.overlap)
            fast = model.forward_cached(cache, layout)
            # the attention at full resolution, pooled afterwards (what the pooled path
            # computes cell by cell)
            full = model.forward_with(images, lambda t, lay=layout: model.attn(t, lay))
            torch.testing.assert_close(fast, full, atol=2e-5, rtol=2e-5)
            assert fast.shape == (5, 10)
    with pytest.raises(Exception, match="workload.levels"):
        ClassifierSpec.from_config(SMALL.replace(
            workload={"levels": ((12, 12),)}, nas={"slice_h_range": (4, 8)}))


def test_fashion_objective_on_generated_files(fashion_files):
    acc, meta, test = fashion_objective(SMALL)
    assert fashion_files == [(80, 1, 0, 2e-3)]
    assert (meta["train_images"], meta["val_images"], meta["test_images"]) == (80, 40, 30)
    assert not meta["cached"] and meta["recipe"]["files"]["train"]
    assert meta["key_parts"]["recipe"]["val_images"] == 40
    acc2, meta2, _ = fashion_objective(SMALL)
    assert meta2["cached"] and meta2["key"] == meta["key"] and len(fashion_files) == 1
    # another validation split is another classifier
    assert fashion_objective(SMALL.replace(nas={"val_images": 20}))[1]["key"] != meta["key"]
    x = SubNet(4, 6, 2)
    c = acc.correct(x)
    assert c.dtype == bool and c.shape == (40,)
    with torch.no_grad():
        direct = acc.model(acc.val.images, acc.model.layout(4, 6, 2)).argmax(-1)
    assert (c == (direct == acc.val.labels).numpy()).all()
    assert acc(x) == pytest.approx(c.mean())
    assert (acc2.correct(x) == c).all()          # the cached weights are the same
    # a worker rebuilt from worker_args scores exactly like this process
    scorer = worker_accuracy(*acc.worker_args())
    assert (scorer(x) == c).all()
    torch.set_num_threads(1)
    assert test.images.shape == (30, 1, 28, 28)


def test_pool_workers_share_the_cached_inputs(fashion_files):
    acc, _meta, _test = fashion_objective(SMALL)
    xs = [SubNet(4, 4, 0), SubNet(8, 8, 2), SubNet(5, 7, 0)]
    with PoolRunner(worker_accuracy, acc.worker_args(), 1) as runner:
        got = {x: r for x, r, _s in runner.run(xs)}
    for x in xs:
        assert (got[x] == acc.correct(x)).all()


def test_fixed_point_figure_on_the_same_images(fashion_files):
    from defslice.nas.hw_accuracy import fixed_point_figures

    acc, _meta, test = fashion_objective(SMALL)
    x = SubNet(8, 8, 1)
    res = fixed_point_figures(SMALL, acc.model, test, acc.train.images, x, images=12, chunk=5)
    pooled = fixed_point_figures(SMALL, acc.model, test, acc.train.images, x, images=12,
                                 workers=1, chunk=7)
    assert {k: pooled[k] for k in ("float", "fixed_point", "difference", "agreement")} == \
        {k: res[k] for k in ("float", "fixed_point", "difference", "agreement")}
    assert res["images"] == 12 and res["subnet"] == x.as_dict()
    with torch.no_grad():
        ref = acc.model(test.images[:12], acc.model.layout(8, 8, 1)).argmax(-1)
    assert res["float"]["accuracy"] == pytest.approx(float((ref == test.labels[:12])
                                                          .float().mean()))
    d = res["difference"]
    assert d["diff"] == pytest.approx(res["fixed_point"]["accuracy"]
                                      - res["float"]["accuracy"])
    assert 0.5 <= res["agreement"] <= 1.0
    assert res["formats"]["layer_numerics"]


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    from defslice.nas.data import random_flipper
    from defslice.nas.train import train_classifier

    spec = ClassifierSpec.from_config(SMALL, dims=(8, 8))
    gen = torch.Generator().manual_seed(1)
    images, labels = torch.randn(10, 1, 16, 16, generator=gen), torch.arange(10) % 10

    def fresh():
        torch.manual_seed(0)
        return DatPlusClassifier(spec)

    kw = dict(epochs=2, seed=3, batch=4, lr=1e-2, augment=random_flipper(), save_every=2)
    whole = fresh()
    losses = train_classifier(whole, images, labels, **kw)   # 6 steps, a few ms each

    class StopError(Exception):
        pass

    def stop_at_4(step, steps, loss):
        if step == 4:
            raise StopError

    ckpt = tmp_path / "c.partial"
    part = fresh()
    with pytest.raises(StopError):
        train_classifier(part, images, labels, checkpoint=ckpt, on_step=stop_at_4, **kw)
    assert ckpt.is_file()
    resumed = fresh()    # a new process would start from the initial weights again
    again = train_classifier(resumed, images, labels, checkpoint=ckpt, **kw)
    assert again == losses and not ckpt.exists()
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
