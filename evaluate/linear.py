"""The linear probes on a frozen backbone (docs/design.md §5.1): SGD through the full image
pipeline (the `paper` and `moco` protocols) and the cached probe (L-BFGS on features computed
once). Each protocol's settings, names and title are in evaluate/protocols/.

The full-path probe enforces MoCo's sanity checks: only fc.* is missing when the backbone is
loaded, only the linear layer is optimised, the backbone is in eval mode (BN statistics frozen)
and its weights are unchanged after the first epoch.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from core.logreg import fit_cached
from evaluate.protocols import Job, Protocol
from pretrain import data
from pretrain.knn import topk_accuracy


class SanityError(AssertionError):
    """A linear-evaluation invariant was violated; evaluation must not go on."""


def probe_model(backbone_sd: dict, arch: str, cifar_stem: bool, num_classes: int) -> nn.Module:
    """torchvision ResNet whose fc is a fresh linear layer; only fc.* may be missing on load."""
    from pretrain.models import backbone as make_backbone
    net = make_backbone(arch, cifar_stem)
    net.fc = nn.Linear(net.out_dim, num_classes)
    nn.init.normal_(net.fc.weight, std=0.01)
    nn.init.zeros_(net.fc.bias)
    missing, unexpected = net.load_state_dict(backbone_sd, strict=False)
    check_load(missing, unexpected)
    for name, p in net.named_parameters():
        p.requires_grad = name.startswith("fc.")
    return net


def check_load(missing, unexpected) -> None:
    if set(missing) != {"fc.weight", "fc.bias"} or unexpected:
        raise SanityError(f"backbone load: missing keys must be exactly fc.weight, fc.bias; "
                          f"got missing={sorted(missing)[:6]} unexpected={sorted(unexpected)[:6]}")


def check_optimizer(net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    fc = {id(p) for p in net.fc.parameters()}
    if optimised != fc:
        raise SanityError("optimizer: only the linear layer (fc.weight, fc.bias) may be optimised")
    if any(p.requires_grad for n, p in net.named_parameters() if not n.startswith("fc.")):
        raise SanityError("backbone parameters must have requires_grad=False")


def check_unchanged(net: nn.Module, reference: dict) -> None:
    """MoCo's sanity_check: every backbone tensor (BN statistics included) equals the loaded one."""
    for k, v in net.state_dict().items():
        if not k.startswith("fc.") and not torch.equal(v.cpu(), reference[k].cpu()):
            raise SanityError(f"backbone tensor {k} changed during linear evaluation")


def _train_transform(protocol: Protocol, recipe: str, size: int, native: int):
    finish = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.MEAN, data.STD)]
    if protocol.augment == "pretrain":
        return data.train_transform(recipe, size)
    if protocol.augment == "crop_flip":
        return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), *finish])
    if protocol.augment == "pretrain_crop_flip":  # the crop (scale 0.2-1) and flip of every pretraining recipe
        return v2.Compose([data.random_crop(size), v2.RandomHorizontalFlip(), *finish])
    return data.eval_transform(size, native)


@torch.no_grad()
def _evaluate(net, loader, device) -> dict:
    net.eval()
    scores, labels = [], []
    for views, y, _ in loader:
        scores.append(net(views[0].to(device)).float())
        labels.append(y.to(device))
    return topk_accuracy(torch.cat(scores), torch.cat(labels))


