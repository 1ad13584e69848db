"""Known answers for the methods (IR, MoCo, SimCLR, CMC, LA) where mutation testing found the
suite blind (docs/mutation.md)."""
import pytest
import torch
import torch.nn.functional as F

from pretrain import config, methods
from pretrain.methods.base import bank_logits, false_negatives
from pretrain.methods.la import ball_outer
from pretrain.negatives import NegativeSampler, band_limits


def build(name, n=40, **over):
    sets = [f"method.name={name}", "negatives.num=24", "method.moco.queue_size=48", "optim.batch_size=16",
            "model.feat_dim=8", "method.la.clusters=4", "method.la.background=8"]
    cfg = config.load(None, sets + [f"{k}={v}" for k, v in over.items()])
    return methods.build(cfg, n, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))


@pytest.mark.parametrize("name,pool,drawn", [("ir", 39, 24), ("cmc", 39, 24), ("la", 39, 0), ("moco", 48, 0),
                                             ("simclr", 30, 0)])
def test_pool_and_draws_of_each_method(name, pool, drawn):
    """The pool an anchor's band is cut from (40 images, its own left out; MoCo's 48 queued keys;
    SimCLR's 2 x 16 - 2 other views of the batch) and the negatives drawn from the band (IR, CMC:
    K; IR with the official negatives K - 1, its partition's K-th term being the positive; the
    masking methods use the whole band)."""
    m = build(name)
    assert m.pool_size() == pool and m.negatives_drawn() == drawn
    if name == "ir":
        assert build(name, **{"method.ir.official_negatives": "true"}).negatives_drawn() == 23


def test_ball_outer_keeps_background_minus_one_others():
    assert ball_outer(10, 5) == ball_outer(6, 5) == 1.0  # a pool no larger than the ball: all of it
    assert ball_outer(5, 10) == 0.45
    for background, pool in ((4096, 49_999), (4096, 4095), (128, 511), (2, 7)):
        assert band_limits(pool, ball_outer(background, pool), 0.0) == (0, min(background - 1, pool))


