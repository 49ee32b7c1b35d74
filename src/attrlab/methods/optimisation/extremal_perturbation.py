"""Extremal Perturbation (Fong, Patrick & Vedaldi 2019)."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from ...core.masks import (
    PADDINGS,
    SmoothMaskGenerator,
    apply_pyramid,
    area_penalty,
    area_reference,
    blur_pyramid,
)
from ...core.optimise import clamp_, optimise
from ..base import (
    Attribution,
    Option,
    as_args,
    boolean,
    expand_args,
    number_in,
    one_of,
    positive_int,
    register,
)
from .meaningful_perturbation import check_images, non_negative, pick, positive


def areas_check(name: str, value: Any) -> tuple[float, ...]:
    """One area or a non-empty sequence of areas, each a fraction in (0, 1); the command
    line's text form ``"0.05,0.1"`` is read as that sequence."""
    values = (value,) if isinstance(value, numbers.Real) else value
    if isinstance(values, str):
        try:
            values = tuple(float(v) for v in values.split(","))
        except ValueError:
            values = ()
    try:
        out = tuple(number_in(0.0, 1.0, lo_open=True, hi_open=True)(name, v) for v in values)
    except TypeError:
        out = ()
    if not out:
        raise ValueError(f"{name} must be a fraction in (0, 1) or a non-empty sequence of "
                         f"them, got {value!r}")
    return out


def reward_of(logits: Tensor, target: Tensor, reward: str, check: bool = True) -> Tensor:
    """TorchRay's rewards: the target logit (``"logit"``, simple_reward) or the target logit
    minus the largest other logit (``"contrastive"``); ``check`` as :func:`pick`."""
    own = pick(logits, target, check)
    if reward == "logit":
        return own
    others = logits.scatter(1, target.view(-1, 1), float("-inf"))
    return own - others.amax(1)


