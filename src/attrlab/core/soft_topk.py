"""SOFT top-k: a differentiable top-k indicator by entropic optimal transport (Xie et al.
2020, "Differentiable top-k operator with optimal transport", section 3).

The n scores of a sample are the source points, each of mass 1/n; two anchors are the
targets, anchor 1 of mass k/n (the selected set) and anchor 2 of mass (n - k)/n. With the
squared-distance cost C_ij = (s_i - y_j)^2 (y = (0, 1)) the optimal plan sends the k points
nearest anchor 0 -- the k *smallest* scores -- to anchor 1, so the largest scores are selected
by transporting -s. The entropic problem

    Gamma* = argmin_{Gamma 1 = mu, Gamma^T 1 = nu} <C, Gamma> - eps H(Gamma)        (eq. 5)

is solved by Sinkhorn's iterations in the log domain (stable for small eps): with dual
potentials f (n,), g (2,),

    f_i <- eps log mu_i - eps logsumexp_j((g_j - C_ij) / eps),
    g_j <- eps log nu_j - eps logsumexp_i((f_i - C_ij) / eps),
    Gamma_ij = exp((f_i + g_j - C_ij) / eps),

and the soft indicator is A = n Gamma[:, 0] (eq. 6): entries in [0, 1] that sum to k
exactly (the last update makes the column masses exact) and tend to the hard top-k
indicator as eps -> 0 for distinct scores.

Choices (documented, tested in ``tests/core/test_soft_topk.py``):

* **Per sample, no coupling.** As in the reference, the cost is divided by its (detached)
  maximum so that eps is relative to the spread of the scores; here that maximum is taken
  per sample, not over the whole batch as the google-research code does, so a sample's
  output never depends on the other samples of its batch.
* **k per sample.** ``k`` is a number or a (N,) tensor of (real) counts in [0, n]; masses of
  exactly 0 are floored at 1e-12 of a point, so k = 0 and k = n give (numerically) all zeros
  and all ones.
* **Gradients** flow by autograd through the iterations (the reference differentiates the
  optimality conditions in closed form; backpropagating through the loop gives the gradient
  of the truncated iteration, at ``n_iter`` times the memory of one step).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MASS_FLOOR = 1e-12


def soft_topk(scores: Tensor, k: float | Tensor, eps: float = 0.1, n_iter: int = 200,
              largest: bool = True) -> Tensor:
    """Soft top-k indicator of each row of ``scores`` (N, n): A = n Gamma[:, 0] of the
    entropic transport of the scores onto the anchors {0, 1} with masses k/n and (n - k)/n
    (Xie et al. 2020, eqs. 5-6; module docstring). ``k``: a number or (N,) counts in
    [0, n]; ``largest=False`` selects the smallest scores. Returns (N, n), each row summing
    to k, differentiable in ``scores``."""
    if not isinstance(scores, Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating (N, n) tensor, got "
                         f"{getattr(scores, 'shape', type(scores).__name__)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 \
            or not math.isfinite(eps):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    n_rows, n = scores.shape
    kk = torch.as_tensor(k, dtype=scores.dtype, device=scores.device)
    if kk.dim() == 0:
        kk = kk.expand(n_rows)
    if kk.shape != (n_rows,):
        raise ValueError(f"k must be a number or a ({n_rows},) tensor, got shape "
                         f"{tuple(kk.shape)}")
    if not torch.isfinite(kk).all() or (kk < 0).any() or (kk > n).any():
        raise ValueError(f"k must lie in [0, n] = [0, {n}]")
    s = -scores if largest else scores
    anchors = torch.tensor([0.0, 1.0], dtype=scores.dtype, device=scores.device)
    cost = (s.unsqueeze(2) - anchors) ** 2  # (N, n, 2)
    cost = cost / cost.detach().flatten(1).amax(1).clamp_min(torch.finfo(cost.dtype).tiny) \
        .view(-1, 1, 1)
    log_mu = torch.full((n_rows, n), -math.log(n), dtype=scores.dtype, device=scores.device)
    nu = torch.stack([kk, n - kk], 1) / n
    log_nu = nu.clamp_min(MASS_FLOOR / n).log()  # (N, 2)
    f = torch.zeros_like(log_mu)
    g = torch.zeros_like(log_nu)
    for _ in range(n_iter):
        f = eps * log_mu - eps * torch.logsumexp((g.unsqueeze(1) - cost) / eps, dim=2)
        g = eps * log_nu - eps * torch.logsumexp((f.unsqueeze(2) - cost) / eps, dim=1)
    gamma0 = torch.exp((f + g[:, :1] - cost[:, :, 0]) / eps)
    return n * gamma0


__all__ = ["soft_topk"]
