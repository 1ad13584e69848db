"""Known answers for the pretraining core (kNN, memories, objectives, samplers) where mutation
testing found the suite blind (docs/mutation.md)."""
import pytest
import torch
import torch.nn.functional as F

from pretrain.knn import features, knn_predict, topk_accuracy
from pretrain.memory import MemoryBank, Queue
from pretrain.negatives import NegativeSampler

# ---------------------------------------------------------------- pretrain/knn.py


class Doubler(torch.nn.Module):
    """2x in float64, and the mode it ran in: features() must run the net in eval mode."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return 2 * x.double()


def test_features_are_the_nets_outputs_normalised_in_eval_mode_with_the_labels():
    g = torch.Generator().manual_seed(0)
    x1, x2, other = (torch.randn(n, 4, generator=g) for n in (3, 2, 2))
    # a batch is (images, labels, indices); a multi-view batch's images are a list: the first view counts
    loader = [(x1, torch.tensor([1, 0, 2]), torch.arange(3)), ([x2, other], [4, 3], torch.arange(3, 5))]
    net = Doubler()
    for normalize, want in ((True, F.normalize(2 * torch.cat([x1, x2]), dim=1)), (False, 2 * torch.cat([x1, x2]))):
        for was in (True, False):
            net.train(was)
            feats, labels = features(net, loader, "cpu", normalize=normalize)
            assert net.modes[-2:] == [False, False] and net.training == was  # eval inside, the mode restored
            assert feats.dtype == torch.float32 and torch.allclose(feats, want.float(), atol=1e-6)
            assert labels.tolist() == [1, 0, 2, 4, 3]
    assert torch.allclose(features(net, loader, "cpu")[0].norm(dim=1), torch.ones(5))  # normalised by default


def test_topk_accuracy_counts_a_hit_in_the_first_k_ranks():
    scores = torch.tensor([[0.1, 0.5, 0.4, 0.0, 0.3, 0.2, 0.05],   # label 2: rank 2
                           [0.9, 0.1, 0.0, 0.2, 0.3, 0.4, 0.5],     # label 6: rank 2
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],     # label 0: rank 7
                           [0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])    # label 0: rank 1
    labels = torch.tensor([2, 6, 0, 0])
    assert topk_accuracy(scores, labels) == {"top1": 25.0, "top5": 75.0}
    assert topk_accuracy(scores, labels, ks=(2, 7)) == {"top2": 75.0, "top7": 100.0}
    # more ranks than classes: every class is within the top 5 of 3
    assert topk_accuracy(scores[:, :3], torch.tensor([2, 0, 0, 0])) == {"top1": 50.0, "top5": 100.0}


def test_knn_defaults_are_200_neighbours_at_temperature_0_07_in_the_features_dtype():
    """300 bank rows: with the defaults the 200 most similar vote with exp(s / 0.07), the other
    100 not; float64 features give float64 scores (no float32 rounding of the votes)."""
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(300, 8, generator=g, dtype=torch.float64), dim=1)
    labels = torch.arange(300) % 4
    query = F.normalize(torch.randn(2, 8, generator=g, dtype=torch.float64), dim=1)
    got = knn_predict(query, bank, labels, 4)
    assert got.dtype == torch.float64
    sim = query @ bank.T
    for i in range(2):
        nearest = sim[i].argsort(descending=True)[:200]
        want = torch.zeros(4, dtype=torch.float64).index_add_(0, labels[nearest], (sim[i, nearest] / 0.07).exp())
        assert torch.allclose(got[i], want, rtol=1e-12)


def test_memories_have_one_row_per_image_or_key():
    assert len(MemoryBank(7, 3)) == 7 and len(Queue(5, 3)) == 5


# ---------------------------------------------------------------- pretrain/negatives.py: estimated mode, the core

def test_subsample_draws_follow_the_subsample_order_and_skip_the_anchors_own_row():
    """At outer 1 (an anneal's start) the band is the whole subsample: K draws are its first K
    valid columns in subsample order, repeated when fewer; the anchor's own row (column 4) is
    never one, and one candidate left is no empty band. An empty band flagged earlier stays
    flagged: only the trainer's check reads and clears the flag."""
    s = NegativeSampler("ring", outer=1.0, inner=0.0)
    sim = torch.tensor([[0.3, 0.9, 0.1]])
    got = s.sample(2, 10, sim.clone(), exclude=None, batch=1, columns=torch.tensor([2, 5, 8]))
    assert got.tolist() == [[2, 5]] and not s.empty
    got = s.sample(3, 10, torch.tensor([[0.5, 0.2]]), exclude=torch.tensor([4]), batch=1, columns=torch.tensor([4, 7]))
    assert got.tolist() == [[7, 7, 7]] and not s.empty
    s.empty.fill_(True)  # as after an earlier step's empty band
    s.sample(2, 10, sim.clone(), exclude=None, batch=1, columns=torch.tensor([2, 5, 8]))
    assert s.empty


def test_subsample_band_anneals_with_the_epoch():
    """A linear anneal of outer from 1 to 0.5 over 2 epochs on a 4-column subsample: at epoch 2
    the band is the 2 most similar columns (in subsample order), at epoch 0 all 4."""
    s = NegativeSampler("ring", outer=0.5, inner=0.0, schedule="linear", anneal_epochs=2)
    sim, cols = torch.tensor([[0.1, 0.9, 0.5, 0.7]]), torch.tensor([10, 11, 12, 13])
    assert s.sample(4, 20, sim.clone(), batch=1, epoch=2.0, columns=cols).tolist() == [[11, 13, 11, 13]]
    assert s.sample(4, 20, sim.clone(), batch=1, epoch=0.0, columns=cols).tolist() == [[10, 11, 12, 13]]


def test_core_is_the_inner_cut_at_the_epoch_and_leaves_the_callers_similarities():
    """ring outer 1 -> 0.5 over 2 epochs, inner 0.5, 9 others (the anchor's own row left out):
    at epoch 0 the core is the int(0.5 * 9) = 4 most similar, at epoch 2 int(0.5 * int(0.5 * 9)) = 2."""
    s = NegativeSampler("ring", outer=0.5, inner=0.5, schedule="linear", anneal_epochs=2)
    sim = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    before = sim.clone()
    own = torch.tensor([1])  # the most similar: never in the core
    assert sorted(s.core(sim, own).flatten().tolist()) == [2, 3, 4, 5]  # epoch 0 by default
    assert sorted(s.core(sim, own, epoch=2.0).flatten().tolist()) == [2, 3]
    assert torch.equal(sim, before)  # not the caller's scratch unless it says so


def test_estimated_mask_keeps_the_entries_between_the_edges_and_falls_back_where_they_are_off():
    """Estimated mode with the edges given (the sampling is tested below): an entry is in the band
    when low <= s < high, the anchor's own row never; a row whose band size is off by more than 2x
    from the exact one (ranks [2, 8) of 17 others at outer 0.5, inner 0.25: 6) takes the exact
    band instead, at the epoch asked for (outer anneals 1 -> 0.5 over 2 epochs). Sizes 3 and 12
    are kept, 2 and 13 fall back."""
    s = NegativeSampler("ring", outer=0.5, inner=0.25, estimate=4, schedule="linear", anneal_epochs=2)
    others = torch.linspace(1.0, -1.0, 17)  # v_0 > v_1 > ... > v_16
    sim = torch.cat([torch.full((4, 1), 2.0), others.expand(4, 17)], dim=1)  # column 0: the own row, most similar
    own = torch.zeros(4, dtype=torch.long)
    inf = float("inf")
    # (first, size) of each row's estimated band among the others: v_first .. v_(first + size - 1)
    bands = [(0, 3), (1, 2), (0, 12), (2, 13)]
    high = torch.tensor([inf if a == 0 else others[a - 1].item() for a, _ in bands])
    low = torch.tensor([others[a + c - 1].item() for a, c in bands])
    seen = []
    s.edges = lambda sim_, exclude, epoch: seen.append((exclude, epoch)) or (low, high)
    mask = s.mask(sim, own, epoch=2.0)
    assert len(seen) == 1 and seen[0][0] is own and seen[0][1] == 2.0
    want = torch.zeros(4, 18, dtype=torch.bool)
    for row, (a, c) in enumerate(bands):
        keep = range(a, a + c) if row in (0, 2) else range(2, 8)  # rows 1 and 3: the exact band
        want[row, [1 + j for j in keep]] = True
    assert torch.equal(mask, want)


def test_estimated_edges_are_read_off_the_sampled_columns():
    """edges(): the columns are the sampler's own generator's first draw; among them (the own row
    at -inf and not counted: m - 1 candidates) the high edge is the lo-th largest (+inf for no
    inner cut), the low edge the hi-th largest (-inf at outer 1, where the band reaches the bottom)."""
    n, m = 40, 9
    sim = torch.randn(3, n, generator=torch.Generator().manual_seed(5))
    own = torch.tensor([3, 17, 30])

    def by_hand(outer, inner, seed):
        cols = torch.randint(n, (m,), generator=torch.Generator().manual_seed(seed))
        sub = sim[:, cols].masked_fill(cols[None, :] == own[:, None], float("-inf"))
        hi = min(m - 1, max(1, int(outer * (m - 1))))
        lo = int(inner * hi)
        top = sub.sort(dim=1, descending=True).values
        high = top[:, lo - 1] if lo > 0 else torch.full((3,), float("inf"))
        low = top[:, hi - 1] if outer < 1.0 else torch.full((3,), float("-inf"))
        return low, high

    torch.manual_seed(123)  # the global generator is not the one drawn from
    # (0.01, 0.0): a one-row band (the narrowest, issue 26's outer 1e-5), whose top holds one column
    for outer, inner, seed in ((0.5, 0.5, 0), (0.5, 0.25, 1), (0.5, 0.0, 2), (1.0, 0.5, 3), (0.01, 0.0, 4)):
        s = NegativeSampler("ring", outer=outer, inner=inner, estimate=m, seed=seed)
        low, high = s.edges(sim, own)
        want_low, want_high = by_hand(outer, inner, seed)
        assert torch.equal(low, want_low) and torch.equal(high, want_high), (outer, inner)
    # the smallest estimate, two columns of which one may be the anchor's own: at outer 1 the band
    # is the whole pool, with neither edge
    low, high = NegativeSampler("ball", outer=1.0, inner=0.0, estimate=2, seed=0).edges(sim, own)
    assert torch.isinf(low).all() and (low < 0).all() and torch.isinf(high).all() and (high > 0).all()
    # the default epoch is 0: an anneal's start, outer 1, no low edge
    s = NegativeSampler("ring", outer=0.5, inner=0.5, estimate=m, seed=0, schedule="linear", anneal_epochs=2)
    assert torch.isinf(s.edges(sim, own)[0]).all()


def test_queue_takes_a_batch_as_large_as_itself_and_keeps_labels_with_their_keys():
    import pytest
    q = Queue(4, 2)
    keys = F.normalize(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), dim=1)
    q.push(keys[:3], labels=torch.tensor([7, 8, 9]))
    assert q.labels.tolist() == [7, 8, 9, -1] and int(q.ptr) == 3
    q.push(keys, labels=torch.tensor([1, 2, 3, 4]), index=torch.tensor([10, 11, 12, 13]))  # the whole queue, from 3
    assert torch.equal(q.keys, keys[[1, 2, 3, 0]]) and q.labels.tolist() == [2, 3, 4, 1]
    assert q.index.tolist() == [11, 12, 13, 10] and int(q.ptr) == 3
    q.push(keys[:1])  # keys of unknown images: label and index -1
    assert q.labels.tolist() == [2, 3, 4, -1] and q.index.tolist() == [11, 12, 13, -1] and int(q.ptr) == 0
    with pytest.raises(ValueError, match="queue of 4 keys cannot take a batch of 5"):
        q.push(torch.zeros(5, 2))


