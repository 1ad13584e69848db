"""Debiased contrastive learning (Chuang, Robinson, Lin, Torralba, Jegelka, NeurIPS 2020): the
negative term, a sum over negatives drawn without labels, also counts the anchor's own class
(its share tau+, the class prior); DCL subtracts that expected share (objectives.debiased_nce
with beta = 0). The authors define it for SimCLR's in-batch negatives; here it runs on any
pool a method's sampler keeps (docs/design.md §11)."""
from __future__ import annotations

from dataclasses import dataclass

from pretrain.objectives import debiased_nce
from pretrain.registry import STRATEGIES
from pretrain.settings import fraction


@dataclass
class DCLSettings:
    tau_plus: float = fraction(0.1, high_open=True)  # tau+: expected share of same-class negatives (authors: 0.1)


@STRATEGIES.register("dcl", label="DCL", order=1, config=DCLSettings)
def dcl(pos, neg, temperature, neg_mask=None, pos_mask=None, settings=None):
    return debiased_nce(pos, neg, temperature, settings.tau_plus, 0.0, neg_mask)
