"""Local Aggregation (Zhuang, Zhai, Yamins 2019) with a memory bank. Close neighbours: bank
rows that share the anchor's cluster in any of several k-means clusterings of the bank
(recomputed every epoch). Background neighbours: the sampler's band of the bank. LA's own
background is the 4,096 nearest bank rows: the `ball` sampler with outer = 4096 / N, which
is therefore LA's baseline (the "LA" row of every table); `ring` also drops the very
closest rows; `uniform` (the whole bank) is a variant, labelled as such. The anchor's own
row is always in both sets (it is the instance itself), never a negative."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain.kmeans import spherical_kmeans
from pretrain.methods.base import BankMethod, false_negatives
from pretrain.objectives import aggregation_loss
from pretrain.registry import METHODS
from pretrain.settings import at_least, fraction


@dataclass
class LASettings:
    bank_momentum: float = fraction(0.5, high_open=True)  # memory bank update momentum (LA's own: 0.5)
    clusters: int = at_least(1000, 1)      # k of each k-means clustering of the bank
    clusterings: int = at_least(3, 1)      # clusterings (different seeds); close = same cluster in any
    kmeans_iters: int = at_least(10, 1)    # Lloyd iterations per clustering, every epoch


@METHODS.register("la", label="LA", order=4, config=LASettings)
class LA(BankMethod):
    views = 1
    baseline_sampler = "ball"

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        own = self.settings
        self.clusters, self.iters = own.clusters, own.kmeans_iters
        self.register_buffer("labels", torch.zeros(own.clusterings, num_samples, dtype=torch.long))
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.seed = cfg.train.seed

    def epoch_start(self, epoch: int) -> None:
        if int(self.clustered_epoch) == epoch:  # resumed mid-epoch: clusters already in the checkpoint
            return
        for c in range(len(self.labels)):
            g = torch.Generator().manual_seed(self.seed * 1009 + epoch * 31 + c)
            self.labels[c] = spherical_kmeans(self.bank.rows, self.clusters, self.iters, g)
        self.clustered_epoch.fill_(epoch)

    def forward(self, views, index, epoch):
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
