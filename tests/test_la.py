"""Local Aggregation as the original (neuroailab/LocalAggregation): its background is the 4,096
nearest rows of the bank that actually trains, the anchor's own among them (top_k over the
whole bank), and it starts from IR, clustering first the bank that IR wrote."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pretrain import config, data, methods
from pretrain.kmeans import spherical_kmeans
from pretrain.methods import la
from pretrain.negatives import NegativeSampler, band_limits

ROOT = Path(__file__).parent.parent


def capture(monkeypatch, name, events, tag):
    """Record (tag, args, output) of pretrain.methods.la.<name> in `events`, in call order."""
    real = getattr(la, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        events.append((tag, [a.clone() if torch.is_tensor(a) else a for a in args], out))
        return out
    monkeypatch.setattr(la, name, spy)


def build(cfg, n):
    torch.manual_seed(0)
    return methods.build(cfg, n, NegativeSampler.from_config(cfg.negatives, cfg.train.seed, "cpu"))


# ---------------------------------------------------------------- the background (item A)

@pytest.mark.parametrize("preset", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("configs/*/*_la_*.yaml")
                                          if p.parent.name in ("mini", "gpu")))
def test_la_presets_background_on_their_real_training_set(monkeypatch, preset):
    """Each mini and gpu LA preset, built on the training set its loader really gives (N rows):
    with the ball, each anchor's background is its own row and its min(4095, N - 1) nearest
    others (the original's 4,096 nearest rows, capped at the bank); with the ring, the ring's
    band of the N - 1 others, as for every method."""
    cfg = config.load(ROOT / preset)
    n = len(data.subset(data.load(cfg.data.dataset, cfg.data.root, data.info(cfg.data.dataset).pretrain), cfg.data.limit))
    assert n == {"photo_patches": cfg.data.limit or 5000, "mnist5k": 4000}[cfg.data.dataset]
    m = build(cfg, n)
    m.epoch_start(cfg.method.la.warm_start_epochs)  # the first LA epoch
    events = []
    capture(monkeypatch, "aggregation_loss", events, "la")
    index = torch.tensor([0, 7, n // 2, n - 1])
    x = torch.rand(len(index), 3, cfg.data.image_size, cfg.data.image_size, generator=torch.Generator().manual_seed(1))
    m([x], index, float(cfg.method.la.warm_start_epochs))
    (_, (sim, _, background, _), _), = events
    rows = torch.arange(len(index))
    assert background[rows, index].all()
    others = background.clone()
    others[rows, index] = False
    if cfg.negatives.sampler == "ball":
        assert (others.sum(1) == min(4095, n - 1)).all()
        pool = sim.detach().clone()
        pool[rows, index] = float("nan")
        inside = torch.where(others, pool, float("inf")).amin(1)
        outside = torch.where(~others & ~pool.isnan(), pool, float("-inf")).amax(1)
        assert (inside >= outside).all()  # the nearest rows, nothing nearer left out
    else:
        assert m.sampler.outer_final == cfg.negatives.outer  # (mini: annealed, as every method's ring)
        lo, hi = band_limits(n - 1, *m.sampler.fractions(cfg.method.la.warm_start_epochs))
        assert (others.sum(1) == hi - lo).all()


@pytest.mark.parametrize("preset", sorted(p.name for p in ROOT.glob("configs/paper/*_la_ball*.yaml")))
def test_paper_la_ball_presets_keep_the_4095_nearest_others(preset):
    """The paper datasets are not on disk: LA built on a bank of their documented training-set
    sizes (configs/groups/data); for ImageNet's 1.28M rows (a 0.66 GB bank) LA's rule applied
    to the run's sampler as LA.__init__ applies it."""
    cfg = config.load(ROOT / "configs/paper" / preset)
    n = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000, "imagenet": 1_281_167}[cfg.data.dataset]
    if n <= 105_000:
        sampler = build(cfg, n).sampler
    else:
        sampler = NegativeSampler.from_config(cfg.negatives, 0, "cpu")
        sampler.outer_final = la.ball_outer(cfg.method.la.background, n - 1)
    assert band_limits(n - 1, *sampler.fractions()) == (0, 4095)
    index = torch.tensor([0, n - 1])
    mask = sampler.mask(torch.randn(2, n, generator=torch.Generator().manual_seed(0)), exclude=index)
    assert (mask.sum(1) == 4095).all() and not mask[torch.arange(2), index].any()


