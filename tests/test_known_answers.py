"""Known answers for seven bugs that each change a printed number and that the rest of the suite
let through, or caught only by accident (issue 28): pairing by position, the wrong seed, the bank
update's renormalisation and momentum, the anneal's clock, kNN's top-k, and MoCo's queue order.
Each test computes its answer by hand, independently of the code under test."""
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from core import records
from pretrain import config, methods
from pretrain.knn import knn_predict
from pretrain.memory import MemoryBank
from pretrain.negatives import NegativeSampler
from reports import frames, tables

# ---------------------------------------------------------------- reports: pairing by seed


def eval_rec(run, sampler, top1, seed, record_seed=None):
    """An evaluate record of MoCo pretrained with `seed` (config.train.seed); its top-level
    `seed` is `record_seed`: the probe's own seed in a real evaluate record (0), not the model's."""
    cfg = {"data": {"dataset": "cifar10"}, "method": {"name": "moco", "temperature": 0.07},
           "negatives": {"sampler": sampler, "outer": 0.1, "inner": 0.1}, "optim": {"epochs": 200},
           "train": {"seed": seed}}
    return records.make(run, "evaluate", "linear_cached_i300_cifar10", "cifar10", {"top1": top1, "top5": 99.0}, cfg,
                        seed=seed if record_seed is None else record_seed)


# seeds as the runs are named on disk: sorted as text, s0, s1, s10, s2 (not in seed order)
BASE = {0: 60.0, 1: 61.5, 10: 64.0, 2: 59.0}
RING = {0: 63.0, 1: 61.0, 10: 70.0, 2: 62.5, 5: 90.0}  # seed 5: no baseline run, in no pair


def paired_by_hand():
    seeds = sorted(set(BASE) & set(RING))
    d = [RING[s] - BASE[s] for s in seeds]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    from scipy.stats import t
    half = t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
    return seeds, mean, mean - half, mean + half


def delta_row(recs):
    numbers = tables.cells(tables.with_variants(tables.evaluations(recs), ["eval_id"]), "eval_id", "top1")
    rows = numbers[numbers["delta"]]
    assert len(rows) == 1
    return rows.iloc[0]


def test_differences_pair_runs_by_seed_whatever_the_record_order():
    """Seeds 0, 1, 2, 10 on both sides (and a ring seed 5 with no baseline), each side's records
    in its own shuffled order: every order gives the differences of the same-seed runs, by hand.
    Pairing by position would pair e.g. ring seed 2 with baseline seed 10."""
    seeds, mean, low, high = paired_by_hand()
    base = [eval_rec(f"u_s{s}", "uniform", v, s) for s, v in sorted(BASE.items(), key=lambda kv: str(kv[0]))]
    ring = [eval_rec(f"r_s{s}", "ring", v, s) for s, v in RING.items()]
    rng = random.Random(0)
    for _ in range(4):
        rng.shuffle(base)
        rng.shuffle(ring)
        row = delta_row(ring + base)
        assert row["seeds"] == seeds == [0, 1, 2, 10] and row["n"] == 4
        assert row["mean"] == pytest.approx(mean) == 3.0  # (3 - 0.5 + 3.5 + 6) / 4
        assert (row["low"], row["high"]) == pytest.approx((low, high))


def test_the_pretraining_seed_not_the_records_own_seed_identifies_a_run():
    """Real evaluate records carry the probe's seed (0) at the top level, Meta-Dataset records the
    class split's: the run's seed is config.train.seed. Reading the top-level one would make the
    four pretraining seeds one seed (n = 1, and `latest` would keep one record per model)."""
    seeds, mean, low, high = paired_by_hand()
    recs = [eval_rec(f"u_s{s}", "uniform", v, s, record_seed=0) for s, v in BASE.items()]
    recs += [eval_rec(f"r_s{s}", "ring", v, s, record_seed=7) for s, v in RING.items()]
    assert [frames.identity(r)["seed"] for r in recs] == [*BASE, *RING]
    assert len(frames.latest(recs)) == len(recs)  # no run is a copy of another
    row = delta_row(recs)
    assert row["seeds"] == seeds and row["n"] == 4
    assert (row["mean"], row["low"], row["high"]) == pytest.approx((mean, low, high))


# ---------------------------------------------------------------- the memory bank


def bank_with(momentum, old, new):
    bank = MemoryBank(len(old) + 2, old.shape[1], momentum)
    bank.rows[: len(old)] = old
    untouched = bank.rows[len(old):].clone()
    bank.update(torch.arange(len(old)), new)
    return bank, untouched


