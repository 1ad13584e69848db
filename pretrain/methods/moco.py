"""MoCo-v2 (Chen et al. 2020): query encoder, EMA key encoder, a queue of past keys as the
pool. Ring masks the queue entries outside each query's band out of the denominator. The
anchor's own past keys (a queue as long as the training set holds them) are no negatives for
any sampler (`exclude_own_key`, docs/design.md §3)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from pretrain import distributed
from pretrain.memory import Queue
from pretrain.methods.base import Method, false_negatives
from pretrain.registry import METHODS
from pretrain.settings import at_least, fraction


@dataclass
class MoCoSettings:
    queue_size: int = at_least(65536, 1)           # keys in the queue (official Ring: 65,536; MoCo baseline: 4,096)
    key_momentum: float = fraction(0.999)          # key-encoder EMA
    # Leave each anchor's own past keys out of its negatives (every sampler), as on ImageNet,
    # whose 1.28M images never meet their own key in a 65,536 queue. On a training set no longer
    # than the queue (CIFAR, mnist5k, the mini patches) the queue holds last epoch's key of every
    # anchor: kept, it is a negative for uniform and the most similar entry, cut by Ring's inner
    # edge, which credits Ring with a gain ImageNet cannot show. False: the earlier behaviour.
    exclude_own_key: bool = True
    LEGACY = {"method.queue_size": "queue_size", "method.key_momentum": "key_momentum"}  # (configs before
    BEFORE = {"exclude_own_key": False}  # each method had its own settings; without exclude_own_key)

    def check(self, cfg) -> tuple[str, str] | None:
        """(key, what is wrong) where these settings do not fit the rest of the config."""
        if self.queue_size < cfg.optim.batch_size:
            return "method.moco.queue_size", (f"{self.queue_size}, expected >= optim.batch_size "
                                              f"({cfg.optim.batch_size}): each step pushes a whole batch")
        return None


@METHODS.register("moco", label="MoCo", order=1, config=MoCoSettings)
class MoCo(Method):
    views = 2

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_encoder.requires_grad_(False)
        self.queue = Queue(self.settings.queue_size, cfg.model.feat_dim, self.init_generator)
        self.m = self.settings.key_momentum
        self._pending = None

    def pool_size(self) -> int:
        return len(self.queue)

    @torch.no_grad()
    def _ema(self):
        for q, k in zip(self.encoder.parameters(), self.key_encoder.parameters()):
            k.mul_(self.m).add_(q.detach(), alpha=1.0 - self.m)
        # BN running statistics are not averaged: the key encoder keeps its own (as MoCo does)

    @torch.no_grad()
    def _keys(self, x):
        """Shuffle-BN: the keys' BN groups (SplitBatchNorm groups on one device, the ranks
        under DDP) hold other images than the queries' groups, so BN cannot leak the positive."""
        x = distributed.gather(x)
        perm = distributed.broadcast(torch.randperm(len(x), device=x.device))
        k = distributed.gather(self.key_encoder(distributed.local(x[perm])))
        return distributed.local(k[torch.argsort(perm)])

    def forward(self, views, index, epoch):
        q = self.encoder(views[0])
        self._ema()  # MoCo updates the key encoder before computing this step's keys
        k = self._keys(views[1])
        neg = q @ self.queue.keys.T
        sim, own = neg.detach(), None
        if self.settings.exclude_own_key:
            # (B, N): the queue entries holding an earlier key of the anchor's own image, at zero,
            # one or (a queue over twice the training set) more positions. At -inf they rank last,
            # out of every band and core. The band's edges still count all N entries: an own key
            # moves them by at most one rank (none at the defaults, outer 0.1 of 65,536), while
            # counting it out would give each anchor its own limits, which the sampler's top-k
            # over the batch does not take.
            own = self.queue.index[None, :] == index[:, None]
            sim = sim.masked_fill(own, float("-inf"))
        mask = None if self.sampler.full else self.sampler.mask(sim, epoch=epoch)
        neighbours = self.sampler.core_mask(sim, epoch=epoch)
        if own is not None:
            # a band reaching the bottom of the queue (uniform, outer = 1) still holds them
            mask = ~own if mask is None else mask & ~own
            neighbours = None if neighbours is None else neighbours & ~own
            self.sampler.empty |= ~mask.any(1).all()  # some anchor's only negatives were its own keys
        loss = self.contrast((q * k).sum(1), neg, mask, pos_mask=neighbours)
        labels = self.labels_of(index)
        self._pending = (k, labels, index)
        # the diagnostic reads the mask that entered the loss, own keys removed
        return loss, false_negatives(labels, self.queue.labels, mask=mask)

    def step_end(self):
        k, labels, index = self._pending
        # every rank pushes the global batch's keys with their labels and image indices
        self.queue.push(distributed.gather(k), None if labels is None else distributed.gather(labels),
                        distributed.gather(index))
        self._pending = None
