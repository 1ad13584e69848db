"""Contrastive Multiview Coding (Tian et al. 2019) with memory banks, colour split: the L
and ab channels of one augmented image go to two half-width encoders; each view's
embedding is contrasted against the *other* view's memory bank (positive: the same image's
row; K negatives from the sampler's band of that bank, the anchor's own row excluded), and
the two directions are summed. Ring ranks each bank by similarity to the querying view."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pretrain.methods.base import BankMethod, bank_logits, false_negatives
from pretrain.registry import METHODS
from pretrain.settings import fraction


@dataclass
class CMCSettings:
    bank_momentum: float = fraction(0.5, high_open=True)  # memory bank update momentum (CMC's own: 0.5)
    LEGACY = {"method.bank_momentum": "bank_momentum"}  # (keys of configs before each method had its own)


@METHODS.register("cmc", label="CMC", order=2, config=CMCSettings)
class CMC(BankMethod):
    views = 1
    split_lab = True
    banks = ("bank_l", "bank_ab")

    def _direction(self, q, bank, index, epoch):
        pos, neg, drawn, neighbours = bank_logits(q, bank.rows, index, self.sampler, self.cfg.negatives.num, epoch)
        self._drawn.append(drawn)
        return self.contrast(pos, neg, pos_mask=neighbours)

    def negatives_drawn(self) -> int:
        return self.cfg.negatives.num

    def forward(self, views, index, epoch):
        enc = self.encoder
        f_l, f_ab = enc.features(views[0], split=True)
        z_l, z_ab = F.normalize(enc.head["l"](f_l), dim=1), F.normalize(enc.head["ab"](f_ab), dim=1)
        self._drawn = []
        loss_l = self._direction(z_l, self.bank_ab, index, epoch)   # L anchors, ab memories
        loss_ab = self._direction(z_ab, self.bank_l, index, epoch)  # ab anchors, L memories
        self.remember(index, z_l, z_ab)
        both = torch.cat([index, index]), torch.cat(self._drawn)  # both directions' negatives
        fn = false_negatives(self.labels_of(both[0]), self.image_labels, drawn=both[1])
        return loss_l + loss_ab, {"loss_l": loss_l.detach(), "loss_ab": loss_ab.detach(), **fn}
