import math

import pytest
import torch

from pretrain.objectives import info_nce


def test_info_nce_known_value():
    pos = torch.tensor([0.5])
    neg = torch.tensor([[0.1, -0.2]])
    t = 0.5
    expected = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.2) + math.exp(-0.4)))
    assert info_nce(pos, neg, t).item() == pytest.approx(expected, rel=1e-6)


def test_mask_equals_dropping_negatives():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(6, generator=g), torch.randn(6, 10, generator=g)
    mask = torch.zeros(6, 10, dtype=torch.bool)
    mask[:, 2:5] = True
    assert info_nce(pos, neg, 0.07, mask).item() == pytest.approx(info_nce(pos, neg[:, 2:5], 0.07).item(), rel=1e-6)


def test_lower_bound_and_gradient_direction():
    pos = torch.zeros(4, requires_grad=True)
    neg = torch.zeros(4, 7)
    loss = info_nce(pos, neg, 1.0)
    assert loss.item() == pytest.approx(math.log(8), rel=1e-6)  # all equal: log(K + 1)
    loss.backward()
    assert (pos.grad < 0).all()  # raising the positive similarity lowers the loss


def test_shape_errors():
    with pytest.raises(ValueError, match="expected pos"):
        info_nce(torch.zeros(3, 1), torch.zeros(3, 4), 0.1)


def test_neighbour_views_join_the_positive_by_logsumexp():
    """The official logsumexp_inner: -log((e^{s+/t} + e^{s_c/t}) / (e^{s+/t} + e^{s_c/t} + e^{s_n/t}))."""
    pos, neg, t = torch.tensor([0.5]), torch.tensor([[0.4, 0.1, -0.2]]), 0.5
    core = torch.tensor([[True, False, False]])
    band = torch.tensor([[False, True, True]])
    num = math.exp(1.0) + math.exp(0.8)
    expected = -math.log(num / (num + math.exp(0.2) + math.exp(-0.4)))
    assert info_nce(pos, neg, t, band, pos_mask=core).item() == pytest.approx(expected, rel=1e-6)
    nothing = torch.zeros_like(core)  # no neighbour: exactly the plain loss over the band
    assert info_nce(pos, neg, t, band, pos_mask=nothing).item() == pytest.approx(info_nce(pos, neg, t, band).item(), rel=1e-6)
