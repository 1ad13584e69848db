"""Negative samplers (uniform, ring, ball) and the annealing schedules of the ring's outer edge.

Semantics follow the official Ring code (DESIGN §3): rank the pool by similarity to the
anchor, descending; keep ranks [lo, hi) with hi = round(outer * n) and lo = round(inner * hi)
("dynamic inner": the inner cut is a fraction of the outer ball). With the defaults
outer = inner = 0.1 that is the band between the top 1% and the top 10% of the pool, i.e.
similarity percentiles (90, 99]. `ball` is the same without the inner cut; `uniform` is the
whole pool. The anchor's own row (`exclude`) is never in any band.

Exact mode ranks with topk(hi), not a full sort. Estimated mode (`estimate = m > 0`, for
ImageNet-scale banks) reads the band's two similarity edges off a random subsample of m pool
entries and keeps every entry between them: a B x N comparison instead of a selection over N.
Its percentiles are off by about sqrt(p (1 - p) / m) (0.3 points at p = 0.1, m = 16384).
"""
from __future__ import annotations

import math

import torch

from pretrain import distributed

SCHEDULES = ("none", "linear", "step", "cosine", "exponential")
KINDS = ("uniform", "ring", "ball")


def band_limits(n: int, outer: float, inner: float) -> tuple[int, int]:
    """Rank range [lo, hi) of the band in a pool of n candidates (official rounding)."""
    hi = min(n, max(1, round(outer * n)))
    lo = min(round(inner * hi), hi - 1)
    return lo, hi


