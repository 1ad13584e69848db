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


def test_neighbour_views_known_value():
    """The official NCERing / MoCoRing with neighbor_views: the core joins the positive in the
    numerator, the partition is the positive and the band: -log((e^1 + e^0.8) / (e^1 + e^0.2 + e^-0.4))."""
    pos, neg, t = torch.tensor([0.5]), torch.tensor([[0.4, 0.1, -0.2]]), 0.5
    core = torch.tensor([[True, False, False]])
    band = torch.tensor([[False, True, True]])
    loss = info_nce(pos, neg, t, band, pos_mask=core).item()
    assert round(loss, 4) == -0.0699
    assert loss == pytest.approx(math.log(math.exp(1.0) + math.exp(0.2) + math.exp(-0.4))
                                 - math.log(math.exp(1.0) + math.exp(0.8)), abs=1e-6)  # (float32 logits)
    assert info_nce(pos, neg, t, pos_mask=core).item() == pytest.approx(loss, rel=1e-6)  # no neg_mask: the rest
    nothing = torch.zeros_like(core)  # no neighbour: exactly the plain loss over the band
    assert info_nce(pos, neg, t, band, pos_mask=nothing).item() == pytest.approx(info_nce(pos, neg, t, band).item(), rel=1e-6)


def official_neighbour_views(pos, neg, t, core, band):
    """Plain-Python transcription of the official loss (src/objectives/instdisc.py NCERing,
    self_negative and logsumexp_inner on): mean of LSE([s+] + band) - LSE([s+] + core), all / t."""
    def lse(xs):
        top = max(xs)
        return top + math.log(sum(math.exp(x - top) for x in xs))
    losses = []
    for p, row, c, b in zip(pos, neg, core, band):
        witness_pos = lse([p / t] + [s / t for s, inner in zip(row, c) if inner])
        partition = lse([p / t] + [s / t for s, ring in zip(row, b) if ring])
        losses.append(partition - witness_pos)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", range(4))
def test_neighbour_views_match_the_official_formula(seed):
    g = torch.Generator().manual_seed(seed)
    b, k, t = 7, 12, 0.2
    pos, neg = torch.rand(b, generator=g) * 2 - 1, torch.rand(b, k, generator=g) * 2 - 1
    core = torch.rand(b, k, generator=g) < 0.3
    neg_mask = torch.rand(b, k, generator=g) < 0.6  # may overlap the core: a neighbour is never a negative
    expected = official_neighbour_views(pos.tolist(), neg.tolist(), t, core.tolist(), (neg_mask & ~core).tolist())
    assert info_nce(pos, neg, t, neg_mask, pos_mask=core).item() == pytest.approx(expected, rel=1e-5)
    # neg_mask None: every entry outside the core is a negative (IR, CMC: the K drawn, then the core)
    expected = official_neighbour_views(pos.tolist(), neg.tolist(), t, core.tolist(), (~core).tolist())
    assert info_nce(pos, neg, t, pos_mask=core).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("official", [False, True])
def test_ir_official_negatives(official):
    """method.ir.official_negatives: k - 1 negatives (the official NCE / NCERing), the positive
    in the partition either way. A two-row bank: every draw is the other row, so the loss is
    log(e^{a} + n e^{b}) - a with n = k - 1 (official) or k (ours), a = s+/t, b = s_other/t."""
    from pretrain import config, methods
    from pretrain.negatives import NegativeSampler

    k, t = 3, 0.5
    cfg = config.load(None, ["method.name=ir", "negatives.sampler=uniform", f"negatives.num={k}",
                             f"method.temperature={t}", "model.feat_dim=8",
                             f"method.ir.official_negatives={str(official).lower()}"])
    torch.manual_seed(0)
    m = methods.build(cfg, 2, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    x, index = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(2)
    loss, _ = m([x], index, 0.0)
    with torch.no_grad():
        sim = (m.encoder(x) @ m.bank.rows.T).tolist()  # (train-mode BN: the same batch, the same q)
    n = k - 1 if official else k
    expected = sum(math.log(math.exp(row[i] / t) + n * math.exp(row[1 - i] / t)) - row[i] / t
                   for i, row in enumerate(sim)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
