"""What every base method shares: the query encoder, the negative sampler, the config."""
from __future__ import annotations

import torch
import torch.nn as nn

from pretrain import distributed
from pretrain.memory import MemoryBank
from pretrain.models import Encoder
from pretrain.negatives import NegativeSampler
from pretrain.registry import STRATEGIES


class Method(nn.Module):
    """A contrastive method. `forward` returns (loss, metrics: detached tensors); `step_end`
    runs after the optimizer step (memory writes, EMA). A NaN loss stops the run at the
    trainer's next check, before any checkpoint holds it."""

    views = 1  # augmented views per image
    split_lab = False  # CMC: the backbone splits each image into L and ab
    baseline_sampler = "uniform"  # the original method's negatives: what Ring is compared against

    def __init__(self, cfg, num_samples: int, sampler: NegativeSampler):
        super().__init__()
        self.cfg, self.num_samples, self.sampler = cfg, num_samples, sampler
        self.settings = getattr(cfg.method, cfg.method.name, None)  # this method's own dataclass, if it has one
        self.encoder = Encoder(cfg.model, split_lab=self.split_lab)
        self.t = cfg.method.temperature
        # how the negatives count in the loss (docs/design.md §11): infonce, dcl, hcl
        self.objective = STRATEGIES[cfg.negatives.objective]
        self.objective_settings = getattr(cfg.negatives, cfg.negatives.objective, None)
        # memories start from their own seeded generator: identical across processes
        self.init_generator = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.register_buffer("image_labels", None, persistent=False)  # set_labels: the diagnostic's

    def forward(self, views: list[torch.Tensor], index: torch.Tensor, epoch: float):
        raise NotImplementedError

    def set_labels(self, labels: torch.Tensor | None) -> None:
        """The training images' labels, for the false-negative diagnostic only (never the loss);
        -1 (or None) where a label is unknown. Not saved: the trainer sets them on every start."""
        self.image_labels = None if labels is None else labels.long()

    def labels_of(self, index: torch.Tensor) -> torch.Tensor | None:
        return None if self.image_labels is None else self.image_labels[index]

    def contrast(self, pos: torch.Tensor, neg: torch.Tensor, neg_mask: torch.Tensor | None = None,
                 pos_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The contrastive loss of positives against negatives, as the run's strategy counts
        them (`negatives.objective`: InfoNCE by default)."""
        return self.objective(pos, neg, self.t, neg_mask, pos_mask, self.objective_settings)

    def pool_size(self) -> int:
        """Candidates each anchor's band is taken from, its own entry left out: the other rows
        of a bank by default (the record's `band`, docs/design.md §7)."""
        return self.num_samples - 1

    def negatives_drawn(self) -> int:
        """Negatives drawn per anchor from the band (IR, CMC); 0 where the whole band is used."""
        return 0

    def epoch_start(self, epoch: int) -> None:
        """Called before each epoch's first step (also when resuming mid-epoch)."""

    def step_end(self) -> None:
        pass


class BankMethod(Method):
    """A method with memory banks, one row per training image (IR, CMC, LA): the banks are
    made here, the step's embeddings are remembered in `forward` and written in `step_end`,
    after the optimizer step, gathered from every rank (so every rank holds the same banks)."""

    banks = ("bank",)  # attribute names, in creation order (their rows come from init_generator)

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        for name in self.banks:
            setattr(self, name, MemoryBank(num_samples, cfg.model.feat_dim, self.settings.bank_momentum,
                                           self.init_generator))
        self._pending = None

    def remember(self, index: torch.Tensor, *embeddings: torch.Tensor) -> None:
        """This step's embeddings, one per bank in `banks` order, for step_end to write."""
        self._pending = (index, *(e.detach() for e in embeddings))

    def step_end(self) -> None:
        index, *embeddings = (distributed.gather(t) for t in self._pending)  # every rank: the global batch
        for name, emb in zip(self.banks, embeddings):
            getattr(self, name).update(index, emb)
        self._pending = None


@torch.no_grad()
def false_negatives(anchor: torch.Tensor | None, pool: torch.Tensor | None, mask: torch.Tensor | None = None,
                    drawn: torch.Tensor | None = None) -> dict:
    """{"false_negatives": share of each anchor's negatives that carry its own label, averaged
    over anchors} (docs/design.md §9), or {} without labels. The negatives are the pool entries
    `drawn` (B, K indices) or where `mask` (B, N) is True; unknown labels (-1) are left out.
    Returned as a tensor: the trainer averages it over an epoch without a sync per step."""
    if anchor is None or pool is None:
        return {}
    if drawn is not None:
        neg = pool[drawn]
    else:  # one pool for every anchor (N,), or each anchor's own (B, N)
        neg = pool if pool.dim() == 2 else pool[None, :].expand(len(anchor), -1)
    valid = (neg >= 0) & (anchor[:, None] >= 0)
    if mask is not None:
        valid &= mask
    same = (neg == anchor[:, None]) & valid
    counts = valid.sum(1)
    rows = counts > 0
    if not rows.any():
        return {}
    return {"false_negatives": (same.sum(1)[rows].float() / counts[rows].float()).mean()}


def bank_logits(q: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, sampler: NegativeSampler,
                k: int, epoch: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positive, others, drawn, neighbours) of anchors q against a memory bank: logits (B,) and
    (B, K [+ lo]), the bank rows drawn (B, K), and None or, with neighbour views, a (B, K + lo)
    mask of the columns that join the positive (the inner core's lo rows, after the K). The
    positive is the anchor's own row, the K negatives come from the sampler's band.

    Only the B x (K + 1) gathered rows carry gradient; the ring ranks the pool on a detached
    B x N similarity matrix (what the official code sorts), or in estimated mode on B x S
    against a random subsample, and uniform needs none: an ImageNet-size bank costs at most
    one matmul without backward, not two with."""
    cols = sampler.subsample(len(rows), k, epoch)  # estimated mode: a shared subsample, not the bank
    sim = None if sampler.full else q.detach() @ (rows if cols is None else rows[cols]).T
    # sim is ours: the exact band marks the own rows in it instead of copying B x N
    idx = sampler.sample(k, len(rows), sim, exclude=index, epoch=epoch, batch=len(index), columns=cols, scratch=True)
    core = sampler.core(sim, exclude=index, epoch=epoch, scratch=True) if sampler.neighbor_views else idx[:, :0]
    keys = rows[torch.cat([index[:, None], idx, core], dim=1)]  # (B, 1 + K + lo, D)
    logits = torch.bmm(keys, q.unsqueeze(2)).squeeze(2)
    neighbours = None
    if sampler.neighbor_views:
        neighbours = torch.zeros_like(logits[:, 1:], dtype=torch.bool)
        neighbours[:, idx.shape[1]:] = True
    return logits[:, 0], logits[:, 1:], idx, neighbours