def test_a_new_bank_and_queue_hold_unit_rows_drawn_from_their_generator():
    a = MemoryBank(6, 3, generator=torch.Generator().manual_seed(4))
    b = MemoryBank(6, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.rows, b.rows) and torch.allclose(a.rows.norm(dim=1), torch.ones(6))
    assert a.momentum == 0.0 and MemoryBank(2, 2, momentum=0.5).momentum == 0.5
    q = Queue(5, 3, generator=torch.Generator().manual_seed(4))
    assert q.keys.shape == (5, 3) and torch.allclose(q.keys.norm(dim=1), torch.ones(5))
    assert torch.equal(q.keys, Queue(5, 3, generator=torch.Generator().manual_seed(4)).keys)
    assert int(q.ptr) == 0 and q.labels.tolist() == [-1] * 5 and q.index.tolist() == [-1] * 5


def test_subsample_size_and_draw():
    """Estimated mode's subsample: max(estimate, ceil(2K / (outer (1 - inner)))) columns of a random
    permutation from the sampler's generator; none for the whole pool, a small pool, or a
    subsample that would be the whole pool."""
    s = NegativeSampler("ring", outer=0.5, inner=0.2, estimate=10, seed=6, schedule="linear", anneal_epochs=2)
    torch.manual_seed(1)  # not the generator drawn from
    got = s.subsample(100, 6, 2.0)  # outer 0.5: ceil(12 / 0.4) = 30 columns
    assert torch.equal(got, torch.randperm(100, generator=torch.Generator().manual_seed(6))[:30])
    s = NegativeSampler("ring", outer=0.5, inner=0.2, estimate=10, seed=6, schedule="linear", anneal_epochs=2)
    assert len(s.subsample(100, 6)) == 15  # the default epoch 0: outer 1, ceil(12 / 0.8)
    assert len(NegativeSampler("ring", 0.5, 0.0, estimate=10).subsample(100, 2)) == 10  # at least `estimate`
    assert NegativeSampler("ring", 0.5, 0.0, estimate=10).subsample(20, 5) is None  # ceil(10 / 0.5) = 20 = the pool
    assert NegativeSampler("ring", 0.5, 0.0, estimate=10).subsample(21, 5) is not None
    assert NegativeSampler("uniform", estimate=10).subsample(100, 5) is None
    assert NegativeSampler("ring", 0.5, 0.0, estimate=100).subsample(100, 5) is None  # not estimating


