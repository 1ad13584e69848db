"""Instance discrimination with a memory bank (Wu et al. 2018), as in the official Ring code:
one view per image, positive = the image's own bank row, K negatives drawn from the
sampler's band of the bank (the anchor's own row excluded), InfoNCE at temperature t."""
from __future__ import annotations

import torch

from pretrain import distributed
from pretrain.memory import MemoryBank
from pretrain.methods.base import Method, bank_logits
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
        loss = info_nce(*bank_logits(q, self.bank.rows, index, self.sampler, self.k, epoch), self.t)
        self._pending = (index, q.detach())
        return loss, {}

    def step_end(self):
        index, q = self._pending
        self.bank.update(distributed.gather(index), distributed.gather(q))  # every rank: the global batch
        self._pending = None
