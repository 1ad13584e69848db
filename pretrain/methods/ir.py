"""Instance discrimination with a memory bank (Wu et al. 2018), as in the official Ring code:
one view per image, positive = the image's own bank row, K negatives drawn from the
sampler's band of the bank (the anchor's own row excluded), InfoNCE at temperature t.

The positive's own term is in the partition either way (the official self_negative). The
official code draws k - 1 negatives so that its partition holds k terms; `official_negatives`
does the same, the default draws K (negatives.num) for K + 1 terms (docs/design.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

from pretrain.methods.base import BankMethod, bank_logits, false_negatives
from pretrain.registry import METHODS
from pretrain.settings import fraction


@dataclass
class IRSettings:
    bank_momentum: float = fraction(0.0, high_open=True)  # memory bank update momentum (official Ring IR: 0)
    official_negatives: bool = False  # draw negatives.num - 1 (the official k - 1 = 4,095), not negatives.num
    LEGACY = {"method.bank_momentum": "bank_momentum"}  # (keys of configs before each method had its own)


@METHODS.register("ir", label="IR", order=0, config=IRSettings)
class IR(BankMethod):
    views = 1

    def negatives_drawn(self) -> int:
        return self.cfg.negatives.num - (1 if self.settings.official_negatives else 0)

    def forward(self, views, index, epoch):
        q = self.encoder(views[0])
        k = self.negatives_drawn()
        pos, neg, drawn, neighbours = bank_logits(q, self.bank.rows, index, self.sampler, k, epoch)
        self.remember(index, q)
        fn = false_negatives(self.labels_of(index), self.image_labels, drawn=drawn)
        return self.contrast(pos, neg, pos_mask=neighbours), fn