def test_every_sampler_call_takes_the_band_at_the_epoch_given_and_at_0_by_default():
    """With an anneal, each public call of the sampler must read the fractions at the epoch it is
    given (2.0 here), and at epoch 0 (the start of training) when given none."""
    sim = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    own = torch.tensor([0, 5, 9])
    cols = torch.arange(0, 40, 2)

    def calls(s, **epoch):
        return [lambda: s.band(sim.clone(), own, **epoch), lambda: s.core(sim.clone(), own, **epoch),
                lambda: s.core_mask(sim.clone(), own, **epoch), lambda: s.mask(sim.clone(), own, **epoch),
                lambda: s.sample(4, 40, sim.clone(), exclude=own, **epoch),
                lambda: s.sample(4, 40, sim[:, cols].clone(), exclude=own, columns=cols, **epoch),
                lambda: s.edges(sim.clone(), own, **epoch), lambda: s.subsample(40, 4, **epoch),
                lambda: s.fractions(**epoch)]

    for epoch, want in (({"epoch": 2.0}, 2.0), ({}, 0.0)):
        for i in range(len(calls(None))):
            for estimate in (0, 12) if i not in (6, 7) else (12,):  # edges, subsample: estimated mode only
                s = NegativeSampler("ring", 0.25, 0.2, schedule="linear", anneal_epochs=4, estimate=estimate,
                                    neighbor_views=True)
                seen, real = [], s.fractions
                s.fractions = lambda epoch=0.0, real=real, seen=seen: seen.append(epoch) or real(epoch)
                calls(s, **epoch)[i]()
                assert seen and set(seen) == {want}, (i, estimate, epoch, seen)


