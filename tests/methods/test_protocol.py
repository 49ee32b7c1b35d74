"""The method protocol: options declared once and validated in the base, wrappers that pass
bound options through, fit/state_dict for methods that need data, registry metadata and
randomness from a generator."""

import io

import pytest
import torch
from torch import nn

from attrlab import methods
from attrlab.data import digits
from attrlab.methods.base import Attribution


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()


X, T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2])


@pytest.mark.parametrize("where", ["constructor", "call"])
@pytest.mark.parametrize("value", [0, -1, None, 2.5, True])
def test_n_steps_is_validated_everywhere(where, value):
    m = small_net()
    with pytest.raises(ValueError, match="n_steps"):
        if where == "constructor":
            methods.get("ig", m, n_steps=value)
        else:
            methods.get("ig", m).attribute(X, T, n_steps=value)


def test_unknown_option_names_the_declared_ones():
    with pytest.raises(ValueError, match=r"ig: unknown option\(s\) n_stepz; its options are: "
                                         r"baselines, internal_batch_size, method, multiply_by_inputs, n_steps"):
        methods.get("ig", small_net()).attribute(X, T, n_stepz=3)
    # a wrapper passes unknown keys to its base, which names itself
    with pytest.raises(ValueError, match="saliency: unknown option"):
        methods.get("smoothgrad", small_net()).attribute(X, T, n_steps=3)


def test_options_read_as_attributes_and_calls_override_defaults():
    m = small_net()
    ig = methods.get("ig", m, n_steps=7)
    assert ig.n_steps == 7 and ig.method == "gausslegendre"
    torch.testing.assert_close(ig.attribute(X, T, n_steps=3),
                               methods.get("ig", m, n_steps=3).attribute(X, T))
    assert ig.n_steps == 7  # the call did not change the default


def test_bound_options_pass_through_every_wrapper():
    """SmoothGrad, the attribution mask and DeepSHAP call their inner method's public
    ``attribute``, so options bound on it (DeepSHAP's baselines) apply."""
    m = small_net()
    bl = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    shap = methods.get("deepshap", m).bind(baselines=bl)
    g = torch.Generator().manual_seed(0)
    sg = methods.get("smoothgrad", m, base=shap, nt_samples=3).attribute(X, T, generator=g)
    ref = methods.get("smoothgrad", m, base="deepshap", nt_samples=3).attribute(
        X, T, baselines=bl, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sg, ref)
    mask = methods.get("attribution_mask", m, base=shap, iterations=2).attribute(X, T)
    ref = methods.get("attribution_mask", m, base="deepshap", iterations=2, baselines=bl)
    torch.testing.assert_close(mask, ref.attribute(X, T))
    assert mask.shape == X.shape


def test_wrapped_method_options_at_construction_and_per_call():
    m = small_net()
    a = methods.get("smoothgrad", m, base="ig", n_steps=4, nt_samples=2)
    b = methods.get("smoothgrad", m, base="ig", nt_samples=2)
    torch.testing.assert_close(a.attribute(X, T), b.attribute(X, T, n_steps=4))
    assert a.base.n_steps == 4


def test_deepshap_fit_state_dict_round_trip():
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    data = digits("train")
    x, y = digits("test").tensors(torch.arange(3))
    shap = methods.get("deepshap", m, n_baselines=5)
    assert shap.needs_data and not shap.fitted
    with pytest.raises(ValueError, match="must be fitted first.*deepshap needs baselines"):
        shap.attribute(x, y)
    shap.fit(data, generator=torch.Generator().manual_seed(3))
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))[:5]
    expected = data.tensors(pick)[0]
    assert torch.equal(shap.state_dict()["baselines"], expected)
    torch.testing.assert_close(shap.attribute(x, y),
                               methods.get("deepshap", m).attribute(x, y, baselines=expected))
    buf = io.BytesIO()
    torch.save(shap.state_dict(), buf)
    buf.seek(0)
    again = methods.get("deepshap", m).load_state_dict(torch.load(buf, weights_only=True))
    assert again.fitted
    torch.testing.assert_close(again.attribute(x, y), shap.attribute(x, y))
    # the default generator is seeded with 0: fitting twice gives the same baselines
    a = methods.get("deepshap", m).fit(data).state_dict()["baselines"]
    assert torch.equal(a, methods.get("deepshap", m).fit(data).state_dict()["baselines"])
    with pytest.raises(ValueError, match="deepshap state"):
        methods.get("deepshap", m).load_state_dict({"other": 1})
    with pytest.raises(TypeError, match="learns nothing from data"):
        methods.get("gxi", m).fit(data)
    assert methods.get("gxi", m).state_dict() == {}


