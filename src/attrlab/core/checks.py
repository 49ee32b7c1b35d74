"""Early, explicit validation of what users pass to ``attribute``.

Every public method funnels its arguments through these helpers, so a wrong shape, dtype,
target, NaN/inf or an unknown layer name fails before any hook is registered, with a message
that names the problem.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

TargetLike = int | Sequence[int] | Tensor | None


def check_inputs(model: Callable | None, inputs: Tensor, name: str = "inputs") -> None:
    """Validate one input batch: a floating-point (N, ...) tensor, N >= 1, all finite.

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and ``ValueError`` for an
    unbatched tensor, an empty batch or non-finite values. ``model`` is not inspected: what the
    model accepts (rank, channels, features) is only known by running it, since a model may
    reshape or permute its inputs in ``forward`` (``fc1(x.flatten(1))``, channels-last); the
    methods turn a shape error raised by the forward pass into a ``ValueError`` naming the
    input shape.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (gradients are taken w.r.t. them), "
            f"got dtype {inputs.dtype}"
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"{name} must be batched, shape (N, ...); got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0)")
    if not torch.isfinite(inputs).all():
        bad = (~torch.isfinite(inputs)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"{name} contain NaN or inf values (samples {bad[:10]})")


def check_input_tuple(inputs: Tensor | tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], bool]:
    """Validate a single input batch or a tuple of them (a model with several inputs, as in
    Captum): every element as :func:`check_inputs`, all with the same batch size N.

    Returns ``(inputs as a tuple, whether a tuple was given)``.
    """
    if not isinstance(inputs, tuple):
        if not isinstance(inputs, Tensor):
            raise TypeError(f"inputs must be a torch.Tensor or a tuple of tensors, got "
                            f"{type(inputs).__name__}")
        check_inputs(None, inputs)
        return (inputs,), False
    if not inputs:
        raise ValueError("inputs is an empty tuple; give at least one input tensor")
    for i, x in enumerate(inputs):
        check_inputs(None, x, f"inputs[{i}]")
    sizes = [x.shape[0] for x in inputs]
    if len(set(sizes)) > 1:
        raise ValueError(f"the input tensors must share their batch size (dimension 0); got "
                         f"batch sizes {sizes}")
    return inputs, True


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
        if num_classes == 1:
            raise ValueError(f"target out of range: the model returns one output per sample "
                             f"(shape (N,) or (N, 1)), so target must be None or 0; got values "
                             f"in [{int(target.min())}, {int(target.max())}]")
        raise ValueError(
            f"target out of range: got values in [{int(target.min())}, {int(target.max())}] "
            f"but the model has {num_classes} outputs"
        )


def select_target(output: Tensor, target: Tensor) -> Tensor:
    """Pick ``output[i, target[i]]`` for a (N, K) output, after a range check. A (N,) output
    (one value per sample, e.g. a single logit) is read as (N, 1): target 0 selects it."""
    if output.dim() == 1:
        output = output.unsqueeze(1)
    if output.dim() != 2:
        raise ValueError(
            f"the model output must have shape (N, num_classes) or (N,); got "
            f"{tuple(output.shape)}"
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


def data_inputs(data: Any, indices: Tensor, who: str = "") -> Tensor:
    """The float inputs of samples ``indices`` of ``data``: a tensor batch, an attrlab data
    set (``tensors(indices)``) or a sequence of ``(input, ...)`` items, as methods that
    ``fit`` on data take it; a ``TypeError`` when they are not floating point."""
    if isinstance(data, Tensor):
        x = data[indices.to(data.device)]
    elif hasattr(data, "tensors"):
        x, _ = data.tensors(indices)
    else:
        x = torch.stack([torch.as_tensor(data[int(i)][0]) for i in indices])
    if not x.is_floating_point():
        raise TypeError(f"{who + ': ' if who else ''}the data's inputs must be floating point, "
                        f"got {x.dtype}")
    return x


def check_batch_size(name: str, value: int | None) -> int | None:
    """``None`` (everything in one batch) or a positive int; anything else is a ValueError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


def check_device(value: str | torch.device) -> torch.device:
    """``value`` as a ``torch.device``; ``ValueError`` for a string that names none, or a
    device type this machine does not have (CUDA without a GPU, MPS off macOS)."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{value!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from err
    available = {"cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available()}.get(device.type)
    if available is not None and not available():
        raise ValueError(f"{value!r} is not available on this machine "
                         f"(torch.{device.type} reports no device)")
    return device


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters (for error messages that
    quote another library's)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
