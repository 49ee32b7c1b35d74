"""Everything that touches the user's model during an attribution, in one place.

* :func:`model_guard` puts the model in eval mode with parameter gradients off and restores
  every module's ``training`` flag and every parameter's ``requires_grad`` afterwards, also
  when the attribution raises.
* :class:`HookSet` registers module hooks and always removes them on exit.
* :func:`capture_outputs` records (a clone-protected version of) module outputs so that
  gradients with respect to them can be taken even when an in-place op (``ReLU(inplace=True)``)
  follows the module.
* :func:`capture_output_grads` records the gradients with respect to module outputs through
  tensor hooks, without copying anything (FullGrad's bias-gradients).
* :func:`trace_calls` records which module calls happen in a forward pass, in order, with
  their output shapes (Grad-CAM's default layer).
* Backward rules for nonlinearities (Guided Backprop, RectGrad, DeepLIFT) live in
  :mod:`attrlab.core.rules`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Callable, Iterator

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


_GUARD_LOCK = threading.Lock()
_GUARDED: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def model_guard(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and parameter gradients off; restore both.

    Attributions explain the deployed (eval-mode) function; turning ``requires_grad`` off on
    the parameters saves the memory autograd would keep for weight gradients.

    Reentrant and thread-safe: guards of one model (nested calls, or calls from several
    threads that overlap) share one saved state, counted under a lock; the first guard in
    saves the user's state and the last one out restores it.
    """
    with _GUARD_LOCK:
        entry = _GUARDED.get(model)
        if entry is None:
            entry = [0, [(m, m.training) for m in model.modules()],
                     [(p, p.requires_grad) for p in model.parameters()]]
            _GUARDED[model] = entry
        entry[0] += 1
        try:
            if eval_mode:
                model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        except BaseException:
            _release(model, entry)
            raise
    try:
        yield model
    finally:
        with _GUARD_LOCK:
            _release(model, entry)


def _release(model: nn.Module, entry: list) -> None:
    """One guard of ``model`` leaves (the lock is held); the last one restores the state."""
    entry[0] -= 1
    if entry[0] == 0:
        del _GUARDED[model]
        for m, flag in entry[1]:
            m.training = flag
        for p, flag in entry[2]:
            p.requires_grad_(flag)


class HookSet(contextlib.AbstractContextManager):
    """A set of module hooks that is removed as a whole on ``__exit__`` (also on errors).

    The hooks fire only for forward passes of the thread that registered them: module hooks
    are shared by every thread calling the model, and another thread's activations must not
    land in this attribution's records.
    """

    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []
        self.thread = threading.get_ident()

    def _own(self, fn: Callable) -> Callable:
        def hook(*args: Any) -> Any:
            if threading.get_ident() == self.thread:
                return fn(*args)
            return None

        return hook

    def forward(self, module: nn.Module, fn: Callable) -> None:
        self.handles.append(module.register_forward_hook(self._own(fn)))

    def forward_pre(self, module: nn.Module, fn: Callable) -> None:
        self.handles.append(module.register_forward_pre_hook(self._own(fn)))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __exit__(self, *exc) -> None:
        self.remove()


@contextlib.contextmanager
def capture_outputs(modules: dict[str, nn.Module]) -> Iterator[dict[str, list[Tensor]]]:
    """Record every output of the given modules during the body, in call order.

    The hook returns ``out.clone()`` to the rest of the network and keeps ``out`` itself, so
    a following in-place op cannot overwrite the recorded tensor and
    ``torch.autograd.grad(y, recorded)`` is the gradient with respect to the module output.
    A module called several times gets one entry per call.
    """
    record: dict[str, list[Tensor]] = {name: [] for name in modules}

    def make(name: str) -> Callable:
        def hook(_module: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
            if not isinstance(out, Tensor):
                raise TypeError(f"layer {name!r} returns {type(out).__name__}, not a Tensor")
            record[name].append(out)
            return out.clone()

        return hook

    with HookSet() as hooks:
        for name, module in modules.items():
            hooks.forward(module, make(name))
        yield record


@contextlib.contextmanager
def capture_output_grads(modules: dict[str, nn.Module]) -> Iterator[dict[str, list]]:
    """Record the gradient with respect to every output of the given modules, in call order.

    During the body each call's output gets a tensor hook; after a backward pass through it
    (``torch.autograd.grad`` or ``.backward()``) ``record[name][i]`` is the gradient of the
    i-th call's output, or None for an output the backward pass did not reach (or one that
    does not require grad). Unlike :func:`capture_outputs` nothing is copied: the network
    runs unchanged, and a following in-place op (``ReLU(inplace=True)``) does not matter,
    since a tensor hook registered before an in-place op receives the gradient with respect
    to the value before it. The module hooks are removed on exit; the tensor hooks live and
    die with the autograd graph.
    """
    record: dict[str, list] = {name: [] for name in modules}

    def make(name: str) -> Callable:
        def hook(_module: nn.Module, _inp: tuple, out: Tensor) -> None:
            if not isinstance(out, Tensor):
                raise TypeError(f"layer {name!r} returns {type(out).__name__}, not a Tensor")
            slot = record[name]
            i = len(slot)
            slot.append(None)
            if out.requires_grad:
                def store(grad: Tensor) -> None:
                    slot[i] = grad
                out.register_hook(store)

        return hook

    with HookSet() as hooks:
        for name, module in modules.items():
            hooks.forward(module, make(name))
        yield record


@contextlib.contextmanager
def trace_calls(model: nn.Module) -> Iterator[list[tuple[str, nn.Module, tuple | None]]]:
    """Record every module call of ``model`` during the body, in the order the calls
    *complete* (a block after its children): ``(name, module, output shape)`` per call, the
    shape ``None`` for a non-tensor output. Hooks are removed on exit, also after errors."""
    record: list[tuple[str, nn.Module, tuple | None]] = []

    def make(name: str) -> Callable:
        def hook(module: nn.Module, _inp: tuple, out: Any) -> None:
            record.append((name, module, tuple(out.shape) if isinstance(out, Tensor) else None))

        return hook

    seen: set[int] = set()
    with HookSet() as hooks:
        for name, module in model.named_modules():
            if name and id(module) not in seen:
                seen.add(id(module))
                hooks.forward(module, make(name))
        yield record
