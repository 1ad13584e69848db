"""The training loop's hooks, after detectron2's HookBase: Trainer.fit is the loop, and each
concern it serves (the learning-rate schedule, the host sync that stops on a non-finite loss or
an empty band, the false-negative statistics, the kNN monitor, logging, checkpointing) is a hook
called at fixed points. They run in the order Trainer._hooks lists them; each reads and changes
the trainer, whose state (checkpointed) they share."""
from __future__ import annotations

import json
import math

import torch

from pretrain import distributed


class Hook:
    trainer = None  # set by the trainer

    def before_train(self) -> None: ...
    def before_epoch(self) -> None: ...
    def after_step(self, loss: torch.Tensor, metrics: dict) -> None: ...
    def after_epoch(self, entry: dict) -> None:
        """`entry`: the epoch's log line, which hooks fill in before LogWriter writes it."""


def learning_rate(optim_cfg, epoch: int) -> float:
    """Per-epoch learning rate: a pure function of the epoch, so it needs no saved state."""
    if optim_cfg.schedule == "cosine":
        return optim_cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / optim_cfg.epochs))
    return optim_cfg.lr * optim_cfg.gamma ** sum(epoch >= m for m in optim_cfg.milestones)


class LRSchedule(Hook):
    """The epoch's learning rate, set before its first step."""

    def before_epoch(self):
        t = self.trainer
        t.lr = learning_rate(t.cfg.optim, t.epoch)
        for group in t.optimizer.param_groups:
            group["lr"] = t.lr


class Sync(Hook):
    """The loop's one host sync, at log steps, before a checkpoint and at the end of an epoch:
    stop at the first step whose loss was not finite or whose band was empty (Trainer.check),
    and read the global batch's loss."""

    def after_step(self, loss, metrics):
        t = self.trainer
        if t.at_log_step() or t.at_checkpoint() or t.step_in_epoch == t.steps:
            t.check()
            t.last_loss = distributed.mean(float(loss))
            t.bar.set_postfix(loss=f"{t.last_loss:.3f}")


class FalseNegatives(Hook):
    """The epoch's mean share of same-label negatives (docs/design.md §9): summed on the device
    every step, read and averaged over ranks once per epoch."""

    def after_step(self, loss, metrics):
        t = self.trainer
        if "false_negatives" in metrics:
            t._fn_sum += metrics["false_negatives"].detach()
            t._fn_steps += 1

    def after_epoch(self, entry):
        t = self.trainer
        if t._fn_steps:
            t.false_negatives = distributed.mean(float(t._fn_sum) / t._fn_steps)
            entry["false_negatives"] = t.false_negatives
        t._fn_sum.zero_()
        t._fn_steps = 0


class KnnMonitor(Hook):
    """Weighted kNN on the test split every train.knn_every epochs and after the last."""

    def after_epoch(self, entry):
        t = self.trainer
        every, epochs = t.cfg.train.knn_every, t.cfg.optim.epochs
        if every and (t.epoch % every == 0 or t.epoch == epochs):
            distributed.average_buffers(t.method)
            if distributed.is_main():
                t.knn = t.monitor()
                entry.update({f"knn_{k}": v for k, v in t.knn.items()})
            distributed.barrier()


class LogWriter(Hook):
    """log.jsonl (and TensorBoard): a fresh run's warnings first, a line every train.log_every
    steps, a line per epoch; and the epoch's progress line on stdout."""

    def before_train(self):
        t = self.trainer
        if t.step == 0 and distributed.is_main():  # a fresh run's warnings open its log
            with open(t.log_path, "a") as f:
                f.writelines(json.dumps({"step": 0, "warning": w}) + "\n" for w in t.warnings)

    def after_step(self, loss, metrics):
        t = self.trainer
        if t.at_log_step():
            outer, inner = t.sampler.fractions(t.progress)
            t.log({"step": t.step, "epoch": t.progress, "loss": t.last_loss, "lr": t.lr,
                   "outer": outer, "inner": inner, **{k: float(v) for k, v in metrics.items()}})

    def after_epoch(self, entry):
        t = self.trainer
        t.log(entry)
        t.live.flush()
        if distributed.is_main():
            print(f"[pretrain] {t.cfg.name} epoch {t.epoch}/{t.cfg.optim.epochs} step {t.step} "
                  f"loss {t.last_loss:.4f}" + (f" knn top1 {t.knn['top1']:.2f}" if "knn_top1" in entry else ""),
                  flush=True)


class Checkpointer(Hook):
    """A checkpoint every train.ckpt_every steps within an epoch, and at the end of each."""

    def after_step(self, loss, metrics):
        t = self.trainer
        if t.at_checkpoint() and t.step_in_epoch < t.steps:
            t.save()

    def after_epoch(self, entry):
        self.trainer.save()
