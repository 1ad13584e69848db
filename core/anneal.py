"""The annealing schedules of the ring's outer edge (docs/design.md §3): pretraining trains on
them and the report draws them, so they live here, free of torch."""
from __future__ import annotations

import math

SCHEDULES = ("none", "linear", "step", "cosine", "exponential", "official_step")  # pretrain.config's choices
OFFICIAL_PLATEAUS = 10  # the official step schedule's: 1.0 down to 0.1 in steps of 0.1


def anneal(schedule: str, epoch: float, final: float, start: float = 1.0, epochs: float = 0.0,
           steps: int = 4, decay: float = 0.1) -> float:
    """Outer fraction at (fractional) `epoch`: moves from `start` to `final` over `epochs`.

    "step" has `steps` plateaus, the first at `start`, and reaches `final` at `epochs`;
    "official_step" is the official code's StepThresholdPolicy (src/utils/policy.py): 10
    plateaus of epochs / 10, the first at `start`, the last at `final` itself, from 0.9 epochs
    on (`steps` unused). With start 1 and final 0.1 its values are the official ones bit for
    bit (1.0, 0.9, 0.8, 0.7000000000000001, ...: np.arange's 0.1 + j * 0.1); the official
    counts optimizer steps, so where anneal epochs x steps per epoch is not a multiple of 10
    its plateaus start up to 9 steps earlier than here (docs/design.md §3)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown anneal schedule {schedule!r}, expected one of {SCHEDULES}")
    if schedule == "none" or epochs <= 0 or epoch >= epochs:
        return final
    if schedule == "official_step":
        # epoch is the trainer's step / steps per epoch: a plateau edge that falls on a step
        # must not slip to the previous plateau by a rounding error, hence the 1e-9
        plateau = min(OFFICIAL_PLATEAUS - 1, math.floor(OFFICIAL_PLATEAUS * max(0.0, epoch) / epochs + 1e-9))
        height = (start - final) / (OFFICIAL_PLATEAUS - 1)  # exactly 0.1 for 1.0 -> 0.1
        return final + (OFFICIAL_PLATEAUS - 1 - plateau) * height  # np.arange's form: first + j * step
    t = max(0.0, epoch / epochs)
    if schedule == "linear":
        w = 1.0 - t
    elif schedule == "step":  # `steps` equal plateaus, the first at `start`
        w = 1.0 - math.floor(t * steps) / steps
    elif schedule == "cosine":
        w = 0.5 * (1.0 + math.cos(math.pi * t))
    else:  # exponential, renormalised so that it ends exactly at `final`
        w = (decay ** t - decay) / (1.0 - decay)
    return final + (start - final) * w