def test_metadata_of_every_registered_method():
    for name in methods.available():
        cls = methods.method_class(name)
        info = cls.describe()
        assert info["name"] == name and info["reference"], name
        assert info["cost_at_defaults"] >= 1, name
        assert set(info["input_kinds"]) <= {"image", "flat", "sequence"}, name
        assert isinstance(info["needs_data"], bool) and isinstance(info["random"], bool)
        assert set(info["options"]) == set(cls.option_specs()), name
    assert methods.method_class("ig").cost(n_steps=16) == 16
    assert methods.method_class("dga").cost(n_steps=30) == 31
    assert methods.method_class("deepshap").cost(n_baselines=8) == 16
    needs_data = {n for n in methods.available() if methods.method_class(n).needs_data}
    random = {n for n in methods.available() if methods.method_class(n).random}
    assert {"deepshap", "iba", "input_iba", "l2x", "nvp", "vp", "prunegrad",
            "prunepgd"} <= needs_data
    assert "ig" not in needs_data
    assert {"kernel_shap", "lime", "rise", "smoothgrad", "iba", "input_iba"} <= random
    assert not {"ig", "saliency", "occlusion", "deeplift"} & random


def test_random_methods_draw_from_their_generator_only():
    m = small_net()
    sg = methods.get("smoothgrad", m, nt_samples=4)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = sg.attribute(X, T, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(3), before)  # the global RNG was not drawn from
    b = sg.attribute(X, T, generator=torch.Generator().manual_seed(5))
    c = sg.attribute(X, T, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # no generator: a fresh one seeded with 0, the same call repeats
    assert torch.equal(sg.attribute(X, T), sg.attribute(X, T))
    assert torch.equal(sg.attribute(X, T), sg.attribute(X, T, **sg.seeded(0)))
    with pytest.raises(TypeError, match="torch.Generator"):
        sg.attribute(X, T, generator=5)
    assert methods.get("gxi", m).seeded(1) == {}


def test_subclass_declares_options_once():
    class Scaled(Attribution):
        name = ""
        options = {"scale": methods.Option(2.0, lambda k, v: float(v) if v > 0 else
                                           (_ for _ in ()).throw(ValueError(f"{k} > 0")))}

        def _attribute(self, inputs, target, scale):
            return inputs * scale

    m = small_net()
    torch.testing.assert_close(Scaled(m).attribute(X, T), 2 * X)
    torch.testing.assert_close(Scaled(m, scale=3).attribute(X, T, scale=0.5), 0.5 * X)
    with pytest.raises(ValueError, match="scale > 0"):
        Scaled(m).attribute(X, T, scale=-1)


def test_default_set_keeps_the_default_run_quick_and_stable():
    """Runners' default method set: cheap methods that need no training or calibration; the
    default leaderboard's 16 methods stay exactly those."""
    from attrlab.experiments.bench import default_methods

    assert default_methods() == [
        "attribution_mask", "deeplift", "deepshap", "dga", "fullgrad", "gbp", "gradcam",
        "guided_ig", "gxi", "gxsi", "ig", "pgxi", "rectgrad", "saliency", "smoothgrad", "ufg"]
    for name in methods.available():
        cls = methods.method_class(name)
        assert cls.describe()["default_set"] == cls.default_set
        if not cls.default_set:
            assert cls.needs_data, f"{name} opts out of the default set without needing data"