def test_ball_rule_counts_exactly():
    """min(background - 1, N - 1) others for any N: the sampler's truncation never drops one."""
    for background in (2, 3, 100, 4096):
        for n in [2, 3, 10, 99, 100, 101, 3000, 4000, 4095, 4096, 4097, 5000, 50_000, 105_000, 1_281_167]:
            assert band_limits(n - 1, la.ball_outer(background, n - 1), 0.0) == (0, min(background - 1, n - 1))


def test_negatives_outer_is_an_error_with_las_ball():
    cfg = config.load(None, ["method.name=la", "negatives.sampler=ball", "negatives.outer=0.8192"])
    with pytest.raises(config.ConfigError, match=r"^key 'negatives.outer' = 0.8192 .*method.la.background = 4096"):
        build(cfg, 64)
    build(config.load(None, ["method.name=la", "negatives.sampler=ring", "negatives.outer=0.5"]), 64)  # the ring's own


# ---------------------------------------------------------------- the warm start (item B)

def test_warm_start_trains_ir_and_la_first_clusters_the_bank_ir_wrote(monkeypatch, tmp_path):
    """A real training run, 1 warm-start epoch then 1 LA epoch: the warm start's steps are IR
    (uniform draws, never the anchor's own row, InfoNCE) and never aggregation; the first
    clustering, at epoch 1, is of exactly the bank those IR steps wrote (replayed here from
    the initial bank and the embeddings IR saw), and the first LA step's close set is that
    clustering's. The logged losses are those of the functions that ran."""
    from pretrain.__main__ import main as pretrain_main
    events = []
    capture(monkeypatch, "bank_logits", events, "draw")
    capture(monkeypatch, "info_nce", events, "ir")
    capture(monkeypatch, "aggregation_loss", events, "la")
    capture(monkeypatch, "spherical_kmeans", events, "kmeans")
    real_forward = la.LA.forward

    def forward(self, views, index, epoch):
        events.append(("step", [index.clone(), epoch], None))
        return real_forward(self, views, index, epoch)
    monkeypatch.setattr(la.LA, "forward", forward)
    sets = ["name=warm", "method.name=la", "negatives.sampler=ball", "method.la.warm_start_epochs=1",
            "method.la.clusters=4", "method.la.clusterings=2", "data.dataset=photo_patches", "data.limit=64",
            "data.workers=0", "optim.batch_size=16", "optim.epochs=2", "model.feat_dim=16", "negatives.num=32",
            "train.knn_every=0", "train.log_every=1"]
    args = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for s in sets:
        args += ["--set", s]
    assert pretrain_main(args) == 0
    tags = [e[0] for e in events]
    assert tags == ["step", "draw", "ir"] * 4 + ["kmeans"] * 2 + ["step", "la"] * 4
    steps = [e[1] for e in events if e[0] == "step"]
    assert [epoch for _, epoch in steps] == [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75]
    draws = [e for e in events if e[0] == "draw"]
    for (_, (_, _, index, sampler, k, _), (_, neg, drawn, _)) in draws:
        assert sampler.kind == "uniform" and k == 32 and neg.shape == (16, 32)  # LA's own sampler is the ball
        assert not (drawn == index[:, None]).any()
    # the bank IR wrote: the initial bank (the method's seeded generator) and IR's momentum-0.5 writes
    bank = F.normalize(torch.randn(64, 16, generator=torch.Generator().manual_seed(1)), dim=1)  # train.seed 0 + 1
    assert torch.equal(draws[0][1][1], bank)
    for (_, (q, _, index, *_), _) in draws:
        bank[index] = F.normalize(0.5 * bank[index] + 0.5 * q.detach(), dim=1)
    clusterings = [e for e in events if e[0] == "kmeans"]
    written = clusterings[0][1][0]
    assert torch.allclose(written, bank, atol=1e-6)
    assert (written != draws[0][1][1]).any(1).all()  # every row was written by the warm start
    for c, (_, (rows, k, iters, _), labels) in enumerate(clusterings):
        assert torch.equal(rows, written) and (k, iters) == (4, 10)
        assert torch.equal(labels, spherical_kmeans(bank, 4, 10, torch.Generator().manual_seed(1 * 31 + c)))
    (index, _), (_, close, _, _) = steps[4], events[tags.index("la")][1]
    expected = torch.zeros_like(close)
    for _, _, labels in clusterings:
        expected |= labels[None, :] == labels[index][:, None]
    assert torch.equal(close, expected)
    log = [json.loads(line) for line in (tmp_path / "runs/warm/log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "outer" in e]
    assert losses == pytest.approx([e[2].item() for e in events if e[0] in ("ir", "la")], rel=1e-6)


def test_warm_start_false_negatives_are_the_ir_draws(monkeypatch):
    """During the warm start the diagnostic is the share of same-label rows among IR's draws."""
    cfg = config.load(None, ["method.name=la", "negatives.sampler=ring", "negatives.num=32", "model.feat_dim=16",
                             "method.la.clusters=4", "method.la.warm_start_epochs=1"])
    m = build(cfg, 64)
    labels = torch.arange(64) % 3
    m.set_labels(labels)
    events = []
    capture(monkeypatch, "bank_logits", events, "draw")
    index = torch.arange(16) * 4
    _, metrics = m([torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))], index, 0.5)
    (_, _, (_, _, drawn, _)), = events
    expected = (labels[drawn] == labels[index][:, None]).float().mean(1).mean().item()
    assert metrics["false_negatives"].item() == pytest.approx(expected, abs=1e-6)