def test_la_warm_start_is_ir_against_the_bank_and_writes_it():
    """During the warm start LA's step is IR's: the loss is InfoNCE against K rows of the bank,
    and step_end writes this batch's embeddings into its rows at LA's momentum 0.5."""
    torch.manual_seed(0)
    m = build("la", **{"method.la.warm_start_epochs": 2})
    m.epoch_start(0)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    index = torch.tensor([3, 7, 11, 12, 20, 31])
    before = m.bank.rows.clone()
    with torch.no_grad():
        q = F.normalize(m.encoder(x), dim=1)
    loss, _ = m([x], index, 0.0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.equal(m.bank.rows, before)  # written after the optimizer step, not before
    m.step_end()
    want = F.normalize(0.5 * before[index] + 0.5 * q, dim=1)
    assert torch.allclose(m.bank.rows[index], want, atol=1e-5)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(m.bank.rows[untouched], before[untouched])


@pytest.mark.parametrize("name,extra", [("ir", {}), ("ir", {"negatives.estimate": 8}),
                                        ("ir", {"negatives.neighbor_views": "true"}), ("cmc", {}), ("moco", {}),
                                        ("moco", {"negatives.neighbor_views": "true"}), ("simclr", {}),
                                        ("simclr", {"negatives.neighbor_views": "true"}), ("la", {})],
                         ids=["ir", "ir-estimated", "ir-neighbour-views", "cmc", "moco", "moco-neighbour-views",
                              "simclr", "simclr-neighbour-views", "la"])
def test_every_method_asks_the_sampler_for_the_band_at_its_epoch(name, extra):
    """An anneal makes the band depend on the epoch: every call a method's step makes to its
    sampler (the subsample, the band, the core) must carry the step's epoch (2.5 here), not the
    default 0 or none."""
    over = {"negatives.sampler": "ring", "negatives.outer": 0.25, "negatives.inner": 0.2,
            "negatives.anneal.schedule": "linear", "negatives.anneal.epochs": 4, "method.la.warm_start_epochs": 0,
            **extra}
    m = build(name, n=40, **over)
    m.epoch_start(2)
    asked, real = [], m.sampler.fractions
    m.sampler.fractions = lambda epoch=0.0: asked.append(epoch) or real(epoch)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    m([x, x + 0.1 * torch.randn(8, 3, 32, 32, generator=g)], torch.arange(8) * 3, 2.5)
    assert asked and set(asked) == {2.5}


def test_cmc_contrasts_both_halves_of_the_first_view_and_writes_both_banks():
    """CMC: L and ab halves of views[0] through their own heads, each contrasted against the
    other's bank; the loss is the two directions' sum, logged apart; step_end writes each half's
    embedding into its own bank at momentum 0.5."""
    torch.manual_seed(0)
    m = build("cmc")
    m.epoch_start(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    index = torch.tensor([1, 4, 9, 16, 25, 36])
    with torch.no_grad():
        f_l, f_ab = m.encoder.features(x, split=True)
        z_l, z_ab = F.normalize(m.encoder.head["l"](f_l), dim=1), F.normalize(m.encoder.head["ab"](f_ab), dim=1)
    old_l, old_ab = m.bank_l.rows.clone(), m.bank_ab.rows.clone()
    loss, metrics = m([x, torch.zeros_like(x)], index, 0.0)  # a second view, if any, is not CMC's
    assert {"loss_l", "loss_ab"} <= set(metrics)
    assert loss.item() == pytest.approx((metrics["loss_l"] + metrics["loss_ab"]).item(), rel=1e-6)
    m.step_end()
    assert torch.allclose(m.bank_l.rows[index], F.normalize(0.5 * old_l[index] + 0.5 * z_l, dim=1), atol=1e-5)
    assert torch.allclose(m.bank_ab.rows[index], F.normalize(0.5 * old_ab[index] + 0.5 * z_ab, dim=1), atol=1e-5)


# ---------------------------------------------------------------- pretrain/methods/base.py helpers

def test_false_negatives_share_of_same_label_negatives_by_hand():
    anchor = torch.tensor([0, 1, -1, 2])
    pool = torch.tensor([0, 0, 1, 2, -1, 1])
    # drawn: anchor 0 drew rows 0, 2, 4 (labels 0, 1, unknown): 1 of 2 known; anchor 1: rows 2, 3, 5: 2 of 3;
    # anchor 2 is unknown; anchor 3 drew rows 4, 4, 4: no known label, left out
    drawn = torch.tensor([[0, 2, 4], [2, 3, 5], [0, 1, 2], [4, 4, 4]])
    got = false_negatives(anchor, pool, drawn=drawn)["false_negatives"]
    assert got.item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    # a mask over the shared pool: anchor 0 keeps rows 0, 1, 3 (2 of 3), anchor 1 rows 2, 3 (1 of 2), anchor 3 row 3 (1 of 1)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, [0, 1, 3]] = mask[1, [2, 3]] = mask[2, :] = mask[3, [3, 4]] = True
    assert false_negatives(anchor, pool, mask=mask)["false_negatives"].item() == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # without a mask, every known pool entry; each anchor's own pool (B, N)
    assert false_negatives(anchor, pool)["false_negatives"].item() == pytest.approx((2 / 5 + 2 / 5 + 1 / 5) / 3)
    own_pools = torch.tensor([[0, 0, 0], [1, 2, 2], [0, 0, 0], [-1, 2, 0]])
    assert false_negatives(anchor, own_pools)["false_negatives"].item() == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert false_negatives(None, pool) == false_negatives(anchor, None) == {}
    assert false_negatives(torch.tensor([-1, -1]), pool) == {}  # no known label at all


def test_bank_logits_positive_negatives_and_neighbours_against_the_rows():
    """The positive is the anchor's own row, the K others are the rows drawn (never the anchor's),
    and with neighbour views the inner core's rows follow them, marked as neighbours."""
    g = torch.Generator().manual_seed(0)
    rows = F.normalize(torch.randn(30, 4, generator=g), dim=1)
    q = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    index = torch.tensor([2, 11, 29])
    for sampler in (NegativeSampler("uniform", seed=1), NegativeSampler("ring", 0.5, 0.2, seed=1),
                    NegativeSampler("ring", 0.5, 0.2, seed=1, neighbor_views=True)):
        pos, neg, drawn, neighbours = bank_logits(q, rows, index, sampler, 5, 0.0)
        assert torch.allclose(pos, (q * rows[index]).sum(1), atol=1e-6)
        assert drawn.shape == (3, 5) and not (drawn == index[:, None]).any()
        lo = int(0.2 * int(0.5 * 29)) if sampler.neighbor_views else 0
        assert neg.shape == (3, 5 + lo)
        assert torch.allclose(neg[:, :5], torch.einsum("bd,bkd->bk", q, rows[drawn]), atol=1e-6)
        if not sampler.neighbor_views:
            assert neighbours is None
            continue
        assert neighbours.tolist() == [[False] * 5 + [True] * lo] * 3
        core = (q @ rows.T).index_put_((torch.arange(3), index), torch.tensor(-2.0)).topk(lo, dim=1).values
        assert torch.allclose(neg[:, 5:].sort(dim=1).values, core.sort(dim=1).values, atol=1e-6)


def test_bank_logits_in_estimated_mode_draws_from_the_subsample_the_sampler_picks():
    """Estimated mode: the K negatives are what the sampler draws from its own subsample of the
    bank (a twin sampler with the same seed, asked the same, draws the same rows)."""
    g = torch.Generator().manual_seed(0)
    rows = F.normalize(torch.randn(200, 4, generator=g), dim=1)
    q = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    index = torch.tensor([5, 50, 150])
    make = lambda: NegativeSampler("ring", 0.5, 0.2, schedule="linear", anneal_epochs=4, seed=3, estimate=16)  # noqa: E731
    _, neg, drawn, _ = bank_logits(q, rows, index, make(), 6, 2.0)
    twin = make()
    cols = twin.subsample(200, 6, 2.0)
    assert cols is not None and len(cols) < 200
    want = twin.sample(6, 200, q @ rows[cols].T, exclude=index, epoch=2.0, batch=3, columns=cols)
    assert torch.equal(drawn, want) and torch.allclose(neg, torch.einsum("bd,bkd->bk", q, rows[drawn]), atol=1e-6)


def test_labels_of_the_batch_for_the_diagnostic():
    m = build("ir")
    assert m.labels_of(torch.tensor([1, 2])) is None
    m.set_labels(torch.tensor([5, 6, 7], dtype=torch.int32))
    assert m.labels_of(torch.tensor([2, 0])).tolist() == [7, 5] and m.image_labels.dtype == torch.long
    m.set_labels(None)
    assert m.image_labels is None


# ---------------------------------------------------------------- MoCo and the banks' state

def two_views(b=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
    return [x, x + 0.3 * torch.randn(b, 3, 32, 32, generator=g)]


@pytest.mark.parametrize("name,memory", [("moco", "queue.keys"), ("ir", "bank.rows"), ("cmc", "bank_ab.rows")])
def test_memories_start_from_the_runs_seed_not_the_global_generator(name, memory):
    """Every process of a run starts the same queue and banks: from train.seed, whatever the global
    generator's state."""
    def first(seed):
        torch.manual_seed(seed)
        obj = build(name)
        for attr in memory.split("."):
            obj = getattr(obj, attr)
        return obj.clone()
    assert torch.equal(first(0), first(1))


def test_moco_key_encoder_is_an_ema_of_the_query_encoder_outside_the_optimizer():
    m = build("moco", **{"method.moco.key_momentum": 0.9})
    assert not any(p.requires_grad for p in m.key_encoder.parameters())  # the trainer optimizes requires_grad only
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(0.01)  # as after an optimizer step
    before_q = [p.clone() for p in m.encoder.parameters()]
    before_k = [p.clone() for p in m.key_encoder.parameters()]
    m(two_views(), torch.arange(8), 0.0)
    for k, k0, q0 in zip(m.key_encoder.parameters(), before_k, before_q):
        assert torch.allclose(k, 0.9 * k0 + 0.1 * q0, atol=1e-6)


def test_moco_pushes_the_labels_of_its_keys_and_flags_an_anchor_left_only_its_own_keys():
    m = build("moco")
    m.set_labels(torch.arange(40) % 5)
    index = torch.arange(8) + 3
    m(two_views(), index, 0.0)
    m.step_end()
    assert m.queue.labels[:8].tolist() == (index % 5).tolist() and m.queue.labels[8:].tolist() == [-1] * 40
    m.set_labels(None)
    m(two_views(), index, 0.0)
    m.step_end()
    assert m.queue.labels[8:16].tolist() == [-1] * 8  # keys of unknown labels
    # a normal step does not flag the band, and does not clear an earlier flag
    m.sampler.empty.zero_()
    m(two_views(), index, 0.0)
    assert not m.sampler.empty
    m.sampler.empty.fill_(True)
    m(two_views(), index, 0.0)
    assert m.sampler.empty
    # anchor 0's own keys fill the queue: its only negatives would be itself
    m.sampler.empty.zero_()
    m.queue.index.fill_(int(index[0]))
    m(two_views(), index, 0.0)
    assert m.sampler.empty


def test_a_strategy_gets_its_own_settings():
    m = build("ir", **{"negatives.objective": "dcl", "negatives.dcl.tau_plus": 0.05})
    seen, real = [], m.objective
    m.objective = lambda *args: seen.append(args) or real(*args)
    m(two_views(), torch.arange(8), 0.0)
    assert len(seen) == 1 and seen[0][5] is m.objective_settings and seen[0][5].tau_plus == 0.05


def test_simclr_on_two_ranks_takes_the_global_batchs_loss(monkeypatch):
    """Under DDP rank r holds the global batch's positions r::2 (the sampler deals them so); it
    gathers both ranks' embeddings, with gradients, back into global order and takes the loss over
    its own rows. The mean over the two ranks is the one-process loss of the global batch (with
    the ring's band), and the gradient reaches the rank's own embeddings. tests/test_ddp.py checks
    the same with two processes; this runs the rank arithmetic where a unit test can see it."""
    import torch.distributed.nn.functional as dist_fn

    from pretrain import distributed
    torch.manual_seed(0)
    m = build("simclr", **{"negatives.sampler": "ring", "negatives.outer": 0.5, "negatives.inner": 0.1,
                           "optim.batch_size": 8}).eval()  # running BN statistics: an embedding is its image's
    m.epoch_start(0)
    m.set_labels(torch.tensor([0, 0, 1, 1, 2, 3, 3, 3]))  # the false-negative share needs the same order
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    views, index = [x, x + 0.3 * torch.randn(8, 3, 32, 32, generator=g)], torch.arange(8)
    one, fn_one = m(views, index, 0.0)
    with torch.no_grad():
        halves = {q: m.encoder(torch.cat([v[q::2] for v in views])).split(4) for q in (0, 1)}
    losses, fns = [], []
    for r in (0, 1):
        def all_gather(t, r=r):  # what each rank contributes to this half (view 1 or 2), in rank order
            half = 0 if torch.allclose(t, halves[r][0], atol=1e-6) else 1
            return [t if q == r else halves[q][half] for q in (0, 1)]
        monkeypatch.setattr(distributed, "world", lambda: 2)
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        monkeypatch.setattr(distributed, "gather", lambda t: index)
        monkeypatch.setattr(dist_fn, "all_gather", all_gather)
        m.zero_grad()
        loss, fn = m([v[r::2] for v in views], index[r::2], 0.0)
        fns.append(fn["false_negatives"])
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
        losses.append(loss.detach())
    assert torch.allclose((losses[0] + losses[1]) / 2, one.detach(), atol=1e-6), (losses, one)
    assert torch.allclose((fns[0] + fns[1]) / 2, fn_one["false_negatives"], atol=1e-6), (fns, fn_one)


@pytest.mark.parametrize("warm_start", [0, 1])
def test_la_writes_each_anchors_embedding_to_its_own_bank_row(warm_start):
    """After LA's step (and during its IR warm start) row i of the bank holds image i's
    embedding, at momentum 0 exactly; the other rows are unchanged."""
    torch.manual_seed(0)
    m = build("la", **{"method.la.warm_start_epochs": warm_start, "method.la.bank_momentum": 0.0}).eval()
    m.epoch_start(warm_start)  # LA's own loss clusters the bank first
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    index = torch.tensor([3, 17, 8, 30])
    before = m.bank.rows.clone()
    m([x, x], index, 0.0)
    m.step_end()
    with torch.no_grad():
        want = m.encoder(x)
    others = torch.ones(len(before), dtype=torch.bool)
    others[index] = False
    assert torch.allclose(m.bank.rows[index], want, atol=1e-6)
    assert torch.equal(m.bank.rows[others], before[others])


# ---------------------------------------------------------------- survivors of the 12-07 run

def test_a_method_draws_its_initial_memories_from_seed_plus_one_and_keeps_no_labels_in_its_state():
    """seed + 1: apart from the weights' stream (seed), and what every checkpoint of a seed was
    drawn from; the diagnostic's image labels are set per run, not checkpointed."""
    for name in ("ir", "moco", "la"):
        m = build(name, **{"train.seed": 5})
        assert m.init_generator.initial_seed() == 6
        m.set_labels(torch.arange(40) % 4)
        assert not any(k.endswith("image_labels") for k in m.state_dict())
    assert build("la").labels.dtype == torch.long


def test_las_ball_keeps_background_minus_one_rows_of_the_bank():
    for n, background in ((100, 16), (12, 8)):  # (in the second, pools of 10 or 13 rows would keep 8 or 6)
        m = build("la", n=n, **{"method.la.background": background, "negatives.sampler": "ball"})
        assert band_limits(n - 1, *m.sampler.fractions(0.0)) == (0, background - 1)


def test_mocos_queue_holds_at_least_one_batch():
    """Each step pushes a whole batch: a queue as long as the batch is enough; a shorter one is
    refused, naming its key."""
    assert config.load(None, ["method.name=moco", "method.moco.queue_size=32", "optim.batch_size=32"])
    with pytest.raises(config.ConfigError, match=r"key 'method.moco.queue_size' = 16, expected >= optim.batch_size \(32\)"):
        config.load(None, ["method.name=moco", "method.moco.queue_size=16", "optim.batch_size=32"])
