"""Config fields that carry their allowed range, so that the range sits next to the default
it constrains; pretrain.config checks every such field before any compute. Imported by the
config schema and by each method's own settings dataclass (pretrain/methods/*.py)."""
from __future__ import annotations

from dataclasses import field

INF = float("inf")


def ranged(default, low: float = -INF, high: float = INF, *, what: str, low_open: bool = False,
           high_open: bool = False):
    return field(default=default, metadata={"range": (low, high, low_open, high_open, what)})


def at_least(default, low, note: str = ""):
    kind = "an integer" if isinstance(default, int) else "a number"
    return ranged(default, low, what=f"{kind} >= {low:g}" + (f" ({note})" if note else ""))


def positive(default):
    return ranged(default, 0, low_open=True, what="a number > 0")


def fraction(default, low_open: bool = False, high_open: bool = False):
    return ranged(default, 0, 1, low_open=low_open, high_open=high_open,
                  what=f"a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}")


def out_of_range(value, spec) -> str | None:
    """What `value` should have been, or None if it lies in the range `spec` describes."""
    low, high, low_open, high_open, what = spec
    if value != value:  # NaN
        return what
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    return what if below or above else None
