"""Checkpoints shipped inside the package, and safe loading of any attrlab checkpoint.

A checkpoint is ``{"state_dict": ..., "meta": {...}}`` (see :mod:`attrlab.train`), read with
``torch.load(weights_only=True)``; the model is rebuilt from ``meta["arch"]``. Weights stored
as float16 are cast back to float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checks import one_line
from .zoo import build

CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")


def shipped() -> list[str]:
    """Names of the checkpoints shipped with attrlab (file stems in ``models/checkpoints``)."""
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))


def _read(path: Path) -> dict[str, Any]:
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # corrupt, or not loadable without unpickling code
        raise ValueError(f"{path} is not an attrlab checkpoint readable with weights_only=True "
                         f"({type(err).__name__}: {one_line(err) or 'empty or truncated'})"
                         ) from err
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ValueError(f"{path} is not an attrlab checkpoint (no state_dict/meta)")
    return blob


def load_checkpoint(name_or_path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model (eval mode) from a shipped checkpoint name or a checkpoint file."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) in shipped():
            path = CHECKPOINT_DIR / f"{name_or_path}.pt"
        else:
            raise FileNotFoundError(
                f"checkpoint {str(name_or_path)!r} is neither a file nor a shipped checkpoint "
                f"({', '.join(shipped())})"
            )
    blob = _read(path)
    meta, state = blob["meta"], blob["state_dict"]
    if not isinstance(meta, dict) or "arch" not in meta:
        raise ValueError(f"{path}: its metadata has no 'arch' (the model to rebuild); was it "
                         "written by attrlab train?")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: its state_dict is a {type(state).__name__}, not a dict")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: entry {k!r} of the state_dict is a "
                             f"{type(v).__name__}, not a tensor")
    model = build(meta["arch"])
    _check_fits(path, model.state_dict(), state, meta["arch"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.eval(), meta


def _check_fits(path: Path, expected: dict, state: dict, arch: Any) -> None:
    """``ValueError`` listing missing and unexpected keys and shape mismatches of ``state``
    against the freshly built model's ``expected`` state dict."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{what} {items[:5]}{' ...' if len(items) > 5 else ''}"
                 for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shapes (stored vs model)", shapes)) if items]
        raise ValueError(f"{path}: the weights do not fit the model built from its arch "
                         f"{arch}: {'; '.join(parts)}")


def checkpoint_meta(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata of a checkpoint."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CHECKPOINT_DIR / f"{name_or_path}.pt"
    return _read(path)["meta"]
