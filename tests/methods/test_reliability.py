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
