"""Reliability on the models and inputs users actually have (issue 18): no silently wrong map.

Each test here failed before the fix it guards (threads sharing one model, compiled models,
ignored in-place results, float16 models)."""

import threading

import pytest
import torch
from torch import nn
from zoo_helpers import small_cnn

from attrlab import methods

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ threads, one model

def _run_threads(fns: list) -> list:
    errors: list = []
    barrier = threading.Barrier(len(fns))

    def wrap(fn):
        def body():
            try:
                barrier.wait()
                fn()
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
        return body

    threads = [threading.Thread(target=wrap(f)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_threads_leave_the_model_as_it_was():
    """Overlapping calls from two threads: the first one in saves the model's state, the
    last one out restores it (a non-reentrant save/restore left requires_grad=False and eval
    mode behind)."""
    model = small_cnn(3, 8).train()
    model[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    x = torch.randn(2, 3, 8, 8)
    sal = methods.get("saliency", model)
    gxi = methods.get("gxi", model)

    def loop(method):
        return lambda: [method.attribute(x, target=1) for _ in range(60)]

    assert not _run_threads([loop(sal), loop(gxi)])
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]


@pytest.mark.parametrize("name", ["gradcam", "fullgrad"])
def test_hooks_of_one_thread_do_not_record_another_threads_calls(name):
    """Module hooks are shared by every thread calling the model: a hook-based method must
    only see its own thread's forward passes (otherwise it records the other thread's
    activations and its map is wrong or it raises)."""
    model = small_cnn(3, 8)
    opts = {"layer": "0"} if name == "gradcam" else {}
    x = torch.randn(2, 3, 8, 8)
    expected = methods.get(name, model, **opts).attribute(x, target=1)
    method = methods.get(name, model, **opts)
    other = methods.get("saliency", model)
    results: list = []

    def mine():
        for _ in range(40):
            results.append(method.attribute(x, target=1))

    def theirs():
        y = torch.randn(4, 3, 8, 8)
        for _ in range(80):
            other.attribute(y, target=0)

    assert not _run_threads([mine, theirs])
    for r in results:
        torch.testing.assert_close(r, expected)


# ------------------------------------------------------------------------- torch.compile

def _cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).eval()


COMPILED = {"fullgrad": {}, "ufg": {}, "dga": {"n_steps": 3}, "gradcam": {"layer": "3"},
            "gbp": {}, "deeplift": {}}


@pytest.mark.parametrize("compiled_ran_first", [True, False])
def test_compiled_model_gives_the_uncompiled_maps(compiled_ran_first):
    """Hooks registered after a compiled model ran never fire (the graph was traced without
    them): every method must give the uncompiled model's map, whatever ran first."""
    model = _cnn()
    x = torch.randn(2, 3, 8, 8)
    expected = {n: methods.get(n, model, **o).attribute(x, target=1) for n, o in COMPILED.items()}
    compiled = torch.compile(model, backend="eager")
    if compiled_ran_first:
        methods.get("saliency", compiled).attribute(x, target=1)
    for name, opts in COMPILED.items():
        got = methods.get(name, compiled, **opts).attribute(x, target=1)
        torch.testing.assert_close(got, expected[name], msg=name)
    if not compiled_ran_first:  # and the compiled model still runs as compiled afterwards
        torch.testing.assert_close(compiled(x), model(x))


# ------------------------------------------------------------- ignored in-place results

class IgnoresInplace(nn.Module):
    """Calls an in-place ReLU for its side effect and keeps using the (now rectified) input
    tensor, as some user code does."""

    def __init__(self, style: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.style = style
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = self.conv(x)
        if self.style == "method":
            h.relu_()
        elif self.style == "functional":
            torch.nn.functional.relu(h, inplace=True)
        elif self.style == "returned":  # the rectified tensor is returned itself
            h = self.fc(h.flatten(1))
            h.relu_()
            return h
        return self.fc(h.flatten(1))


RULE_BASED = {"gbp": {}, "rectgrad": {}, "deeplift": {},
              "deepshap": {"baselines": torch.zeros(2, 3, 8, 8)}}


@pytest.mark.parametrize("style", ["method", "functional", "returned"])
@pytest.mark.parametrize("name", sorted(RULE_BASED))
def test_ignored_inplace_result_is_refused(name, style):
    """The rules compute in-place ops out of place; code that ignores the returned tensor
    would then run on the unrectified input and get a map 2-5x off. Refused instead."""
    model = IgnoresInplace(style).eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="ignores the result of the in-place"):
        methods.get(name, model).attribute(x, target=0, **RULE_BASED[name])


class UsesInplace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = self.act(self.conv(x))
        h = h.relu_()  # the returned value is used: supported
        return self.fc(torch.nn.functional.relu(h, inplace=True).flatten(1))


@pytest.mark.parametrize("name", sorted(RULE_BASED))
def test_used_inplace_results_still_work(name):
    model = UsesInplace().eval()
    x = torch.randn(2, 3, 8, 8)
    ref = nn.Sequential(model.conv, nn.ReLU(), nn.Flatten(), model.fc).eval()
    got = methods.get(name, model).attribute(x, target=0, **RULE_BASED[name])
    torch.testing.assert_close(got, methods.get(name, ref).attribute(x, target=0,
                                                                    **RULE_BASED[name]))


# ----------------------------------------------------------------------- float16 models

def _fp_cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3)).eval()


