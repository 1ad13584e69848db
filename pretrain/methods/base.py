"""What every base method shares: the query encoder, the negative sampler, the config."""
from __future__ import annotations

import torch
import torch.nn as nn

from pretrain import distributed
from pretrain.memory import MemoryBank
from pretrain.models import Encoder
from pretrain.negatives import NegativeSampler


class Method(nn.Module):
    """A contrastive method. `forward` returns (loss, metrics); `step_end` runs after the
    optimizer step (memory writes, EMA), so a NaN loss never reaches the memory."""

    views = 1  # augmented views per image
    split_lab = False  # CMC: the backbone splits each image into L and ab
    baseline_sampler = "uniform"  # the original method's negatives: what Ring is compared against

    def __init__(self, cfg, num_samples: int, sampler: NegativeSampler):
        super().__init__()
        self.cfg, self.num_samples, self.sampler = cfg, num_samples, sampler
        self.settings = getattr(cfg.method, cfg.method.name, None)  # this method's own dataclass, if it has one
        self.encoder = Encoder(cfg.model, split_lab=self.split_lab)
        self.t = cfg.method.temperature
        # memories start from their own seeded generator: identical across processes
        self.init_generator = torch.Generator().manual_seed(cfg.train.seed + 1)

    def forward(self, views: list[torch.Tensor], index: torch.Tensor, epoch: float):
        raise NotImplementedError

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


def bank_logits(q: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, sampler: NegativeSampler,
                k: int, epoch: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negatives) logits (B,), (B, K) of anchors q against a memory bank: the
    positive is the anchor's own row, K negatives come from the sampler's band.

    Only the B x (K + 1) gathered rows carry gradient; the ring ranks the pool on a detached
    B x N similarity matrix (what the official code sorts), or in estimated mode on B x S
    against a random subsample, and uniform needs none: an ImageNet-size bank costs at most
    one matmul without backward, not two with."""
    cols = sampler.subsample(len(rows), k, epoch)  # estimated mode: a shared subsample, not the bank
    sim = None if sampler.full else q.detach() @ (rows if cols is None else rows[cols]).T
    idx = sampler.sample(k, len(rows), sim, exclude=index, epoch=epoch, batch=len(index), columns=cols)
    keys = rows[torch.cat([index[:, None], idx], dim=1)]  # (B, K + 1, D)
    logits = torch.bmm(keys, q.unsqueeze(2)).squeeze(2)
    return logits[:, 0], logits[:, 1:]
