"""Memory structures holding L2-normalised embeddings, as persistent buffers of a module
so that they travel with the state dict into every checkpoint (exact resume)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MemoryBank(nn.Module):
    """One row per training image (IR, CMC, LA). Row i is updated with image i's embedding."""

    def __init__(self, size: int, dim: int, momentum: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("rows", F.normalize(torch.randn(size, dim, generator=generator), dim=1))

    def __len__(self) -> int:
        return self.rows.shape[0]

    @torch.no_grad()
    def update(self, index: torch.Tensor, emb: torch.Tensor) -> None:
        # momentum 0 (official Ring IR) writes the new embedding; >0 is the lemniscate/CMC average
        new = self.momentum * self.rows[index] + (1.0 - self.momentum) * emb.detach().to(self.rows.dtype)
        self.rows[index] = F.normalize(new, dim=1)


class Queue(nn.Module):
    """FIFO of the most recent keys (MoCo). `ptr` is where the next batch is written. `labels`
    holds the keys' image labels (-1: unknown, e.g. the random initial keys), for the
    false-negative diagnostic only. `index` holds the dataset index of each key's image (-1 for
    the random initial keys): a queue as long as the training set holds each anchor's own key
    from its previous epoch, which MoCo leaves out of the negatives (docs/design.md §3)."""

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("index", torch.full((size,), -1, dtype=torch.long))

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor, labels: torch.Tensor | None = None, index: torch.Tensor | None = None) -> None:
        n, size = keys.shape[0], self.keys.shape[0]
        if n > size:
            raise ValueError(f"queue of {size} keys cannot take a batch of {n}")
        p = int(self.ptr)
        idx = (torch.arange(n, device=keys.device) + p) % size  # wraps: no divisibility requirement
        self.keys[idx] = keys.detach().to(self.keys.dtype)
        self.labels[idx] = -1 if labels is None else labels.to(self.labels.dtype)
        self.index[idx] = -1 if index is None else index.to(self.index.dtype)
        self.ptr.fill_((p + n) % size)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint from before the queue kept its keys' image indices loads with -1 (unknown)
        # for all of them: until the queue has turned over once, those keys are never recognised
        # as an anchor's own, i.e. they stay negatives as they did when it was written.
        state_dict.setdefault(prefix + "index", torch.full_like(self.index, -1))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
