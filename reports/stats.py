"""The report's statistics over seeds, from scipy.stats (docs/design.md §9).

- A cell (one model, one evaluation): the mean over seeds and its 95% t-interval
  (scipy.stats.ttest_1samp(...).confidence_interval), n = runs.
- A difference Ring − baseline: paired by seed (the two runs of a pair share initialisation,
  data order and augmentation draws), its mean and 95% paired t-interval
  (scipy.stats.ttest_rel(...).confidence_interval), n = pairs. A difference whose interval
  includes 0 is marked.
- One run (or one pair) has no interval, and says so.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

ONE = "1 run: no interval"
INCLUDES_ZERO = "○"  # the mark of a difference whose 95% interval includes 0


def mean_interval(values) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the 95% t-interval of the mean; low = high = NaN for one run."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, math.nan, 1
    if np.all(v == v[0]):  # no spread: the interval is the point (scipy returns NaN there)
        return float(v[0]), float(v[0]), float(v[0]), len(v)
    ci = stats.ttest_1samp(v, 0.0).confidence_interval(0.95)
    return float(v.mean()), float(ci.low), float(ci.high), len(v)


def paired_interval(a, b) -> tuple[float, float, float, int]:
    """(mean of a - b, low, high, n) with the paired 95% t-interval; a and b are matched by position."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan, math.nan, 0
    d = a - b
    if len(d) == 1:
        return float(d[0]), math.nan, math.nan, 1
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), float(d[0]), len(d)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    return float(d.mean()), float(ci.low), float(ci.high), len(d)


def includes_zero(low: float, high: float) -> bool:
    return not (math.isnan(low) or math.isnan(high)) and low <= 0.0 <= high


def mean_cell(mean, low, high, n, digits: int = 2, dash: str = "—") -> str:
    """'71.20 ± 0.80 (n=3)' (± the half-width of the 95% interval), '71.20 (1 run: no interval)'."""
    if not n or math.isnan(mean):
        return dash
    if n == 1 or math.isnan(low):
        return f"{mean:.{digits}f} ({ONE})"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f} (n={n})"


def delta_cell(mean, low, high, n, digits: int = 2, dash: str = "—") -> str:
    """'+2.50 [−1.10, +6.10] (n=3) ○' (○: the interval includes 0), '+2.50 (1 run: no interval)'."""
    if not n or math.isnan(mean):
        return dash
    if n == 1 or math.isnan(low):
        return f"{mean:+.{digits}f} ({ONE})"
    mark = f" {INCLUDES_ZERO}" if includes_zero(low, high) else ""
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] (n={n}){mark}"
