"""SOFT top-k (attrlab.core.soft_topk): sums to k, tends to the hard top-k as eps -> 0,
no coupling between the samples of a batch, gradients equal finite differences."""

import pytest
import torch

from attrlab.core.soft_topk import soft_topk

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(n_rows=4, n=12, seed=0, dtype=torch.float64):
    return torch.randn(n_rows, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_rows_sum_to_k_and_lie_in_0_1():
    s = scores()
    k = torch.tensor([0.0, 3.0, 5.5, 12.0], dtype=torch.float64)
    a = soft_topk(s, k)
    torch.testing.assert_close(a.sum(1), k, rtol=0, atol=1e-9)
    assert (a >= 0).all() and (a <= 1 + 1e-9).all()
    assert a[0].max() < 1e-9 and (a[3] > 1 - 1e-9).all()  # k = 0 and k = n


@pytest.mark.parametrize("largest", [True, False])
def test_tends_to_the_hard_top_k_as_eps_goes_to_zero(largest):
    g = torch.Generator().manual_seed(1)  # distinct scores, spaced 0.1 apart
    s = torch.stack([torch.randperm(10, generator=g) for _ in range(3)]).double() / 10
    k = 4
    hard = torch.zeros_like(s)
    hard.scatter_(1, s.topk(k, dim=1, largest=largest).indices, 1.0)
    errors = [(soft_topk(s, k, eps=eps, n_iter=2000, largest=largest) - hard).abs().max()
              for eps in (0.1, 0.01, 1e-3)]
    assert errors[0] > 0.2 and errors[0] > errors[1] and errors[2] < 3e-3
    # at the default eps the selection already ranks like the scores
    a = soft_topk(s, k, largest=largest)
    order = s.argsort(1, descending=largest)
    assert (a.gather(1, order).diff(dim=1) <= 1e-9).all()


def test_a_sample_does_not_depend_on_its_batch():
    s = scores(5, 16, seed=2)
    s[1:] *= 100.0  # other samples on a far larger scale (the reference's batch max couples)
    k = torch.tensor([3.0, 8.0, 2.0, 5.0, 1.0], dtype=torch.float64)
    batch = soft_topk(s, k)
    for i in range(len(s)):
        torch.testing.assert_close(batch[i:i + 1], soft_topk(s[i:i + 1], k[i:i + 1]),
                                   rtol=0, atol=1e-12)


def test_invariant_to_shifting_the_scores():
    s = scores(2, 9, seed=3)
    torch.testing.assert_close(soft_topk(s, 3.0, eps=0.05), soft_topk(s + 0.0, 3.0, eps=0.05))
    # a shift changes the cost normalisation, not the ranking: still sums to k
    torch.testing.assert_close(soft_topk(s + 5.0, 3.0).sum(1), torch.full((2,), 3.0,
                               dtype=torch.float64), rtol=0, atol=1e-9)


def test_gradient_matches_finite_differences():
    """Autograd through the iterations against central differences of a random projection
    of the output. The cost's normaliser is detached (as in the reference), so only scores
    that do not set it (not the row's extremes) are perturbed."""
    s = scores(2, 6, seed=4)
    k = torch.tensor([2.0, 3.5], dtype=torch.float64)
    w = torch.randn(2, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def loss(x):
        return (soft_topk(x, k, eps=0.3, n_iter=60) * w).sum()

    x = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x), x)
    h = 1e-6
    checked = 0
    for i in range(2):
        for j in range(6):
            if s[i, j] in (s[i].max(), s[i].min()):
                continue
            e = torch.zeros_like(s)
            e[i, j] = h
            fd = (loss(s + e) - loss(s - e)) / (2 * h)
            torch.testing.assert_close(grad[i, j], fd, rtol=1e-5, atol=1e-8)
            checked += 1
    assert checked == 8 and grad.abs().max() > 1e-3


def test_bad_arguments_are_named():
    s = scores()
    with pytest.raises(ValueError, match="k must lie"):
        soft_topk(s, 13.0)
    with pytest.raises(ValueError, match="eps"):
        soft_topk(s, 2.0, eps=0)
    with pytest.raises(ValueError, match="scores"):
        soft_topk(s[0], 2.0)
    with pytest.raises(ValueError, match=r"\(4,\) tensor"):
        soft_topk(s, torch.ones(3))


def test_fifty_iterations_have_converged_at_the_default_eps():
    """VP's default (50 Sinkhorn iterations, eps 0.1) against 2,000 iterations."""
    s = scores(8, 784, seed=6)
    k = torch.linspace(1, 783, 8, dtype=torch.float64)
    torch.testing.assert_close(soft_topk(s, k, n_iter=50), soft_topk(s, k, n_iter=2000),
                               rtol=0, atol=1e-9)
