"""Few-shot classifiers on frozen features: fit on an episode's support set, score its queries.

Both work on L2-normalised features, so that the feature scale of a backbone does not matter.

- prototype: nearest centroid (Prototypical Networks, the head Meta-Dataset evaluates): the
  centroid of a class is the mean of its normalised support features; a query goes to the
  class whose centroid is nearest in squared Euclidean distance (not cosine: the centroid is
  left unnormalised, as ProtoNets do).
- logreg: multinomial logistic regression fitted with core.logreg.fit_cached (L-BFGS on
  standardised features, mean cross-entropy + wd/2 ||W||^2) with wd = 1/|S|, i.e. the
  objective of scikit-learn's LogisticRegression default C = 1 divided by |S|.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

HEADS = ("prototype", "logreg")
LOGREG_MAX_ITER = 100


def prototype(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    s, q = F.normalize(support, dim=1), F.normalize(query, dim=1)
    sums = torch.zeros(ways, s.shape[1], dtype=s.dtype, device=s.device).index_add_(0, support_y, s)
    counts = torch.bincount(support_y, minlength=ways).clamp_min(1).to(s.dtype)
    return -torch.cdist(q, sums / counts[:, None]).pow(2)


def logreg(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    from core.logreg import fit_cached
    s, q = F.normalize(support, dim=1), F.normalize(query, dim=1)
    with torch.enable_grad():
        layer = fit_cached(s, support_y, ways, weight_decay=1.0 / len(s), max_iter=LOGREG_MAX_ITER)
    with torch.no_grad():
        return layer(q)


def accuracy(head: str, support, support_y, query, query_y, ways: int) -> float:
    """Top-1 accuracy (%) of the head on one episode."""
    scores = {"prototype": prototype, "logreg": logreg}[head](support, support_y, query, ways)
    return 100.0 * (scores.argmax(1) == query_y).float().mean().item()


def describe(head: str) -> dict:
    if head == "prototype":
        return {"head": head, "features": "L2-normalised", "distance": "squared Euclidean to class mean"}
    return {"head": head, "features": "L2-normalised, standardised on the support set", "optimizer": "lbfgs",
            "max_iter": LOGREG_MAX_ITER, "weight_decay": "1/|S| (scikit-learn C=1)"}
