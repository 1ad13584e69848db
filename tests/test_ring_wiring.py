"""Ring reaches every method: the negatives that enter each method's loss lie in the band a
brute-force sort gives (the official limits, transcribed here), and differ from what the
same method uses with uniform negatives. A sampler that silently returns the whole pool,
or a method that drops the ring's mask, fails here (docs/design.md §3)."""
import pytest
import torch

from pretrain import config, methods, strategies
from pretrain.negatives import NegativeSampler

OUTER, INNER = 0.25, 0.2
N = 512  # memory-bank rows; MoCo's queue holds as many keys


def official_limits(n, outer, inner):
    hi = int(outer * n)
    return int(inner * hi), hi


def band_mask(sim, outer=OUTER, inner=INNER, exclude=None):
    """(B, N) bool: the official band of each row by a full descending sort."""
    out = torch.zeros_like(sim, dtype=torch.bool)
    for i, row in enumerate(sim):
        order = [j for j in torch.argsort(row, descending=True).tolist() if exclude is None or j != int(exclude[i])]
        lo, hi = official_limits(len(order), outer, inner)
        out[i, order[lo:hi]] = True
    return out


def assert_is_band(mask, sim, outer=OUTER, inner=INNER, exclude=None):
    """mask holds each row's official band; where similarities tie across a band edge (an
    untrained network gives exact ties), either tied entry may be the one kept."""
    expected = band_mask(sim, outer, inner, exclude)
    pool = sim.clone()
    if exclude is not None:
        pool[torch.arange(len(exclude)), exclude] = float("nan")
        mask, expected = mask.clone(), expected.clone()
        mask[torch.arange(len(exclude)), exclude] = False  # checked separately by the caller
    values = torch.where(expected, sim, float("nan"))
    top, bottom = values.nan_to_num(float("-inf")).amax(1, keepdim=True), values.nan_to_num(float("inf")).amin(1, keepdim=True)
    sure = (pool > bottom) & (pool < top)  # strictly inside both edges
    allowed = (pool >= bottom) & (pool <= top)
    assert (mask.sum(1) == expected.sum(1)).all(), "band sizes differ from the official limits"
    assert (mask | ~sure).all(), "an entry strictly inside the band is missing"
    assert (~mask | allowed).all(), "an entry outside the band is kept"