def test_clustering_waits_for_the_warm_start_and_a_resumed_epoch_keeps_its_clusters():
    cfg = config.load(None, ["method.name=la", "model.feat_dim=16", "method.la.clusters=4",
                             "method.la.warm_start_epochs=2"])
    m = build(cfg, 64)
    for epoch in (0, 1):
        m.epoch_start(epoch)
        assert int(m.clustered_epoch) == -1 and not m.labels.any()
    m.epoch_start(2)
    labels = m.labels.clone()
    assert int(m.clustered_epoch) == 2 and labels.any()
    m.bank.rows.copy_(F.normalize(torch.randn(64, 16), dim=1))
    m.epoch_start(2)  # resumed mid-epoch 2: its clusters come from the checkpoint, not the new bank
    assert torch.equal(m.labels, labels)


def test_no_warm_start_is_las_old_path(monkeypatch):
    """warm_start_epochs = 0: the first step is aggregation on clusters of the initial random
    bank (what LA did before the warm start), its loss computed here from the pieces: the
    seeded k-means of that bank and a brute-force background of the 7 nearest rows."""
    cfg = config.load(None, ["method.name=la", "negatives.sampler=ball", "method.la.background=7", "model.feat_dim=16",
                             "method.la.clusters=4", "method.la.warm_start_epochs=0"])
    m = build(cfg, 64)
    initial = m.bank.rows.clone()
    m.epoch_start(0)
    events = []
    capture(monkeypatch, "bank_logits", events, "draw")
    capture(monkeypatch, "aggregation_loss", events, "la")
    index = torch.arange(16) * 4
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loss, _ = m([x], index, 0.0)
    assert [e[0] for e in events] == ["la"]
    with torch.no_grad():
        sim = m.encoder(x) @ initial.T
    close = torch.zeros(16, 64, dtype=torch.bool)
    for c in range(3):
        labels = spherical_kmeans(initial, 4, 10, torch.Generator().manual_seed(c))
        close |= labels[None, :] == labels[index][:, None]
    background = torch.zeros_like(close)
    for i, row in enumerate(sim):
        order = [j for j in torch.argsort(row, descending=True).tolist() if j != int(index[i])]
        background[i, [int(index[i])] + order[:6]] = True
    logits = sim / cfg.method.temperature
    expected = (torch.logsumexp(logits.masked_fill(~background, float("-inf")), 1)
                - torch.logsumexp(logits.masked_fill(~(background & close), float("-inf")), 1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
