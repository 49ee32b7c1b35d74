"""The common base of the learned (amortised) explainers: an explainer network per upsample
size m, trained by :meth:`LearnedExplainer.fit` against the frozen classifier, saved and
restored as plain tensors, and one forward pass per explanation. Subclasses (VP, nVP, L2X)
declare their options and implement ``_loss(explainer, x, generator)``."""

from __future__ import annotations

import math
import sys
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_target_range
from ...core.rng import generator_for
from ..base import Attribution, Option, boolean, number_in, positive_int
from .explainer import Batches, ConvExplainer, check_image_batch, train_loop


def power_of_two(name: str, value: Any) -> int:
    v = positive_int(name, value)
    if v & (v - 1):
        raise ValueError(f"{name} must be a power of two (1, 2, 4, 8, ...), got {value!r}")
    return v


def steps_or_none(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


def bool_or_none(name: str, value: Any) -> bool | None:
    return None if value is None else boolean(name, value)


class LearnedExplainer(Attribution):
    """An explainer network g_theta: (N, C, H, W) -> (N, out, H/m, W/m) trained on data
    (module docstring). ``fit(data, upsample=m)`` adds an explainer for size m (default: the
    bound ``upsample``); ``attribute(..., upsample=m)`` uses it. The explanation is channel 0
    of the explainer's output, bilinearly upsampled (``align_corners=False``) and broadcast
    over the input channels; ``target`` is only range-checked (these explainers explain the
    whole output)."""

    needs_data = True
    input_kinds = ("image",)
    resolution_option: ClassVar[str] = "upsample"
    out_channels: ClassVar[int] = 1
    # the training settings a resumed fit must share (besides the network's)
    recipe_keys: ClassVar[tuple[str, ...]] = ("batch_size", "lr")
    options = {
        "upsample": Option(2, power_of_two, "m: maps at (H/m, W/m)"),
        "width": Option(32, positive_int, "explainer channels"),
        "depth": Option(5, positive_int, "explainer conv layers"),
        "epochs": Option(1, positive_int, "training epochs (pass more for a real run)"),
        "max_steps": Option(None, steps_or_none, "stop after this many steps"),
        "batch_size": Option(64, positive_int, "training batch size"),
        "lr": Option(1e-3, number_in(0.0, math.inf, lo_open=True), "Adam learning rate"),
        "save_every": Option(200, positive_int, "steps between checkpoints in fit"),
        "progress": Option(None, bool_or_none, "progress bar in fit (None: when stderr is a "
                           "terminal)"),
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        self.explainers: dict[int, ConvExplainer] = {}
        self.configs: dict[int, dict[str, Any]] = {}

    @classmethod
    def cost(cls, **options: Any) -> float:
        """No pass of the classifier: one explainer forward per sample (counted as 1)."""
        return 1.0

    # -- fit -----------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.defaults["upsample"] in self.explainers

    def _has_data(self, options: Mapping[str, Any]) -> bool:
        return options["upsample"] in self.explainers

    def _data_hint(self) -> str:
        return f" ({self.name} trains its explainer on data: fit(data))"

    def _config(self, x: Tensor, num_classes: int, m: int) -> dict[str, Any]:
        o = self.defaults
        return {"in_channels": int(x.shape[1]), "height": int(x.shape[2]),
                "width_px": int(x.shape[3]), "num_classes": int(num_classes), "upsample": m,
                "width": o["width"], "depth": o["depth"]}

    def _out_channels(self, cfg: Mapping[str, Any]) -> int:
        return self.out_channels

    def _check_config(self, cfg: Mapping[str, Any]) -> None:
        """ValueError if a loaded explainer belongs to another method."""
        if cfg.get("method", self.name) != self.name:
            raise ValueError(f"{self.name}: the state holds a {cfg['method']} explainer")

    def _build(self, cfg: Mapping[str, Any], dtype: torch.dtype,
               device: torch.device | str) -> ConvExplainer:
        return ConvExplainer(cfg["in_channels"], self._out_channels(cfg), cfg["upsample"],
                             cfg["width"], cfg["depth"], dtype, device)

    def _device(self, data_x: Tensor) -> torch.device:
        if self.model is not None:
            for p in self.model.parameters():
                return p.device
        return data_x.device

    def _loss(self, explainer: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def fit(self, data: Any, *, generator: torch.Generator | None = None,
            checkpoint: Any = None, upsample: int | None = None) -> "LearnedExplainer":
        """Train the explainer for ``upsample`` (default: the bound option) on ``data`` (a
        tensor batch, a data set with ``tensors(indices)`` or an iterable of batches such as
        a ``DataLoader``) with Adam (``lr``) for ``epochs`` (or ``max_steps`` steps), the
        classifier frozen (eval mode, no parameter gradients; restored afterwards). All
        randomness (initialisation, batch order, the method's draws) comes from
        ``generator`` (default seed 0); with ``checkpoint`` (a file path) the fit saves its
        state every ``save_every`` steps and a later call with the same settings resumes
        from it. Returns ``self``."""
        o = self.defaults
        m = o["upsample"] if upsample is None else power_of_two("upsample", upsample)
        gen = generator_for("cpu", generator)
        batches = Batches(data, o["batch_size"])
        first = next(batches.epoch(batches.order_for(torch.Generator().manual_seed(0))))[1]
        check_image_batch(first, m, self.name)
        device, dtype = self._device(first), first.dtype
        with self.guard():
            with torch.no_grad():
                num_classes = self.forward(first[:1].to(device)).shape[1]
            cfg = self._config(first, num_classes, m)
            explainer = self._build(cfg, dtype, device).reset_parameters(gen)

            def step(x: Tensor) -> Tensor:
                x = x.to(device=device, dtype=dtype)
                if x.shape[1:] != first.shape[1:]:
                    raise ValueError(f"{self.name}.fit: batches of shape {tuple(x.shape[1:])} "
                                     f"after {tuple(first.shape[1:])}")
                return self._loss(explainer, x, gen)

            recipe = {k: self.defaults[k] for k in self.recipe_keys}
            info = train_loop(explainer, batches, step, gen, epochs=o["epochs"], lr=o["lr"],
                              max_steps=o["max_steps"], checkpoint=checkpoint,
                              save_every=o["save_every"], config={**cfg, **recipe},
                              progress=sys.stderr.isatty() if o["progress"] is None
                              else o["progress"], desc=f"{self.name} fit (m={m})")
        explainer.eval().requires_grad_(False)
        self.explainers[m], self.configs[m] = explainer, {**cfg, **info}
        return self

    def _noise(self, like: Tensor, gen: torch.Generator) -> Tensor:
        """N(0, 1) noise shaped like ``like``, drawn from ``gen`` (on its device, then moved)."""
        return torch.randn(like.shape, generator=gen, device=gen.device,
                           dtype=like.dtype).to(like.device)

    def _uniform(self, shape: tuple[int, ...], like: Tensor, gen: torch.Generator) -> Tensor:
        return torch.rand(shape, generator=gen, device=gen.device,
                          dtype=like.dtype).to(like.device)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every trained explainer: ``{"explainers": {str(m): {"config": ..., "weights":
        ...}}}`` of tensors and plain values (``torch.save``-able, ``weights_only`` loadable)."""
        return {"explainers": {str(m): {"config": dict(self.configs[m]),
                                        "weights": {k: v.detach().cpu() for k, v in
                                                    e.state_dict().items()}}
                               for m, e in self.explainers.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> "LearnedExplainer":
        if set(state) != {"explainers"} or not isinstance(state["explainers"], Mapping):
            raise ValueError(f"{self.name} state must be {{'explainers': {{m: ...}}}}, got "
                             f"keys {sorted(state)}")
        for key, entry in state["explainers"].items():
            cfg = dict(entry["config"])
            self._check_config(cfg)
            weights = entry["weights"]
            e = self._build(cfg, next(iter(weights.values())).dtype, "cpu")
            e.load_state_dict(weights)
            self.explainers[int(key)] = e.eval().requires_grad_(False)
            self.configs[int(key)] = cfg
        return self

    # -- explanation ---------------------------------------------------------------------
    def _explainer_for(self, x: Tensor, m: int) -> tuple[ConvExplainer, dict[str, Any]]:
        if m not in self.explainers:
            fitted = sorted(self.explainers)
            raise ValueError(f"{self.name} has no explainer for upsample={m} (fitted: "
                             f"{fitted or 'none'}): call fit(data"
                             f"{'' if m == self.defaults['upsample'] else f', upsample={m}'})")
        cfg = self.configs[m]
        check_image_batch(x, m, self.name)
        shape = (cfg["in_channels"], cfg["height"], cfg["width_px"])
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"{self.name} was fitted on images of shape {shape}; got inputs "
                             f"of shape {tuple(x.shape[1:])}")
        return self.explainers[m], cfg

    def explainer_output(self, x: Tensor, m: int) -> Tensor:
        """The explainer's (N, out, H/m, W/m) output in the inputs' dtype and device, without
        gradients."""
        explainer, _ = self._explainer_for(x, m)
        params = {k: v.to(device=x.device, dtype=x.dtype)
                  for k, v in explainer.state_dict().items()}
        with torch.no_grad():
            return torch.func.functional_call(explainer, params, (x,))

    @staticmethod
    def upsampled(a: Tensor, size: tuple[int, ...]) -> Tensor:
        return F.interpolate(a, size=size, mode="bilinear", align_corners=False)

    def _check_call(self, inputs: Tensor, target: Tensor, m: int) -> None:
        _, cfg = self._explainer_for(inputs, m)
        check_target_range(target, cfg["num_classes"])

    def _attribute(self, inputs: Tensor, target: Tensor, upsample: int, **_: Any) -> Tensor:
        self._check_call(inputs, target, upsample)
        out = self.explainer_output(inputs, upsample)[:, :1]
        return self.upsampled(out, tuple(inputs.shape[2:])).expand_as(inputs)


__all__ = ["LearnedExplainer", "power_of_two", "steps_or_none"]
