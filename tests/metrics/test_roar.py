"""ROAR: exact top-fraction removal, an end-to-end run whose answer is known by construction,
budget recording, and resume without recomputation."""

import dataclasses

import pytest
import torch

from attrlab.data import DatasetInfo, NormalizedDataset
from attrlab.experiments import roar as R
from attrlab.experiments import train
from attrlab.experiments.store import ResultStore
from attrlab.methods import Attribution
from attrlab.models import nib_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# remove_top
# ---------------------------------------------------------------------------------------------


def test_remove_top_hand_checked_1x2x2():
    img = torch.tensor([[[[10, 20], [30, 40]]]], dtype=torch.uint8)  # mean 25
    att = torch.tensor([[[[0.1, 0.9], [0.5, 0.2]]]])
    expect = {
        0.0: [[10, 20], [30, 40]],
        0.25: [[10, 25], [30, 40]],
        0.5: [[10, 25], [25, 40]],
        0.75: [[10, 25], [25, 25]],
        1.0: [[25, 25], [25, 25]],
    }
    for fraction, want in expect.items():
        out = R.remove_top(img, att, fraction)
        assert out.dtype == torch.uint8
        assert torch.equal(out, torch.tensor([[want]], dtype=torch.uint8)), fraction
    assert torch.equal(img, torch.tensor([[[[10, 20], [30, 40]]]], dtype=torch.uint8))  # a copy
    # float images keep the exact mean; (N, H, W) attributions are accepted
    out = R.remove_top(img.float(), att[:, 0], 0.5)
    assert torch.equal(out, torch.tensor([[[[10.0, 25], [25, 40]]]]))
    # uint8 mean is rounded: mean of (10, 20, 30, 41) = 25.25 -> 25
    img2 = torch.tensor([[[[10, 20], [30, 41]]]], dtype=torch.uint8)
    assert R.remove_top(img2, att, 0.25)[0, 0, 0, 1] == 25
    with pytest.raises(ValueError):
        R.remove_top(img, att, 1.5)
    with pytest.raises(ValueError):
        R.remove_top(img, att[:, :, :1], 0.5)


def test_remove_top_3x4x4_uses_channel_sum_and_per_channel_mean():
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 4, 4), generator=gen, dtype=torch.uint8)
    # per-channel attributions whose channel SUM ranks pixels 0..15 in a known order, while
    # every single channel ranks them differently
    rank = torch.randperm(16, generator=gen).float().view(4, 4)
    noise = torch.randn(2, 4, 4, generator=gen) * 100
    att = torch.stack([rank + noise, rank - noise, rank.expand(2, 4, 4)], 1)
    fraction = 0.3  # round(0.3 * 16) = 5 pixels
    out = R.remove_top(img, att, fraction)
    top = rank.flatten().argsort(descending=True)[:5]
    mask = torch.zeros(16, dtype=torch.bool)
    mask[top] = True
    mask = mask.view(4, 4)
    assert mask.sum() == 5
    for n in range(2):
        for c in range(3):
            mean = round(float(img[n, c].double().mean()))
            assert (out[n, c][mask] == mean).all()
            assert torch.equal(out[n, c][~mask], img[n, c][~mask])
    # ties are broken by a seeded random order: exactly k pixels, reproducible, seed-dependent
    flat = torch.zeros(2, 3, 4, 4)
    a = R.remove_top(img, flat, 0.5, seed=1)
    changed = (a != img).any(1)
    means = img.double().mean((2, 3)).round().to(torch.uint8)
    replaced = (a == means[:, :, None, None]).all(1)
    assert (replaced.flatten(1).sum(1) >= 8).all() and (changed.flatten(1).sum(1) <= 8).all()
    assert torch.equal(a, R.remove_top(img, flat, 0.5, seed=1))
    assert not torch.equal(a, R.remove_top(img, flat, 0.5, seed=2))


# ---------------------------------------------------------------------------------------------
# End to end on a data set whose answer is known
# ---------------------------------------------------------------------------------------------


