"""The pretraining loop: any base method x any negative sampler, checkpointed and resumable.

Exact resume rests on three facts: batches come from EpochSampler (a pure function of
seed, epoch and position), augmentation is seeded per item, and a checkpoint holds every
other piece of state (model, memory, optimizer, sampler generator, RNGs, step).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core import checkpoint as ckpt
from core import records
from core.devices import pick_device
from pretrain import config as config_mod
from pretrain import data, device_decode, distributed, hooks, methods, negatives
from pretrain.device_augment import DeviceAugment
from pretrain.knn import features, knn_predict, topk_accuracy
from pretrain.livelog import LiveLog
from pretrain.models import Encoder
from pretrain.negatives import NegativeSampler
from pretrain.registry import names

# keys that may differ between a checkpoint and the command that resumes it
RESUMABLE_CHANGES = ("optim.epochs", "train.log_every", "train.ckpt_every", "train.keep_last",
                     "train.knn_every", "data.workers", "data.root", "train.device", "train.tensorboard",
                     "train.compile", "train.compile_mode", "train.fused_optimizer")


def band_usage(sampler: NegativeSampler, method, cfg, steps: int) -> tuple[dict, str | None]:
    """The band this run trains with, not the one it asks for: its size (rows of the pool) at the
    first and the last step (every schedule is monotone, so these are its extremes) and the outer
    fraction it ends at; and a warning where the band is smaller than the negatives a drawing
    method must supply (they would repeat) or a single row."""
    pool = method.pool_size()
    last = cfg.optim.epochs - 1.0 / steps  # the last step's progress in epochs
    sizes = []
    for progress in (0.0, last):
        lo, hi = negatives.band_limits(pool, *sampler.fractions(progress))
        sizes.append(hi - lo)
    outer, inner = sampler.fractions(last)
    band = {"pool": pool, "size_min": min(sizes), "size_max": max(sizes), "first": sizes[0], "last": sizes[1],
            "outer_last": outer, "inner": inner}
    need = method.negatives_drawn()
    warning = None
    if need and band["size_min"] < need:
        warning = (f"negatives: the band holds {band['size_min']:,} of {pool:,} pool rows at its narrowest "
                   f"(outer {outer:g} at the last step), fewer than the {need:,} negatives {cfg.method.name} draws per "
                   f"anchor: draws repeat")
    elif band["size_min"] == 1 < pool:
        warning = f"negatives: the band holds a single row of {pool:,} at its narrowest (outer {outer:g} at the last step)"
    return band, warning


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_resume_config(saved: dict, current: dict, source: str) -> None:
    a, b = _flat(saved), _flat(current)
    for key in sorted(set(a) | set(b)):
        if key not in RESUMABLE_CHANGES and key != "name" and a.get(key) != b.get(key):
            raise config_mod.ConfigError(
                f"{source}: cannot resume, config key '{key}' is {b.get(key)!r} but the checkpoint was "
                f"trained with {a.get(key)!r}")


class Trainer:
    def __init__(self, cfg, out_dir: str | os.PathLike, results_dir: str | os.PathLike | None = None):
        self.cfg, self.out = cfg, Path(out_dir)
        self.results = Path(results_dir) if results_dir else None
        # under torchrun: one process per device, gloo on CPU, NCCL on GPUs (docs/design.md §6)
        device = pick_device(cfg.train.device, "train.device")  # 'cuda' without a GPU: one line, under torchrun too
        self.device = distributed.init(cfg.train.device) or device
        self.world, self.rank = distributed.world(), distributed.rank()
        if cfg.optim.batch_size % self.world:
            raise config_mod.ConfigError(f"optim.batch_size: {cfg.optim.batch_size} (the global batch) is not "
                                         f"divisible by {self.world} processes")
        torch.manual_seed(cfg.train.seed)
        split = data.info(cfg.data.dataset).pretrain
        base = data.subset(data.load(cfg.data.dataset, cfg.data.root, split, cfg.data.verify_checksums), cfg.data.limit)
        self.sampler = NegativeSampler.from_config(cfg.negatives, cfg.train.seed, self.device)
        self.method = methods.build(cfg, len(base), self.sampler).to(self.device)
        self.method.set_labels(data.targets(base).to(self.device))  # for the false-negative diagnostic
        self.trained_classes = data.class_counts(base)
        self._set_precision()
        if cfg.data.gpu_decode:  # workers read files and draw crops; the device decodes (docs/design.md §6)
            views = device_decode.EncodedViews(base, cfg.data.image_size, self.method.views, cfg.data.dataset)
        else:
            views = data.Views(base, data.train_transform(cfg.data.augment, cfg.data.image_size, cfg.data.gpu_augment),
                               self.method.views)
        self.device_augment = (DeviceAugment(cfg.data.augment, cfg.data.image_size).to(self.device)
                               if cfg.data.gpu_augment else None)
        self.order = data.EpochSampler(len(views), cfg.optim.batch_size, cfg.train.seed, rank=self.rank, world=self.world)
        if self.order.steps() == 0:
            raise config_mod.ConfigError(f"optim.batch_size: {cfg.optim.batch_size} exceeds the "
                                         f"{len(views)} training images of {cfg.data.dataset}")
        self.local_batch = cfg.optim.batch_size // self.world
        self.loader = DataLoader(views, batch_size=self.local_batch, sampler=self.order, drop_last=True,
                                 num_workers=cfg.data.workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=cfg.data.workers > 0,
                                 collate_fn=device_decode.collate if cfg.data.gpu_decode else None,
                                 # its own generator: creating an iterator must not draw from the
                                 # global RNG, or a run resumed mid-epoch would shift that stream
                                 generator=torch.Generator().manual_seed(cfg.train.seed))
        # DDP averages gradients; buffers (banks, queues, BN statistics) are kept in step by the
        # methods' gathered updates, so syncing them every forward would only cost bandwidth
        self.model = (torch.nn.parallel.DistributedDataParallel(self.method, forward_sync_buffers=False)
                      if self.world > 1 else self.method)
        params = [p for p in self.method.parameters() if p.requires_grad]
        fused = {"on": True, "off": False, "auto": self.device.type == "cuda"}[cfg.train.fused_optimizer]
        self.optimizer = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay, fused=fused or None)
        self.epoch, self.step, self.step_in_epoch = 0, 0, 0
        self.lr, self.last_loss = cfg.optim.lr, float("nan")  # this epoch's; the last loss read (hooks.Sync)
        self.knn = None  # last monitor result
        # false-negative diagnostic (docs/design.md §9): this epoch's running sum and steps, and
        # the last finished epoch's mean; on the device, read once per epoch
        self._fn_sum, self._fn_steps, self.false_negatives = torch.zeros((), device=self.device), 0, None
        # first step (counted from 1) whose loss was not finite, and whose band was empty: -1 for none
        self._bad = torch.full((2,), -1, dtype=torch.long, device=self.device)
        self.live = LiveLog(self.out, "pretrain", cfg.train.tensorboard)
        self._monitor_loaders = None
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.epoch_changes: list[dict] = []  # resumes with another optim.epochs (carried in checkpoints)
        self.band, warning = band_usage(self.sampler, self.method, cfg, self.order.steps())
        self.warnings = [warning] if warning else []
        if warning:
            print(f"[pretrain] warning: {warning}", file=sys.stderr)

    def _set_precision(self) -> None:
        """bf16 autocast for the backbones (train.precision) and NHWC on CUDA."""
        precision = self.cfg.train.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        for enc in self.method.modules():
            if isinstance(enc, Encoder):
                enc.autocast = torch.bfloat16 if precision == "bf16" else None
        self.channels_last = self.device.type == "cuda" and self.cfg.train.channels_last
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if self.cfg.train.compile:  # in place: parameter names, and so checkpoints, are unchanged
            for enc in self.method.modules():
                if isinstance(enc, Encoder):
                    enc.backbone.compile(mode=self.cfg.train.compile_mode)
                    enc.head.compile(mode=self.cfg.train.compile_mode)

    def _inputs(self, views) -> list[torch.Tensor]:
        if self.cfg.data.gpu_decode:  # (encoded files, crop windows) -> uint8 views on the device
            views = device_decode.decode_views(*views, self.cfg.data.image_size, self.device)
        else:
            views = [v.to(self.device, non_blocking=True) for v in views]
        if self.device_augment is not None:
            views = [self.device_augment(v) for v in views]
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    # ------------------------------------------------------------ state
    def state(self) -> dict:
        enc = self.method.encoder
        return {
            "format": ckpt.FORMAT, "version": ckpt.VERSION,
            "arch": enc.backbone.arch_name, "cifar_stem": self.cfg.model.cifar_stem,
            "feature_dim": enc.backbone.out_dim,
            "backbone": enc.backbone.state_dict(), "head": enc.head.state_dict(),
            "method_state": {k: v for k, v in self.method.state_dict().items() if not k.startswith("encoder.")},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.cfg.optim.schedule, "lr": self.optimizer.param_groups[0]["lr"]},
            "sampler": self.sampler.state_dict(), "rng": ckpt.rng_state(),
            "config": config_mod.to_dict(self.cfg),
            "epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
            "knn": self.knn, "epoch_changes": self.epoch_changes,
            "diagnostics": {"fn_sum": float(self._fn_sum), "fn_steps": self._fn_steps,
                            "false_negatives": self.false_negatives},
        }

    def load_state(self, payload: dict, source: str) -> None:
        if payload.get("format") != ckpt.FORMAT:
            raise ckpt.CheckpointError(f"{source}: not a ringbench checkpoint")
        # (a checkpoint written before each method had its own settings is read in today's layout)
        check_resume_config(config_mod.migrate(payload["config"]), config_mod.to_dict(self.cfg), source)
        sd = {f"encoder.backbone.{k}": v for k, v in payload["backbone"].items()}
        sd.update({f"encoder.head.{k}": v for k, v in payload["head"].items()})
        sd.update(payload["method_state"])
        missing, unexpected = self.method.load_state_dict(sd, strict=False)
        # a checkpoint from before MoCo's queue kept its keys' labels (diagnostic only): -1, unknown
        if unexpected or any(not k.endswith("queue.labels") for k in missing):
            raise ckpt.CheckpointError(f"{source}: does not match this method's state (missing "
                                       f"{sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
        self.optimizer.load_state_dict(payload["optimizer"])
        self.sampler.load_state_dict(payload["sampler"])
        ckpt.set_rng_state(payload["rng"])
        self.epoch, self.step, self.step_in_epoch = payload["epoch"], payload["step"], payload["step_in_epoch"]
        self.knn = payload.get("knn")
        self.epoch_changes = list(payload.get("epoch_changes") or [])
        before = payload["config"].get("optim", {}).get("epochs")
        if before is not None and before != self.cfg.optim.epochs:
            change = {"from": before, "to": self.cfg.optim.epochs, "at_epoch": self.epoch, "at_step": self.step}
            self.epoch_changes.append(change)
            print(f"[pretrain] warning: resuming a {before}-epoch run as a {self.cfg.optim.epochs}-epoch run at epoch "
                  f"{self.epoch}: the learning-rate schedule (and an anneal that depends on it) of the epochs "
                  f"still to come follows {self.cfg.optim.epochs}; the record says so", file=sys.stderr)
        diag = payload.get("diagnostics") or {}
        self._fn_sum.fill_(diag.get("fn_sum", 0.0))
        self._fn_steps, self.false_negatives = diag.get("fn_steps", 0), diag.get("false_negatives")
        self._truncate_log()
        self.live.resumed_at(self.step)

    def save(self) -> Path:
        """Rank 0 writes; every rank first averages BN statistics (see distributed.average_buffers)."""
        path = self.out / "checkpoints" / f"ckpt_step{self.step:08d}.pt"
        distributed.average_buffers(self.method)
        if not distributed.is_main():
            distributed.barrier()
            return path
        ckpt.atomic_save(self.state(), path)
        distributed.barrier()
        old = sorted(path.parent.glob("ckpt_step*.pt"), key=ckpt.checkpoint_step)
        for stale in old[: max(0, len(old) - self.cfg.train.keep_last)]:
            stale.unlink()
        return path

    def resume(self, what: str) -> None:
        if what == "auto":
            found = ckpt.latest(self.out / "checkpoints")
            if found is None:
                print(f"[pretrain] no checkpoint in {self.out / 'checkpoints'}: starting from scratch")
                return
            path, payload = found
        else:
            path, payload = Path(what), ckpt.read(what)
        self.load_state(payload, str(path))
        print(f"[pretrain] resumed from {path} (epoch {self.epoch}, step {self.step})")

    # ------------------------------------------------------------ logging
    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"

    def log(self, entry: dict) -> None:
        """One JSON line in log.jsonl, and the same numbers as TensorBoard scalars beside it."""
        if not distributed.is_main():
            return
        with open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.live.scalars(entry, entry["step"])

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone),
        and a last line cut short by a kill. Rewritten atomically: a second kill loses nothing."""
        if not distributed.is_main() or not self.log_path.exists():
            return
        keep = []
        for line in self.log_path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    keep.append(line)
            except (ValueError, KeyError):
                continue
        tmp = self.log_path.with_name(".log.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, self.log_path)

    # ------------------------------------------------------------ monitor
    def monitor(self) -> dict:
        """Weighted kNN top-1/top-5 on the test split, train split as the labelled bank."""
        cfg = self.cfg
        if self._monitor_loaders is None:  # built once: re-reading datasets every epoch is waste
            d = data.info(cfg.data.dataset)
            tf = data.eval_transform(cfg.data.image_size, d.native)
            self._monitor_loaders = [
                DataLoader(data.Views(data.load(cfg.data.dataset, cfg.data.root, split, cfg.data.verify_checksums), tf),
                           batch_size=256, num_workers=cfg.data.workers)
                for split in (d.train, d.test)]
        net = self.method.encoder.backbone
        bank, bank_y = features(net, self._monitor_loaders[0], self.device)
        query, query_y = features(net, self._monitor_loaders[1], self.device)
        scores = knn_predict(query, bank, bank_y, data.info(cfg.data.dataset).classes, cfg.train.knn_k, cfg.train.knn_t)
        return topk_accuracy(scores, query_y)

    # ------------------------------------------------------------ loop
    def train_step(self, views: list[torch.Tensor], index: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict]:
        """One optimisation step on a local batch; returns this rank's loss as a device tensor.

        Nothing here waits for the device (no .item()): a non-finite loss or an empty band is
        recorded, with its step, in `_bad` on the device, and `check()` (at log steps, before
        every checkpoint) turns it into an error. The steps in between may train on it, but no
        checkpoint is written after it: the last good one stays the newest."""
        if self.cfg.train.compile and self.cfg.train.compile_mode != "default":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
        views = self._inputs(views)
        loss, metrics = self.model(views, index.to(self.device), progress)
        flags = torch.stack([~torch.isfinite(loss.detach()), self.sampler.take_empty()])
        self._bad = torch.where((self._bad < 0) & flags, self.step + 1, self._bad)  # steps count from 1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.step_end()
        return loss.detach(), metrics

    def check(self) -> None:
        """The loop's host sync: stop every rank at the first step whose loss was not finite or
        whose band was empty for some anchor (a zero loss that looks like a converged one)."""
        nan, empty = (distributed.first_flagged(flag) for flag in self._bad)
        if nan < 0 and empty < 0:
            return
        steps = self.order.steps()
        where = lambda s: f"step {s} (epoch {(s - 1) // steps + 1})"  # noqa: E731 - as the progress lines
        good = ckpt.latest(self.out / "checkpoints")
        last = f"last good checkpoint: {good[0] if good else 'none'}"
        if empty >= 0 and (nan < 0 or empty <= nan):
            raise TrainingError(f"the negative band is empty for some anchor at {where(empty)} (its loss would be "
                                f"zero); {last}")
        raise TrainingError(f"non-finite loss at {where(nan)}; {last}")

    # the hooks, in the order they run at each point (pretrain/hooks.py)
    def _hooks(self) -> list[hooks.Hook]:
        out = [hooks.LRSchedule(), hooks.FalseNegatives(), hooks.Sync(), hooks.KnnMonitor(), hooks.LogWriter(),
               hooks.Checkpointer()]
        for h in out:
            h.trainer = self
        return out

    def at_log_step(self) -> bool:
        return self.step % self.cfg.train.log_every == 0

    def at_checkpoint(self) -> bool:
        return bool(self.cfg.train.ckpt_every) and self.step % self.cfg.train.ckpt_every == 0

    def fit(self) -> dict:
        """The loop: epochs of steps; everything else is a hook."""
        hooks_ = self._hooks()
        self.steps, start, images = self.order.steps(), time.time(), 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for h in hooks_:
            h.before_train()
        self.method.train()
        while self.epoch < self.cfg.optim.epochs:
            for h in hooks_:
                h.before_epoch()
            self.order.set_epoch(self.epoch, start=self.step_in_epoch * self.local_batch)
            self.method.epoch_start(self.epoch)
            self.bar = tqdm(self.loader, total=self.steps, initial=self.step_in_epoch, desc=f"epoch {self.epoch}",
                            disable=None if distributed.is_main() else True, leave=False)
            for views, _, index in self.bar:
                self.progress = self.epoch + self.step_in_epoch / self.steps
                loss, metrics = self.train_step(views, index, self.progress)
                self.step, self.step_in_epoch = self.step + 1, self.step_in_epoch + 1
                images += len(index) * self.world
                for h in hooks_:
                    h.after_step(loss, metrics)
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            entry = {"step": self.step, "epoch": self.epoch, "loss": self.last_loss, "lr": self.lr}
            for h in hooks_:
                h.after_epoch(entry)
        wall = time.time() - start
        return {"loss": self.last_loss, "wall_s": wall, "images_per_s": images / wall if wall > 0 else 0.0}

    def finish(self, stats: dict) -> Path:
        """Publish final.pt (a hard link to the newest checkpoint) and the results record."""
        self.live.close()
        final = self.out / "final.pt"
        if not distributed.is_main():
            return final
        newest = ckpt.latest(self.out / "checkpoints")[0]
        tmp = final.with_name(".final.pt.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(newest, tmp)
        except OSError:
            ckpt.atomic_save(ckpt.read(newest), tmp)
        os.replace(tmp, final)
        if self.results is not None:
            metrics = {"final_loss": stats["loss"], "epochs": self.epoch, "steps": self.step,
                       "images_per_s": stats["images_per_s"]}
            if self.knn:
                metrics.update({f"knn_{k}": v for k, v in self.knn.items()})
            if self.false_negatives is not None:  # the last epoch's
                metrics["false_negatives"] = self.false_negatives
            resolved = config_mod.to_dict(self.cfg)
            rec = records.make(self.cfg.name, "pretrain", "pretrain", self.cfg.data.dataset, metrics,
                               resolved, **names(resolved), checkpoint=final, seed=self.cfg.train.seed,
                               wall_s=stats["wall_s"], log=str(self.log_path),
                               log_absolute=str(self.log_path.resolve()), world_size=self.world,
                               trained_images=sum(self.trained_classes.values()), trained_classes=self.trained_classes,
                               band=self.band, epoch_changes=self.epoch_changes, warnings=self.warnings)
            records.write(rec, self.results)
        return final
