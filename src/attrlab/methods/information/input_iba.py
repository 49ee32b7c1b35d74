"""InputIBA (Zhang et al. 2021, paper 02): an input bottleneck with the GAN-fitted mask as prior."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...core.bottleneck import (
    capacity_map,
    gaussian_smooth,
    layer_output,
    optimise_mask,
    prior_kl,
)
from ...core.checks import check_target_range
from ...core.rng import generator_for
from ..base import Option, expand_args, number_in, positive_int, register
from .iba import FEATURE_OPTIONS, BottleneckMethod, feature_bottleneck
from .wgan import Draws, fit_input_mask

POSITIVE = number_in(0.0, math.inf, lo_open=True)


def input_bottleneck(method: BottleneckMethod, inputs: Tensor, target: Tensor, args: tuple,
                     lam_g: Tensor, draws: Draws, *, beta: float, steps: int, lr: float,
                     copies: int, alpha_init: float, sigma: float) -> tuple[Tensor, Tensor]:
    """Paper 02's input bottleneck (section 3.2, Proposition 3): Z_I = Lambda I +
    (1 - Lambda) eps with eps ~ N(0, 1) in the normalised input space (the authors' mu_I = 0,
    sigma_I = 1), Lambda = smooth(sigmoid(alpha)), loss = CE(target) + beta * mean KL where
    the KL (:func:`~attrlab.core.bottleneck.prior_kl`) takes the GAN's mask lambda_G as the
    prior; Adam on alpha (N, C, H, W), every image its own. Returns ``(alpha, capacity)``."""
    n = inputs.shape[0]
    rows_t = target.repeat_interleave(copies)
    rows_a = expand_args(args, n, copies, interleave=True)
    x_rows = inputs.unsqueeze(1)

    def loss_fn(alpha: Tensor, step: int) -> tuple[Tensor, Tensor]:
        lam = gaussian_smooth(torch.sigmoid(alpha), sigma)
        eps = draws.normal(copies, *inputs.shape[1:])
        z = lam.unsqueeze(1) * x_rows + (1 - lam.unsqueeze(1)) * eps  # (N, copies, ...)
        out = method.forward(z.flatten(0, 1), *rows_a)
        if step == 0:
            check_target_range(target, out.shape[1])
        ce = -torch.log_softmax(out, 1).gather(1, rows_t[:, None]).view(n, copies).mean(1)
        capacity = prior_kl(inputs, lam, lam_g)
        return ce + beta * capacity.flatten(1).mean(1), capacity

    alpha0 = torch.full_like(inputs, alpha_init)
    return optimise_mask(loss_fn, alpha0, steps, lr)


@register
class InputIBA(BottleneckMethod):
    """InputIBA (paper 02, section 3), three stages, each batched over the images:

    1. Feature IBA at ``layer`` (:class:`~attrlab.methods.information.iba.IBA`'s bottleneck,
       fitted statistics) with ``feature_beta`` 20, ``feature_steps`` 10, no smoothing (the
       authors' ``estimate`` switches it off): its per-element capacity.
    2. A WGAN per image fits the input mask lambda_G so that the features of the masked input
       match samples of the feature bottleneck (section 3.3;
       :func:`~attrlab.methods.information.wgan.fit_input_mask`: 200 samples in groups of 20,
       20 epochs of batches of 32, RMSprop, critic lr 5e-5, clipping 0.01, generator every
       5th batch with lrs 0.1 / 0.05 / 0.003); the mask logit starts from the feature IBA's
       map (capacity in bits per pixel, resized, copied over channels).
    3. The input bottleneck with lambda_G as prior (Proposition 3): ``beta`` 20, ``steps``
       60, Adam lr 1, 10 noise copies, alpha init 5, smoothing ``sigma`` 1.

    The map is sigmoid(alpha) after the last step (not smoothed), averaged over the input
    channels and broadcast to them, in [0, 1].

    Where we follow the authors' code rather than the text: the GAN's "real" samples mix the
    clean features and noise with the feature IBA's *capacity in nats* as the weight (not a
    mask in [0, 1]); the mask logit is initialised with the feature IBA's saliency map in
    bits (``_to_saliency_map``), not with zeros; the input noise is N(0, 1) in the normalised
    input space (mu_I = 0, sigma_I = 1 in Proposition 3) and is not estimated; the feature
    stage runs without smoothing; the generator trains on batch indices i % 5 == 0 of each
    epoch; the critic's BatchNorm weights are clipped with the other weights; "sampling I from
    the local explanation set" is the input itself (the authors never perturb it). Their code
    explains one image at a time (``assert batch size 1``); here all stages run on the batch.
    """

    name = "input_iba"
    default_set = False  # fitted statistics and a WGAN per image
    reference = "Zhang, Khakzar et al. 2021 (paper 02), section 3, Proposition 3"
    options = {
        **{k: v for k, v in FEATURE_OPTIONS.items() if k not in ("beta", "steps", "lr")},
        "estimation_samples": Option(1000, positive_int, "samples fit() streams through the "
                                     "model (the authors' InputIBA config: 1,000)"),
        "feature_beta": Option(20.0, number_in(0.0, math.inf), "beta of the feature IBA"),
        "feature_steps": Option(10, positive_int, "Adam steps of the feature IBA"),
        "feature_lr": Option(1.0, POSITIVE, "Adam lr of the feature IBA"),
        "gan_samples": Option(200, positive_int, "real samples per image"),
        "gan_group_size": Option(20, positive_int, "real samples sharing one noise mean/std"),
        "gan_epochs": Option(20, positive_int, "GAN epochs"),
        "gan_batch_size": Option(32, positive_int, "GAN batch size"),
        "critic_lr": Option(5e-5, POSITIVE, "RMSprop lr of the critic"),
        "weight_clip": Option(0.01, POSITIVE, "critic weight clipping"),
        "critic_iter": Option(5, positive_int, "the generator steps every critic_iter batches"),
        "mean_lr": Option(0.1, POSITIVE, "RMSprop lr of the generator's noise mean"),
        "std_lr": Option(0.05, POSITIVE, "RMSprop lr of the generator's noise std"),
        "mask_lr": Option(0.003, POSITIVE, "RMSprop lr of the generator's mask logit"),
        "beta": Option(20.0, number_in(0.0, math.inf), "beta of the input bottleneck"),
        "steps": Option(60, positive_int, "Adam steps of the input bottleneck"),
        "lr": Option(1.0, POSITIVE, "Adam lr of the input bottleneck"),
        "sigma": Option(1.0, number_in(0.0, math.inf), "smoothing of the input lambda (pixels)"),
    }

    @classmethod
    def cost(cls, copies: int = 10, feature_steps: int = 10, steps: int = 60,
             gan_samples: int = 200, gan_epochs: int = 20, **options: Any) -> float:
        """Model rows per image: both bottlenecks' steps x copies (forward+backward), the
        GAN's fake samples (forward up to the layer; a backward on the generator's batches;
        the critic is not counted) and one clean pass up to the layer."""
        return float(copies * (feature_steps + steps) + gan_samples * gan_epochs + 1)

    def stages(self, inputs: Tensor, target: Tensor, args: tuple = (), **opts: Any
               ) -> dict[str, Tensor]:
        """All three stages on a batch (under the model guard): ``feature_capacity``
        (N, C, h, w) nats, ``lambda_g`` (N, C_in, H, W) and ``alpha`` (N, C_in, H, W)."""
        gen = generator_for(inputs.device, opts["generator"])
        draws = Draws(inputs.shape[0], gen, inputs.device, inputs.dtype)
        copies = opts["copies"]
        feat_shape = tuple(self.statistics.mean.shape)
        _, feat_cap = feature_bottleneck(
            self, self.layer, self.statistics, inputs, target, args, beta=opts["feature_beta"],
            steps=opts["feature_steps"], lr=opts["feature_lr"], copies=copies,
            alpha_init=opts["alpha_init"], sigma=0.0, min_std=opts["min_std"],
            active_threshold=opts["active_threshold"],
            noise=lambda step: draws.normal(copies, *feat_shape).flatten(0, 1))
        if feat_cap.dim() != 4:
            raise ValueError(f"input_iba needs a convolutional layer with (N, C, h, w) outputs; "
                             f"{self.layer_name!r} gives {tuple(feat_cap.shape)}")
        with torch.no_grad():
            clean = layer_output(self.forward, self.layer, inputs, *args)
        logit0 = capacity_map(feat_cap, inputs.shape[2:]).expand_as(inputs)

        def features(x: Tensor) -> Tensor:
            return layer_output(self.forward, self.layer, x,
                                *expand_args(args, inputs.shape[0], x.shape[0] // inputs.shape[0],
                                             interleave=True))

        lam_g = fit_input_mask(
            features, inputs, clean, feat_cap, logit0, draws, samples=opts["gan_samples"],
            group_size=opts["gan_group_size"], epochs=opts["gan_epochs"],
            batch_size=opts["gan_batch_size"], critic_lr=opts["critic_lr"],
            weight_clip=opts["weight_clip"], critic_iter=opts["critic_iter"],
            mean_lr=opts["mean_lr"], std_lr=opts["std_lr"], mask_lr=opts["mask_lr"])
        alpha, _ = input_bottleneck(self, inputs, target, args, lam_g, draws, beta=opts["beta"],
                                    steps=opts["steps"], lr=opts["lr"], copies=copies,
                                    alpha_init=opts["alpha_init"], sigma=opts["sigma"])
        return {"feature_capacity": feat_cap, "lambda_g": lam_g, "alpha": alpha}

    def _attribute(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (),
                   **opts: Any) -> Tensor:
        if inputs.dim() != 4:
            raise ValueError(f"input_iba explains images (N, C, H, W); got shape "
                             f"{tuple(inputs.shape)}")
        opts["generator"] = generator_for(inputs.device, opts["generator"])
        alpha = self._chunked(inputs, target, additional_forward_args,
                              opts["internal_batch_size"],
                              lambda x, t, a: self.stages(x, t, a, **opts)["alpha"])
        return torch.sigmoid(alpha).mean(1, keepdim=True).expand_as(inputs)