@register
class ExtremalPerturbation(Attribution):
    """Extremal Perturbation (Fong et al. 2019, eqs. 5-7, as TorchRay): for every sample and
    every area a of ``areas``, a smooth mask m_a (:class:`~attrlab.core.masks.
    SmoothMaskGenerator`: one parameter every ``step`` pixels, kernel ``sigma``) maximises
    reward_c(perturb(x, m)) - lambda_t R_a(m), R_a the sorted-mask area penalty (eq. 6).

    * ``variant="preserve"``: the image is kept where m = 1 and blurred elsewhere;
      ``"delete"``: blurred where m = 1 (the input under 1 - m).
    * The perturbation is a pyramid of ``levels`` blurs (sigma_l = ``max_blur`` (1 - l /
      (L - 1)), zero padding, TorchRay) indexed by the mask with linear interpolation.
    * SGD (``lr``, ``momentum``, dampening = momentum), parameters start at 1 and are clamped
      to [0, 1] after every step; lambda_t = ``area_weight`` * ``area_growth`` ** t;
      ``jitter`` flips the perturbed image horizontally at even steps; reward is the target
      logit (``"logit"``) or its margin over the best other class (``"contrastive"``).
    * ``area_over="image"`` applies the area constraint to the mask on the image (a fraction
      a of the image, as the paper defines it); ``"padded"`` to the mask with its margin of
      sigma pixels on every side, as TorchRay does (there, a = 0.1 of a 224-px image is
      0.1 * 260^2 pixels, 13% of the image when the mask lies inside it).

    ``attribute`` returns the sum of the masks over the areas (TorchRay's benchmark
    saliency; the mask itself for one area), broadcast over channels; :meth:`masks` returns
    one mask per area, shape (len(areas), N, 1, H, W). All samples and areas of a batch are
    optimised together: iterations x len(areas) forward+backward passes per sample. The
    masks are those after the last step (TorchRay returns the masks of its last step's
    parameters, before that step's update: its ``max_iter`` k + 1 gives our k), and the sort
    of the area penalty is stable, so tied mask values (all of them at the start) are
    ranked by position, the same in a batch as alone.
    """

    name = "extremal_perturbation"
    signed = False
    input_kinds = ("image",)
    reference = "Fong et al. 2019, eqs. 5-7 (TorchRay)"
    options = {
        "areas": Option((0.1,), areas_check, "target areas a, fractions in (0, 1)"),
        "variant": Option("preserve", one_of("preserve", "delete"), "preserve or delete game"),
        "iterations": Option(800, positive_int, "SGD steps"),
        "step": Option(7, positive_int, "pixels between mask parameters (32x32 at 224 px)"),
        "sigma": Option(21.0, positive, "mask smoothing kernel, pixels"),
        "levels": Option(8, positive_int, "blur levels of the pyramid (>= 2)"),
        "max_blur": Option(20.0, non_negative, "sigma of the most blurred level, pixels"),
        "blur_padding": Option("constant", one_of(*PADDINGS), "border of the blur"),
        "lr": Option(0.01, positive, "SGD learning rate"),
        "momentum": Option(0.9, number_in(0.0, 1.0, hi_open=True), "SGD momentum"),
        "area_weight": Option(300.0, non_negative, "lambda_0 of the area penalty"),
        "area_growth": Option(1.0035, number_in(1.0, 2.0), "lambda grows by this each step"),
        "jitter": Option(True, boolean, "flip the perturbed image at even steps"),
        "reward": Option("logit", one_of("logit", "contrastive"), "what the mask maximises"),
        "area_over": Option("image", one_of("image", "padded"),
                            "area constraint on the image or on the padded mask (TorchRay)"),
    }

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(model, **options)
        if self.defaults["levels"] < 2:
            raise ValueError(f"levels must be >= 2, got {self.defaults['levels']}")

    @classmethod
    def cost(cls, iterations: int = 800, areas: Any = (0.1,), **options: Any) -> float:
        return float(iterations * len(areas_check("areas", areas)))

    def validate_inputs(self, inputs: Any) -> tuple[tuple[Tensor, ...], bool]:
        return check_images(inputs)

    def masks(self, inputs: Tensor, target: Any = None, *, additional_forward_args: Any = None,
              **options: Any) -> Tensor:
        """One mask per area, shape (len(areas), N, 1, H, W), in [0, 1]."""
        opts = self.resolve_options(options)
        args = as_args(additional_forward_args)
        return self.guarded(inputs, target, lambda x, t: self._masks(
            x, t, additional_forward_args=args, **opts), additional_forward_args=args)

    def _attribute(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (),
                   **options: Any) -> Tensor:
        return self._masks(inputs, target, additional_forward_args, **options).sum(0)

    def _masks(self, inputs: Tensor, target: Tensor, additional_forward_args: tuple = (), *,
               areas: tuple[float, ...], variant: str, iterations: int, step: int,
               sigma: float, levels: int, max_blur: float, blur_padding: str, lr: float,
               momentum: float, area_weight: float, area_growth: float, jitter: bool,
               reward: str, area_over: str) -> Tensor:
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        n, _, h, w = inputs.shape
        a = len(areas)
        pyramid = blur_pyramid(inputs, levels, max_blur, blur_padding)
        generator = SmoothMaskGenerator((h, w), step, sigma, inputs.dtype, inputs.device)
        params = torch.ones(n * a, 1, *generator.param_shape, dtype=inputs.dtype,
                            device=inputs.device)  # row i * a + j: sample i, area j
        numel = (h * w) if area_over == "image" else \
            generator.full_shape[0] * generator.full_shape[1]
        reference = area_reference(areas, numel, inputs.dtype, inputs.device).repeat(n, 1)
        targets = target.repeat_interleave(a)
        args = expand_args(additional_forward_args, n, a, interleave=True)
        preserve = variant == "preserve"

        def loss(t: int) -> Tensor:
            cropped, full = generator(params)
            kept = cropped if preserve else 1 - cropped
            x = apply_pyramid(pyramid, kept.view(n, a, 1, h, w)).flatten(0, 1)
            if jitter and t % 2 == 0:
                x = x.flip(3)
            r = reward_of(self.forward(x, *args), targets, reward, t == 0)
            if not preserve:
                r = -r
            penalty = area_penalty(cropped if area_over == "image" else full, reference)
            return -(r - area_weight * area_growth ** t * penalty)

        optimise([params], loss, iterations, optimiser="sgd", lr=lr, momentum=momentum,
                 dampening=momentum, project=clamp_(params))
        with torch.no_grad():
            cropped, _ = generator(params)
        return cropped.view(n, a, 1, h, w).transpose(0, 1)
