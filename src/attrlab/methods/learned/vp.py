"""Variational Perturbations (VP) and its non-variational ablation nVP (paper 05, sections
3.1-3.3 and 4.1): an explainer network, trained against the frozen classifier, whose output
is a distribution of feature attributions; an explanation is one forward pass of it."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_target_range
from ...core.perturbation import gaussian_blur
from ...core.rng import generator_for
from ...core.soft_topk import soft_topk
from ..base import (
    Attribution,
    Option,
    boolean,
    generator_or_none,
    number_in,
    one_of,
    positive_int,
    register,
)
from .explainer import Batches, ConvExplainer, check_image_batch, train_loop

BASELINES = ("blur", "noise", "mean")


def power_of_two(name: str, value: Any) -> int:
    v = positive_int(name, value)
    if v & (v - 1):
        raise ValueError(f"{name} must be a power of two (1, 2, 4, 8, ...), got {value!r}")
    return v


def steps_or_none(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


@register
class VariationalPerturbations(Attribution):
    """VP (paper 05): q_theta(s | x) = N(mu_theta(x), diag(nu_theta(x))) over the feature
    attribution s, learned by minimising eq. 5,

        E_q E_{k ~ U(0, 100 %)} KL[f(x) || f(x (.) T_k(s))] + beta KL[q_theta(s|x) || N(0, I)],

    where f(x) is the classifier's softmax over **all** classes (not a target),
    x (.) m = x m + x_b (1 - m) with the baseline x_b (``baseline``: ``"blur"`` the Gaussian
    blur of x (``sigma``, ``kernel_size``), ``"noise"`` N(0, ``noise_std``^2), ``"mean"`` the
    per-channel image mean plus that noise; footnotes 1-3), T_k the SOFT top-k operator
    (:func:`attrlab.core.soft_topk.soft_topk`, ``topk_eps``, ``topk_iters``) keeping the
    largest k % of s, and beta = 1 / (``beta_scale`` H W) (section 4.1: beta_scale 1000 on
    MNIST, 100, the default, on CUB and ImageNet).

    Choices where the paper is silent (documented and tested): mu and log nu are the two
    output maps of a :class:`~attrlab.methods.learned.explainer.ConvExplainer` (``depth``
    layers of ``width`` channels) at (H/m, W/m), m = ``upsample``; s = mu + sqrt(nu) z
    (reparameterisation, z drawn from the fit's generator); k is drawn per sample (the
    paper's listing draws one k per batch: both estimate the same expectation); the SOFT
    top-k selects among the H/m x W/m cells and its mask is bilinearly upsampled to (H, W)
    (``align_corners=False``); the reconstruction KL is summed over classes and averaged
    over the batch, the regulariser summed over cells and averaged over the batch (Appendix
    E's listing). Training: Adam (``lr``) for ``epochs`` over the data in batches of
    ``batch_size`` (or ``max_steps`` steps); the classifier is frozen (eval mode, no
    parameter gradients) and restored afterwards.

    Explanation (:meth:`attribute`): mu_theta(x), bilinearly upsampled to (H, W) and
    broadcast over channels (section 4.1: "the mean of approximate posterior is used");
    ``sample=True`` draws s ~ q instead (``generator=``). :meth:`posterior` returns mean,
    standard deviation and samples. The explanation covers every class, so ``target`` is
    only range-checked. Explainers trained at several ``upsample`` sizes can live in one
    method (``fit(data, upsample=4)``); ``attribute(..., upsample=m)`` picks one (the
    consistency metric does this).
    """

    name = "vp"
    needs_data = True
    input_kinds = ("image",)
    reference = "Variational Perturbations (paper 05), sections 3.1-3.3"
    variational = True
    resolution_option = "upsample"
    options = {
        "upsample": Option(2, power_of_two, "m: maps at (H/m, W/m) (2 MNIST, 8 CUB/ImageNet)"),
        "sample": Option(False, boolean, "draw s ~ q instead of returning its mean"),
        "generator": Option(None, generator_or_none, "for sample=True (default seed 0)"),
        # training (fit)
        "baseline": Option("blur", one_of(*BASELINES), "x_b of the perturbation"),
        "sigma": Option(5.0, number_in(0.0, math.inf, lo_open=True), "blur baseline"),
        "kernel_size": Option(11, positive_int, "blur baseline (odd)"),
        "noise_std": Option(0.5, number_in(0.0, math.inf), "noise / mean baselines"),
        "beta_scale": Option(100.0, number_in(0.0, math.inf, lo_open=True),
                             "beta = 1 / (beta_scale H W); 1000 on MNIST"),
        "topk_eps": Option(0.1, number_in(0.0, math.inf, lo_open=True), "SOFT top-k eps"),
        "topk_iters": Option(200, positive_int, "Sinkhorn iterations"),
        "width": Option(32, positive_int, "explainer channels"),
        "depth": Option(5, positive_int, "explainer conv layers (5 MNIST, 12 CUB/ImageNet)"),
        "epochs": Option(5, positive_int, "training epochs"),
        "max_steps": Option(None, steps_or_none, "stop after this many steps"),
        "batch_size": Option(64, positive_int, "training batch size"),
        "lr": Option(1e-3, number_in(0.0, math.inf, lo_open=True), "Adam learning rate"),
        "save_every": Option(200, positive_int, "steps between checkpoints in fit"),
        "progress": Option(True, boolean, "progress bar in fit"),
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        if self.defaults["kernel_size"] % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.defaults['kernel_size']}")
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
                "width": o["width"], "depth": o["depth"], "variational": self.variational}

    def _build(self, cfg: Mapping[str, Any], dtype: torch.dtype,
               device: torch.device | str) -> ConvExplainer:
        return ConvExplainer(cfg["in_channels"], 2 if cfg["variational"] else 1,
                             cfg["upsample"], cfg["width"], cfg["depth"], dtype, device)

    def _device(self, data_x: Tensor) -> torch.device:
        if self.model is not None:
            for p in self.model.parameters():
                return p.device
        return data_x.device

    def fit(self, data: Any, *, generator: torch.Generator | None = None,
            checkpoint: Any = None, upsample: int | None = None) -> "VariationalPerturbations":
        """Train the explainer for ``upsample`` (default: the bound option) on ``data`` (a
        tensor batch, a data set with ``tensors(indices)`` or an iterable of batches such as
        a ``DataLoader``), eq. 5 (class docstring). All randomness (initialisation, batch
        order, z, k, baseline noise) comes from ``generator`` (default seed 0); with
        ``checkpoint`` (a file path) the fit saves its state every ``save_every`` steps and a
        later call with the same settings resumes from it. Returns ``self``."""
        o = self.defaults
        m = o["upsample"] if upsample is None else power_of_two("upsample", upsample)
        gen = generator_for("cpu", generator)
        batches = Batches(data, o["batch_size"])
        first = next(batches.epoch(batches.order_for(torch.Generator().manual_seed(0))))[1]
        check_image_batch(first, m, self.name)
        device = self._device(first)
        dtype = first.dtype
        with self.guard():
            with torch.no_grad():
                num_classes = self.forward(first[:1].to(device)).shape[1]
            cfg = self._config(first, num_classes, m)
            explainer = self._build(cfg, dtype, device).reset_parameters(gen)
            height, width = cfg["height"], cfg["width_px"]
            beta = 1.0 / (o["beta_scale"] * height * width)

            def step(x: Tensor) -> Tensor:
                x = x.to(device=device, dtype=dtype)
                check_image_batch(x, m, self.name)
                if x.shape[1:] != first.shape[1:]:
                    raise ValueError(f"{self.name}.fit: batches of shape {tuple(x.shape[1:])} "
                                     f"after {tuple(first.shape[1:])}")
                return self._loss(explainer, x, gen, beta)

            info = train_loop(explainer, batches, step, gen, epochs=o["epochs"], lr=o["lr"],
                              max_steps=o["max_steps"], checkpoint=checkpoint,
                              save_every=o["save_every"], config={**cfg, **self._recipe()},
                              progress=o["progress"], desc=f"{self.name} fit (m={m})")
        explainer.eval().requires_grad_(False)
        self.explainers[m], self.configs[m] = explainer, {**cfg, **info}
        return self

    def _recipe(self) -> dict[str, Any]:
        """The training settings a resumed fit must share (the stopping point, ``epochs`` /
        ``max_steps``, may differ: a resumed fit can go further)."""
        keys = ("baseline", "sigma", "kernel_size", "noise_std", "beta_scale", "topk_eps",
                "topk_iters", "batch_size", "lr")
        return {k: self.defaults[k] for k in keys}

    def _noise(self, like: Tensor, gen: torch.Generator) -> Tensor:
        return torch.randn(like.shape, generator=gen, device=gen.device,
                           dtype=like.dtype).to(like.device)

    def baseline_images(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """x_b of the perturbation (footnotes 1-3): blur, noise, or per-channel mean + noise."""
        o = self.defaults
        if o["baseline"] == "blur":
            return gaussian_blur(x, o["sigma"], o["kernel_size"])
        noise = o["noise_std"] * self._noise(x, gen)
        if o["baseline"] == "noise":
            return noise
        return x.mean((2, 3), keepdim=True) + noise

    def mask(self, s: Tensor, fraction: Tensor, size: tuple[int, int]) -> Tensor:
        """T_k(s): SOFT top-k of the (N, 1, h, w) scores keeping ``fraction`` (N,) of the
        cells, bilinearly upsampled to ``size``; (N, 1, H, W)."""
        n, _, h, w = s.shape
        o = self.defaults
        soft = soft_topk(s.flatten(1), fraction * (h * w), o["topk_eps"], o["topk_iters"])
        return F.interpolate(soft.view(n, 1, h, w), size=size, mode="bilinear",
                             align_corners=False)

    def _loss(self, explainer: nn.Module, x: Tensor, gen: torch.Generator,
              beta: float) -> Tensor:
        """One sample of eq. 5 for the batch: reconstruction KL + beta KL[q || N(0, I)]."""
        with torch.no_grad():
            log_p = torch.log_softmax(self.forward(x), 1)
        out = explainer(x)
        mu = out[:, :1]
        if self.variational:
            log_var = out[:, 1:2]
            s = mu + torch.exp(0.5 * log_var) * self._noise(mu, gen)
        else:
            s = mu
        fraction = torch.rand(x.shape[0], generator=gen, device=gen.device,
                              dtype=x.dtype).to(x.device)
        m = self.mask(s, fraction, x.shape[2:])
        x_pert = x * m + self.baseline_images(x, gen) * (1 - m)
        log_q = torch.log_softmax(self.forward(x_pert), 1)
        recon = (log_p.exp() * (log_p - log_q)).sum(1).mean()
        if not self.variational:
            return recon
        reg = -0.5 * (1 + log_var - mu ** 2 - log_var.exp()).flatten(1).sum(1).mean()
        return recon + beta * reg

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every trained explainer: ``{"explainers": {str(m): {"config": ..., "weights":
        ...}}}`` of tensors and plain values (``torch.save``-able, ``weights_only`` loadable)."""
        return {"explainers": {str(m): {"config": dict(self.configs[m]),
                                        "weights": {k: v.detach().cpu() for k, v in
                                                    e.state_dict().items()}}
                               for m, e in self.explainers.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> "VariationalPerturbations":
        if set(state) != {"explainers"} or not isinstance(state["explainers"], Mapping):
            raise ValueError(f"{self.name} state must be {{'explainers': {{m: ...}}}}, got "
                             f"keys {sorted(state)}")
        for key, entry in state["explainers"].items():
            cfg = dict(entry["config"])
            if bool(cfg.get("variational")) != self.variational:
                raise ValueError(f"{self.name}: the state holds a "
                                 f"{'VP' if cfg.get('variational') else 'nVP'} explainer")
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

    def _raw(self, x: Tensor, m: int) -> tuple[Tensor, Tensor | None]:
        """mu and (VP) the standard deviation at (h, w), in the inputs' dtype and device."""
        explainer, _ = self._explainer_for(x, m)
        params = {k: v.to(device=x.device, dtype=x.dtype)
                  for k, v in explainer.state_dict().items()}
        with torch.no_grad():
            out = torch.func.functional_call(explainer, params, (x,))
        std = torch.exp(0.5 * out[:, 1:2]) if self.variational else None
        return out[:, :1], std

    def _up(self, a: Tensor, size: tuple[int, ...]) -> Tensor:
        return F.interpolate(a, size=size, mode="bilinear", align_corners=False)

    def posterior(self, inputs: Tensor, n_samples: int = 0, *, upsample: int | None = None,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """q_theta(s | x) at (H, W): ``{"mean": (N, 1, H, W), "std": (N, 1, H, W),
        "samples": (n_samples, N, 1, H, W)}`` (std zero for nVP), each cell drawn as
        mu + std z and bilinearly upsampled like the mean."""
        m = self.defaults["upsample"] if upsample is None else upsample
        x = inputs.detach()
        mu, std = self._raw(x, m)
        std = torch.zeros_like(mu) if std is None else std
        gen = generator_for("cpu", generator)
        z = torch.randn((n_samples,) + tuple(mu.shape), generator=gen, device=gen.device,
                        dtype=mu.dtype).to(mu.device)
        samples = (mu + std * z).flatten(0, 1)
        size = tuple(x.shape[2:])
        return {"mean": self._up(mu, size), "std": self._up(std, size),
                "samples": self._up(samples, size).view(n_samples, *mu.shape[:2], *size)}

    def _attribute(self, inputs: Tensor, target: Tensor, upsample: int, sample: bool,
                   generator: torch.Generator | None, **_: Any) -> Tensor:
        m = upsample
        _, cfg = self._explainer_for(inputs, m)
        check_target_range(target, cfg["num_classes"])
        if sample:
            out = self.posterior(inputs, 1, upsample=m, generator=generator)["samples"][0]
        else:
            mu, _ = self._raw(inputs, m)
            out = self._up(mu, tuple(inputs.shape[2:]))
        return out.expand_as(inputs)


@register
class NonVariationalPerturbations(VariationalPerturbations):
    """nVP (paper 05, section 4.1 "VP and nVP"): VP without the variance and the regulariser;
    the explainer outputs mu_theta(x) only and the SOFT top-k acts on mu itself."""

    name = "nvp"
    variational = False
    reference = "Variational Perturbations (paper 05), section 4.1 (nVP)"
