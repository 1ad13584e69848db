"""Spherical k-means on L2-normalised rows (Local Aggregation's clusterings of the bank)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def spherical_kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None,
                     chunk: int = 65536) -> torch.Tensor:
    """Cluster labels (N,) of unit rows x (N, D) by cosine similarity; deterministic given
    the generator. An empty cluster keeps its previous centroid."""
    n = x.shape[0]
    k = min(k, n)
    perm = torch.randperm(n, generator=generator, device="cpu")[:k].to(x.device)
    centroids = x[perm].clone()
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        for s in range(0, n, chunk):
            labels[s:s + chunk] = (x[s:s + chunk] @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centroids[filled] = F.normalize(sums[filled], dim=1)
    return labels