def test_fractions_of_the_whole_pool_and_when_to_estimate():
    assert NegativeSampler("uniform").fractions() == (1.0, 0.0)
    s = NegativeSampler("ring", 0.25, 0.2, schedule="linear", anneal_epochs=4)
    assert s.fractions() == (1.0, 0.2) and s.fractions(4.0) == (0.25, 0.2)
    assert NegativeSampler("ring", estimate=1)._estimating(10) and not NegativeSampler("ring", estimate=10)._estimating(10)
    assert not NegativeSampler("ring")._estimating(10)


def test_the_exact_band_drops_the_inner_ranks():
    """ranks [lo, hi) of the others: outer 0.5 of 8 others -> hi = 4, inner 0.25 -> lo = 1: ranks 1, 2, 3."""
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 2.0]])  # column 8: the anchor's own row
    s = NegativeSampler("ring", 0.5, 0.25)
    assert sorted(s.band(sim, torch.tensor([8])).flatten().tolist()) == [1, 2, 3]
    assert sorted(NegativeSampler("ring", 0.5, 0.0).band(sim, torch.tensor([8])).flatten().tolist()) == [0, 1, 2, 3]


def test_sampler_calls_leave_the_callers_similarities_unless_told_they_are_scratch():
    sim = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    before, own = sim.clone(), torch.tensor([1, 2])
    s = NegativeSampler("ring", 0.5, 0.2)
    s.ranked(sim, own, 0.0)
    s.sample(3, 10, sim, exclude=own)
    assert torch.equal(sim, before)
    s.sample(3, 10, sim, exclude=own, scratch=True)  # the caller's temporary: marked in place
    assert torch.isinf(sim[[0, 1], [1, 2]]).all()


