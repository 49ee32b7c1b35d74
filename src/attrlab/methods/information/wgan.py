"""InputIBA's second stage (paper 02, section 3.3): per-image Wasserstein GANs fitting the input
mask lambda_G, for a whole batch of images at once.

Every image has its own generator (mask logit, noise mean and std) and its own critic; the N
critics are stacked: their convolutions run as one grouped convolution (groups = N), their
BatchNorms as one BatchNorm over N * channels, their linear layers as batched matrix products.
RMSprop and weight clipping are element-wise, so each image's GAN trains exactly as it would
alone. No Python loop over images and no host synchronisation inside the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


class Draws:
    """The random draws of N independent problems from one ``torch.Generator``: every draw is
    (N, *shape), image i's draws in row i; permutations are shared by the N problems."""

    def __init__(self, n: int, generator: torch.Generator, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.n, self.generator, self.device, self.dtype = n, generator, device, dtype

    def _to(self, t: Tensor) -> Tensor:
        return t.to(self.device, self.dtype)

    def normal(self, *shape: int) -> Tensor:
        return self._to(torch.randn((self.n,) + shape, generator=self.generator,
                                    device=self.generator.device, dtype=self.dtype))

    def uniform(self, lo: float, hi: float, *shape: int) -> Tensor:
        u = torch.rand((self.n,) + shape, generator=self.generator,
                       device=self.generator.device, dtype=self.dtype)
        return self._to(lo + (hi - lo) * u)

    def permutation(self, m: int) -> Tensor:
        return torch.randperm(m, generator=self.generator,
                              device=self.generator.device).to(self.device)


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


@dataclass
class StackedCritic:
    """N copies of the authors' vision critic (``VisionDiscriminator``) with separate
    parameters: conv 4x4/2 (C -> 2C), conv 4x4/2 (2C -> 4C), conv 3x3/1 (4C -> C), each with
    BatchNorm (batch statistics: the critic is always in training mode) and LeakyReLU(0.2),
    then Linear(C h' w' -> 512), LeakyReLU, Linear(512 -> 256), LeakyReLU, Linear(256 -> 1),
    no sigmoid. Parameters (every one with leading dimension N) are in ``params``."""

    params: dict[str, Tensor]
    n: int

    CONVS = (("conv1", 2, 4, 2), ("conv2", 4, 4, 2), ("conv3", 1, 3, 1))  # out = C * factor

    @classmethod
    def init(cls, draws: Draws, channels: int, size: tuple[int, int]) -> StackedCritic:
        """PyTorch's default initialisation (weights and biases U(-1/sqrt(fan_in),
        1/sqrt(fan_in)), BatchNorm weight 1 and bias 0), drawn per image."""
        c, (h, w) = channels, size
        params: dict[str, Tensor] = {}
        c_in = c
        for name, factor, k, s in cls.CONVS:
            c_out = c * factor
            bound = 1 / math.sqrt(c_in * k * k)
            params[name + ".weight"] = draws.uniform(-bound, bound, c_out, c_in, k, k)
            params[name + ".bias"] = draws.uniform(-bound, bound, c_out)
            params[name + ".bn_weight"] = torch.ones(draws.n, c_out, device=draws.device,
                                                     dtype=draws.dtype)
            params[name + ".bn_bias"] = torch.zeros(draws.n, c_out, device=draws.device,
                                                    dtype=draws.dtype)
            h, w = _conv_out(h, k, s, 1), _conv_out(w, k, s, 1)
            c_in = c_out
        if h < 1 or w < 1:
            raise ValueError(f"the critic needs a feature map of at least 4 x 4, got {size}")
        f_in = c_in * h * w
        for name, (a, b) in (("fc1", (f_in, 512)), ("fc2", (512, 256)), ("fc3", (256, 1))):
            bound = 1 / math.sqrt(a)
            params[name + ".weight"] = draws.uniform(-bound, bound, a, b)
            params[name + ".bias"] = draws.uniform(-bound, bound, 1, b)
        for p in params.values():
            p.requires_grad_(True)
        return cls(params, draws.n)

    def __call__(self, feats: Tensor) -> Tensor:
        """Critic values (N, B) of features (N, B, C, h, w), image i's by critic i."""
        n, b = feats.shape[:2]
        p = self.params
        x = feats.transpose(0, 1).reshape((b, -1) + feats.shape[3:])  # (B, N*C, h, w)
        for name, _factor, _k, s in self.CONVS:
            wgt = p[name + ".weight"]
            x = F.conv2d(x, wgt.flatten(0, 1), p[name + ".bias"].flatten(), stride=s, padding=1,
                         groups=n)
            x = F.batch_norm(x, None, None, p[name + ".bn_weight"].flatten(),
                             p[name + ".bn_bias"].flatten(), training=True)
            x = F.leaky_relu(x, 0.2)
        x = x.view((b, n, -1)).transpose(0, 1)  # (N, B, C h' w')
        for name in ("fc1", "fc2", "fc3"):
            x = torch.baddbmm(p[name + ".bias"], x, p[name + ".weight"])
            if name != "fc3":
                x = F.leaky_relu(x, 0.2)
        return x.squeeze(2)

    def clip_(self, bound: float) -> None:
        with torch.no_grad():
            for t in self.params.values():
                t.clamp_(-bound, bound)


def fit_input_mask(features: Callable[[Tensor], Tensor], inputs: Tensor, feature_map: Tensor,
                   feature_mask: Tensor, mask_logit: Tensor, draws: Draws, *,
                   samples: int = 200, group_size: int = 20, epochs: int = 20,
                   batch_size: int = 32, critic_lr: float = 5e-5, weight_clip: float = 0.01,
                   critic_iter: int = 5, mean_lr: float = 0.1, std_lr: float = 0.05,
                   mask_lr: float = 0.003) -> Tensor:
    """Fit lambda_G for N images at once (paper 02 section 3.3; schedule of the authors'
    ``VisionWGAN.train``). Returns lambda_G = sigmoid(mask logit), (N, C_in, H, W).

    Real samples ("target" P(Z*)): ``samples`` per image in groups of ``group_size``, group g
    with noise std ~ U(0, 5) and mean ~ U(-2, 2) drawn once; each time a sample is used,
    real = M * F + (1 - M) * (std * n + mean), n ~ N(0, 1), with F the image's clean
    ``feature_map`` and M the feature ``feature_mask`` (the authors pass the feature IBA's
    capacity in nats, not a mask in [0, 1]). Fake samples: the layer's ``features`` of
    m * x + (1 - m) * (s * z + mu), m = sigmoid(mask logit), z ~ N(0, 1), mu and s one per
    input channel (initialised 0 and 1). Each epoch visits the samples in a new random order
    in batches of ``batch_size``; every batch takes one RMSprop step of the critics (lr
    ``critic_lr``, loss -E[D(real)] + E[D(fake)], then weights clipped to +-``weight_clip``);
    every ``critic_iter``-th batch of an epoch (batch index i % critic_iter == 0) also one
    RMSprop step of the generators (loss -E[D(fake)], lrs ``mean_lr``, ``std_lr``,
    ``mask_lr``) on the same fake batch (generator parameters unchanged since it was made, so
    it is the batch the authors recompute).
    """
    n = inputs.shape[0]
    c_in = inputs.shape[1]
    dtype, device = inputs.dtype, inputs.device
    groups = max(1, samples // group_size)
    group_std = draws.uniform(0.0, 5.0, groups)  # (N, G)
    group_mean = draws.uniform(-2.0, 2.0, groups)
    logit = mask_logit.detach().clone().requires_grad_(True)
    mu = torch.zeros(n, c_in, 1, 1, dtype=dtype, device=device, requires_grad=True)
    std = torch.ones(n, c_in, 1, 1, dtype=dtype, device=device, requires_grad=True)
    critic = StackedCritic.init(draws, feature_map.shape[1], tuple(feature_map.shape[2:]))
    opt_d = torch.optim.RMSprop(list(critic.params.values()), lr=critic_lr)
    opt_g = torch.optim.RMSprop([{"params": [mu], "lr": mean_lr}, {"params": [std], "lr": std_lr},
                                 {"params": [logit], "lr": mask_lr}])
    fmap, fmask = feature_map.unsqueeze(1), feature_mask.unsqueeze(1)  # (N, 1, C, h, w)
    feat_shape = tuple(feature_map.shape[1:])
    x = inputs.unsqueeze(1)

    def fake_batch(b: int) -> Tensor:
        z = draws.normal(b, *inputs.shape[1:])
        m = torch.sigmoid(logit).unsqueeze(1)
        masked = m * x + (1 - m) * (std.unsqueeze(1) * z + mu.unsqueeze(1))
        return features(masked.flatten(0, 1)).view((n, b) + feat_shape)

    with torch.enable_grad():
        for _epoch in range(epochs):
            order = draws.permutation(samples)
            for i, start in enumerate(range(0, samples, batch_size)):
                idx = order[start:start + batch_size]
                b = idx.shape[0]
                g = (idx // group_size).clamp_max(groups - 1)
                s, m0 = group_std[:, g], group_mean[:, g]  # (N, b)
                noise = s[..., None, None, None] * draws.normal(b, *feat_shape) \
                    + m0[..., None, None, None]
                real = fmask * fmap + (1 - fmask) * noise
                train_g = i % critic_iter == 0
                if train_g:
                    fake = fake_batch(b)
                else:
                    with torch.no_grad():
                        fake = fake_batch(b)
                opt_d.zero_grad(set_to_none=True)
                loss_d = (critic(fake.detach()).mean(1) - critic(real).mean(1)).sum()
                loss_d.backward()
                opt_d.step()
                critic.clip_(weight_clip)
                if train_g:
                    opt_g.zero_grad(set_to_none=True)
                    (-critic(fake).mean(1)).sum().backward()
                    opt_g.step()
    return torch.sigmoid(logit.detach())
