"""Property-based checks (Hypothesis) over every method of issue 18's list: random small
image shapes, batch sizes, dtypes and targets; for every draw the map has the input's shape
and dtype, is finite, equals the one-by-one maps (deterministic methods), leaves the model
untouched, and an invalid target (or a refused low-precision dtype) is a clear error."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from attrlab import methods

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"attribution_mask": {"iterations": 3}, "deeplift": {}, "deepshap": {},
         "dga": {"n_steps": 2}, "fullgrad": {}, "gbp": {}, "gradcam": {"layer": "3"},
         "guided_ig": {"n_steps": 4}, "gxi": {}, "gxsi": {}, "ig": {"n_steps": 4}, "pgxi": {},
         "rectgrad": {}, "saliency": {}, "smoothgrad": {"nt_samples": 2}, "ufg": {}}


def _model(channels: int) -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).train()


def _state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()})


@pytest.mark.parametrize("name", sorted(SMALL))
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), channels=st.sampled_from([1, 3]), size=st.integers(4, 9),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]), data=st.data())
def test_invariants_hold_for_every_draw(name, n, channels, size, dtype, data):
    model = _model(channels).to(dtype)
    targets = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    seed = data.draw(st.integers(0, 1000))
    x = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))
    x = x.to(dtype)
    cls = methods.method_class(name)
    call = {"baselines": torch.zeros(2, channels, size, size, dtype=dtype)} \
        if name == "deepshap" else {}

    def run(inputs, t):
        extra = {"generator": torch.Generator().manual_seed(0)} if cls.random else {}
        return methods.get(name, model, **SMALL[name]).attribute(inputs, target=t, **call,
                                                                 **extra)

    before = _state(model)
    if dtype == torch.float16 and dtype not in cls.low_precision:
        with pytest.raises(ValueError, match="does not support torch.float16"):
            run(x, targets)
        return
    out = run(x, targets)
    after = _state(model)
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    assert before[0] == after[0] and before[1] == after[1]
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])
    if not cls.random:
        one = torch.cat([run(x[i:i + 1], targets[i]) for i in range(n)])
        tol = {"rtol": 2e-2, "atol": 2e-3} if dtype == torch.float16 else {}
        torch.testing.assert_close(out, one, **tol)
    with pytest.raises((ValueError, TypeError)):
        run(x, [3] * n)  # target out of range: a clear error for every draw