def anneal(schedule: str, epoch: float, final: float, start: float = 1.0, epochs: float = 0.0,
           steps: int = 4, decay: float = 0.1) -> float:
    """Outer fraction at (fractional) `epoch`: moves from `start` to `final` over `epochs`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown anneal schedule {schedule!r}, expected one of {SCHEDULES}")
    if schedule == "none" or epochs <= 0 or epoch >= epochs:
        return final
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


class NegativeSampler:
    """Chooses, per anchor, which pool entries may serve as negatives."""

    def __init__(self, kind: str = "uniform", outer: float = 0.1, inner: float = 0.1,
                 schedule: str = "none", anneal_epochs: float = 0.0, anneal_start: float = 1.0,
                 anneal_steps: int = 4, anneal_decay: float = 0.1, seed: int = 0, device="cpu",
                 estimate: int = 0):
        if kind not in KINDS:
            raise ValueError(f"unknown negative sampler {kind!r}, expected one of {KINDS}")
        self.kind, self.outer_final, self.inner, self.estimate = kind, outer, inner, estimate
        self.schedule = dict(schedule=schedule, epochs=anneal_epochs, start=anneal_start,
                             steps=anneal_steps, decay=anneal_decay)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    @classmethod
    def from_config(cls, neg, seed: int, device) -> "NegativeSampler":
        a = neg.anneal
        return cls(neg.sampler, neg.outer, neg.inner, a.schedule, a.epochs, a.start, a.steps,
                   a.decay, seed=seed, device=device, estimate=neg.estimate)

    @property
    def full(self) -> bool:
        return self.kind == "uniform"

    def fractions(self, epoch: float = 0.0) -> tuple[float, float]:
        """(outer, inner) in force at `epoch`; (1, 0) for uniform."""
        if self.full:
            return 1.0, 0.0
        outer = anneal(final=self.outer_final, epoch=epoch, **self.schedule)
        return outer, (self.inner if self.kind == "ring" else 0.0)

    @torch.no_grad()
    def band(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0) -> torch.Tensor:
        """Pool indices (B, hi - lo) of each anchor's band, most similar first.

        topk(hi) instead of a full sort: only the top `outer` fraction is ever needed.
        """
        sim = sim.float()
        n = sim.shape[1]
        if exclude is not None:
            sim = sim.clone()
            sim.scatter_(1, exclude.view(-1, 1), float("-inf"))  # ranks last, never reached
            n -= 1
        lo, hi = band_limits(n, *self.fractions(epoch))
        return sim.topk(hi, dim=1, sorted=True).indices[:, lo:hi]

    def _estimating(self, n: int) -> bool:
        return 0 < self.estimate < n

    @torch.no_grad()
    def edges(self, sim: torch.Tensor, exclude: torch.Tensor | None = None,
              epoch: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Estimated mode: per-anchor similarity edges (low, high), (B,) each; the band is
        low <= sim < high. One subsample of `estimate` pool columns serves the whole batch
        (drawn from the sampler's generator, so every rank draws the same)."""
        n = sim.shape[1]
        cols = torch.randint(n, (self.estimate,), generator=self.generator, device=self.generator.device)
        sub = sim[:, cols.to(sim.device)].float()
        m = self.estimate
        if exclude is not None:  # the anchor's own row is not part of its pool
            own = cols.to(sim.device)[None, :] == exclude.view(-1, 1)
            sub = sub.masked_fill(own, float("-inf"))
            m -= 1  # (a drawn own row, if any, sits last: it cannot reach rank hi)
        lo, hi = band_limits(m, *self.fractions(epoch))
        top = sub.topk(hi, dim=1, sorted=True).values
        high = top[:, lo - 1] if lo > 0 else torch.full_like(top[:, 0], float("inf"))
        return top[:, hi - 1], high

    def _in_band(self, values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (values >= low[:, None]) & (values < high[:, None])

    @torch.no_grad()
    def _sample_estimated(self, k, sim, exclude, epoch, draw):
        """Uniform draws from the estimated band by rejection: a fixed number of uniform
        proposals (the same count on every rank keeps the generators in step), the first K
        accepted kept; a row short of K repeats its accepted draws, and a row with none (only
        when the band is empty in the pool) takes the exact band."""
        low, high = self.edges(sim, exclude, epoch)
        outer, inner = self.fractions(epoch)
        frac = max(outer * (1.0 - inner), 1.0 / sim.shape[1])
        proposals = draw(sim.shape[1], int(math.ceil(2.0 * k / frac)) + 64).to(sim.device)
        ok = self._in_band(sim.gather(1, proposals).float(), low, high)
        if exclude is not None:
            ok &= proposals != exclude.view(-1, 1)
        # positions of accepted proposals first, in proposal order (stable sort on ~ok)
        order = torch.sort((~ok).to(torch.uint8), dim=1, stable=True).indices
        count = ok.sum(1, keepdim=True)
        pick = order.gather(1, torch.arange(k, device=sim.device)[None, :] % count.clamp_min(1))
        idx = proposals.gather(1, pick)
        empty = count.squeeze(1) == 0
        if empty.any():
            band = self.band(sim[empty], exclude[empty] if exclude is not None else None, epoch)
            idx[empty] = band[:, torch.arange(k, device=band.device) % band.shape[1]]
        return idx

    @torch.no_grad()
    def sample(self, k: int, pool_size: int, sim: torch.Tensor | None = None,
               exclude: torch.Tensor | None = None, epoch: float = 0.0, batch: int | None = None) -> torch.Tensor:
        """K negatives per anchor drawn uniformly with replacement from its band: (B, K).

        Under DDP every rank draws the whole global batch's positions from the same generator
        and keeps its own rows, so the draws do not depend on the number of processes."""
        g = self.generator
        b = batch if batch is not None else (exclude.shape[0] if exclude is not None else sim.shape[0])

        def draw(high: int, count: int = k) -> torch.Tensor:
            return distributed.local(torch.randint(high, (b * distributed.world(), count), generator=g, device=g.device))

        if self.full:  # the band is the whole pool: no similarities needed
            if exclude is None:
                return draw(pool_size)
            idx = draw(pool_size - 1)
            return idx + (idx >= exclude.view(-1, 1)).long()  # skip the anchor's own row
        if self._estimating(sim.shape[1]):
            return self._sample_estimated(k, sim, exclude, epoch, draw)
        band = self.band(sim, exclude, epoch)
        return band.gather(1, draw(band.shape[1]).to(band.device))

    @torch.no_grad()
    def mask(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0) -> torch.Tensor:
        """Boolean (B, N) mask of the band: True where a pool entry is a negative."""
        if self.full:
            m = torch.ones_like(sim, dtype=torch.bool)
            if exclude is not None:
                m.scatter_(1, exclude.view(-1, 1), False)
            return m
        if self._estimating(sim.shape[1]):
            m = self._in_band(sim.float(), *self.edges(sim, exclude, epoch))
            if exclude is not None:
                m.scatter_(1, exclude.view(-1, 1), False)
            return m
        m = torch.zeros_like(sim, dtype=torch.bool)
        return m.scatter_(1, self.band(sim, exclude, epoch), True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
