import math

import pytest
import torch

from pretrain.negatives import SCHEDULES, NegativeSampler, anneal, band_limits


def official_limits(n, outer, inner):
    """The official code's band, transcribed independently of band_limits: truncation."""
    outer_idx = int(outer * n)
    inner_idx = int(inner * outer_idx)
    return inner_idx, outer_idx


def brute_force_band(sim, exclude, outer, inner):
    """The official code's way: a full descending sort of each anchor's pool."""
    out = []
    for i in range(sim.shape[0]):
        order = [j for j in torch.argsort(sim[i], descending=True).tolist() if exclude is None or j != int(exclude[i])]
        lo, hi = official_limits(len(order), outer, inner)
        out.append(order[lo:hi])
    return torch.tensor(out)


# pool sizes where rounding and truncation disagree (round would give [41, 410) at 4096,
# [655, 6554) at 65,536, [10, 100) at 999 + 1 excluded row)
@pytest.mark.parametrize("n,outer,inner,anchors", [(4096, 0.1, 0.1, 6), (65536, 0.1, 0.1, 2), (1000, 0.1, 0.1, 16),
                                                   (257, 0.3, 0.5, 16), (64, 1.0, 0.0, 16), (50, 0.05, 0.0, 16)])
@pytest.mark.parametrize("with_exclude", [True, False])
def test_fast_band_equals_full_sort(n, outer, inner, anchors, with_exclude):
    g = torch.Generator().manual_seed(n)
    sim = torch.randn(anchors, n, generator=g)
    exclude = torch.randint(n, (anchors,), generator=g) if with_exclude else None
    s = NegativeSampler("ring", outer, inner)
    band = s.band(sim, exclude)  # a set per anchor: compare in a canonical order
    assert torch.equal(band.sort(1).values, brute_force_band(sim, exclude, outer, inner).sort(1).values)


def test_band_marks_the_callers_similarities_only_as_scratch():
    g = torch.Generator().manual_seed(3)
    sim, exclude = torch.randn(8, 500, generator=g), torch.arange(8) * 11
    kept, s = sim.clone(), NegativeSampler("ring", 0.2, 0.1)
    expected = brute_force_band(sim, exclude, 0.2, 0.1).sort(1).values
    assert torch.equal(s.band(sim, exclude).sort(1).values, expected) and torch.equal(sim, kept)
    assert torch.equal(s.band(sim, exclude, scratch=True).sort(1).values, expected)
    assert torch.isneginf(sim[torch.arange(8), exclude]).all()  # marked in place, not copied


@pytest.mark.parametrize("kind", ["uniform", "ring"])
def test_ring_paths_never_read_the_device(kind):
    """No host sync in a training step (issue 17): on the meta device every operation whose
    result the host would have to read (.item(), bool(), boolean indexing) raises, so the
    exact band, core, mask and the estimated draws running there read nothing back."""
    b, n, k = 4, 1000, 16
    s = NegativeSampler(kind, 0.3, 0.1)
    s.empty = torch.zeros((), dtype=torch.bool, device="meta")
    sim, exclude = torch.empty(b, n, device="meta"), torch.arange(b, device="meta")
    assert s.sample(k, n, sim, exclude=exclude).shape == (b, k)
    assert s.sample(k, n, sim, exclude=exclude, scratch=True).device.type == "meta"
    assert s.mask(sim, exclude).shape == (b, n)
    if kind == "ring":
        lo, hi = band_limits(n - 1, 0.3, 0.1)
        assert s.band(sim, exclude).shape == (b, hi - lo) and s.core(sim, exclude).shape == (b, lo)
        cols = torch.arange(300, device="meta")
        assert s._sample_subsample(k, torch.empty(b, 300, device="meta"), exclude, 0.0, cols).shape == (b, k)


def test_band_limits_truncate_as_the_official_code():
    assert band_limits(4096, 0.1, 0.1) == (40, 409)      # rounding would give (41, 410)
    assert band_limits(65536, 0.1, 0.1) == (655, 6553)   # rounding would give (655, 6554)
    assert band_limits(999, 0.1, 0.1) == (9, 99)         # rounding would give (10, 100)
    assert band_limits(1000, 0.1, 0.1) == (10, 100)      # ranks 10..99: between the top 1% and top 10%
    assert band_limits(1000, 0.1, 0.0) == (0, 100)       # ball
    for n in (20, 100, 4095, 4096, 4097, 65535, 65536, 1_281_167):
        for outer, inner in ((0.1, 0.1), (0.29, 0.5), (0.5, 0.1), (1.0, 0.1), (0.05, 0.0)):
            assert band_limits(n, outer, inner) == official_limits(n, outer, inner), (n, outer, inner)
    # the one deviation: where outer * n < 1 the official band is empty; ours keeps the closest
    assert official_limits(10, 0.01, 0.5) == (0, 0) and band_limits(10, 0.01, 0.5) == (0, 1)


