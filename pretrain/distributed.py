"""torchrun / DDP helpers. Under one process every function is the identity, so the same
code path serves a laptop and a cluster.

Layout convention: rank r of W holds positions r, r + W, r + 2W, ... of each global batch
(EpochSampler), which is also how SplitBatchNorm groups a batch on one device: W processes
with per-device BN compute exactly what one process with bn_splits = W computes.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device_kind: str) -> torch.device | None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns the
    device of this rank (cuda:LOCAL_RANK under NCCL) or None when not distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    cuda = device_kind != "cpu" and torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return torch.device(f"cuda:{local}" if cuda else "cpu")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def gather(t: torch.Tensor) -> torch.Tensor:
    """Global-batch tensor from every rank's local slice, in global-batch order (no grad)."""
    w = world()
    if w == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(w)]
    dist.all_gather(parts, t.contiguous())
    # rank r held positions r::w: interleave back to 0, 1, 2, ...
    return torch.stack(parts, dim=1).reshape(-1, *t.shape[1:])


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's rows (r::W) of a global-batch tensor."""
    return t[rank()::world()]


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    if world() > 1:
        dist.broadcast(t, src)
    return t


def _reduce_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo takes CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean(value: float) -> float:
    """Average a scalar over ranks (for logging the global loss)."""
    if world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return t.item() / world()


def first_flagged(step: torch.Tensor) -> int:
    """The smallest non-negative `step` over ranks, or -1 where no rank flagged one."""
    if world() == 1:
        return int(step)
    big = torch.iinfo(torch.long).max
    t = torch.where(step < 0, big, step).to(_reduce_device(), torch.long).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return -1 if int(t) == big else int(t)


@torch.no_grad()
def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BN running statistics) over ranks. The running
    averages are linear in the batch statistics, so this equals what SplitBatchNorm with
    one group per rank keeps on a single device."""
    if world() == 1:
        return
    for name, b in module.named_buffers():
        if b.is_floating_point() and ("running_" in name):
            dist.all_reduce(b)
            b.div_(world())


@torch.no_grad()
def average_gradients(params) -> None:
    """Mean of each gradient over ranks: with equal local batches, the gradient of the global
    batch's mean loss (what DDP does, for a module too small to be worth wrapping)."""
    if world() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world())


def barrier() -> None:
    if world() > 1:
        dist.barrier()