def full_path(backbone_sd: dict, arch: str, cifar_stem: bool, protocol: Protocol, train_ds, test_ds,
              num_classes: int, size: int, native: int, recipe: str, device, workers: int = 2,
              seed: int = 0, log=print, state: str | None = None, live=None) -> dict | None:
    """Train the linear layer through the full image pipeline. With `state`, the probe is
    checkpointed atomically after every epoch and an existing state file is resumed exactly
    (data order and augmentation are functions of seed, epoch and index).

    Under torchrun each rank takes its share of every global batch (pretrain's layout) and
    the linear layer's gradients are averaged, so W processes train what one does; rank 0
    evaluates and saves, the other ranks return None."""
    from core import checkpoint as ckpt
    from pretrain import distributed
    torch.manual_seed(seed)
    net = probe_model(backbone_sd, arch, cifar_stem, num_classes).to(device)
    reference = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.fc.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                          weight_decay=protocol.weight_decay)
    check_optimizer(net, opt)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, protocol.milestones, 0.1)
    start = 0
    if state is not None and Path(state).exists():
        saved = ckpt.read(state)
        net.fc.load_state_dict(saved["fc"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(saved["rng"])
        start = saved["epoch"]
        log(f"[linear] resumed from {state} after epoch {start}")
        if live is not None:
            live.resumed_at(start)
    train = data.Views(train_ds, _train_transform(protocol, recipe, size, native))
    world = distributed.world()
    batch = min(protocol.batch_size, len(train) // world * world)
    order = data.EpochSampler(len(train), batch, seed, rank=distributed.rank(), world=world)
    loader = DataLoader(train, batch_size=batch // world, sampler=order, num_workers=workers, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    test = DataLoader(data.Views(test_ds, data.eval_transform(size, native)), batch_size=256, num_workers=workers)
    for epoch in range(start, protocol.epochs):
        net.eval()  # the whole network: BN statistics stay frozen; fc has no train-mode behaviour
        order.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        for views, y, _ in loader:
            loss = F.cross_entropy(net(views[0].to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(net.fc.parameters())
            opt.step()
        sched.step()
        if epoch == start:
            check_unchanged(net, reference)
        if state is not None and distributed.is_main():
            ckpt.atomic_save({"fc": net.fc.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "rng": ckpt.rng_state(), "epoch": epoch + 1, "protocol": asdict(protocol)}, state)
        distributed.barrier()
        epoch_loss = distributed.mean(loss.item())
        if live is not None and distributed.is_main():  # TensorBoard: one point per epoch
            live.scalars({"loss": epoch_loss, "lr": lr}, epoch + 1)
        if (epoch + 1) % 10 == 0 or epoch + 1 == protocol.epochs:
            log(f"[linear] epoch {epoch + 1}/{protocol.epochs} loss {epoch_loss:.4f}")
    check_unchanged(net, reference)
    return _evaluate(net, test, device) if distributed.is_main() else None


@torch.no_grad()
def view_features(net: nn.Module, ds, transform, views, device, seed: int = 0, workers: int = 2,
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised features and labels of the listed views of every image of `ds`, view by view.
    View v of image i is drawn from the seed item_seed(seed, v, i) alone: the same features
    whatever the batching, the workers, or which other views are asked for (the first V views of
    a 16-view cache are the V-view cache)."""
    from pretrain.knn import features
    keys = [(i, data.item_seed(seed, v, i)) for v in views for i in range(len(ds))]
    loader = DataLoader(data.Views(ds, transform), batch_size=batch_size, sampler=keys, num_workers=workers)
    return features(net, loader, device, normalize=False)


def cached_features(net: nn.Module, protocol: Protocol, train_ds, test_ds, size: int, native: int, device,
                    seed: int = 0, workers: int = 2, recipe: str = "moco_v2"):
    """(train x, train y, test x, test y) for the cached probe: `protocol.views` augmented views
    of each training image (views = 0: the unaugmented one), unaugmented test images."""
    test = data.eval_transform(size, native)
    if protocol.views:
        tx, ty = view_features(net, train_ds, _train_transform(protocol, recipe, size, native),
                               range(protocol.views), device, seed, workers)
    else:
        tx, ty = view_features(net, train_ds, test, [0], device, seed, workers)
    return (tx, ty, *view_features(net, test_ds, test, [0], device, seed, workers))


def cached(train_x, train_y, test_x, test_y, num_classes: int, protocol: Protocol) -> tuple[dict, dict]:
    """(top-1/top-5 metrics, the L-BFGS fit's iterations, convergence and final objective)."""
    layer = fit_cached(train_x, train_y, num_classes, protocol.weight_decay, protocol.epochs)
    with torch.no_grad():
        return topk_accuracy(layer(test_x), test_y), layer.fit_info


def run_sgd(protocol: Protocol, job: Job) -> dict | None:
    """The full-path probe of a checkpoint, its state saved after every epoch under
    job.state_dir (default: the checkpoint's folder/probe) and resumed with job.resume; its
    loss curve goes to TensorBoard beside it. None on a rank other than 0."""
    from core import checkpoint, cli
    from pretrain import distributed
    from pretrain.livelog import LiveLog
    sd, arch, stem, _ = checkpoint.backbone_state(checkpoint.read(job.ckpt), job.ckpt)
    state_dir = cli.writable_dir(job.state_dir or Path(job.ckpt).parent / "probe",
                                 "--state-dir" if job.state_dir else "the probe state folder (--state-dir)")
    state = state_dir / f"{protocol.task_name()}_{job.dataset}.pt"
    if not job.resume:
        state.unlink(missing_ok=True)
    live = LiveLog(state_dir / f"tb_{state.stem}", "linear")  # tensorboard --logdir runs
    metrics = full_path(sd, arch, stem, protocol, job.train, job.test, job.classes, job.size, job.native,
                        job.recipe, job.device, job.workers, job.seed, state=str(state),
                        log=print if distributed.is_main() else (lambda *_: None), live=live)
    live.close()
    return metrics


def run_cached(protocol: Protocol, job: Job) -> tuple[dict, dict]:
    """(metrics, the L-BFGS fit) of the cached probe on the job's backbone."""
    tx, ty, qx, qy = cached_features(job.net, protocol, job.train, job.test, job.size, job.native, job.device,
                                     job.seed, job.workers, job.recipe)
    return cached(tx, ty, qx, qy, job.classes, protocol)
