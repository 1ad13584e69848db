"""SimCLR (Chen et al. 2020): two views per image, NT-Xent over the 2B in-batch embeddings.
Each of the 2B anchors has one positive (its other view) and a pool of the 2B - 2 other
embeddings; Ring keeps only the pool entries in the anchor's band. Under DDP the pool is
gathered from every rank with gradients, so the loss is that of the global batch."""
from __future__ import annotations

import torch
import torch.distributed.nn.functional as dist_fn

from pretrain import distributed
from pretrain.methods.base import Method, false_negatives
from pretrain.registry import METHODS


def others(sim: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(R, 2B) similarities of anchors `rows` (default: all 2B) -> (R, 2B - 2): each row
    without the anchor itself and its positive (the other view, B away)."""
    n = sim.shape[1]
    rows = torch.arange(n, device=sim.device) if rows is None else rows
    r = torch.arange(len(rows), device=sim.device)
    keep = torch.ones_like(sim, dtype=torch.bool)
    keep[r, rows] = False
    keep[r, (rows + n // 2) % n] = False
    return sim[keep].view(len(rows), n - 2)


def _gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    if distributed.world() == 1:
        return z
    # rank r holds global positions r::W: interleave back into global order
    return torch.stack(dist_fn.all_gather(z), dim=1).reshape(-1, z.shape[1])


@METHODS.register("simclr", label="SimCLR", order=3)
class SimCLR(Method):
    views = 2

    def pool_size(self) -> int:
        return 2 * self.cfg.optim.batch_size - 2  # the other in-batch embeddings of the global batch

    def forward(self, views, index, epoch):
        b = len(views[0])
        z = self.encoder(torch.cat(views))  # one pass: both views share the BN batch, as in SimCLR
        full = torch.cat([_gather_with_grad(z[:b]), _gather_with_grad(z[b:])])  # (2B_global, D)
        big_b, r, w = len(full) // 2, distributed.rank(), distributed.world()
        rows = torch.cat([torch.arange(r, big_b, w), torch.arange(big_b + r, 2 * big_b, w)]).to(z.device)
        sim = full[rows] @ full.T
        pos = sim[torch.arange(len(rows), device=z.device), (rows + big_b) % (2 * big_b)]
        pool = others(sim, rows)
        mask = None if self.sampler.full else self.sampler.mask(pool.detach(), epoch=epoch)
        neighbours = self.sampler.core_mask(pool.detach(), epoch=epoch)
        labels = self.labels_of(distributed.gather(index))  # the global batch's, in `full`'s order
        fn = {} if labels is None else false_negatives(
            labels.repeat(2)[rows], others(labels.repeat(2)[None, :].expand(len(rows), -1), rows), mask=mask)
        return self.contrast(pos, pool, mask, pos_mask=neighbours), fn