def unit_rows(seed, n=4, d=8):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_bank_update_renormalises_the_average():
    """CMC and LA (momentum 0.5): row = normalize(0.5 old + 0.5 new), of norm 1. The average of
    two unit rows is shorter than 1 (here about 0.7), so skipping the renormalisation shows."""
    old, new = unit_rows(0), unit_rows(1)
    bank, untouched = bank_with(0.5, old, new)
    avg = 0.5 * old + 0.5 * new
    assert (avg.norm(dim=1) < 0.95).all()  # the test can tell the two apart
    assert torch.allclose(bank.rows[:4], avg / avg.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(bank.rows.norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(bank.rows[4:], untouched)


def test_bank_momentum_weighs_the_old_row():
    """momentum m keeps m of the old row: m = 0.9 gives normalize(0.9 old + 0.1 new), far from
    normalize(0.1 old + 0.9 new) (the two weights swapped), which equals it only at m = 0.5."""
    old, new = unit_rows(2), unit_rows(3)
    bank, _ = bank_with(0.9, old, new)
    want, swapped = F.normalize(0.9 * old + 0.1 * new, dim=1), F.normalize(0.1 * old + 0.9 * new, dim=1)
    assert ((want - swapped).norm(dim=1) > 0.3).all()
    assert torch.allclose(bank.rows[:4], want, atol=1e-6)
    # momentum 0 (official Ring IR) writes the new embedding itself
    bank, _ = bank_with(0.0, old, new)
    assert torch.allclose(bank.rows[:4], new, atol=1e-6)


# ---------------------------------------------------------------- kNN


def test_knn_votes_with_the_k_most_similar_rows_only():
    """k = 2 of 5 bank rows: the two nearest (classes 0 and 1) vote with exp(s / t); the other
    three (class 2, the two least similar among them) do not."""
    bank = F.normalize(torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.3, 0.0], [-1.0, 0.2, 0.0],
                                     [-1.0, -0.2, 0.1], [0.0, 0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 1, 2, 2, 2])
    query = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)
    t = 0.5
    sim = (query @ bank.T)[0]
    assert sorted(range(5), key=lambda j: -sim[j])[:2] == [0, 1]  # the nearest two, by hand
    want = torch.tensor([[math.exp(sim[0] / t), math.exp(sim[1] / t), 0.0]])
    got = knn_predict(query, bank, labels, 3, k=2, t=t)
    assert torch.allclose(got, want, rtol=1e-6)
    assert got.argmax(1).item() == 0
    # the same query against all five rows: class 2 gets the farthest three's votes
    every = knn_predict(query, bank, labels, 3, k=5, t=t)
    assert every[0, 2].item() == pytest.approx(sum(math.exp(sim[j] / t) for j in (2, 3, 4)), rel=1e-6)


# ---------------------------------------------------------------- MoCo's queue


def test_moco_loss_uses_the_queue_from_before_this_steps_keys():
    """The logits of a step are against the queue as it was before the step: this step's keys,
    its positives, join the queue only after the optimizer step (step_end). At the second step
    the queue holds the first step's keys. The loss is InfoNCE over the snapshot, by hand, with
    the positives q . k of the keys step_end pushed."""
    n, b = 40, 8
    cfg = config.load(None, ["method.name=moco", "negatives.sampler=uniform", f"method.moco.queue_size={n}",
                             "model.feat_dim=16", f"optim.batch_size={b}", "method.moco.key_momentum=0.9"])
    torch.manual_seed(0)
    m = methods.build(cfg, 64, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    m.epoch_start(0)
    g = torch.Generator().manual_seed(1)
    for step in range(2):
        x = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
        views, index = [x, x + 0.3 * torch.randn(b, 3, 32, 32, generator=g)], torch.arange(b) + b * step
        snapshot = m.queue.keys.clone()
        with torch.no_grad():
            q = m.encoder(views[0])  # train-mode BN: the query the step computes
        loss, _ = m(views, index, 0.0)
        assert torch.equal(m.queue.keys, snapshot)  # nothing pushed before the optimizer step
        m.step_end()
        k = m.queue.keys[b * step: b * (step + 1)]  # this step's keys, pushed after the earlier ones
        assert torch.equal(m.queue.keys[b * (step + 1):], snapshot[b * (step + 1):])
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ snapshot.T], dim=1) / m.t
        assert loss.item() == pytest.approx((torch.logsumexp(logits, 1) - logits[:, 0]).mean().item(), rel=1e-5)


# ---------------------------------------------------------------- the trainer's anneal clock


def test_the_anneal_runs_on_epochs_the_trainer_counts_from_the_step(tmp_path, monkeypatch):
    """A linear anneal of the outer edge from 1 to 0.1 over 2 epochs, 3 steps per epoch: the
    step-th update (from 1) runs at epoch (step - 1) / 3, which the method receives, the log
    records, and whose outer fraction, 1 - 0.9 (step - 1) / 6, the log's `outer` is."""
    from pretrain.__main__ import main as pretrain_main
    received = []
    real = methods.ir.IR.forward
    monkeypatch.setattr(methods.ir.IR, "forward", lambda self, views, index, epoch:
                        received.append(epoch) or real(self, views, index, epoch))
    sets = ["name=anneal", "method.name=ir", "data.dataset=photo_patches", "data.limit=96", "data.workers=0",
            "optim.batch_size=32", "optim.epochs=2", "model.feat_dim=16", "negatives.num=16",
            "negatives.sampler=ring", "negatives.outer=0.1", "negatives.inner=0.1", "negatives.anneal.schedule=linear",
            "negatives.anneal.epochs=2", "train.knn_every=0", "train.log_every=1"]
    args = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for s in sets:
        args += ["--set", s]
    assert pretrain_main(args) == 0
    log = [json.loads(line) for line in (tmp_path / "runs" / "anneal" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in log if "outer" in e]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    for e in steps:
        epoch = (e["step"] - 1) / 3
        assert e["epoch"] == pytest.approx(epoch)
        assert e["outer"] == pytest.approx(1.0 - 0.9 * epoch / 2) and e["inner"] == pytest.approx(0.1)
    assert received == pytest.approx([e["epoch"] for e in steps])
