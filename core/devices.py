"""The device a command runs on (--device / train.device), with one-line errors."""
from __future__ import annotations

from core.errors import UserError

CHOICES = ("auto", "cpu", "cuda")


def pick_device(name: str, flag: str = "--device"):
    """'auto' is CUDA where there is a GPU, else the CPU; 'cuda' without a GPU is bad input."""
    import torch

    if name not in CHOICES:
        raise UserError(f"{flag} {name!r}: unknown device, expected one of {', '.join(CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{flag} cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)
