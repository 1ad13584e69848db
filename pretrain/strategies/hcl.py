"""Hard negative sampling (Robinson, Chuang, Sra, Jegelka, ICLR 2021): DCL's debiased negative
term with each negative importance-weighted by e^{beta s/t}, normalised to mean 1 over the
anchor's negatives, so harder (more similar) negatives count more (objectives.debiased_nce).
beta = 0 is DCL. With the ring sampler the weights and the debiasing act inside the band
(docs/design.md §11)."""
from __future__ import annotations

from dataclasses import dataclass

from pretrain.objectives import debiased_nce
from pretrain.registry import STRATEGIES
from pretrain.settings import at_least, fraction


@dataclass
class HCLSettings:
    tau_plus: float = fraction(0.1, high_open=True)  # tau+: expected share of same-class negatives (authors: 0.1)
    beta: float = at_least(1.0, 0)  # concentration on hard negatives (authors: 1.0); 0 = DCL


@STRATEGIES.register("hcl", label="HCL", order=2, config=HCLSettings)
def hcl(pos, neg, temperature, neg_mask=None, pos_mask=None, settings=None):
    return debiased_nce(pos, neg, temperature, settings.tau_plus, settings.beta, neg_mask)