def test_an_autocast_embedding_enters_the_bank_in_the_banks_float32():
    """Under bf16 autocast the head's embedding can arrive in bf16: the average is taken in the
    bank's float32 (cast first), not in bf16 and then widened."""
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(4, 8, momentum=0.3, generator=g)
    old = bank.rows.clone()
    emb = F.normalize(torch.randn(2, 8, generator=g), dim=1).to(torch.bfloat16)
    bank.update(torch.tensor([1, 3]), emb)
    want = F.normalize(0.3 * old[[1, 3]] + 0.7 * emb.float(), dim=1)
    assert bank.rows.dtype == torch.float32 and torch.equal(bank.rows[[1, 3]], want)


# ---------------------------------------------------------------- survivors of the 12-07 run

def test_a_sampler_built_with_its_defaults():
    """Uniform draws from the whole pool, seed 0, no anneal; ring's band 0.1/0.1; the anneal's
    documented steps (4) and decay (0.1) where a schedule is named without them."""
    from core.anneal import anneal
    from pretrain.registry import SAMPLERS
    s = NegativeSampler()
    assert s.kind == "uniform" and s.full and s.fractions(0.5) == (1.0, 0.0) and s.generator.initial_seed() == 0
    assert NegativeSampler("ring").fractions(0.0) == SAMPLERS["ring"](0.1, 0.1)
    assert NegativeSampler("ring", schedule="linear").fractions(0.5) == SAMPLERS["ring"](0.1, 0.1)  # epochs 0: none
    for schedule in ("step", "exponential", "linear", "cosine"):
        s = NegativeSampler("ring", outer=0.2, schedule=schedule, anneal_epochs=8)
        assert s.schedule == dict(schedule=schedule, epochs=8, start=1.0, steps=4, decay=0.1)
        for epoch in (0.0, 1.0, 2.5, 5.0, 7.5):
            assert s.fractions(epoch) == SAMPLERS["ring"](anneal(schedule, epoch, 0.2, 1.0, 8, 4, 0.1), 0.1)


@pytest.mark.parametrize("outer,inner", [(0.0, 0.1), (1.5, 0.1), (0.5, 1.0), (0.5, 1.5), (-0.1, 0.0), (0.5, -0.1)])
def test_a_band_outside_the_pool_is_refused(outer, inner):
    with pytest.raises(ValueError, match="ring fractions must satisfy"):
        NegativeSampler("ring", outer, inner)


