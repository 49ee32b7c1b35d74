"""Early, explicit validation of what users pass to ``attribute``.

Every public method funnels its arguments through these helpers, so a wrong shape, dtype,
target, NaN/inf or an unknown layer name fails before any hook is registered, with a message
that names the problem.
"""

from __future__ import annotations

import difflib
from typing import Sequence

import torch
from torch import Tensor, nn

TargetLike = int | Sequence[int] | Tensor | None


def first_parametric_layer(model: nn.Module) -> nn.Module | None:
    """The model's first leaf module (registration order) if it is a Conv/Linear/Embedding,
    else None: a parameter-free layer in front (pooling, Flatten, PixelUnshuffle...) may change
    the shape, so no static expectation can be derived from the first weighted layer."""
    for module in model.modules():
        if next(module.children(), None) is None:
            ok = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding))
            return module if ok else None
    return None


def check_inputs(model: nn.Module, inputs: Tensor) -> None:
    """Validate an input batch against what the model's first layer expects.

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and ``ValueError`` for an
    empty batch, a wrong rank or channel count, or non-finite values.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be a floating-point tensor (gradients are taken w.r.t. them), "
            f"got dtype {inputs.dtype}"
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"inputs must be batched, shape (N, ...); got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch (N = 0)")
    first = first_parametric_layer(model)
    if isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        rank = {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}[type(first)]
        if inputs.dim() != rank:
            raise ValueError(
                f"inputs must have rank {rank} (N, C, ...) for a model starting with "
                f"{type(first).__name__}; got shape {tuple(inputs.shape)}"
            )
        if inputs.shape[1] != first.in_channels:
            raise ValueError(
                f"inputs have {inputs.shape[1]} channels but the model's first layer "
                f"({type(first).__name__}) expects {first.in_channels}; "
                f"got shape {tuple(inputs.shape)}"
            )
    elif isinstance(first, nn.Linear) and inputs.shape[-1] != first.in_features:
        raise ValueError(
            f"inputs have {inputs.shape[-1]} features in their last dimension but the model's "
            f"first layer (Linear) expects {first.in_features}; got shape {tuple(inputs.shape)}"
        )
    if not torch.isfinite(inputs).all():
        bad = (~torch.isfinite(inputs)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"inputs contain NaN or inf values (samples {bad[:10]})")


def check_like(name: str, tensor: Tensor, inputs: Tensor, any_batch: bool = False) -> Tensor:
    """Check that ``tensor`` (e.g. a baseline) broadcasts to ``inputs`` and is finite.

    With ``any_batch`` its first dimension may differ from the inputs' batch size.
    """
    if not isinstance(tensor, Tensor):
        tensor = torch.as_tensor(tensor, dtype=inputs.dtype, device=inputs.device)
    tensor = tensor.to(device=inputs.device, dtype=inputs.dtype)
    try:
        if any_batch and tensor.dim() == inputs.dim():
            torch.broadcast_shapes(tensor.shape[1:], inputs.shape[1:])
        else:
            torch.broadcast_shapes(tensor.shape, inputs.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to inputs of shape "
            f"{tuple(inputs.shape)}"
        ) from err
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return tensor


def resolve_target(target: TargetLike, n: int, device: torch.device) -> Tensor | None:
    """Turn ``target`` into a LongTensor of shape (n,), or None for "predicted class".

    Accepts an int (same class for every sample), a sequence or 1-D tensor of n ints.
    The range against the number of classes is checked by :func:`select_target`.
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints or a tensor, not bool")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integers, got dtype {t.dtype}")
    t = t.long().flatten() if t.dim() <= 1 else t
    if t.dim() != 1:
        raise ValueError(f"target must be an int or 1-D, got shape {tuple(t.shape)}")
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries but the batch has {n} samples")
    return t


def check_target_range(target: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless 0 <= target < num_classes everywhere."""
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"target out of range: got values in [{int(target.min())}, {int(target.max())}] "
            f"but the model has {num_classes} outputs"
        )


def select_target(output: Tensor, target: Tensor) -> Tensor:
    """Pick ``output[i, target[i]]`` for a (N, K) output, after a range check."""
    if output.dim() != 2:
        raise ValueError(
            f"the model output must have shape (N, num_classes); got {tuple(output.shape)}"
        )
    check_target_range(target, output.shape[1])
    return output.gather(1, target.view(-1, 1)).squeeze(1)


def get_module(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """Resolve a layer given by dotted name (``"layer4.1.conv2"``) or module object."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, got {type(layer)}")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        close = difflib.get_close_matches(layer, [k for k in modules if k], n=5)
        hint = f"; did you mean one of {close}?" if close else ""
        raise ValueError(f"the model has no layer named {layer!r}{hint}")
    return modules[layer]


def check_batch_size(name: str, value: int | None) -> int | None:
    """``None`` (everything in one batch) or a positive int; anything else is a ValueError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters (for error messages that
    quote another library's)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
