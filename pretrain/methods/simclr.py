"""SimCLR (Chen et al. 2020): two views per image, NT-Xent over the 2B in-batch embeddings.
Each of the 2B anchors has one positive (its other view) and a pool of the 2B - 2 other
embeddings; Ring keeps only the pool entries in the anchor's band."""
from __future__ import annotations

import torch

from pretrain.methods.base import Method
from pretrain.objectives import info_nce


def others(sim: torch.Tensor) -> torch.Tensor:
    """(2B, 2B) similarities -> (2B, 2B - 2): each row without itself and its positive."""
    n = sim.shape[0]
    b = n // 2
    idx = torch.arange(n, device=sim.device)
    keep = torch.ones_like(sim, dtype=torch.bool)
    keep[idx, idx] = False
    keep[idx, (idx + b) % n] = False
    return sim[keep].view(n, n - 2)


class SimCLR(Method):
    views = 2

    def forward(self, views, index, epoch):
        z = self.encoder(torch.cat(views))  # one pass: both views share the BN batch, as in SimCLR
        b = len(views[0])
        sim = z @ z.T
        pos = torch.cat([sim.diagonal(b), sim.diagonal(-b)])
        pool = others(sim)
        mask = None if self.sampler.full else self.sampler.mask(pool.detach(), epoch=epoch)
        return info_nce(pos, pool, self.t, mask), {}
