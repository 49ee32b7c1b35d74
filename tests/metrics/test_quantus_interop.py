"""Quantus interop: attrlab methods as a Quantus explain_func, attrlab metrics called the
Quantus way, and Quantus metrics run by the harness; checked against Quantus on the same maps."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from attrlab import methods, metrics
from attrlab.experiments.interop import (
    QuantusStyle,
    explain_func,
    register_quantus_metric,
)
from attrlab.metrics.base import _METRICS


@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("quantus")


def _model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 16, 3)).eval()


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.rand(4, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 1])


def test_explain_func_is_the_attrlab_method(quantus):
    model, (x, y) = _model(), _data()
    a = explain_func(model=model, inputs=x.numpy(), targets=y.numpy(), method="ig", n_steps=8,
                     device="cpu")
    assert isinstance(a, np.ndarray) and a.shape == x.shape and a.dtype == np.float32
    want = methods.get("ig", model, n_steps=8).attribute(x, y)
    np.testing.assert_allclose(a, want.numpy(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="softmax"):
        explain_func(model=model, inputs=x.numpy(), targets=y.numpy(), softmax=True)
    # Quantus computes the maps through the bridge: the same curve as with a_batch given
    pf = lambda: quantus.PixelFlipping(features_in_step=1, perturb_baseline=0.0, abs=False,
                                       normalise=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_bridge = pf()(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None,
                          explain_func=explain_func,
                          explain_func_kwargs={"method": "ig", "n_steps": 8}, device="cpu")
        direct = pf()(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=want.numpy(),
                      device="cpu")
    np.testing.assert_allclose(np.asarray(via_bridge), np.asarray(direct), rtol=0, atol=1e-7)


def test_attrlab_metric_called_the_quantus_way_agrees_with_quantus(quantus):
    model, (x, y) = _model(), _data()
    a = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(5))  # e.g. Captum-made
    n = 16
    ours = QuantusStyle("morf", fractions=torch.arange(n + 1) / n, baseline=0.0)
    scores = ours(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                  device="cpu")
    direct = metrics.get("morf", fractions=torch.arange(n + 1) / n, baseline=0.0)
    assert scores == [float(v) for v in direct.evaluate(model, x, y, a)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = np.asarray(quantus.PixelFlipping(features_in_step=1, perturb_baseline=0.0,
                                             abs=False, normalise=False,
                                             disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
            device="cpu", softmax=True))
    np.testing.assert_allclose(ours.last.curve[1][:, 1:].numpy(), q, rtol=0, atol=1e-6)
    # maps from an explain_func, and a method-calling metric through the bridge
    sg = QuantusStyle("sanity_spearman")
    s = sg(model=model, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=explain_func,
           explain_func_kwargs={"method": "saliency"})
    want = metrics.get("sanity_spearman").compute(
        model, x, y, methods.get("saliency", model).attribute(x, y),
        method=methods.get("saliency", model)).scores
    np.testing.assert_allclose(s, want.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="explain_func"):
        sg(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy())


def test_a_quantus_metric_runs_in_the_harness(quantus, tmp_path):
    from torch.utils.data import TensorDataset

    import attrlab

    name = "quantus_pixel_flipping_test"
    try:
        register_quantus_metric(
            name, lambda: quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0,
                                                abs=False, normalise=False,
                                                disable_warnings=True),
            higher_is_better=False, call_kwargs={"softmax": True}, forward_passes=4)
        model, (x, y) = _model(), _data()
        a = methods.get("saliency", model).attribute(x, y)
        r = metrics.get(name).compute(model, x, y, a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, abs=False,
                                      normalise=False, disable_warnings=True)(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                device="cpu", softmax=True)
        np.testing.assert_allclose(r.scores.numpy(), np.asarray(q).mean(1), rtol=1e-6)
        path = attrlab.bench.run(model=model, data=TensorDataset(x, y), methods=["saliency"],
                                 metrics=[name, "morf"], out=str(tmp_path / "q"),
                                 progress=False)
        with attrlab.experiments.store.ResultStore(path) as store:
            got = {r[2]: r[3] for r in store.scores() if r[1] == name}
        np.testing.assert_allclose([got[i] for i in range(4)], r.scores.numpy(), rtol=1e-6)
    finally:
        _METRICS.items.pop(name, None)
