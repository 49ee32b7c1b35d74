"""Layers for no-implicit-bias (NIB) networks (paper 01, Attribution Mask / GxSI, section 2.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BiasFreeBatchNorm2d"]


class BiasFreeBatchNorm2d(nn.Module):
    """Batch normalisation without any implicit bias (paper 01, sections 2.2 and 4.1).

    Paper 01 builds its NIB VGGs by "removing all parameters corresponding to the mean of
    batch normalization" and every additive bias. This layer therefore never subtracts a mean
    and has no shift ``beta``; it only rescales each channel:

    * training: ``y = gamma * x / sqrt(var_B + eps)``, where ``var_B`` is the biased variance
      over ``(N, H, W)`` computed around the batch mean (gradients flow through ``var_B``);
      ``running_var <- (1 - momentum) * running_var + momentum * var_B_unbiased``;
    * eval: ``y = gamma * x / sqrt(running_var + eps)``, a per-channel diagonal linear map.

    In eval mode a net built from bias-free Conv/Linear, this layer, ReLU and max-pooling is
    positively homogeneous, ``f(a x) = a f(x)`` for ``a > 0``, so ``sum_i x_i df_c/dx_i = f_c(x)``
    (paper 01, eq. 8 and Appendix A). There is deliberately no ``bias`` parameter and no
    ``running_mean`` buffer. ``momentum=None`` uses a cumulative average, as in PyTorch.
    This is not a subclass of ``torch.nn.modules.batchnorm._BatchNorm``.
    """

    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(self.num_features))  # gamma
        self.register_buffer("running_var", torch.ones(self.num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Reset ``running_var`` to ones and the batch counter to zero."""
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset running statistics and set ``gamma`` to ones."""
        self.reset_running_stats()
        with torch.no_grad():
            self.weight.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"BiasFreeBatchNorm2d expects a 4-D input (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels, got {x.shape[1]}")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # statistics in float32 under mixed precision, as nn.BatchNorm2d does
        if self.training:
            n = x.numel() // x.shape[1]
            if n < 2:
                raise ValueError("BiasFreeBatchNorm2d in training mode needs more than one value per channel")
            var = x.var(dim=(0, 2, 3), unbiased=False)  # biased, around the batch mean
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.mul_(1.0 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        else:
            var = self.running_var
        # no mean subtraction, no shift; evaluated literally as gamma * x / sqrt(var + eps)
        return self.weight.view(1, -1, 1, 1) * x / torch.sqrt(var + self.eps).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
