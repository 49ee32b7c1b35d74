"""Training with the papers' recipes, deterministic seeds, progress bars and resume.

A checkpoint is a plain dict ``{"state_dict": ..., "meta": {...}}`` that loads with
``torch.load(weights_only=True)``; ``meta["arch"]`` rebuilds the model through
:func:`attrlab.models.build`, and ``meta`` also records the data set, its normalisation, the
measured test accuracy and the command that produced the file.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import NormalizedDataset

if TYPE_CHECKING:
    from ..data import SST2


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule. ``milestones`` are epochs at which the lr is multiplied by
    ``gamma``; with ``schedule="cosine"`` the lr follows a cosine to 0 instead."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 70
    batch_size: int = 128
    schedule: str = "step"
    milestones: tuple[int, ...] = (60,)
    gamma: float = 0.1
    augment: bool = True  # random crop (pad 4) + horizontal flip
    extra: dict = field(default_factory=dict)

    def with_epochs(self, epochs: int) -> "Recipe":
        """Same recipe for ``epochs`` epochs, step milestones scaled proportionally."""
        ms = tuple(max(1, round(m * epochs / self.epochs)) for m in self.milestones)
        return replace(self, epochs=epochs, milestones=ms)


PRESETS: dict[str, Recipe] = {
    # Paper 01, section 4: SGD, momentum 0.9, wd 5e-4, lr 0.1 x0.1 at epoch 60 of 70,
    # random crop + flip (batch 352 over 4 GPUs there; 128 here).
    "paper01": Recipe(),
    # CIFAR ResNet: the same optimiser with a cosine schedule.
    "resnet": Recipe(schedule="cosine", epochs=40),
    # MNIST: Adam, no augmentation (crop/flip would change digits).
    "mnist": Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=8, schedule="cosine",
                    augment=False),
    # scikit-learn digits (8x8): small and quick.
    "digits": Recipe(optimizer="adam", lr=3e-3, weight_decay=0.0, epochs=60, batch_size=64,
                     schedule="cosine", augment=False),
    # SST-2 LSTM (paper 02's text model): Adam, gradient norm clipped at 5, no augmentation.
    "sst2": Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=10, batch_size=32,
                   schedule="cosine", augment=False, extra={"clip_grad_norm": 5.0}),
}


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (and return a generator for shuffling/augmentation)."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def augment_batch(images: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, batched on uint8
    (N, C, H, W) images (torchvision's RandomCrop(padding) + RandomHorizontalFlip)."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dev = images.device  # random draws come from the CPU generator whatever the device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]
    flip = (torch.rand(n, generator=gen) < 0.5).to(dev)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded.permute(0, 2, 3, 1)[torch.arange(n, device=dev)[:, None, None], rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(model: nn.Module, data: NormalizedDataset, batch_size: int = 500) -> float:
    """Top-1 accuracy in eval mode, on the model's device (the model's mode is restored)."""
    was = model.training
    model.eval()
    correct = 0
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        for i in range(0, len(data), batch_size):
            x, y = data.tensors(torch.arange(i, min(i + batch_size, len(data))))
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    finally:
        model.train(was)
    return correct / len(data)


def _optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, steps_per_epoch: int):
    if r.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, r.epochs * steps_per_epoch)
    if r.schedule == "step":
        ms = [m * steps_per_epoch for m in r.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, ms, gamma=r.gamma)
    raise ValueError(f"unknown schedule {r.schedule!r}")


def fit(model: nn.Module, train: NormalizedDataset, test: NormalizedDataset, recipe: Recipe,
        out: str | os.PathLike, seed: int = 0, half: bool = False, progress: bool = True,
        meta: dict | None = None, channels_last: bool = False, bf16: bool = False,
        device: str | torch.device = "cpu") -> dict:
    """Train ``model`` and write the checkpoint ``out``; resumes from ``out + '.partial'``.

    Each epoch ends with a resumable state (model, optimiser, scheduler, RNG) in
    ``<out>.partial``; the final file holds only weights and metadata. With ``half`` the
    weights are stored as float16 (and the reported accuracy is measured with them).
    ``channels_last`` and ``bf16`` (bfloat16 autocast of the forward pass; weights and
    optimiser stay float32) speed up CPU training; evaluation always runs in float32.
    ``meta`` entries override the recorded ones (the CLI passes the exact ``command``).
    Returns the metadata.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    gen = seed_everything(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(device=device, memory_format=fmt)
    images, labels = train.images.to(device), train.labels.to(device)
    opt = _optimizer(model, recipe)
    n = len(train)
    steps = (n + recipe.batch_size - 1) // recipe.batch_size
    sched = _scheduler(opt, recipe, steps)
    start = _resume(partial, out, model, opt, sched, gen)
    for epoch in range(start, recipe.epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not progress,
                   leave=False)
        total = torch.zeros((), device=device)  # summed on the device: no sync per step
        for s in bar:
            idx = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            imgs = images[idx]
            if recipe.augment:
                imgs = augment_batch(imgs, gen)
            x, y = train.normalize(imgs).contiguous(memory_format=fmt), labels[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
            if s % 50 == 0 or s == steps - 1:
                bar.set_postfix(loss=f"{float(total) / (s + 1):.3f}")
        acc = accuracy(model, test)
        print(f"epoch {epoch + 1}/{recipe.epochs} loss {float(total) / steps:.4f} test acc {acc:.4f}",
              file=sys.stderr)
        _save_partial(partial, model, opt, sched, gen, epoch + 1)
    model.to(device="cpu", memory_format=torch.contiguous_format)
    state = _stored_state(model, half)
    info = train.info
    meta = {
        "arch": dict(model.arch),
        "dataset": info.name,
        "num_classes": info.num_classes,
        "input_size": info.input_size,
        "in_channels": info.in_channels,
        "mean": list(info.mean),
        "std": list(info.std),
        "classes": list(info.classes),
        "test_accuracy": accuracy(model, test),
        "channels_last": channels_last,
        "bf16_autocast": bf16,
        **_run_meta(recipe, seed, device, half),
        **(meta or {}),
    }
    return _write_checkpoint(out, partial, state, meta)


def text_accuracy(model: nn.Module, data: "SST2", batch_size: int = 256) -> float:
    """Accuracy of ``model`` on a token data set (eval mode, padded batches)."""
    from torch.utils.data import DataLoader
    model.eval()
    correct = 0
    with torch.no_grad():
        for ids, y, _ in DataLoader(data, batch_size=batch_size, collate_fn=data.collate):
            correct += int((model(ids).argmax(1) == y).sum())
    return correct / len(data)


def fit_text(model: nn.Module, train: "SST2", test: "SST2", recipe: Recipe,
             out: str | os.PathLike, seed: int = 0, half: bool = False, progress: bool = True,
             meta: dict | None = None, dev: "SST2 | None" = None) -> dict:
    """Train a token classifier (:class:`attrlab.models.LSTMClassifier`) on an SST-2 style
    data set and write the checkpoint ``out`` (resumes from ``out + '.partial'``, as
    :func:`fit`). Batches are padded per batch; ``recipe.extra["clip_grad_norm"]`` clips the
    gradient norm. The metadata records the vocabulary (``meta["vocab"]``, the id -> token
    list) so that sentences can be encoded with ``attrlab.data.Vocab.from_itos``, and the
    dev and test accuracies. Returns the metadata."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    gen = seed_everything(seed)
    opt = _optimizer(model, recipe)
    steps = (len(train) + recipe.batch_size - 1) // recipe.batch_size
    sched = _scheduler(opt, recipe, steps)
    clip = recipe.extra.get("clip_grad_norm")
    start = _resume(partial, out, model, opt, sched, gen)
    for epoch in range(start, recipe.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        loader = DataLoader(train, batch_size=recipe.batch_size, sampler=order,
                            collate_fn=train.collate)
        total = torch.zeros(())
        for ids, y, _ in tqdm(loader, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                              disable=not progress, leave=False):
            loss = F.cross_entropy(model(ids), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            total += loss.detach()
        acc = text_accuracy(model, dev if dev is not None else test)
        print(f"epoch {epoch + 1}/{recipe.epochs} loss {float(total) / steps:.4f} "
              f"{'dev' if dev is not None else 'test'} acc {acc:.4f}", file=sys.stderr)
        _save_partial(partial, model, opt, sched, gen, epoch + 1)
    state = _stored_state(model, half)
    meta = {
        "arch": dict(model.arch),
        "dataset": "sst2",
        "num_classes": model.arch.get("num_classes", 2),
        "classes": ["negative", "positive"],
        "input_kind": "tokens",
        "vocab": list(train.vocab.itos),
        "test_accuracy": text_accuracy(model, test),
        **({"dev_accuracy": text_accuracy(model, dev)} if dev is not None else {}),
        **_run_meta(recipe, seed, torch.device("cpu"), half),
        **(meta or {}),
    }
    return _write_checkpoint(out, partial, state, meta)


# -- pieces shared by the image and the text loops ---------------------------------------------

def _resume(partial: Path, out: Path, model: nn.Module, opt: torch.optim.Optimizer, sched,
            gen: torch.Generator) -> int:
    """Load the resumable state of ``partial`` (if any) into model, optimiser, scheduler and
    RNGs; returns the epoch to start from."""
    if not partial.exists():
        return 0
    state = torch.load(partial, weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    print(f"resuming {out} from epoch {state['epoch']}", file=sys.stderr)
    return state["epoch"]


def _save_partial(partial: Path, model: nn.Module, opt: torch.optim.Optimizer, sched,
                  gen: torch.Generator, epoch: int) -> None:
    """The resumable state after ``epoch`` epochs, written atomically."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch}, tmp)
    os.replace(tmp, partial)


def _stored_state(model: nn.Module, half: bool) -> dict[str, Tensor]:
    """The weights as stored (float16 with ``half``), loaded back into ``model`` so that the
    accuracy recorded is the stored weights' accuracy."""
    state = {k: (v.half() if half and v.is_floating_point() else v.contiguous())
             for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return state


def _run_meta(recipe: Recipe, seed: int, device: torch.device, half: bool) -> dict:
    return {
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()},
        "seed": seed,
        "trained_on": device.type,
        "stored_as": "float16" if half else "float32",
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "command": " ".join(map(shlex.quote, sys.argv)),
    }


def _write_checkpoint(out: Path, partial: Path, state: dict, meta: dict) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, out)
    partial.unlink(missing_ok=True)
    return meta
