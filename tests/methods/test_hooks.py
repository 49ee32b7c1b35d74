"""capture_output_grads: gradients with respect to module outputs through tensor hooks."""

import torch
from torch import nn

from attrlab.core.hooks import capture_output_grads


class Reused(nn.Module):
    """lin is called twice, each call followed by an in-place ReLU; dead never reaches y."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(4, 4)
        self.dead = nn.Linear(4, 4)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(4, 4, generator=g))
            self.lin.bias.copy_(torch.randn(4, generator=g))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        self.dead(x.detach())
        h = self.relu(self.lin(x))
        return self.relu(self.lin(h)).sum(1)


def test_grads_match_autograd_with_reuse_and_inplace_relu():
    model = Reused()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 4, requires_grad=True)
    with capture_output_grads({"lin": model.lin, "dead": model.dead}) as rec:
        model(x).sum().backward()
    # by hand: z1 = lin(x), h = relu(z1), z2 = lin(h), y = sum relu(z2)
    z1 = model.lin(x.detach())
    h = z1.clamp(min=0)
    z2 = model.lin(h)
    g2 = (z2 > 0).float()
    g1 = (g2 @ model.lin.weight) * (z1 > 0).float()
    assert len(rec["lin"]) == 2
    torch.testing.assert_close(rec["lin"][0], g1)
    torch.testing.assert_close(rec["lin"][1], g2)
    assert rec["dead"] == [None]  # does not require grad: no gradient, no error
    # the module hooks are gone after the block
    assert not model.lin._forward_hooks and not model.dead._forward_hooks
