import pytest
import torch

from pretrain import config, methods
from pretrain.methods.simclr import others
from pretrain.negatives import NegativeSampler
from pretrain.registry import METHODS

ALL = list(METHODS.names())  # every registered method: a new one is tested without editing this file


def make(name, sampler="uniform", n=64, **over):
    sets = [f"method.name={name}", f"negatives.sampler={sampler}", "negatives.num=32", "method.moco.queue_size=48",
            "optim.batch_size=16",
            "model.feat_dim=16", "method.moco.key_momentum=0.9", f"method.la.clusters={n}",
            "method.la.warm_start_epochs=0"]  # LA's own loss from the first step (tests/test_la.py: the warm start)
    cfg = config.load(None, sets + [f"{k}={v}" for k, v in over.items()])
    m = methods.build(cfg, n, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    m.epoch_start(0)
    return m


def batch(b=16, seed=0, noise=0.05):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
    return [x, x + noise * torch.randn(b, 3, 32, 32, generator=g)], torch.arange(b)


@pytest.mark.parametrize("name", ALL)
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
        if name != "moco":
            m.step_end()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ALL)
def test_backbone_output_shapes(name):
    m = make(name)
    feats = m.encoder.backbone(batch()[0][0])
    assert feats.shape == (16, 512)  # CMC: two half-width ResNet-18s, concatenated
    assert m.encoder.backbone.arch_name == ("cmc_resnet18" if name == "cmc" else "resnet18")


@pytest.mark.parametrize("name", ["ir", "cmc"])
def test_bank_methods_never_draw_the_anchor(name):
    m = make(name, "ring", **{"negatives.outer": 0.5})
    views, index = batch()
    drawn = []
    orig = m.sampler.sample
    m.sampler.sample = lambda *a, **k: drawn.append(orig(*a, **k)) or drawn[-1]
    m(views, index, 0.0)
    assert len(drawn) == (2 if name == "cmc" else 1)
    for d in drawn:
        assert d.shape == (16, 32) and not (d == index[:, None]).any()


def test_ir_bank_update():
    m = make("ir")
    views, index = batch()
    before = m.bank.rows.clone()
    m(views, index, 0.0)
    m.step_end()
    assert not torch.equal(m.bank.rows[:16], before[:16]) and torch.equal(m.bank.rows[16:], before[16:])
    assert torch.allclose(m.bank.rows.norm(dim=1), torch.ones(64))


def test_simclr_pool_excludes_self_and_positive():
    sim = torch.arange(36.0).view(6, 6)
    pool = others(sim)
    assert pool.shape == (6, 4)
    for i in range(6):
        assert sim[i, i] not in pool[i] and sim[i, (i + 3) % 6] not in pool[i]


def test_moco_queue_and_key_encoder():
    m = make("moco")
    views, index = batch()
    k_before = [p.clone() for p in m.key_encoder.parameters()]
    loss, _ = m(views, index, 0.0)
    loss.backward()
    assert all(p.grad is None for p in m.key_encoder.parameters())  # keys carry no gradient
    m.step_end()
    assert int(m.queue.ptr) == 16
    for _ in range(2):
        m(views, index, 0.0)
        m.step_end()
    assert int(m.queue.ptr) == 0  # 48 keys written into a 48-key queue: wrapped around
    assert not all(torch.equal(a, b) for a, b in zip(k_before, m.key_encoder.parameters()))


def test_la_clusters_recomputed_per_epoch_only():
    m = make("la", n=64, **{"method.la.clusters": 4, "method.la.clusterings": 2})
    labels = m.labels.clone()
    assert labels.shape == (2, 64) and labels.max() < 4
    m.epoch_start(0)  # same epoch (e.g. resumed mid-epoch): nothing recomputed
    assert torch.equal(m.labels, labels) and int(m.clustered_epoch) == 0
    m.bank.rows.copy_(torch.nn.functional.normalize(torch.randn(64, 16), dim=1))
    m.epoch_start(1)
    assert int(m.clustered_epoch) == 1 and not torch.equal(m.labels, labels)


@pytest.mark.parametrize("name", ["moco", "simclr", "la"])
def test_ring_with_full_band_equals_uniform(name):
    torch.manual_seed(0)
    a = make(name, "uniform")
    torch.manual_seed(0)
    b = make(name, "ring", **{"negatives.outer": 1.0, "negatives.inner": 0.0})
    b.load_state_dict(a.state_dict())
    views, index = batch()
    torch.manual_seed(1)
    la, _ = a(views, index, 0.0)
    torch.manual_seed(1)
    lb, _ = b(views, index, 0.0)
    assert la.item() == pytest.approx(lb.item(), rel=1e-6)