def synthetic(n, seed):
    """8x8 grey images of uniform noise; the class is only in the top-left 4x4 quadrant:
    class 0 has its top two rows white and bottom two black, class 1 the reverse. Both
    classes have the same quadrant mean, so the per-image mean carries no class information."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    quad = torch.zeros(n, 4, 4, dtype=torch.uint8)
    quad[:, :2] = 255
    quad[labels == 1] = quad[labels == 1].flip(1)
    imgs[:, 0, :4, :4] = quad
    info = DatasetInfo("quadrant", 2, 1, 8, (0.5,), (0.25,), ("top", "bottom"))
    return NormalizedDataset(imgs, labels, info)


QUADRANT = torch.zeros(8, 8)
QUADRANT[:4, :4] = 1.0


class Oracle(Attribution):
    """Marks the informative quadrant (or, inverted, everything else); counts its calls."""

    calls: dict = {}

    def __init__(self, model, inverse=False):
        super().__init__(model)
        self.inverse = inverse

    def _attribute(self, inputs, target):
        key = "inverse" if self.inverse else "oracle"
        Oracle.calls[key] = Oracle.calls.get(key, 0) + 1
        m = 1.0 - QUADRANT if self.inverse else QUADRANT
        return m.expand_as(inputs).clone()


FACTORIES = {"oracle": lambda m: Oracle(m), "inverse": lambda m: Oracle(m, inverse=True)}
RECIPE = train.Recipe(optimizer="adam", lr=1e-2, weight_decay=0.0, epochs=3, batch_size=32,
                      schedule="cosine", augment=False)
DATA = {"train": synthetic(800, 0), "test": synthetic(300, 1)}


def run(out_dir, progress=False):
    torch.manual_seed(0)
    model = nib_cnn(num_classes=2, width=4, input_size=8)
    return R.roar(model, DATA["train"], DATA["test"], FACTORIES, fractions=[0.3],
                  recipe=RECIPE, seeds=[0], out_dir=out_dir, subset=(600, 200),
                  progress=progress, batch_size=128)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("roar-ref")
    return out, run(out)


def test_roar_known_answer(reference, capfd):
    out, rows = reference
    acc = {r["method"]: r["accuracy"] for r in rows}
    assert [r["method"] for r in rows] == ["baseline", "oracle", "inverse", "random"]
    assert acc["baseline"] > 0.95
    assert acc["inverse"] > 0.95  # 30 % removed, all outside the quadrant: task intact
    assert acc["oracle"] < 0.65  # the quadrant is gone: chance level (0.5)
    for r in rows:
        assert r["fraction"] == (0.0 if r["method"] == "baseline" else 0.3)
        assert (r["seed"], r["n_train"], r["n_test"], r["epochs"]) == (0, 600, 200, 3)
        assert r["full_data"] is False
    assert R.stored_rows(out) == rows
    with ResultStore(out / "results.sqlite") as store:
        maps = store.db.execute("SELECT key FROM artefacts").fetchall()
        assert len(maps) == 2  # oracle and inverse; none for random and baseline
        for (key,) in maps:
            blob = store.artefact(key)
            assert blob["train"].shape == (600, 8, 8) and blob["test"].shape == (200, 8, 8)
    assert len(list((out / "models").glob("oracle-0.3-seed0-600x200-3ep-*.pt"))) == 1


def test_roar_prints_budget_line(tmp_path, reference, capfd):
    # all rows are present: nothing is computed, the budget line is still printed
    out, rows = reference
    assert run(out) == rows
    err = capfd.readouterr().err
    line = [s for s in err.splitlines() if s.startswith("ROAR budget")]
    assert len(line) == 1
    assert "600/800 training" in line[0] and "200/300 test" in line[0] and "3 epochs" in line[0]
    assert "4 of 4 runs already" in line[0]


def test_roar_resume_skips_finished_rows(tmp_path, reference, monkeypatch):
    _, ref_rows = reference
    real_fit = train.fit
    fits = []

    class Interrupt(RuntimeError):
        pass

    def interrupted_fit(*args, **kwargs):
        if fits:
            raise Interrupt("killed")
        fits.append(kwargs.get("meta"))
        return real_fit(*args, **kwargs)

    Oracle.calls = {}
    monkeypatch.setattr(R._train, "fit", interrupted_fit)
    with pytest.raises(Interrupt):
        run(tmp_path)
    assert [r["method"] for r in R.stored_rows(tmp_path)] == ["baseline"]
    assert Oracle.calls == {"oracle": 7}  # 5 train + 2 test batches, cached before the crash

    def counting_fit(*args, **kwargs):
        fits.append(kwargs.get("meta"))
        return real_fit(*args, **kwargs)

    fits.clear()
    Oracle.calls = {}
    monkeypatch.setattr(R._train, "fit", counting_fit)
    rows = run(tmp_path)
    assert rows == ref_rows  # identical to the uninterrupted run
    assert [m["roar"]["method"] for m in fits] == ["oracle", "inverse", "random"]
    assert Oracle.calls == {"inverse": 7}  # oracle maps came from the cache (5 + 2 batches)
    # a finished checkpoint whose row was lost (crash between fit and the write) is
    # evaluated, not retrained
    with ResultStore(tmp_path / "results.sqlite") as store:
        last = store.plan_keys()[-1]
        with store.db:
            store.db.execute("DELETE FROM scores WHERE unit = ?", (last,))
    assert len(R.stored_rows(tmp_path)) == 3
    fits.clear()
    Oracle.calls = {}
    assert run(tmp_path) == ref_rows
    assert fits == [] and Oracle.calls == {}
    assert R.stored_rows(tmp_path) == ref_rows


def test_roar_units_are_named_by_model_recipe_data_and_method_options(tmp_path, monkeypatch):
    """Another model, recipe, subset or method options in the same folder are new units: the
    stored runs are not reused for them (the old attr-<method>.pt cache was keyed by the
    method's name only), and going back to the first settings recomputes nothing."""
    def saliency(abs_):
        return {"s": {"name": "saliency", "options": {"abs": abs_}}}

    recipe = dataclasses.replace(RECIPE, epochs=1)
    kw = dict(fractions=[0.5], seeds=[0], out_dir=tmp_path, progress=False, subset=(64, 32),
              include_random=False)
    torch.manual_seed(0)
    model = nib_cnn(num_classes=2, width=4, input_size=8)
    first = R.roar(model, DATA["train"], DATA["test"], saliency(True), recipe=recipe, **kw)
    fits = []
    real_fit = train.fit
    monkeypatch.setattr(R._train, "fit",
                        lambda *a, **k: fits.append(k["meta"]["roar"]) or real_fit(*a, **k))
    computed = []
    real_scores = R.compute_scores
    monkeypatch.setattr(R, "compute_scores",
                        lambda *a, **k: computed.append(1) or real_scores(*a, **k))
    R.roar(model, DATA["train"], DATA["test"], saliency(False), recipe=recipe, **kw)
    assert [f["method"] for f in fits] == ["s"] and len(computed) == 2  # maps recomputed
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert store.db.execute("SELECT COUNT(*) FROM artefacts").fetchone()[0] == 2
    fits.clear()
    R.roar(model, DATA["train"], DATA["test"], saliency(True),
           recipe=dataclasses.replace(recipe, lr=0.5), **kw)
    assert [f["method"] for f in fits] == ["baseline", "s"]  # another recipe: retrained
    fits.clear()
    other = nib_cnn(num_classes=2, width=4, input_size=8)
    R.roar(other, DATA["train"], DATA["test"], saliency(True), recipe=recipe, **kw)
    assert [f["method"] for f in fits] == ["baseline", "s"]  # another model
    fits.clear()
    R.roar(model, DATA["train"], DATA["test"], saliency(True), recipe=recipe,
           **{**kw, "subset": (64, 16)})
    assert [f["method"] for f in fits] == ["baseline", "s"]  # another test subset
    fits.clear()
    computed.clear()
    assert R.roar(model, DATA["train"], DATA["test"], saliency(True), recipe=recipe,
                  **kw) == first
    assert fits == [] and computed == []


def test_roar_rejects_bad_arguments(tmp_path):
    model = nib_cnn(num_classes=2, width=4)
    with pytest.raises(ValueError, match="a spec is"):
        R.roar(model, DATA["train"], DATA["test"], {"s": {"method": "saliency"}},
               out_dir=tmp_path, progress=False)
    with pytest.raises(TypeError, match="factory callable or a spec"):
        R.roar(model, DATA["train"], DATA["test"], {"s": 3}, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="reserved"):
        R.roar(model, DATA["train"], DATA["test"], {"random": FACTORIES["oracle"]},
               out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="fraction"):
        R.roar(model, DATA["train"], DATA["test"], FACTORIES, fractions=[2.0],
               out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="subset"):
        R.roar(model, DATA["train"], DATA["test"], FACTORIES, subset=(0, 3),
               out_dir=tmp_path, progress=False)