def test_from_config_passes_every_setting_of_the_band_and_the_anneal():
    from pretrain import config
    cfg = config.load(None, ["negatives.sampler=ring", "negatives.outer=0.3", "negatives.inner=0.05",
                             "negatives.anneal.schedule=step", "negatives.anneal.epochs=6", "negatives.anneal.start=0.8",
                             "negatives.anneal.steps=3", "negatives.anneal.decay=0.5", "negatives.estimate=64"])
    s = NegativeSampler.from_config(cfg.negatives, seed=7, device="cpu")
    assert (s.kind, s.outer_final, s.inner, s.estimate, s.neighbor_views) == ("ring", 0.3, 0.05, 64, False)
    assert s.schedule == dict(schedule="step", epochs=6, start=0.8, steps=3, decay=0.5)
    assert s.generator.initial_seed() == 7


def test_an_empty_band_stays_flagged_until_taken():
    s = NegativeSampler("uniform")
    s.mask(torch.zeros(2, 1), exclude=torch.tensor([0, 0]))  # each anchor's only entry is its own row
    s.mask(torch.zeros(2, 3), exclude=torch.tensor([0, 1]))  # a later call with negatives does not clear it
    assert s.pop_empty() and not s.pop_empty()


def test_the_core_never_holds_the_anchors_own_row():
    s = NegativeSampler("ring", 0.5, 0.5, neighbor_views=True)
    sim = torch.rand(6, 12, generator=torch.Generator().manual_seed(0))
    own = sim.argmax(1)  # each anchor's own row is its most similar
    core = s.core_mask(sim, own)
    assert not core[torch.arange(6), own].any() and (core.sum(1) == core.sum(1)[0]).all() and core.any()


def test_memories_keep_integer_buffers():
    """The queue's pointer, labels and indices, and LA's cluster labels are integers in the
    checkpoint (an older checkpoint of either dtype loads, but the format stays one)."""
    q = Queue(8, 4)
    assert q.ptr.dtype == q.labels.dtype == q.index.dtype == torch.long


def test_info_nce_refuses_negatives_of_another_batch():
    from pretrain.objectives import info_nce
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 5\)"):
        info_nce(torch.zeros(3), torch.zeros(4, 5), 0.1)


def test_anneal_known_values_and_defaults():
    """Outer fraction from 1.0 to 0.1 over 4 epochs, written out per schedule; the defaults (start
    1, no anneal without epochs, 4 steps, decay 0.1); every schedule ends at `final`."""
    import math

    from core.anneal import anneal
    assert [anneal("step", e, 0.1, epochs=4) for e in (0, 1, 2, 3)] == pytest.approx([1.0, 0.775, 0.55, 0.325])
    assert anneal("linear", 1, 0.1, epochs=4) == pytest.approx(0.775)
    assert anneal("cosine", 2, 0.1, epochs=4) == pytest.approx(0.1 + 0.9 * 0.5)
    assert anneal("exponential", 2, 0.1, epochs=4) == pytest.approx(0.1 + (math.sqrt(0.1) - 0.1))
    assert anneal("linear", 0.5, 0.1) == anneal("linear", 0.5, 0.1, epochs=0) == 0.1  # no epochs: no anneal
    assert anneal("linear", -1.0, 0.1, epochs=0) == 0.1 and anneal("linear", -1.0, 0.1, epochs=4) == 1.0  # (t >= 0)
    assert anneal("linear", 0.5, 0.1, epochs=1) == pytest.approx(0.55)
    for schedule in ("linear", "step", "cosine", "exponential", "official_step"):
        assert anneal(schedule, 4, 0.1, epochs=4) == pytest.approx(0.1)
    # a time a hair before the end: the rounding guard must not tip it past the last plateau
    assert anneal("official_step", 4 - 1e-12, 0.1, epochs=4) == pytest.approx(0.1)
