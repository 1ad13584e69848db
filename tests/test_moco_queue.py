"""MoCo's queue knows which image each key came from, and an anchor's own past keys never enter
its loss (`method.moco.exclude_own_key`, docs/design.md §3): a queue as long as the training set
holds last epoch's key of every anchor, which ImageNet's 1.28M images never meet."""
import pytest
import torch
import torch.nn.functional as F

from pretrain import config, methods, strategies
from pretrain.memory import Queue
from pretrain.negatives import NegativeSampler

N, B = 50, 16  # queue entries, batch; outer 0.25 of 50 or 49 entries: ranks [2, 12) either way
OUTER, INNER = 0.25, 0.2


def make(sampler="uniform", exclude=True, neighbor_views=False, num_samples=32):
    sets = ["method.name=moco", f"negatives.sampler={sampler}", f"negatives.outer={OUTER}",
            f"negatives.inner={INNER}", f"negatives.neighbor_views={str(neighbor_views).lower()}", f"method.moco.queue_size={N}",
            f"method.moco.exclude_own_key={str(exclude).lower()}", "model.feat_dim=16", f"optim.batch_size={B}"]
    cfg = config.load(None, sets)
    torch.manual_seed(0)
    m = methods.build(cfg, num_samples, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    m.epoch_start(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, 32, 32, generator=g) * 2 - 1
    return m, [x, x + 0.3 * torch.randn(B, 3, 32, 32, generator=g)], torch.arange(B) * 2


def loss_inputs(monkeypatch, m, views, index):
    """(loss, pos, neg, neg_mask, pos_mask) of the one info_nce call of a MoCo step."""
    calls, real = [], strategies.info_nce
    monkeypatch.setattr(strategies, "info_nce", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    loss, _ = m(views, index, 0.0)
    assert len(calls) == 1
    (pos, neg, _, mask), kwargs = calls[0]
    return loss, pos.detach(), neg.detach(), mask, kwargs["pos_mask"]


def own_of(m, index):
    return m.queue.index[None, :] == index[:, None]


def test_uniform_leaves_the_own_keys_out_of_the_loss(monkeypatch):
    """Two epochs' pushes of the same batch: every anchor's own key sits at two queue positions,
    both False in the mask that reaches info_nce; the 48 others (and the 2 random initial keys)
    are negatives. With the setting off, the earlier behaviour: no mask, own keys are negatives."""
    for exclude in (True, False):
        m, views, index = make("uniform", exclude)
        for _ in range(2):
            m(views, index, 0.0)
            m.step_end()
        own = own_of(m, index)
        assert (own.sum(1) == 2).all() and own[:, :2 * B].any(0).all()
        _, _, _, mask, _ = loss_inputs(monkeypatch, m, views, index)
        if exclude:
            assert torch.equal(mask, ~own)
        else:
            assert mask is None


def band_of_others(sim, own):
    """(B, N) bool: ranks [lo, hi) of each row's entries other than its own keys, by a full sort,
    with the limits of the whole queue (N entries, as the sampler counts them)."""
    hi = int(OUTER * N)
    lo = int(INNER * hi)
    out = torch.zeros_like(own)
    for i, row in enumerate(sim):
        order = [j for j in torch.argsort(row, descending=True).tolist() if not own[i, j]]
        out[i, order[lo:hi]] = True
    return out


def test_ring_leaves_the_own_keys_out_of_the_band_and_its_ranks(monkeypatch):
    """Own keys placed where the ring would keep them (in each anchor's band, two for anchor 0):
    they leave the mask, and the band is the one of the other entries."""
    m, views, index = make("ring")
    _, _, neg, band, _ = loss_inputs(monkeypatch, m, views, index)  # no own keys yet (all -1)
    taken = set()
    for i in range(B):
        free = [j for j in band[i].nonzero().flatten().tolist() if j not in taken]
        for j in free[:2 if i == 0 else 1]:
            m.queue.index[j] = index[i]
            taken.add(j)
    own = own_of(m, index)
    assert own.sum().item() == B + 1 and (band | ~own).all()
    _, _, neg, mask, _ = loss_inputs(monkeypatch, m, views, index)
    assert not (mask & own).any()
    assert torch.equal(mask, band_of_others(neg, own))
    assert (mask.sum(1) == 10).all()


def test_neighbour_views_never_take_the_own_key_into_the_core(monkeypatch):
    """Each anchor's own key is its query itself, the most similar entry: the core (ranks [0, 2)
    with neighbour views, joining the positive) is the two closest other entries."""
    m, views, index = make("ring", neighbor_views=True)
    with torch.no_grad():
        q = m.encoder(views[0])
    m.queue.keys[:B] = q
    m.queue.index[:B] = index
    own = own_of(m, index)
    _, _, neg, mask, core = loss_inputs(monkeypatch, m, views, index)
    assert not (core & own).any() and not (mask & own).any()
    others = neg.masked_fill(own, float("-inf"))
    expected = torch.zeros_like(own).scatter_(1, others.topk(2, dim=1).indices, True)
    assert torch.equal(core, expected)


def test_queue_indices_follow_their_keys_through_a_wrapping_push():
    q = Queue(5, 3)
    assert q.index.tolist() == [-1] * 5  # the random initial keys belong to no image
    keys = F.normalize(torch.randn(6, 3), dim=1)
    q.push(keys[:3], index=torch.tensor([10, 11, 12]))
    q.push(keys[3:], index=torch.tensor([20, 21, 22]))  # positions 3, 4, then 0
    assert q.index.tolist() == [22, 11, 12, 20, 21] and int(q.ptr) == 1
    assert torch.equal(q.keys, keys[[5, 1, 2, 3, 4]])
    q.push(keys[:1])  # keys of unknown images
    assert q.index.tolist() == [22, -1, 12, 20, 21]


def test_moco_pushes_the_batch_indices():
    m, views, index = make()
    m(views, index, 0.0)
    m.step_end()
    assert m.queue.index.tolist() == index.tolist() + [-1] * (N - B)


def test_state_dict_carries_the_indices_and_resumes_exactly(monkeypatch):
    """A copy restored from the state dict mid-run takes the same next step as the original; a
    state dict from before the queue kept indices loads (strictly) with -1: no key is anyone's."""
    m, views, index = make()
    for _ in range(2):
        m(views, index, 0.0)
        m.step_end()
    state = m.state_dict()
    assert torch.equal(state["queue.index"], m.queue.index) and (state["queue.index"] >= 0).sum() == 2 * B
    copy, _, _ = make()
    copy.load_state_dict(state)
    assert torch.equal(copy.queue.index, m.queue.index)
    torch.manual_seed(2)
    a = loss_inputs(monkeypatch, m, views, index)
    torch.manual_seed(2)
    b = loss_inputs(monkeypatch, copy, views, index)
    assert a[0].item() == b[0].item() and torch.equal(a[3], b[3])

    old = {k: v for k, v in state.items() if k != "queue.index"}
    legacy, _, _ = make()
    legacy.load_state_dict(old, strict=True)
    assert legacy.queue.index.tolist() == [-1] * N and torch.equal(legacy.queue.keys, m.queue.keys)


def test_loss_is_info_nce_over_the_queue_without_the_own_keys(monkeypatch):
    """Uniform, own keys at two positions per anchor, one of them the query itself (the strongest
    term the earlier behaviour added): the loss is InfoNCE over the other 48 entries by hand."""
    m, views, index = make()
    for _ in range(2):
        m(views, index, 0.0)
        m.step_end()
    with torch.no_grad():
        q = m.encoder(views[0])
    m.queue.keys[:B] = q
    own = own_of(m, index)
    loss, pos, _, _, _ = loss_inputs(monkeypatch, m, views, index)
    t = m.t
    expected = []
    for i in range(B):
        others = m.queue.keys[~own[i]]
        assert len(others) == N - 2
        logits = torch.cat([pos[i:i + 1], others @ q[i]]) / t
        expected.append(torch.logsumexp(logits, 0) - logits[0])
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
