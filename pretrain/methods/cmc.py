"""Contrastive Multiview Coding (Tian et al. 2019) with memory banks, colour split: the L
and ab channels of one augmented image go to two half-width encoders; each view's
embedding is contrasted against the *other* view's memory bank (positive: the same image's
row; K negatives from the sampler's band of that bank, the anchor's own row excluded), and
the two directions are summed. Ring ranks each bank by similarity to the querying view."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pretrain import distributed
from pretrain.memory import MemoryBank
from pretrain.methods.base import Method, bank_logits
from pretrain.objectives import info_nce


class CMC(Method):
    views = 1
    split_lab = True

    def __init__(self, cfg, num_samples, sampler):
        super().__init__(cfg, num_samples, sampler)
        mk = lambda: MemoryBank(num_samples, cfg.model.feat_dim, cfg.method.bank_momentum, self.init_generator)
        self.bank_l, self.bank_ab = mk(), mk()
        self.k = cfg.negatives.num
        self._pending = None

    def _direction(self, q, bank, index, epoch):
        return info_nce(*bank_logits(q, bank.rows, index, self.sampler, self.k, epoch), self.t)

    def forward(self, views, index, epoch):
        enc = self.encoder
        f_l, f_ab = enc.features(views[0], split=True)
        z_l, z_ab = F.normalize(enc.head["l"](f_l), dim=1), F.normalize(enc.head["ab"](f_ab), dim=1)
        loss_l = self._direction(z_l, self.bank_ab, index, epoch)   # L anchors, ab memories
        loss_ab = self._direction(z_ab, self.bank_l, index, epoch)  # ab anchors, L memories
        self._pending = (index, z_l.detach(), z_ab.detach())
        return loss_l + loss_ab, {"loss_l": loss_l.item(), "loss_ab": loss_ab.item()}

    def step_end(self):
        index, z_l, z_ab = (distributed.gather(t) for t in self._pending)  # every rank: the global batch
        self.bank_l.update(index, z_l)
        self.bank_ab.update(index, z_ab)
        self._pending = None
