"""Instance discrimination with a memory bank (Wu et al. 2018), as in the official Ring code:
one view per image, positive = the image's own bank row, K negatives drawn from the
sampler's band of the bank (the anchor's own row excluded), InfoNCE at temperature t."""
from __future__ import annotations

import torch

from pretrain.memory import MemoryBank
from pretrain.methods.base import Method
from pretrain.objectives import info_nce


class IR(Method):
    views = 1

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        self.bank = MemoryBank(num_samples, cfg.model.feat_dim, cfg.method.bank_momentum, self.init_generator)
        self.k = cfg.negatives.num
        self._pending = None

    def forward(self, views, index, epoch):
        q = self.encoder(views[0])
        rows = self.bank.rows
        # all B x N similarities at once: cheaper than gathering B x K x D rows while N < K * D,
        # and the ring needs them anyway to rank the pool
        sim = q @ rows.T
        idx = self.sampler.sample(self.k, len(rows), sim.detach(), exclude=index, epoch=epoch)
        loss = info_nce(sim.gather(1, index[:, None]).squeeze(1), sim.gather(1, idx), self.t)
        self._pending = (index, q.detach())
        return loss, {}

    def step_end(self):
        self.bank.update(*self._pending)
        self._pending = None