def make(name, sampler, b=16, **over):
    sets = [f"method.name={name}", f"negatives.sampler={sampler}", f"negatives.outer={OUTER}",
            f"negatives.inner={INNER}", "negatives.num=64", f"method.moco.queue_size={N}", "model.feat_dim=16",
            "method.la.clusters=8", "method.la.warm_start_epochs=0"]  # LA's own loss from the first step
    cfg = config.load(None, sets + [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    m = methods.build(cfg, N, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    m.epoch_start(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
    views = [x, x + 0.3 * torch.randn(b, 3, 32, 32, generator=g)]
    return m, views, torch.arange(b) * 5  # bank rows spread over the bank


def capture(monkeypatch, module, name):
    """Record the arguments of `module.name` (the loss or bank_logits) at each call."""
    calls, real = [], getattr(module, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out
    monkeypatch.setattr(module, name, spy)
    return calls


def bank_negatives_in_band(monkeypatch, name, sampler):
    """IR, CMC: per loss call, the fraction of the negatives entering the loss that lie in the
    brute-force band of the bank they were drawn from (the anchor's own row excluded)."""
    mod = {"ir": methods.ir, "cmc": methods.cmc}[name]
    m, views, index = make(name, sampler)
    drawn = capture(monkeypatch, mod, "bank_logits")
    losses = capture(monkeypatch, strategies, "info_nce")
    m(views, index, 0.0)
    assert len(drawn) == len(losses) == (2 if name == "cmc" else 1)
    fractions = []
    for (args, _, _), (largs, _, _) in zip(drawn, losses):
        q, rows, idx = args[0], args[1], args[2]
        sim = q.detach() @ rows.T
        band = band_mask(sim, exclude=idx)
        neg = largs[1].detach()  # (B, K) logits that entered the loss
        assert neg.shape == (len(idx), 64)
        # each logit back to its bank row (distinct random rows: nearest similarity), then its rank
        col = (sim[:, None, :] - neg[:, :, None]).abs().argmin(2)
        assert torch.allclose(sim.gather(1, col), neg, atol=1e-5)
        assert not (col == idx[:, None]).any()  # never the anchor's own row
        fractions.append(band.gather(1, col).float().mean().item())
    return fractions


@pytest.mark.parametrize("name", ["ir", "cmc"])
def test_bank_methods_draw_every_negative_from_the_band(monkeypatch, name):
    assert bank_negatives_in_band(monkeypatch, name, "ring") == [1.0] * (2 if name == "cmc" else 1)
    # uniform draws land in the band at the band's share of the bank (about 0.2), not always
    assert all(f < 0.5 for f in bank_negatives_in_band(monkeypatch, name, "uniform"))


def masked_loss_inputs(monkeypatch, name, sampler):
    """MoCo, SimCLR: the (logits, mask) info_nce received; LA: (sim, background)."""
    if name == "la":
        m, views, index = make(name, sampler)
        calls = capture(monkeypatch, methods.la, "aggregation_loss")
        m(views, index, 0.0)
        (sim, _, background, _), _, _ = calls[0]
        return sim.detach(), background, index
    m, views, index = make(name, sampler, b=32 if name == "simclr" else 16)
    calls = capture(monkeypatch, strategies, "info_nce")
    m(views, index, 0.0)
    assert len(calls) == 1
    args, kwargs, _ = calls[0]
    mask = args[3] if len(args) > 3 else kwargs.get("neg_mask")
    return args[1].detach(), mask, None


@pytest.mark.parametrize("name", ["moco", "simclr", "la"])
def test_masking_methods_keep_exactly_the_band(monkeypatch, name):
    sim, mask, exclude = masked_loss_inputs(monkeypatch, name, "ring")
    assert mask is not None, f"{name}: no ring mask reached the loss"
    if name == "la":  # LA: the anchor's own row is in the background (it is the instance)
        assert mask[torch.arange(len(exclude)), exclude].all()
    assert_is_band(mask, sim, exclude=exclude)
    pool = sim.shape[1] - (exclude is not None)
    lo, hi = official_limits(pool, OUTER, INNER)
    assert (mask.sum(1) == hi - lo + (exclude is not None)).all()
    # uniform: no mask (MoCo, SimCLR) or the whole bank (LA): not the band
    _, uniform, _ = masked_loss_inputs(monkeypatch, name, "uniform")
    assert uniform is None or uniform.float().mean() > 0.99


def test_la_baseline_background_is_its_nearest_rows(monkeypatch):
    """LA's own background (ball of method.la.background = k rows): the anchor's own and its k - 1
    most similar other bank rows, no inner cut; k = 128 is the band of OUTER: int(0.25 * 511) + 1."""
    m, views, index = make("la", "ball", **{"negatives.outer": 0.1, "method.la.background": 128})
    calls = capture(monkeypatch, methods.la, "aggregation_loss")
    m(views, index, 0.0)
    (sim, _, background, _), _, _ = calls[0]
    assert background[torch.arange(len(index)), index].all()
    assert_is_band(background, sim.detach(), OUTER, 0.0, exclude=index)


def test_each_method_names_its_baseline_and_records_carry_it():
    """What Ring is compared against: uniform negatives, except LA's own nearest-row ball."""
    from core import records
    assert {n: m.baseline_sampler for n, m in methods.METHODS.items()} == {
        "ir": "uniform", "moco": "uniform", "simclr": "uniform", "cmc": "uniform", "la": "ball"}
    prov = records.provenance(config.to_dict(config.load(None, ["method.name=la", "negatives.sampler=ring"])))
    assert prov == {"method": "la", "negatives": "ring", "baseline_sampler": "ball", "pretrain_dataset": "cifar10"}


def expected_share(anchor, pool_labels, negatives):
    """Mean over anchors of the share of their negatives (a (B, N) mask) with the anchor's label."""
    same = pool_labels[None, :] == anchor[:, None]
    return ((same & negatives).sum(1).float() / negatives.sum(1).float()).mean().item()


@pytest.mark.parametrize("name", ["ir", "cmc", "moco", "simclr", "la"])
@pytest.mark.parametrize("sampler", ["uniform", "ring"])
def test_false_negative_share_counts_the_negatives_that_entered_the_loss(monkeypatch, name, sampler):
    """The diagnostic is the share of same-label entries among exactly the negatives the loss
    used (labels 0, 1, 2 by bank row / image), computed here from the captured negatives."""
    m, views, index = make(name, sampler, b=32 if name == "simclr" else 16)
    labels = torch.arange(N) % 3
    m.set_labels(labels)
    if name == "moco":  # a queue of labelled keys, as after some steps
        m.queue.labels.copy_(torch.arange(N) % 3)
    if name in ("ir", "cmc"):
        calls = capture(monkeypatch, getattr(methods, name), "bank_logits")
        _, metrics = m(views, index, 0.0)
        drawn = torch.cat([out[2] for _, _, out in calls])
        anchors = labels[index].repeat(len(calls))
        expected = (labels[drawn] == anchors[:, None]).float().mean(1).mean().item()
    elif name == "la":
        sim, background, exclude = masked_loss_inputs(monkeypatch, name, sampler)
        _, metrics = m(views, index, 0.0)
        background[torch.arange(len(exclude)), exclude] = False
        expected = expected_share(labels[exclude], labels, background)
    elif name == "moco":
        sim, mask, _ = masked_loss_inputs(monkeypatch, name, sampler)
        _, metrics = m(views, index, 0.0)
        mask = torch.ones_like(sim, dtype=torch.bool) if mask is None else mask
        expected = expected_share(labels[index], labels, mask)
    else:  # simclr: the pool of each of the 2B anchors is the other 2B - 2 embeddings
        from pretrain.methods.simclr import others
        sim, mask, _ = masked_loss_inputs(monkeypatch, name, sampler)
        _, metrics = m(views, index, 0.0)
        both = labels[index].repeat(2)
        pool = others(both[None, :].expand(len(both), -1))
        mask = torch.ones_like(pool, dtype=torch.bool) if mask is None else mask
        expected = ((pool == both[:, None]) & mask).sum(1).div(mask.sum(1)).mean().item()
    assert metrics["false_negatives"].item() == pytest.approx(expected, abs=1e-6)
    if sampler == "uniform":  # a third of a pool with 3 balanced labels
        assert 0.2 < expected < 0.45


@pytest.mark.parametrize("name", ["ir", "cmc", "moco", "simclr"])
def test_neighbour_views_put_the_inner_core_on_the_positive_side(monkeypatch, name):
    """negatives.neighbor_views: the ranks [0, lo) the ring leaves out join the positive
    (pos_mask), the band stays the negatives; a brute-force sort gives the core."""
    sets = [f"method.name={name}", "negatives.sampler=ring", f"negatives.outer={OUTER}", f"negatives.inner={INNER}",
            "negatives.num=64", f"method.moco.queue_size={N}", "model.feat_dim=16", "negatives.neighbor_views=true"]
    cfg = config.load(None, sets)
    torch.manual_seed(0)
    m = methods.build(cfg, N, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    b = 32 if name == "simclr" else 16
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
    views, index = [x, x + 0.3 * torch.randn(b, 3, 32, 32, generator=g)], torch.arange(b) * 5
    mod = getattr(methods, name)
    losses = capture(monkeypatch, strategies, "info_nce")
    drawn = capture(monkeypatch, mod, "bank_logits") if name in ("ir", "cmc") else None
    m(views, index, 0.0)
    for i, (args, kwargs, _) in enumerate(losses):
        neighbours = kwargs["pos_mask"]
        assert neighbours is not None and neighbours.any(1).all()
        if drawn is not None:  # the core's rows follow the K drawn negatives
            q, rows = drawn[i][0][0], drawn[i][0][1]
            sim = q.detach() @ rows.T
            cols = args[1].detach()[:, 64:]
            lo, _ = official_limits(N - 1, OUTER, INNER)
            assert cols.shape[1] == lo and neighbours[:, 64:].all() and not neighbours[:, :64].any()
            for row, own, got in zip(sim, index, cols):
                order = [j for j in torch.argsort(row, descending=True).tolist() if j != int(own)]
                assert torch.allclose(got.sort().values, row[order[:lo]].sort().values, atol=1e-5)
        else:
            sim, mask = args[1].detach(), args[3]
            lo, _ = official_limits(sim.shape[1], OUTER, INNER)
            top = sim.topk(lo, dim=1).indices
            expected = torch.zeros_like(mask).scatter_(1, top, True)
            assert torch.equal(neighbours, expected) and not (neighbours & mask).any()


def test_neighbour_views_need_an_exact_ring():
    with pytest.raises(config.ConfigError, match="neighbor_views"):
        config.load(None, ["negatives.neighbor_views=true"])  # uniform: there is no core
    with pytest.raises(config.ConfigError, match="neighbor_views"):
        config.load(None, ["negatives.neighbor_views=true", "negatives.sampler=ring", "method.name=la"])
