"""Negative samplers (uniform, ring, ball); the schedules of the ring's outer edge are core/anneal.py.

Semantics follow the official Ring code (docs/design.md §3): rank the pool by similarity to
the anchor, descending; keep ranks [lo, hi) with hi = int(outer * n) and lo = int(inner * hi),
truncated as the official code does ("dynamic inner": the inner cut is a fraction of the
outer ball). n = 4096 gives [40, 409). With the defaults outer = inner = 0.1 that is the band
between the top 1% and the top 10% of the pool. `ball` is the same without the inner cut;
`uniform` is the whole pool. The anchor's own row (`exclude`) is never in any band and does
not count in n.

Exact mode ranks with topk(hi), not a full sort. Estimated mode (`estimate = m > 0`, for
ImageNet-scale banks) works on a uniform random subset of the pool, shared by the batch and
redrawn every step: a drawing method (IR, CMC) computes similarities to the subsample only
(`subsample`, then `sample(..., columns=)`), takes the subsample's band, whose percentile
edges estimate the pool's within about sqrt(p (1 - p) / m) (0.23 points at p = 0.1,
m = 16384), and draws K distinct subsample entries from it. The subsample grows to 2K / (band
fraction) entries so the band holds twice K: the similarities it costs are set by K, not by
the pool size (only drawing the subset, a randperm, touches all N indices).
A masking method (MoCo, SimCLR, LA) already has every similarity: `mask` keeps the entries
between edges read off m sampled columns, a B x N comparison instead of a selection over N.
"""
from __future__ import annotations

import math

import torch

from core.anneal import SCHEDULES, anneal  # noqa: F401  (the schedules: core/anneal.py)
from pretrain import distributed
from pretrain.registry import SAMPLERS


# Each sampler kind is the band it keeps, as (outer, inner) fractions, or None for the whole pool.
@SAMPLERS.register("uniform", label="Uniform (whole pool)")
def uniform_band(outer: float, inner: float) -> None:
    return None


@SAMPLERS.register("ring", label="Ring")
def ring_band(outer: float, inner: float) -> tuple[float, float]:
    return outer, inner


@SAMPLERS.register("ball", label="Ball")
def ball_band(outer: float, inner: float) -> tuple[float, float]:
    """No inner cut: the closest `outer` fraction (LA's k-nearest background)."""
    return outer, 0.0


def band_limits(n: int, outer: float, inner: float) -> tuple[int, int]:
    """Rank range [lo, hi) of the band in a pool of n candidates, truncated as the official
    code does: hi = int(outer * n), lo = int(inner * hi). One deviation: where outer * n < 1
    the official band is empty; here it keeps the closest candidate (docs/design.md §3)."""
    hi = min(n, max(1, int(outer * n)))
    lo = int(inner * hi)  # < hi for inner < 1
    return lo, hi


