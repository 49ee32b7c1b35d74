"""The metric protocol, checked for every registered metric (attrlab.metrics.base):

* ``compute`` is one computation: ``evaluate`` gives its scores, ``curve`` its curve, and for
  curve metrics the scores are exactly the summary of the returned curve;
* ``compute_many`` equals one ``compute`` per map, exactly; Sensitivity-n shares its model
  passes between the maps (counted);
* shapes, float32/float64 inputs, determinism, the model (state, training flags,
  requires_grad, hooks) and the global RNG left as they were, also after an exception;
* metadata declared and sane for every metric, ``cost`` equal to the rows actually pushed
  through the model;
* ground truth travels from a dataset (Cluttered MNIST boxes) to a metric that needs it, with
  the validation errors of the base class.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attrlab import methods, metrics
from attrlab.data import ClutteredMNIST, digits
from attrlab.metrics import CATEGORIES, CurveMetric, Metric, MetricResult
from attrlab.metrics.randomisation.model_randomisation import _randomize
from attrlab.models import nib_cnn

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = metrics.available()
# small options so that every metric runs in well under a second on the tiny model
OPTIONS = {"sensitivity_n": dict(fraction=0.3, n_subsets=6), "mia": dict(iterations=2),
           "insertion": dict(steps=5), "deletion": dict(steps=5),
           # the contract's maps (GxI) have no mask size: every size gives the same method
           "consistency": dict(variant=lambda method, size: method), "stability": dict(n_samples=3)}
N = 4


def make(name: str, **kw) -> Metric:
    return metrics.get(name, **{**OPTIONS.get(name, {}), **kw})


def tiny_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    model = nib_cnn(num_classes=3, width=4)  # 1 x 8 x 8 inputs, 8 cascade layers
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if getattr(m, "running_var", None) is not None:
                m.running_var.uniform_(0.5, 2.0)
    return model.to(dtype)


def batch(dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 8, 8, generator=g).to(dtype)
    return x, torch.tensor([0, 1, 2, 1])


def ground_truth() -> dict[str, Tensor]:
    """Boxes and masks for every sample, so that any (future) localisation metric runs here."""
    boxes = torch.tensor([[0, 0, 4, 4], [2, 2, 8, 8], [1, 3, 5, 7], [0, 0, 8, 8]])
    masks = torch.zeros(N, 8, 8, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        masks[i, y0:y1, x0:x1] = True
    return {"boxes": boxes, "masks": masks}


def maps_and_methods(model: nn.Module, x: Tensor, t: Tensor):
    """Three maps of the batch with their (deterministic) methods."""
    ms = {"gxi": methods.get("gxi", model), "saliency": methods.get("saliency", model),
          "gbp": methods.get("gbp", model)}
    return {k: m.attribute(x, t).detach() for k, m in ms.items()}, ms


def call_kwargs(metric: Metric, method) -> dict:
    return dict(method=method, ground_truth=ground_truth())


def assert_same_result(a: MetricResult, b: MetricResult) -> None:
    assert torch.equal(a.scores, b.scores)
    assert (a.curve is None) == (b.curve is None)
    if a.curve is not None:
        assert torch.equal(a.curve[0], b.curve[0]) and torch.equal(a.curve[1], b.curve[1])


# ---------------------------------------------------------------------------------------------
# one computation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_compute_scores_curve_and_evaluate_agree_exactly(name):
    model = tiny_model()
    x, t = batch()
    maps, ms = maps_and_methods(model, x, t)
    metric = make(name)
    r = metric.compute(model, x, t, maps["gxi"], **call_kwargs(metric, ms["gxi"]))
    assert isinstance(r, MetricResult)
    assert r.scores.shape == (N,) and r.scores.is_floating_point()
    assert torch.isfinite(r.scores).all()
    assert torch.equal(metric.evaluate(model, x, t, maps["gxi"], method=ms["gxi"],
                                       ground_truth=ground_truth()), r.scores)
    assert type(metric).has_curve == isinstance(metric, CurveMetric) == (r.curve is not None)
    if r.curve is not None:
        cx, cy = r.curve
        assert cx.dim() == 1 and cy.shape == (N, cx.shape[0]) and cx.shape[0] >= 2
        assert torch.equal(metric.summarize(cx, cy), r.scores)  # the score IS the summary
        cx2, cy2 = metric.curve(model, x, t, maps["gxi"], method=ms["gxi"],
                                ground_truth=ground_truth())
        assert torch.equal(cx2, cx) and torch.equal(cy2, cy)
        scores, (cx3, cy3) = metric.evaluate_with_curve(model, x, t, maps["gxi"],
                                                        method=ms["gxi"],
                                                        ground_truth=ground_truth())
        assert torch.equal(scores, r.scores) and torch.equal(cy3, cy)
    # deterministic: the same result twice
    assert_same_result(metric.compute(model, x, t, maps["gxi"],
                                      **call_kwargs(metric, ms["gxi"])), r)


@pytest.mark.parametrize("name", NAMES)
def test_compute_runs_the_metric_once(name, monkeypatch):
    """No second recomputation inside compute: the hook runs once per call."""
    model = tiny_model()
    x, t = batch()
    maps, ms = maps_and_methods(model, x, t)
    metric = make(name)
    cls = type(metric)
    hook = "_curve" if isinstance(metric, CurveMetric) else "_compute"
    original = getattr(cls, hook)
    calls = []

    def counted(self, *a, **kw):
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(cls, hook, counted)
    metric.compute(model, x, t, maps["gxi"], **call_kwargs(metric, ms["gxi"]))
    assert len(calls) == 1


@pytest.mark.parametrize("name", NAMES)
def test_float64_inputs(name):
    model = tiny_model(torch.float64)
    x, t = batch(torch.float64)
    maps, ms = maps_and_methods(model, x, t)
    metric = make(name)
    r64 = metric.compute(model, x, t, maps["gxi"], **call_kwargs(metric, ms["gxi"]))
    assert r64.scores.shape == (N,) and r64.scores.is_floating_point()
    assert torch.isfinite(r64.scores).all()
    if metric.category == "faithfulness" and not metric.needs_method:
        # continuous in the inputs: float64 carries the input dtype, float32 agrees closely
        assert r64.scores.dtype == torch.float64
        m32 = tiny_model()
        x32, t32 = batch()
        maps32, _ = maps_and_methods(m32, x32, t32)
        r32 = metric.compute(m32, x32, t32, maps32["gxi"])
        assert r32.scores.dtype == torch.float32
        torch.testing.assert_close(r32.scores.double(), r64.scores, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# many maps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_compute_many_equals_one_compute_per_map(name):
    model = tiny_model()
    x, t = batch()
    maps, ms = maps_and_methods(model, x, t)
    metric = make(name)
    many = metric.compute_many(model, x, t, maps, methods=ms, ground_truth=ground_truth())
    assert list(many) == list(maps)
    for k, a in maps.items():
        assert_same_result(many[k], metric.compute(model, x, t, a, **call_kwargs(metric, ms[k])))
    scores = metric.evaluate_many(model, x, t, maps, methods=ms, ground_truth=ground_truth())
    assert all(torch.equal(scores[k], many[k].scores) for k in maps)
    # errors name the offending map; methods are required (per map) where needed
    with pytest.raises(ValueError, match=r"attributions\['short'\].*do not match"):
        metric.compute_many(model, x, t, {**maps, "short": maps["gxi"][:2]}, methods=ms,
                            ground_truth=ground_truth())
    with pytest.raises(ValueError, match="at least one"):
        metric.compute_many(model, x, t, {}, methods=ms)
    with pytest.raises(TypeError, match="map names"):
        metric.compute_many(model, x, t, [maps["gxi"]], methods=ms)
    if metric.needs_method:
        with pytest.raises(ValueError, match="needs the attribution method"):
            metric.compute_many(model, x, t, maps, ground_truth=ground_truth())
        with pytest.raises(ValueError, match=r"no method for the map\(s\) \['gbp'\]"):
            metric.compute_many(model, x, t, maps, methods={"gxi": ms["gxi"],
                                                            "saliency": ms["saliency"]},
                                ground_truth=ground_truth())
        other = methods.get("gxi", tiny_model())
        with pytest.raises(ValueError, match=r"methods\['gxi'\].*model being evaluated"):
            metric.compute_many(model, x, t, maps, methods={**ms, "gxi": other},
                                ground_truth=ground_truth())


class CountingModel(nn.Module):
    """Counts the rows pushed through it, in a class attribute (so copies count too)."""

    rows = 0

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        CountingModel.rows += x.shape[0]
        return self.inner(x)


def test_sensitivity_n_compute_many_shares_the_forward_passes():
    model = tiny_model()
    x, t = batch()
    maps, _ = maps_and_methods(model, x, t)
    metric = make("sensitivity_n")
    assert type(metric).shares_model_passes
    counted = CountingModel(model)
    CountingModel.rows = 0
    many = metric.compute_many(counted, x, t, maps)
    assert CountingModel.rows == N * (metric.n_subsets + 1)  # once, not once per map
    assert metric.cost() == metric.n_subsets + 1
    CountingModel.rows = 0
    for k, a in maps.items():
        assert torch.equal(metric.compute(counted, x, t, a).scores, many[k].scores)
    assert CountingModel.rows == len(maps) * N * (metric.n_subsets + 1)
    assert sum(c.shares_model_passes for c in map(metrics.metric_class, NAMES)) >= 1


# ---------------------------------------------------------------------------------------------
# metadata and cost
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_declared_and_sane(name):
    cls = metrics.metric_class(name)
    cls.check_metadata()
    info = cls.describe()
    assert info == metrics.describe(name) == metrics.describe()[name] == cls.info()
    json.dumps(info)  # plain data, for reports
    assert info["name"] == name and info["category"] in CATEGORIES
    for flag in ("higher_is_better", "needs_method", "needs_ground_truth",
                 "shares_model_passes", "fast", "has_curve"):
        assert isinstance(info[flag], bool), flag
    assert info["needs_ground_truth"] == bool(info["ground_truth_keys"])
    assert info["cost"] and info["summary"]
    model = tiny_model()
    metric = make(name)
    cost = metric.cost(model=model)
    # localisation metrics score the map against the boxes without running the model
    assert (cost > 0 or info["category"] == "localisation") and \
        cost == metric.forward_passes(model=model) + \
        metric.method_calls(model=model)
    assert metric.cost(model=model, method_cost=3.0) == metric.forward_passes() + \
        3.0 * metric.method_calls(model=model)
    assert (metric.method_calls(model=model) > 0) == metric.needs_method
    with pytest.raises(ValueError, match="unknown cost info"):
        metric.cost(model=model, steps=3)
    with pytest.raises(ValueError, match="method_cost"):
        metric.cost(model=model, method_cost=0)


@pytest.mark.parametrize("name", NAMES)
def test_cost_counts_the_rows_through_the_model(name):
    """``cost`` (method_cost = 1: GxI is one forward pass per call) is the number of rows per
    sample the model sees; the forward-order probe of sanity checks adds one row per call."""
    model = tiny_model()
    x, t = batch()
    counted = CountingModel(model)
    method = methods.get("gxi", counted)
    a = method.attribute(x, t).detach()
    metric = make(name)
    CountingModel.rows = 0
    metric.compute(counted, x, t, a, **call_kwargs(metric, method))
    probe = 1 if metric.category == "randomisation" and metric.order == "forward" else 0
    assert CountingModel.rows == N * metric.cost(model=counted) + probe


def test_cost_of_curve_options():
    assert metrics.get("morf", steps=20).cost() == 21
    assert metrics.get("lerf_change").cost() == 9 + 1
    assert metrics.get("insertion").cost() == 16
    assert metrics.get("mia", iterations=3).cost(method_cost=2) == 4 + 3 * 2
    sanity = metrics.get("sanity_ssim")
    assert sanity.cost(n_layers=5) == 6 and sanity.cost(model=tiny_model()) == 9
    assert metrics.get("sanity_ssim", layers=["a", "b"]).cost() == 3
    with pytest.raises(ValueError, match="model=... or n_layers"):
        sanity.cost()


def test_registration_checks_the_metadata():
    class NoCategory(Metric):
        name = "contract_no_category"
        cost_formula = "1"

    class GroundTruthWithoutKeys(Metric):
        name = "contract_gt_no_keys"
        category = "localisation"
        needs_ground_truth = True
        cost_formula = "1"

    class NoCost(Metric):
        name = "contract_no_cost"
        category = "robustness"

    for cls, match in ((NoCategory, "category"), (GroundTruthWithoutKeys, "ground_truth_keys"),
                       (NoCost, "cost_formula")):
        with pytest.raises(ValueError, match=match):
            metrics.register(cls)
        assert cls.name not in metrics.available()


def test_metric_result_is_validated_and_frozen():
    r = MetricResult(torch.zeros(3), (torch.arange(2.0), torch.zeros(3, 2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.scores = torch.ones(3)
    with pytest.raises(TypeError, match="1-D"):
        MetricResult(torch.zeros(3, 1))
    with pytest.raises(TypeError, match="curve"):
        MetricResult(torch.zeros(3), (torch.arange(2.0), torch.zeros(2, 2)))


# ---------------------------------------------------------------------------------------------
# the model and the RNG are left alone
# ---------------------------------------------------------------------------------------------


def model_state(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks),
              dict(m._backward_pre_hooks)) for m in model.modules()])


def assert_state(model: nn.Module, before) -> None:
    state, training, grads, hooks = model_state(model)
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert training == before[1] and grads == before[2] and hooks == before[3]
    assert all(p.grad is None for p in model.parameters())


class Bomb(nn.Module):
    """Identity that raises at the ``fuse``-th call from now (class-level, so that deep copies
    made by a metric go off too)."""

    fuse: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        if Bomb.fuse is not None:
            Bomb.fuse -= 1
            if Bomb.fuse < 0:
                raise RuntimeError("boom")
        return x


@pytest.mark.parametrize("name", NAMES)
def test_model_and_rng_untouched_also_after_an_exception(name):
    model = nn.Sequential(Bomb(), tiny_model()).train()
    model[1].features[0].weight.requires_grad_(False)
    handle = model[1].classifier.register_forward_hook(lambda *_: None)
    x, t = batch()
    method = methods.get("gxi", model)
    a = method.attribute(x, t).detach()
    metric = make(name, batch_size=8)  # several model calls: the second one raises
    before = model_state(model)
    rng = torch.get_rng_state()
    try:
        metric.compute(model, x, t, a, **call_kwargs(metric, method))
        assert_state(model, before)
        assert torch.equal(torch.get_rng_state(), rng), "the global RNG was changed"
        for fuse in (0, 1) if metric.cost(model=model) > 0 else ():  # metrics calling the model
            Bomb.fuse = fuse
            with pytest.raises(RuntimeError, match="boom"):
                metric.compute(model, x, t, a, **call_kwargs(metric, method))
            Bomb.fuse = None
            assert_state(model, before)
    finally:
        Bomb.fuse = None
        handle.remove()
    assert method.model is model


# ---------------------------------------------------------------------------------------------
# sanity checks: one cascade, the caller's RNG untouched, the same random numbers as before
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("sanity_")])
def test_sanity_score_is_the_mean_of_its_curve_for_smoothgrad(name):
    model = tiny_model()
    x, t = batch()
    gen = torch.Generator().manual_seed(3)
    sg = methods.get("smoothgrad", model, nt_samples=3, generator=gen)
    a = sg.attribute(x, t).detach()
    metric = metrics.get(name)
    state = gen.get_state()
    r = metric.compute(model, x, t, a, method=sg)
    assert torch.equal(r.scores, r.curve[1][:, 1:].mean(1))  # exactly: one cascade
    assert (r.curve[1][:, 0] < 0.99).all()  # a real stochastic case: step 0 is a noise floor
    scores, (_, y) = metric.evaluate_with_curve(model, x, t, a, method=sg)
    assert torch.equal(scores, y[:, 1:].mean(1))
    # the cascade runs on a copy of the method: its generator (copied) is not advanced, so the
    # result repeats
    assert torch.equal(gen.get_state(), state) and torch.equal(y, r.curve[1])


@pytest.mark.parametrize("init", ["normal", "reset"])
def test_randomisation_draws_today_s_numbers_and_leaves_the_rng(init):
    layers = [nn.Linear(5, 7), nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)]
    ours = copy.deepcopy(layers)
    reference = copy.deepcopy(layers)
    rng = torch.get_rng_state()
    _randomize(ours, init, 0.01, seed=11)
    assert torch.equal(torch.get_rng_state(), rng)
    with torch.random.fork_rng(), torch.no_grad():  # the former implementation
        torch.manual_seed(11)
        for m in reference:
            if init == "normal":
                for p in m.parameters(recurse=False):
                    p.normal_(0.0, 0.01)
            else:
                m.reset_parameters()
    for a, b in zip(ours, reference):
        for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(pa, pb), ka
    changed = [not torch.equal(p, q) for p, q in zip(ours[0].parameters(),
                                                    layers[0].parameters())]
    assert all(changed)


# ---------------------------------------------------------------------------------------------
# ground truth, from the dataset to a metric that needs it
# ---------------------------------------------------------------------------------------------


class BoxMass(Metric):
    """Test metric: the share of the positive attribution mass (summed over channels) inside
    each sample's ground-truth box (relevance mass accuracy, Arras et al. 2022, eq. 1, with
    the box as mask)."""

    name = "contract_box_mass"
    category = "localisation"
    needs_ground_truth = True
    ground_truth_keys = ("boxes",)
    cost_formula = "no forward pass"

    def forward_passes(self, **info) -> float:
        self._cost_info(info)
        return 0.0

    def _check_ground_truth_values(self, ground_truth, inputs):
        boxes = ground_truth["boxes"]
        if boxes.shape[1:] != (4,) or boxes.dtype != torch.long:
            raise ValueError(f"ground_truth['boxes'] must be (N, 4) long, got "
                             f"{tuple(boxes.shape)} {boxes.dtype}")

    def _compute(self, model, inputs, targets, attributions, *, method=None,
                 ground_truth=None):
        a = attributions.sum(1).clamp_min(0)  # (N, H, W)
        h, w = a.shape[-2:]
        b = ground_truth["boxes"]
        cols, rows = torch.arange(w), torch.arange(h)
        inside = ((cols[None, None, :] >= b[:, 0, None, None])
                  & (cols[None, None, :] < b[:, 2, None, None])
                  & (rows[None, :, None] >= b[:, 1, None, None])
                  & (rows[None, :, None] < b[:, 3, None, None]))
        total = a.flatten(1).sum(1)
        return MetricResult((a * inside).flatten(1).sum(1) / total.clamp_min(1e-12))


def cluttered():
    d = digits("test")
    imgs = torch.nn.functional.interpolate(d.images[:20].float(), size=28).round()
    return ClutteredMNIST(imgs.to(torch.uint8), d.labels[:20], size=40, n_fragments=4,
                          length=12, seed=5)


def test_cluttered_mnist_ground_truth_boxes():
    ds = cluttered()
    idx = torch.tensor([3, 0, 7, 3])
    gt = ds.ground_truth(idx)
    assert set(gt) == {"boxes"} and gt["boxes"].shape == (4, 4)
    assert gt["boxes"].dtype == torch.long
    assert gt["boxes"].tolist() == [list(ds.raw(i)[2]) for i in idx.tolist()]
    assert gt["boxes"].tolist() == [ds[i][2].tolist() for i in idx.tolist()]
    assert torch.equal(ds.ground_truth()["boxes"][idx], gt["boxes"])
    assert ds.ground_truth([1])["boxes"].shape == (1, 4)
    with pytest.raises(IndexError):
        ds.ground_truth([12])
    assert digits("test").ground_truth(torch.arange(3)) is None  # no annotations


def test_ground_truth_reaches_the_metric_end_to_end():
    ds = cluttered()
    idx = torch.arange(6)
    x = torch.stack([ds[i][0] for i in idx.tolist()])
    canvases = np.stack([ds.raw(i)[0] for i in idx.tolist()]).astype(np.float64)
    gt = ds.ground_truth(idx)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(10))
    model(x)  # materialise the lazy layer
    metric = BoxMass()
    metric.check_metadata()
    maps = torch.from_numpy(canvases).float()[:, None]  # the digit + clutter pixels themselves
    r = metric.compute(model, x, 0, maps, ground_truth=gt)
    want = []
    for c, (x0, y0, x1, y1) in zip(canvases, gt["boxes"].tolist()):
        want.append(c[y0:y1, x0:x1].sum() / c.sum())
    torch.testing.assert_close(r.scores, torch.tensor(want, dtype=torch.float32))
    assert (r.scores > 0.3).all() and (r.scores < 1).all()  # digit inside, clutter outside
    assert torch.equal(metric.evaluate(model, x, 0, maps, ground_truth=gt), r.scores)
    many = metric.compute_many(model, x, 0, {"canvas": maps, "flipped": maps.flip(-1)},
                               ground_truth=gt)
    assert torch.equal(many["canvas"].scores, r.scores)
    assert torch.equal(many["flipped"].scores,
                       metric.compute(model, x, 0, maps.flip(-1), ground_truth=gt).scores)
    # validation in the base class, before anything runs
    with pytest.raises(ValueError, match=r"'contract_box_mass' needs ground truth.*'boxes'"):
        metric.compute(model, x, 0, maps)
    with pytest.raises(ValueError, match=r"'contract_box_mass' needs ground_truth\['boxes'\]"):
        metric.compute(model, x, 0, maps, ground_truth={"masks": torch.ones(6, 40, 40)})
    with pytest.raises(ValueError, match=r"ground_truth\['boxes'\].*batch size N = 6"):
        metric.compute(model, x, 0, maps, ground_truth={"boxes": gt["boxes"][:5]})
    with pytest.raises(ValueError, match=r"ground_truth\['boxes'\].*batch size N = 6"):
        metric.compute(model, x, 0, maps, ground_truth={"boxes": torch.tensor(3)})
    with pytest.raises(ValueError, match=r"\(N, 4\) long"):  # the metric's own check
        metric.compute(model, x, 0, maps, ground_truth={"boxes": gt["boxes"].float()})
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        metric.compute(model, x, 0, maps, ground_truth={"boxes": gt["boxes"].tolist()})
    with pytest.raises(TypeError, match="map names"):
        metric.compute(model, x, 0, maps, ground_truth=[gt["boxes"]])
    with pytest.raises(ValueError, match="needs ground truth"):
        metric.compute_many(model, x, 0, {"canvas": maps})


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if not metrics.metric_class(n).needs_ground_truth])
def test_metrics_without_ground_truth_ignore_it_but_check_it(name):
    model = tiny_model()
    x, t = batch()
    maps, ms = maps_and_methods(model, x, t)
    metric = make(name)
    with_gt = metric.compute(model, x, t, maps["gxi"], method=ms["gxi"],
                             ground_truth=ground_truth())
    assert_same_result(with_gt, metric.compute(model, x, t, maps["gxi"], method=ms["gxi"]))
    with pytest.raises(ValueError, match=r"ground_truth\['boxes'\]"):
        metric.compute(model, x, t, maps["gxi"], method=ms["gxi"],
                       ground_truth={"boxes": torch.zeros(N + 1, 4)})