@pytest.mark.parametrize("kind", ["uniform", "ring", "ball"])
@pytest.mark.parametrize("outer", [1.0, 0.3])
@pytest.mark.parametrize("estimate", [0, 64])
def test_anchor_never_its_own_negative(kind, outer, estimate):
    """The anchor's own row sits in the middle of the band it would otherwise belong to (not
    at the top, where the inner cut alone would drop it), at the anneal start outer = 1.0
    and at a narrower ring, in exact and in estimated mode."""
    g = torch.Generator().manual_seed(0)
    b, n = 32, 2000
    sim = torch.randn(b, n, generator=g)
    idx = torch.arange(b) * 7
    lo, hi = band_limits(n, outer, 0.1 if kind == "ring" else 0.0)
    mid = sim.sort(1, descending=True).values[:, (lo + hi) // 2]
    sim[torch.arange(b), idx] = mid + 1e-4  # inside the band, not at its edge
    s = NegativeSampler(kind, outer, 0.1 if kind == "ring" else 0.0, seed=1, estimate=estimate)
    drawn = s.sample(500, n, sim, exclude=idx)
    assert drawn.shape == (b, 500)
    assert not (drawn == idx[:, None]).any()
    assert not s.mask(sim, idx)[torch.arange(b), idx].any()
    if estimate:  # drawing from a subsample that holds every anchor's own row
        cols = torch.cat([idx, torch.randperm(n, generator=g)[:1000]]).unique()
        cols = cols[torch.randperm(len(cols), generator=g)]
        drawn = s._sample_subsample(300, sim[:, cols], idx, 0.0, cols) if kind != "uniform" else drawn
        assert not (drawn == idx[:, None]).any()


def test_estimated_mode_at_anneal_start_keeps_the_bottom_of_the_pool():
    """outer = 1 (every anneal's start): the band runs down to the least similar row."""
    g = torch.Generator().manual_seed(2)
    sim = torch.randn(8, 50_000, generator=g)
    s = NegativeSampler("ring", 0.1, 0.1, schedule="linear", anneal_epochs=4, seed=0, estimate=1024)
    assert s.fractions(0.0)[0] == 1.0
    m = s.mask(sim, torch.arange(8))
    assert m[torch.arange(8), sim.argmin(1)].all()
    assert not m[torch.arange(8), torch.arange(8)].any()


def test_estimated_mode_survives_heavy_ties():
    """46% of a 65,536 pool tied at the top similarity (e.g. repeated keys): the estimated edges
    both land on the tied value, so the band would be empty and the loss zero. Those rows fall
    back to exact ranks: the band holds exactly hi - lo entries, the loss is not zero."""
    from pretrain.objectives import info_nce
    g = torch.Generator().manual_seed(3)
    b, n = 8, 65536
    sim = torch.rand(b, n, generator=g) * 0.5
    tied = torch.rand(b, n, generator=g) < 0.46
    sim[tied] = 0.9
    s = NegativeSampler("ring", 0.1, 0.1, seed=0, estimate=4096)
    low, high = s.edges(sim)
    assert (low == high).all()  # the collapse this test is about
    m = s.mask(sim)
    lo, hi = band_limits(n, 0.1, 0.1)
    assert (m.sum(1) == hi - lo).all()
    assert (sim[m] == 0.9).all()  # the exact band of a tied top is tied entries
    loss = info_nce(torch.full((b,), 0.95), sim, 0.07, m)
    assert loss.item() > 0.1


def test_an_empty_band_is_flagged_for_the_trainer(monkeypatch):
    """mask() never waits for the device: an anchor without negatives sets `empty`, which the
    trainer reads at its next check (and stops: tests/test_pipeline.py)."""
    s = NegativeSampler("ring", 0.1, 0.1, estimate=64)
    s.mask(torch.randn(4, 1000))
    assert not s.pop_empty()
    monkeypatch.setattr(s, "_estimated_mask", lambda sim, exclude, epoch: torch.zeros_like(sim, dtype=torch.bool))
    s.mask(torch.randn(4, 1000))
    assert s.pop_empty() and not s.pop_empty()  # read once, then cleared


def test_ring_samples_only_from_band_and_covers_it():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(4, 500, generator=g)
    s = NegativeSampler("ring", 0.1, 0.1, seed=0)
    band = s.band(sim)
    drawn = s.sample(4000, 500, sim)
    for i in range(4):
        assert set(drawn[i].tolist()) == set(band[i].tolist())  # 4000 draws over 45 entries


def test_full_band_equals_uniform():
    sim = torch.randn(8, 300)
    exclude = torch.randint(300, (8,))
    ring_full = NegativeSampler("ring", outer=1.0, inner=0.0)
    uniform = NegativeSampler("uniform")
    assert torch.equal(ring_full.mask(sim, exclude), uniform.mask(sim, exclude))
    drawn = uniform.sample(20000, 300, exclude=exclude)
    counts = torch.stack([torch.bincount(d, minlength=300) for d in drawn]).float()
    counts[torch.arange(8), exclude] = float("nan")
    expected = 20000 / 299
    assert counts.nanmean() == pytest.approx(expected, rel=1e-6)
    # every eligible entry is drawn at a rate consistent with uniform (6 sigma bound)
    assert (counts.nan_to_num(expected) - expected).abs().max() < 6 * math.sqrt(expected)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_selectable_and_monotone(schedule):
    from pretrain import config
    assert config.choices("negatives.anneal.schedule") == SCHEDULES  # the config accepts exactly these
    values = [anneal(schedule, e / 10, final=0.1, start=1.0, epochs=5) for e in range(0, 80)]
    assert values[0] == pytest.approx(1.0 if schedule != "none" else 0.1)
    assert values[-1] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
    if schedule not in ("none",):
        assert len(set(round(v, 9) for v in values)) > 2  # it really moves


def official_step_policy(total_steps, max_anneal_step, step_size=0.1, init_thres=1.0, min_thres=0.1):
    """The official StepThresholdPolicy's table (src/utils/policy.py), one value per optimizer
    step; its systems.py passes max_anneal_step = int(max_anneal_epoch * steps per epoch)."""
    import numpy as np
    schedule = np.arange(min_thres, init_thres + step_size, step_size)[::-1]
    schedule = np.repeat(schedule, int(max_anneal_step / len(schedule)))
    return np.concatenate([schedule, np.ones(total_steps - max_anneal_step + 1) * min_thres])


# (anneal epochs, total epochs, steps per epoch): the official CIFAR-10 run (50,000 / 256 =
# 195 steps, 100 of 200 epochs), shorter runs with plateau edges inside an epoch, and a
# fractional anneal whose edges a plain floor of the trainer's progress puts one step late
@pytest.mark.parametrize("anneal_epochs,epochs,steps", [(100, 200, 195), (3, 5, 10), (7, 9, 30), (20, 20, 1),
                                                        (1.8, 3, 50)])
def test_official_step_schedule_at_every_step(anneal_epochs, epochs, steps):
    table = official_step_policy(epochs * steps, int(anneal_epochs * steps))
    ours = [anneal("official_step", e + i / steps, final=0.1, start=1.0, epochs=anneal_epochs)  # the trainer's progress
            for e in range(epochs) for i in range(steps)]
    assert ours == table[:len(ours)].tolist()  # exactly: 0.7000000000000001 and all
    assert len(set(ours)) == 10


def test_schedules_differ():
    mid = {s: anneal(s, 1.3, final=0.1, start=1.0, epochs=4) for s in SCHEDULES}
    assert len({round(v, 6) for v in mid.values()}) == len(SCHEDULES)


def test_sampler_anneals_outer_and_keeps_inner():
    s = NegativeSampler("ring", 0.1, 0.1, schedule="linear", anneal_epochs=10)
    assert s.fractions(0.0) == pytest.approx((1.0, 0.1))
    assert s.fractions(5.0) == pytest.approx((0.55, 0.1))
    assert s.fractions(12.0) == pytest.approx((0.1, 0.1))
    assert NegativeSampler("ball", 0.1, 0.1).fractions() == (0.1, 0.0)


def test_generator_state_roundtrip():
    s = NegativeSampler("uniform", seed=3)
    state = s.state_dict()
    a = s.sample(10, 100, batch=4)
    s.load_state_dict(state)
    assert torch.equal(a, s.sample(10, 100, batch=4))


def test_unknown_kind_and_schedule():
    with pytest.raises(ValueError, match="unknown negative sampler"):
        NegativeSampler("rings")
    with pytest.raises(ValueError, match="unknown anneal schedule"):
        anneal("sigmoid", 1.0, final=0.1, epochs=2)


# ---------------------------------------------------------------- estimated-percentile mode

def exact_fraction_above(sim, edge):
    return (sim >= edge[:, None]).float().mean(1)


@pytest.mark.parametrize("outer,inner", [(0.1, 0.1), (0.3, 0.5)])
def test_estimated_band_matches_exact_percentiles(outer, inner):
    """Stated tolerance, with se = sqrt(p (1 - p) / m) the standard error of a quantile read off
    m samples: every anchor's edge percentiles within 5 se of the exact ones, their RMS within
    1.5 se (measured: RMS 0.8 to 1.1 se)."""
    g = torch.Generator().manual_seed(3)
    n, m = 200_000, 16_384
    sim = torch.randn(64, n, generator=g)
    exclude = torch.randint(n, (64,), generator=g)
    s = NegativeSampler("ring", outer, inner, seed=0, estimate=m)
    low, high = s.edges(sim, exclude)
    for p, edge in ((outer, low), (outer * inner, high)):
        se = math.sqrt(p * (1 - p) / m)
        err = exact_fraction_above(sim, edge) - p
        assert err.abs().max().item() < 5 * se, (p, err.abs().max().item(), se)
        assert err.square().mean().sqrt().item() < 1.5 * se
    # and the band it keeps is, entry for entry, nearly the exact band
    est = s.mask(sim, exclude)
    exact = NegativeSampler("ring", outer, inner).mask(sim, exclude)
    jaccard = (est & exact).sum(1).float() / (est | exact).sum(1).float()
    assert jaccard.mean() > 0.95 and jaccard.min() > 0.8  # (edges off by 5 se would give ~0.83)


def test_estimated_samples_are_distinct_in_band_and_spread_over_it():
    """Drawing from a shared subsample (what IR and CMC do at ImageNet scale): K distinct draws,
    never the anchor, their percentiles in the pool inside the band up to the stated tolerance
    and spread evenly over it."""
    g = torch.Generator().manual_seed(4)
    n, k, outer, inner = 400_000, 1024, 0.1, 0.1
    sim = torch.randn(16, n, generator=g)
    s = NegativeSampler("ring", outer, inner, seed=0, estimate=4096)
    cols = s.subsample(n, k)
    m = cols.numel()
    assert m == math.ceil(2 * k / (outer * (1 - inner))) and m < n  # grown so the band holds 2K
    idx = cols[:16].clone()  # anchors whose own rows are in the subsample ...
    sim[torch.arange(16), idx] = sim.max()  # ... and would top every band: never to be drawn
    drawn = s.sample(k, n, sim[:, cols], exclude=idx, columns=cols)
    assert drawn.shape == (16, k) and not (drawn == idx[:, None]).any()
    assert all(row.unique().numel() == k for row in drawn)
    # percentile of every draw in the full pool: (fraction of the pool at or above it)
    ranked = sim.sort(1).values
    pct = 1 - torch.searchsorted(ranked, sim.gather(1, drawn)).float() / n
    se = math.sqrt(outer * (1 - outer) / m)
    assert pct.min() > outer * inner - 5 * se and pct.max() < outer + 5 * se
    quarters = torch.histc(pct, bins=4, min=outer * inner, max=outer) / pct.numel()
    assert (quarters - 0.25).abs().max() < 0.03, quarters


def test_bank_logits_never_ranks_the_whole_bank_in_estimated_mode():
    """IR at ImageNet scale: the B x N similarity matrix is never formed."""
    from pretrain.methods.base import bank_logits

    rows = torch.nn.functional.normalize(torch.randn(100_000, 16), dim=1)
    q = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    s = NegativeSampler("ring", 0.1, 0.1, seed=0, estimate=2048)
    seen = []
    real = torch.Tensor.__matmul__
    try:
        torch.Tensor.__matmul__ = lambda a, b: seen.append(tuple(b.shape)) or real(a, b)
        pos, neg, _, _ = bank_logits(q, rows, torch.arange(8), s, 256, 0.0)
    finally:
        torch.Tensor.__matmul__ = real
    assert neg.shape == (8, 256) and seen and max(shape[1] for shape in seen) < 10_000


def test_estimated_mode_is_exact_mode_when_the_pool_is_small():
    sim = torch.randn(8, 300, generator=torch.Generator().manual_seed(5))
    a = NegativeSampler("ring", 0.2, 0.1, seed=1, estimate=4096)  # pool 300 < 4096: exact
    b = NegativeSampler("ring", 0.2, 0.1, seed=1)
    assert torch.equal(a.sample(64, 300, sim), b.sample(64, 300, sim))