class NegativeSampler:
    """Chooses, per anchor, which pool entries may serve as negatives."""

    def __init__(self, kind: str = "uniform", outer: float = 0.1, inner: float = 0.1,
                 schedule: str = "none", anneal_epochs: float = 0.0, anneal_start: float = 1.0,
                 anneal_steps: int = 4, anneal_decay: float = 0.1, seed: int = 0, device="cpu",
                 estimate: int = 0, neighbor_views: bool = False):
        if kind not in SAMPLERS:
            raise ValueError(f"unknown negative sampler {kind!r}, expected one of {', '.join(SAMPLERS.names())}")
        if not (0.0 < outer <= 1.0 and 0.0 <= inner < 1.0):
            raise ValueError(f"ring fractions must satisfy 0 < outer <= 1 and 0 <= inner < 1, got {outer}, {inner}")
        self.kind, self.outer_final, self.inner, self.estimate = kind, outer, inner, estimate
        self.neighbor_views = neighbor_views  # the inner core joins the positive (see core())
        # set when some anchor's band came out empty; the trainer takes it every step, on the
        # device (take_empty), and reads it on the host only at its checks
        self.empty = torch.zeros((), dtype=torch.bool, device=device)
        self.schedule = dict(schedule=schedule, epochs=anneal_epochs, start=anneal_start,
                             steps=anneal_steps, decay=anneal_decay)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    @classmethod
    def from_config(cls, neg, seed: int, device) -> "NegativeSampler":
        a = neg.anneal
        return cls(neg.sampler, neg.outer, neg.inner, a.schedule, a.epochs, a.start, a.steps,
                   a.decay, seed=seed, device=device, estimate=neg.estimate, neighbor_views=neg.neighbor_views)

    @property
    def full(self) -> bool:
        """The band is the whole pool (uniform negatives): no similarities are needed."""
        return SAMPLERS[self.kind](self.outer_final, self.inner) is None

    def fractions(self, epoch: float = 0.0) -> tuple[float, float]:
        """(outer, inner) in force at `epoch`; (1, 0) for the whole pool."""
        band = SAMPLERS[self.kind](anneal(final=self.outer_final, epoch=epoch, **self.schedule), self.inner)
        return (1.0, 0.0) if band is None else band

    def ranked(self, sim: torch.Tensor, exclude: torch.Tensor | None, epoch: float,
               scratch: bool = False) -> tuple[torch.Tensor, int, int]:
        """(float similarities with each anchor's own row at -inf, lo, hi): the own row ranks
        last and is not counted in the pool, so no band or core ever reaches it. `scratch`: sim
        is the caller's temporary, marked in place instead of copied (a B x N copy saved, 1.3 GB
        for a 1.28M bank)."""
        sim = sim.float()
        n = sim.shape[1]
        if exclude is not None:
            sim = sim if scratch else sim.clone()
            sim.scatter_(1, exclude.view(-1, 1), float("-inf"))
            n -= 1
        return (sim, *band_limits(n, *self.fractions(epoch)))

    @torch.no_grad()
    def band(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0,
             scratch: bool = False) -> torch.Tensor:
        """Pool indices (B, hi - lo) of each anchor's band, in no particular order.

        An unsorted topk(hi) instead of a full sort (only the top `outer` fraction is ever
        needed), then the `lo` closest of those dropped: a second, hi-sized selection. Nothing
        here reads the device's data (no host sync): the kept entries are compacted by their
        running count, not by boolean indexing, whose output size the host would have to read."""
        sim, lo, hi = self.ranked(sim, exclude, epoch, scratch)
        values, index = sim.topk(hi, dim=1, sorted=False)
        if lo == 0:
            return index
        keep = torch.ones_like(index, dtype=torch.bool)
        keep.scatter_(1, values.topk(lo, dim=1, sorted=False).indices, False)
        # every row keeps exactly hi - lo entries: entry j goes to its rank among the kept,
        # dropped ones to a spare last column
        slot = torch.where(keep, keep.cumsum(1) - 1, hi - lo)
        return index.new_empty(len(index), hi - lo + 1).scatter_(1, slot, index)[:, :-1]

    @torch.no_grad()
    def core(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0,
             scratch: bool = False) -> torch.Tensor:
        """Pool indices (B, lo) of each anchor's inner core, ranks [0, lo): the closest neighbours,
        which the ring leaves out of the negatives. With neighbour views (the official code's
        `neighbor_views`, `logsumexp_inner`) they join the positive instead. Exact ranks."""
        sim, lo, _ = self.ranked(sim, exclude, epoch, scratch)
        return sim.topk(lo, dim=1, sorted=False).indices

    def core_mask(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0) -> torch.Tensor | None:
        """(B, N) bool of the inner core where neighbour views are on, else None."""
        if not self.neighbor_views:
            return None
        return torch.zeros_like(sim, dtype=torch.bool).scatter_(1, self.core(sim, exclude, epoch), True)

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
        outer, inner = self.fractions(epoch)
        lo, hi = band_limits(m, outer, inner)
        top = sub.topk(hi, dim=1, sorted=True).values
        high = top[:, lo - 1] if lo > 0 else torch.full_like(top[:, 0], float("inf"))
        # a band that reaches the bottom of the pool (outer = 1, where every anneal starts) has
        # no low edge: reading one off the sample would drop the pool's least similar rows
        low = top[:, hi - 1] if outer < 1.0 else torch.full_like(top[:, 0], float("-inf"))
        return low, high

    def _in_band(self, values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (values >= low[:, None]) & (values < high[:, None])

    def subsample(self, n: int, k: int, epoch: float = 0.0) -> torch.Tensor | None:
        """Estimated mode: pool columns (a uniform random subset) that a drawing method computes
        similarities to before `sample(..., columns=)`; None in exact mode or for a small pool.
        Drawn from the sampler's generator, so every rank draws the same columns."""
        if self.full or not self._estimating(n):
            return None
        outer, inner = self.fractions(epoch)
        size = max(self.estimate, math.ceil(2 * k / (outer * (1.0 - inner))))
        if size >= n:
            return None  # a subsample as large as the pool: rank the pool itself
        # without replacement: K draws from its band are then K distinct pool entries
        return torch.randperm(n, generator=self.generator, device=self.generator.device)[:size]

    @torch.no_grad()
    def sample(self, k: int, pool_size: int, sim: torch.Tensor | None = None,
               exclude: torch.Tensor | None = None, epoch: float = 0.0, batch: int | None = None,
               columns: torch.Tensor | None = None, scratch: bool = False) -> torch.Tensor:
        """K negatives per anchor from its band, as pool indices (B, K): drawn uniformly with
        replacement in exact mode; with `columns` (from `subsample`; sim then holds only those
        columns) the first K of the subsample's band in subsample order, i.e. K distinct
        subsample entries, uniform over the band because the columns are.

        Under DDP every rank draws the whole global batch's positions from the same generator
        and keeps its own rows, so the draws do not depend on the number of processes.
        `scratch`: sim is the caller's temporary, which the exact band may overwrite (ranked)."""
        g = self.generator
        b = batch if batch is not None else (exclude.shape[0] if exclude is not None else sim.shape[0])

        def draw(high: int, count: int = k) -> torch.Tensor:
            return distributed.local(torch.randint(high, (b * distributed.world(), count), generator=g, device=g.device))

        if self.full:  # the band is the whole pool: no similarities needed
            if exclude is None:
                return draw(pool_size)
            idx = draw(pool_size - 1).to(exclude.device)
            return idx + (idx >= exclude.view(-1, 1)).long()  # skip the anchor's own row
        if columns is not None:
            return self._sample_subsample(k, sim, exclude, epoch, columns.to(sim.device))
        band = self.band(sim, exclude, epoch, scratch)
        return band.gather(1, draw(band.shape[1]).to(band.device))

    @torch.no_grad()
    def _sample_subsample(self, k, sim, exclude, epoch, columns):
        sim = sim.float()
        if exclude is None:
            own = torch.zeros_like(sim, dtype=torch.bool)
        else:  # the anchor's own row, wherever the subsample drew it, ranks last ...
            own = columns[None, :] == exclude.view(-1, 1)
            sim = sim.masked_fill(own, float("-inf"))
        band = self.band(sim, epoch=epoch)
        # ... which a band reaching the bottom (outer = 1) still holds: drop it there
        valid = ~own.gather(1, band)
        count = valid.sum(1, keepdim=True)
        self.empty |= (count == 0).any()  # (no candidate left: flagged, never drawn from)
        count = count.clamp_min(1)
        # the band's valid positions in subsample order (invalid ones last): the subsample is a
        # random permutation of the pool, so its first K band positions are a uniform K-subset
        # of the band (a band shorter than K repeats)
        band = torch.where(valid, band, sim.shape[1]).sort(dim=1).values
        pick = torch.arange(k, device=sim.device)[None, :] % count
        return columns[band.gather(1, pick)]

    def take_empty(self) -> torch.Tensor:
        """Whether some anchor's band was empty since the last call, as a device tensor (no host
        sync: the trainer records it with its step and reads it at log steps); clears the flag."""
        flag = self.empty.clone()
        self.empty.zero_()
        return flag

    def pop_empty(self) -> bool:
        """take_empty(), read on the host (a sync)."""
        return bool(self.take_empty())

    @torch.no_grad()
    def mask(self, sim: torch.Tensor, exclude: torch.Tensor | None = None, epoch: float = 0.0) -> torch.Tensor:
        """Boolean (B, N) mask of the band: True where a pool entry is a negative. Where some
        anchor would have no negative (its loss would be zero) `empty` is set: the trainer
        stops at its next check (no host sync here)."""
        if self.full:
            m = torch.ones_like(sim, dtype=torch.bool)
            if exclude is not None:
                m.scatter_(1, exclude.view(-1, 1), False)
        elif self._estimating(sim.shape[1]):
            m = self._estimated_mask(sim.float(), exclude, epoch)
        else:
            m = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, self.band(sim, exclude, epoch), True)
        self.empty |= ~m.any(1).all()
        return m

    def _estimated_mask(self, sim: torch.Tensor, exclude: torch.Tensor | None, epoch: float) -> torch.Tensor:
        m = self._in_band(sim, *self.edges(sim, exclude, epoch))
        if exclude is not None:
            m.scatter_(1, exclude.view(-1, 1), False)
        # Ties break estimated edges: with a large share of the pool tied, both edges can land
        # on the tied value (an empty band) or one edge on it (a band holding all the ties).
        # A row whose band size is off by more than 2x (about 25 standard errors at m = 16384)
        # falls back to exact rank selection, which breaks ties by index.
        lo, hi = band_limits(sim.shape[1] - (exclude is not None), *self.fractions(epoch))
        count = m.sum(1)
        off = (2 * count < hi - lo) | (count > 2 * (hi - lo))
        # (reading `off` is a host sync, the one left in a ring path: no preset masks estimated)
        if off.any():
            rows = off.nonzero().flatten()
            exact = self.band(sim[rows], None if exclude is None else exclude[rows], epoch)
            m[rows] = torch.zeros_like(m[rows]).scatter_(1, exact, True)
        return m

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
