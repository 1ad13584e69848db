import pytest
import torch

from pretrain import config, methods
from pretrain.negatives import NegativeSampler


def make(name, sampler="uniform", n=64, **over):
    sets = [f"method.name={name}", f"negatives.sampler={sampler}", "negatives.num=32", "method.queue_size=48",
            "model.feat_dim=16", "method.key_momentum=0.9"] + [f"{k}={v}" for k, v in over.items()]
    cfg = config.load(None, sets)
    s = NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu")
    return methods.build(cfg, n, s)


def batch(b=16, seed=0, noise=0.05):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 32, 32, generator=g)
    return [x, x + noise * torch.randn(b, 3, 32, 32, generator=g)], torch.arange(b)


@pytest.mark.parametrize("name", ["ir", "moco"])
@pytest.mark.parametrize("sampler", ["uniform", "ring"])
def test_loss_falls_on_a_tiny_batch(name, sampler):
    torch.manual_seed(0)
    m = make(name, sampler, **{"negatives.outer": 0.5, "negatives.inner": 0.1})
    # MoCo: two clearly different views, and the queue kept as random keys (pushing the same
    # 16 images again and again would fill it with their own positives)
    views, index = batch(noise=1.0 if name == "moco" else 0.05)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        loss, _ = m(views, index, 0.0)
        assert loss.dim() == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if name == "ir":
            m.step_end()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], losses


def test_ir_bank_and_negatives():
    m = make("ir", "ring", **{"negatives.outer": 0.5})
    views, index = batch()
    drawn = []
    orig = m.sampler.sample
    m.sampler.sample = lambda *a, **k: drawn.append(orig(*a, **k)) or drawn[-1]
    before = m.bank.rows.clone()
    loss, _ = m(views, index, 0.0)
    assert drawn[0].shape == (16, 32)
    assert not (drawn[0] == index[:, None]).any()  # the anchor's own bank row is never a negative
    m.step_end()
    assert not torch.equal(m.bank.rows[:16], before[:16]) and torch.equal(m.bank.rows[16:], before[16:])
    assert torch.allclose(m.bank.rows.norm(dim=1), torch.ones(64))


def test_moco_queue_and_key_encoder():
    m = make("moco", "uniform")
    views, index = batch()
    k_before = [p.clone() for p in m.key_encoder.parameters()]
    loss, _ = m(views, index, 0.0)
    loss.backward()
    assert all(p.grad is None for p in m.key_encoder.parameters())  # keys carry no gradient
    m.step_end()
    assert int(m.queue.ptr) == 16
    m(views, index, 0.0)
    m.step_end()
    m(views, index, 0.0)
    m.step_end()
    assert int(m.queue.ptr) == 48 % 48  # wrapped around a 48-key queue
    assert all(torch.equal(a, b) for a, b in zip(k_before, m.key_encoder.parameters())) is False


def test_ring_full_band_gives_uniform_loss_for_moco():
    torch.manual_seed(0)
    a = make("moco", "uniform")
    torch.manual_seed(0)
    b = make("moco", "ring", **{"negatives.outer": 1.0, "negatives.inner": 0.0})
    b.load_state_dict(a.state_dict())
    views, index = batch()
    torch.manual_seed(1)
    la, _ = a(views, index, 0.0)
    torch.manual_seed(1)
    lb, _ = b(views, index, 0.0)
    assert la.item() == pytest.approx(lb.item(), rel=1e-6)
