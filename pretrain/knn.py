"""Weighted cosine kNN classification (Wu et al. 2018), the pretraining monitor and the
offline kNN evaluation: each of the k nearest training features votes for its class with
weight exp(similarity / t)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int,
                k: int = 200, t: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores (Q, C) for L2-normalised query features against a labelled bank."""
    k = min(k, len(bank))
    out = []
    for q in query.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device, dtype=sim.dtype)
        votes.scatter_add_(1, bank_labels[idx], (sim / t).exp())
        out.append(votes)
    return torch.cat(out)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """{'top1': %, 'top5': %}; k larger than the number of classes counts as top-C."""
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hit = ranked == labels[:, None]
    return {f"top{k}": 100.0 * hit[:, :k].any(1).float().mean().item() for k in ks}


@torch.no_grad()
def features(net: torch.nn.Module, loader, device, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (L2-normalised unless told otherwise) and labels of a whole loader, net in eval mode."""
    was = net.training
    net.eval()
    feats, labels = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        x = x[0] if isinstance(x, (list, tuple)) else x
        f = net(x.to(device, non_blocking=True)).float()
        feats.append(F.normalize(f, dim=1) if normalize else f)
        labels.append(torch.as_tensor(y).to(device))
    net.train(was)
    return torch.cat(feats), torch.cat(labels)
