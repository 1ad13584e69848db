"""Contrastive objectives as pure functions of similarities (no state, no sampling).

Ring changes only *which* negatives enter the loss, never its form: CNCE is InfoNCE whose
negatives come from the ring, so a single function serves both (docs/design.md §3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(pos: torch.Tensor, neg: torch.Tensor, temperature: float,
             neg_mask: torch.Tensor | None = None, pos_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over anchors of -log(e^{s+/t} / (e^{s+/t} + sum_j e^{s_j/t})).

    pos: (B,) similarity to the positive; neg: (B, K) similarities to the other candidates;
    neg_mask: optional (B, K) bool, False entries are not negatives (they get e^{-inf} = 0).
    pos_mask: optional (B, K) bool, the neighbour views (the official code's neighbor_views with
    logsumexp_inner, docs/design.md §3): these entries join the positive in the numerator and
    are never negatives, -log(sum_{+, pos_mask} e^{s/t} / sum_{+, negatives} e^{s/t}), where
    the negatives are neg_mask (every entry where None) minus pos_mask. The positive stays in
    the partition, as in the plain loss (the official self-negative).
    """
    if pos.dim() != 1 or neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"info_nce: expected pos (B,) and neg (B, K), got {tuple(pos.shape)} and {tuple(neg.shape)}")
    logits = (torch.cat([pos[:, None], neg], dim=1) / temperature).float()
    keep = torch.ones_like(logits, dtype=torch.bool)
    if neg_mask is not None:
        keep[:, 1:] = neg_mask
    if pos_mask is None:  # the positive sits in column 0
        logits = logits.masked_fill(~keep, float("-inf"))
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))
    numerator = torch.cat([torch.ones_like(pos_mask[:, :1]), pos_mask], dim=1)
    # the official partition is the positive and the band only: the core it pulls closer is
    # not also pushed away
    partition = keep & ~numerator
    partition[:, 0] = True  # the positive is in both (so every row is finite)
    return (torch.logsumexp(logits.masked_fill(~partition, float("-inf")), dim=1)
            - torch.logsumexp(logits.masked_fill(~numerator, float("-inf")), dim=1)).mean()


def debiased_nce(pos: torch.Tensor, neg: torch.Tensor, temperature: float, tau_plus: float, beta: float = 0.0,
                 neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Debiased (DCL, Chuang et al. 2020; beta = 0) and hard-negative (HCL, Robinson et al.
    2021) contrastive loss: mean over anchors of -log(e^{s+/t} / (e^{s+/t} + Ng)) with

        Ng = max((sum_j w_j e^{s_j/t} - N tau+ e^{s+/t}) / (1 - tau+), N e^{-1/t}),

    w_j = e^{beta s_j/t} / mean_k e^{beta s_k/t} (all 1 for DCL), N = the anchor's negatives
    (neg_mask's True entries; every column where None). tau+ is the expected share of the
    negatives that are really positives (same class); subtracting it debiases the negative
    term, and the clamp keeps it at its smallest possible value. tau+ = 0 and beta = 0 give
    info_nce. Computed with each row's largest logit factored out (e^{28} at t = 0.07, beta = 1)."""
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"debiased_nce: tau_plus must be in [0, 1), got {tau_plus}")
    p = (pos / temperature).float()
    logits = (neg / temperature).float()
    keep = torch.ones_like(logits, dtype=torch.bool) if neg_mask is None else neg_mask
    n = keep.sum(1).to(logits.dtype)
    masked = lambda x: x.masked_fill(~keep, float("-inf"))  # noqa: E731
    # log sum_j w_j e^{s_j/t} = log sum_j e^{(1 + beta) s_j/t} - log mean_k e^{beta s_k/t}
    log_weighted = torch.logsumexp(masked((1.0 + beta) * logits), 1) - (torch.logsumexp(masked(beta * logits), 1)
                                                                         - n.log())
    m = torch.maximum(p, log_weighted).detach()  # factored out of every exponential below
    ng = (torch.exp(log_weighted - m) - tau_plus * n * torch.exp(p - m)) / (1.0 - tau_plus)
    ng = torch.maximum(ng, n * torch.exp(-1.0 / temperature - m))
    return (torch.log(torch.exp(p - m) + ng) + m - p).mean()


def aggregation_loss(sim: torch.Tensor, close: torch.Tensor, background: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Local Aggregation (Zhuang et al. 2019): mean of -log P(C ∩ B | v) / P(B | v), where
    P(A | v) ∝ sum_{j in A} e^{s_j/t}. sim, close, background: (B, N); each row's close set
    must be non-empty within its background (the anchor's own row guarantees it)."""
    logits = sim.float() / temperature
    inside = close & background
    return (torch.logsumexp(logits.masked_fill(~background, float("-inf")), dim=1)
            - torch.logsumexp(logits.masked_fill(~inside, float("-inf")), dim=1)).mean()