FP16 = {"attribution_mask": {"iterations": 20}, "deeplift": {}, "deepshap": {}, "dga": {"n_steps": 4},
        "fullgrad": {}, "gbp": {}, "gradcam": {"layer": "4"}, "guided_ig": {"n_steps": 8},
        "gxi": {}, "gxsi": {}, "ig": {"n_steps": 8}, "pgxi": {}, "rectgrad": {}, "saliency": {},
        "smoothgrad": {"nt_samples": 4}, "ufg": {}}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(FP16))
def test_low_precision_model_gives_the_float32_map(name, dtype):
    """A float16/bfloat16 model: the method computes in float32 and only the model runs in
    low precision, so the map is finite and close to the map of the same weights computing
    in float32 (DeepLIFT's eps 1e-10 is 0 in float16 and gave all-NaN maps; the attribution
    mask was 12 % off). Methods that rank or select on gradients (DGA, Guided IG; RectGrad
    and the mask in bfloat16) stay far off and refuse such models instead."""
    low = _fp_cnn().to(dtype)
    model = _fp_cnn().to(dtype).float()  # the same weights, computing in float32
    x = torch.rand(2, 3, 16, 16).to(dtype).float()
    call = {"baselines": torch.zeros(2, 3, 16, 16)} if name == "deepshap" else {}

    def run(m, dt):
        extra = {"generator": torch.Generator().manual_seed(0)} \
            if methods.method_class(name).random else {}
        opts = {k: v.to(dt) for k, v in call.items()}
        return methods.get(name, m, **FP16[name]).attribute(x.to(dt), target=1, **opts, **extra)

    if dtype not in methods.method_class(name).low_precision:
        with pytest.raises(ValueError, match=f"does not support {dtype} models.*float32 copy"):
            run(low, dtype)
        return
    ref, got = run(model, torch.float32), run(low, dtype)
    assert got.dtype == dtype and got.shape == x.shape
    assert torch.isfinite(got).all()
    rel = ((got.float() - ref).norm() / ref.norm()).item()
    # float16 keeps ~3 decimal digits, bfloat16 ~2; rounding still flips a few ReLU and
    # max-pool decisions (SmoothGrad's noisy inputs: 2.4 % in float16)
    assert rel < (0.05 if dtype == torch.float16 else 0.1), rel


@pytest.mark.parametrize("name", ["dga", "guided_ig"])
def test_refused_low_precision_leaves_the_model_as_it_was(name):
    low = _fp_cnn().half().train()
    with pytest.raises(ValueError, match="float16"):
        methods.get(name, low, **FP16[name]).attribute(torch.rand(1, 3, 16, 16).half(), 0)
    assert all(m.training for m in low.modules())
    assert all(p.requires_grad for p in low.parameters())


# ------------------------------------------------------- inference mode, mismatched dtype

ALL_SMALL = {**FP16, "deepshap": {}}


@pytest.mark.parametrize("name", sorted(ALL_SMALL))
def test_inference_mode_inputs_and_calls(name):
    """Inputs made under torch.inference_mode, and calls made inside it, give the same map
    as ordinary ones (they failed inside torch in 10-16 of 16 methods)."""
    model = _fp_cnn()
    x = torch.rand(2, 3, 16, 16)
    call = {"baselines": torch.zeros(2, 3, 16, 16)} if name == "deepshap" else {}

    def run(inputs):
        extra = {"generator": torch.Generator().manual_seed(0)} \
            if methods.method_class(name).random else {}
        return methods.get(name, model, **ALL_SMALL[name]).attribute(inputs, target=1,
                                                                     **call, **extra)

    expected = run(x)
    with torch.inference_mode():
        x_inf = x.clone()
    torch.testing.assert_close(run(x_inf), expected)
    with torch.inference_mode():
        got = run(x_inf)
    torch.testing.assert_close(got.clone(), expected)


