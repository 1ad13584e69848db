"""Local Aggregation (Zhuang, Zhai, Yamins 2019) with a memory bank. Close neighbours: bank
rows that share the anchor's cluster in any of several k-means clusterings of the bank
(recomputed every epoch). Background neighbours: the sampler's band of the bank. LA's own
background is the `background` (4,096) nearest bank rows, the anchor's own row among them, as
the original's top_k over the whole bank: the `ball` sampler, sized here to the bank that
trains (min(background, N) rows: the anchor and min(background - 1, N - 1) others), which is
therefore LA's baseline (the "LA" row of every table); `ring` also drops the very closest rows
(its outer and inner fractions, as for every method); `uniform` (the whole bank) is a variant,
labelled as such. The anchor's own row is always in both sets (it is the instance itself),
never a negative.

As the original, LA starts from IR: for the first `warm_start_epochs` epochs the loss is
instance discrimination against K negatives drawn uniformly from the bank (IR's), which
writes the bank; the first clustering is of that bank, at epoch warm_start_epochs."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain.kmeans import spherical_kmeans
from pretrain.methods.base import BankMethod, bank_logits, false_negatives
from pretrain.negatives import NegativeSampler
from pretrain.objectives import aggregation_loss, info_nce
from pretrain.registry import METHODS
from pretrain.settings import at_least, fraction


@dataclass
class LASettings:
    bank_momentum: float = fraction(0.5, high_open=True)  # memory bank update momentum (LA's own: 0.5)
    clusters: int = at_least(1000, 1)      # k of each k-means clustering of the bank
    clusterings: int = at_least(3, 1)      # clusterings (different seeds); close = same cluster in any
    kmeans_iters: int = at_least(10, 1)    # Lloyd iterations per clustering, every epoch
    background: int = at_least(4096, 2)    # ball sampler: the nearest bank rows, the anchor's own among
                                           # them (the original's instance_k), capped at the bank
    warm_start_epochs: int = at_least(10, 0)  # IR epochs before the first clustering (the original's 10)
    # keys of configs before each method had its own settings; what a config without
    # warm_start_epochs ran (an older checkpoint resumes as it was trained)
    LEGACY = {"method.bank_momentum": "bank_momentum", "method.la_clusters": "clusters",
              "method.la_clusterings": "clusterings", "method.la_kmeans_iters": "kmeans_iters"}
    BEFORE = {"warm_start_epochs": 0}


def ball_outer(background: int, pool: int) -> float:
    """The ball's outer fraction that keeps the background - 1 rows nearest the anchor among its
    `pool` other bank rows (all of them where the pool is smaller). The sampler keeps
    int(outer * pool) rows (pretrain.negatives.band_limits): aiming half a row above the count
    truncates to it exactly, whatever the float rounding of the division."""
    others = min(background - 1, pool)
    return 1.0 if others >= pool else (others + 0.5) / pool


# (infonce=False: its loss is an aggregation, not InfoNCE, so neither the negative strategies nor
# the ring's neighbour views apply; its close neighbours are its own)
@METHODS.register("la", label="LA", order=4, config=LASettings, infonce=False)
class LA(BankMethod):
    views = 1
    baseline_sampler = "ball"

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        own = self.settings
        self.clusters, self.iters, self.warm_start = own.clusters, own.kmeans_iters, own.warm_start_epochs
        self.register_buffer("labels", torch.zeros(own.clusterings, num_samples, dtype=torch.long))
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.seed = cfg.train.seed
        if sampler.kind == "ball":  # LA's background is a count of rows, not a fraction: sized to this bank (docs/design.md §4)
            from pretrain.config import ConfigError, NegativesConfig  # (pretrain.config imports the methods)
            if cfg.negatives.outer != NegativesConfig.outer:
                raise ConfigError(f"key 'negatives.outer' = {cfg.negatives.outer} does not apply to LA's ball, whose "
                                  f"size is method.la.background = {own.background} bank rows (capped at the bank)")
            sampler.outer_final = ball_outer(own.background, num_samples - 1)
        # the warm start's uniform draws come from the trainer's sampler's generator, which every
        # checkpoint saves: a resumed warm start draws what the uninterrupted one would have (docs/design.md §7)
        self.uniform = NegativeSampler("uniform", device=sampler.generator.device)
        self.uniform.generator = sampler.generator

    def epoch_start(self, epoch: int) -> None:
        if epoch < self.warm_start:  # IR writes the bank; nothing to cluster yet
            return
        if int(self.clustered_epoch) == epoch:  # resumed mid-epoch: clusters already in the checkpoint
            return
        for c in range(len(self.labels)):
            g = torch.Generator().manual_seed(self.seed * 1009 + epoch * 31 + c)
            self.labels[c] = spherical_kmeans(self.bank.rows, self.clusters, self.iters, g)
        self.clustered_epoch.fill_(epoch)

    def forward(self, views, index, epoch):
        if epoch < self.warm_start:
            return self.instance_discrimination(views, index, epoch)
        q = self.encoder(views[0])
        sim = q @ self.bank.rows.T
        rows = torch.arange(len(index), device=q.device)
        background = self.sampler.mask(sim.detach(), exclude=index, epoch=epoch)
        background[rows, index] = True
        close = torch.zeros_like(background)
        for labels in self.labels:
            close |= labels[None, :] == labels[index][:, None]
        self.remember(index, q)
        negatives = background.clone()
        negatives[rows, index] = False  # the anchor's own row is the instance, not a negative
        fn = false_negatives(self.labels_of(index), self.image_labels, mask=negatives)
        return aggregation_loss(sim, close, background, self.t), fn

    def instance_discrimination(self, views, index, epoch):
        """The warm start: IR's loss (pretrain/methods/ir.py) with uniform negatives, the
        original's IR before LA; the bank is written as in every step."""
        q = self.encoder(views[0])
        pos, neg, drawn, _ = bank_logits(q, self.bank.rows, index, self.uniform, self.cfg.negatives.num, epoch)
        self.remember(index, q)
        fn = false_negatives(self.labels_of(index), self.image_labels, drawn=drawn)
        return info_nce(pos, neg, self.t), fn