def test_input_dtype_other_than_the_models_is_a_clear_error():
    model = _fp_cnn()
    with pytest.raises(TypeError, match="inputs are torch.float64 but the model's parameters "
                                        "are torch.float32"):
        methods.get("saliency", model).attribute(torch.rand(1, 3, 16, 16, dtype=torch.float64), 0)


def test_ig_internal_batch_size_below_the_batch_is_kept():
    """internal_batch_size smaller than the batch: the samples are chunked too, so no pass
    has more rows than asked (64 rows per pass went through with 16 asked), same maps."""
    model = small_cnn(3, 8)
    rows: list = []
    handle = model[0].register_forward_pre_hook(lambda _m, a: rows.append(a[0].shape[0]))
    x = torch.randn(5, 3, 8, 8)
    expected = methods.get("ig", model, n_steps=4).attribute(x, target=[0, 1, 2, 0, 1])
    rows.clear()
    got = methods.get("ig", model, n_steps=4, internal_batch_size=2).attribute(
        x, target=[0, 1, 2, 0, 1])
    handle.remove()
    assert max(rows) <= 2 and sum(rows) == 5 * 4
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------- Linear layers on channel-last tensors

class ChannelLast(nn.Module):
    """ConvNeXt's pattern: a pointwise Linear on (N, H, W, C), or the same map as a 1x1
    convolution on (N, C, H, W) (``as_conv``)."""

    def __init__(self, as_conv: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pw = nn.Linear(4, 4)
        self.as_conv = as_conv
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        if self.as_conv:
            w = self.pw.weight[:, :, None, None]
            h = torch.nn.functional.conv2d(h, w, self.pw.bias)
        else:
            h = self.pw(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(torch.relu(h).mean((2, 3)))


class Tokens(nn.Module):
    """ViT's pattern: Linear layers on (N, T, C) tokens."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.embed = nn.Linear(12, 6)
        self.mlp = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (N, 3, 8, 8) -> 16 tokens of 2x2x3 pixels
        t = x.unfold(2, 2, 2).unfold(3, 2, 2).permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], 16, 12)
        t = torch.relu(self.mlp(torch.relu(self.embed(t))))
        return self.head(t.mean(1))


@pytest.mark.parametrize("name, opts", [("fullgrad", {}), ("ufg", {}), ("dga", {"n_steps": 3})])
def test_linear_on_channel_last_tensors(name, opts):
    """The bias of a Linear applies along the last dimension: on (N, H, W, C) it is a 1x1
    convolution and gives the same map as one (a size mismatch was raised on ConvNeXt, Swin
    and ViT); on (N, T, C) tokens it enters the completeness terms."""
    x = torch.rand(2, 3, 8, 8)
    last = methods.get(name, ChannelLast(as_conv=False).eval(), **opts).attribute(x, target=1)
    assert last.shape == x.shape and torch.isfinite(last).all()
    tokens = methods.get(name, Tokens().eval(), **opts).attribute(x, target=2)
    assert tokens.shape == x.shape and torch.isfinite(tokens).all()


def test_fullgrad_completeness_with_channel_last_and_token_linears():
    from attrlab.methods.cam.fullgrad import FullGrad
    x = torch.rand(2, 3, 8, 8)
    for model in (ChannelLast(as_conv=False).eval(), Tokens().eval()):
        terms = FullGrad(model).decompose(x, target=1)
        total = terms.input_term.flatten(1).sum(1) + sum(b.flatten(1).sum(1)
                                                         for b in terms.bias_terms)
        torch.testing.assert_close(total, model(x)[:, 1], rtol=1e-4, atol=1e-5)


class ChannelLastConv(ChannelLast):
    """The channel-last model's pointwise layer as a real 1x1 Conv2d module."""

    def __init__(self) -> None:
        super().__init__(as_conv=True)
        self.pwc = nn.Conv2d(4, 4, 1)
        with torch.no_grad():
            self.pwc.weight.copy_(self.pw.weight[:, :, None, None])
            self.pwc.bias.copy_(self.pw.bias)
        del self.pw

    def forward(self, x):
        h = torch.relu(self.pwc(torch.relu(self.stem(x))))
        return self.head(h.mean((2, 3)))


@pytest.mark.parametrize("name", ["fullgrad", "ufg"])
def test_channel_last_linear_equals_a_1x1_conv(name):
    x = torch.rand(2, 3, 8, 8)
    a = methods.get(name, ChannelLast(as_conv=False).eval()).attribute(x, target=0)
    b = methods.get(name, ChannelLastConv().eval()).attribute(x, target=0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
