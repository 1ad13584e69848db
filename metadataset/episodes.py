"""Meta-Dataset's episode sampler (Triantafillou et al., "Meta-Dataset: A Dataset of Datasets
for Learning to Learn from Few Examples", ICLR 2020, Section 3.2 "Sampling of episodes" and
its Appendix), matching the official meta_dataset/data/sampling.py and its default
EpisodeDescriptionConfig (learn/gin/setups/data_config_common.gin).

Variable-way variable-shot (the default, all of num_ways/num_support/num_query None):

1. Way N ~ U{5, ..., min(50, #classes)} and N classes uniformly without replacement from the
   split. Omniglot (bi-level spec): first a superclass (alphabet) uniformly, then
   N ~ U{5, ..., min(50, #its classes)} classes of that superclass.
2. Query shots per class: q = min(10, min_c floor(0.5 |Im(c)|)) (the same for every class).
3. Support size: beta ~ U(0, 1], |S| = min(500, sum_c ceil(beta * min(100, |Im(c)| - q))).
   (The code draws beta' ~ U[0, 1) and sums floor(beta' x + 1): the same distribution.)
4. Shots per class: alpha_c ~ U(log 0.5, log 2),
   R_c = exp(alpha_c) |Im(c)| / sum_c' exp(alpha_c') |Im(c')|,
   k_c = min(floor(R_c (|S| - N)) + 1, |Im(c)| - q): at least one support image per class.
5. Images: per class, a uniform random k_c + q of its images, the first k_c to the support
   set and the rest to the query set, so no image is in both.

Steps 1-4 (the episode *description*) draw from one numpy RandomState per (seed, source), in
the official order and nothing else, so the description stream equals the official
EpisodeDescriptionSampler's whose `_rng` has the same state, episode after episode
(tests/test_metadataset.py compares it with tests/data/md_golden_episodes.json, written by
metadataset/golden.py, a transcription of the official sampler). Step 5 draws from a second
generator of its own: it replaces the official tf.data per-class shuffling, which has no numpy
equivalent, and must not consume the description stream's draws. All episodes are drawn
before any image is embedded, so only the images they hold are (metadataset/features.py).

Fixed modes (EpisodeConfig num_ways / num_support / num_query set), as the official code:
a fixed way skips step 1's draw (and the hierarchy); a fixed support shot k gives every class
k support images and q = min(10, min_c |Im(c)| - k); a fixed query shot overrides q.
ImageNet (a hierarchical spec, `dag`): as the official sampler with use_dag_hierarchy, an
internal node of the split's WordNet DAG is drawn uniformly among those that span between
min_ways (5) and MAX_SPANNING_LEAVES_ELIGIBLE (392) leaves, its leaves are the episode's
classes, sub-sampled without replacement to max_ways_upper_bound (50) where there are more.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from metadataset.errors import MetaDatasetError

# The official sampling.py's bound on the leaves a DAG node may span to be drawn: the smallest
# that leaves every ImageNet leaf reachable (a fact of Meta-Dataset, kept as its number)
MAX_SPANNING_LEAVES_ELIGIBLE = 392


@dataclass(frozen=True)
class EpisodeConfig:
    num_ways: int | None = None
    num_support: int | None = None
    num_query: int | None = None
    min_ways: int = 5
    max_ways_upper_bound: int = 50
    max_num_query: int = 10
    max_support_set_size: int = 500
    max_support_size_contrib_per_class: int = 100
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)

    @property
    def variable(self) -> bool:
        return self.num_ways is None and self.num_support is None and self.num_query is None

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Episode:
    """One episode: its description (classes, shots, num_query) and its images, per class the
    k_c + q indices of that class's images it uses (the first k_c are the support set)."""
    classes: np.ndarray  # the N classes (indices into the class list given to the sampler)
    shots: np.ndarray    # k_c, support images per class
    num_query: int       # q, query images per class
    images: tuple        # per class, k_c + q distinct image indices into that class

    @property
    def ways(self) -> int:
        return len(self.classes)

    def support(self, j: int) -> np.ndarray:
        return self.images[j][:self.shots[j]]

    def query(self, j: int) -> np.ndarray:
        return self.images[j][self.shots[j]:]

    @property
    def support_labels(self) -> np.ndarray:  # 0..N-1, the episode's own class numbering
        return np.repeat(np.arange(self.ways), self.shots)

    @property
    def query_labels(self) -> np.ndarray:
        return np.repeat(np.arange(self.ways), self.num_query)


def _state(words) -> int:
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def description_seed(seed: int, source: str) -> int:
    """The state of a source's description generator: the official sampler's `_rng` seeded
    with it draws the same descriptions as ours (metadataset/golden.py)."""
    return _state([seed, zlib.crc32(source.encode())])


def rng_for(seed: int, source: str) -> np.random.RandomState:
    """The description generator of (seed, source): a source's episodes do not depend on which
    other sources are evaluated, nor in which order."""
    return np.random.RandomState(description_seed(seed, source))


def image_rng_for(seed: int, source: str) -> np.random.RandomState:
    """The image generator of (seed, source), apart from the description generator (step 5).
    A RandomState, whose streams numpy keeps fixed across versions, as the descriptions'."""
    return np.random.RandomState(_state([seed, zlib.crc32(source.encode()), 1]))


def pick_images(n: int, m: int, rng) -> np.ndarray:
    """m distinct indices of range(n) in uniformly random order, at a cost that grows with m,
    not n (a QuickDraw class holds up to 340,029 images, an episode uses at most 510 of them):
    the first m distinct values of i.i.d. uniform draws, which is a uniform ordered sample
    without replacement. Where m is at least half of n, a permutation (as cheap, and repeats
    would make the draws slow)."""
    if 2 * m >= n:
        return rng.permutation(n)[:m]
    out = np.empty(0, dtype=np.int64)
    while len(out) < m:
        seq = np.concatenate([out, rng.randint(0, n, size=2 * (m - len(out)))])
        _, first = np.unique(seq, return_index=True)
        out = seq[np.sort(first)][:m]
    return out


def sample_num_ways(num_classes: int, min_ways: int, max_ways: int, rng) -> int:
    return int(rng.randint(low=min_ways, high=min(max_ways, num_classes) + 1))


def compute_num_query(images_per_class: np.ndarray, max_num_query: int, num_support: int | None) -> int:
    if num_support is None:
        return int(min(max_num_query, (images_per_class // 2).min()))
    return int(min(max_num_query, images_per_class.min() - num_support))


def sample_support_set_size(num_remaining: np.ndarray, max_contrib: int, max_size: int, rng) -> int:
    beta = rng.uniform()  # in [0, 1); floor(beta x + 1) below is ceil(beta'' x) with beta'' in (0, 1]
    return int(min(np.floor(beta * np.minimum(max_contrib, num_remaining) + 1).sum(), max_size))


def sample_num_support_per_class(images_per_class: np.ndarray, num_remaining: np.ndarray, support_size: int,
                                 min_log_weight: float, max_log_weight: float, rng) -> np.ndarray:
    weights = images_per_class * np.exp(rng.uniform(min_log_weight, max_log_weight, size=images_per_class.shape))
    proportions = weights / weights.sum()
    desired = np.floor(proportions * (support_size - len(num_remaining))).astype(np.int64) + 1
    return np.minimum(desired, num_remaining)


class Sampler:
    """Episodes over a split's classes. `class_sizes[i]` is the number of images of class i;
    `superclasses` (bi-level specs) lists, per superclass, the indices of its classes."""

    def __init__(self, class_sizes, config: EpisodeConfig | None = None, superclasses=None,
                 source: str = "source", dag=None):
        self.sizes = np.asarray(class_sizes, dtype=np.int64)
        self.config, self.source = config or EpisodeConfig(), source
        c, n = self.config, len(self.sizes)
        self.superclasses = [np.asarray(s) for s in superclasses] if superclasses and c.num_ways is None else None
        # the DAG's internal nodes that may be drawn, each as the (split-relative) classes it spans
        self.dag = None if dag is None or c.num_ways is not None else [
            np.asarray(span) for span in dag if c.min_ways <= len(span) <= MAX_SPANNING_LEAVES_ELIGIBLE]
        if self.dag is not None and not self.dag:
            raise MetaDatasetError(f"{source}: no node of the test split's DAG spans between {c.min_ways} and "
                                   f"{MAX_SPANNING_LEAVES_ELIGIBLE} classes")
        if c.num_ways is not None:
            if not 2 <= c.num_ways <= n:
                raise MetaDatasetError(f"{source}: {c.num_ways}-way episodes need between 2 and {n} (its test classes) ways")
        elif self.superclasses is not None:
            small = [len(s) for s in self.superclasses if len(s) < c.min_ways]
            if small:  # the official sampler refuses these too
                raise MetaDatasetError(f"{source}: a test superclass has {small[0]} classes, fewer than min_ways={c.min_ways}")
        elif n < c.min_ways:
            raise MetaDatasetError(f"{source}: the test split has {n} classes, fewer than the {c.min_ways} ways "
                                   f"an episode needs")
        need = 2 if c.num_support is None else c.num_support + 1
        if n and self.sizes.min() < need:
            raise MetaDatasetError(f"{source}: class {int(self.sizes.argmin())} of the split has {self.sizes.min()} "
                                   f"images; episodes need at least {need} per class")

    def sample_classes(self, rng) -> np.ndarray:
        c = self.config
        if self.dag is not None:  # the official draws, in the official order
            rng.choice([True, False], p=[1.0, 0.0])  # the hierarchy coin (ignore_hierarchy_probability 0)
            classes = self.dag[rng.choice(len(self.dag))]  # = choice over the list of nodes: one randint
            if len(classes) > c.max_ways_upper_bound:
                classes = rng.choice(classes, size=[c.max_ways_upper_bound], replace=False)
            return classes
        if self.superclasses is not None:
            rng.choice([True, False], p=[1.0, 0.0])  # the official hierarchy coin: keeps the RNG stream aligned
            members = self.superclasses[rng.choice(len(self.superclasses), 1)[0]]
            ways = sample_num_ways(len(members), c.min_ways, c.max_ways_upper_bound, rng)
            return members[rng.choice(len(members), ways, replace=False)]
        ways = c.num_ways if c.num_ways is not None else sample_num_ways(len(self.sizes), c.min_ways,
                                                                           c.max_ways_upper_bound, rng)
        return rng.choice(len(self.sizes), ways, replace=False)

    def sample_description(self, rng) -> tuple[np.ndarray, np.ndarray, int]:
        """(classes, support shots per class, query shots per class)."""
        c = self.config
        classes = self.sample_classes(rng)
        sizes = self.sizes[classes]
        q = c.num_query if c.num_query is not None else compute_num_query(sizes, c.max_num_query, c.num_support)
        if c.num_support is not None:
            if np.any(c.num_support + q > sizes):
                raise MetaDatasetError(f"{self.source}: some classes have fewer than {c.num_support} + {q} images")
            return classes, np.full(len(classes), c.num_support), q
        remaining = sizes - q
        if remaining.min() < 1:
            raise MetaDatasetError(f"{self.source}: some classes have no image left for the support set after {q} queries")
        size = sample_support_set_size(remaining, c.max_support_size_contrib_per_class, c.max_support_set_size, rng)
        shots = sample_num_support_per_class(sizes, remaining, size, c.min_log_weight, c.max_log_weight, rng)
        return classes, shots, q

    def sample(self, rng, image_rng) -> Episode:
        """An episode: its description from `rng` (steps 1-4), its images from `image_rng` (step 5)."""
        classes, shots, q = self.sample_description(rng)
        images = tuple(pick_images(int(self.sizes[c]), int(k) + q, image_rng) for c, k in zip(classes, shots))
        return Episode(np.asarray(classes), np.asarray(shots, dtype=np.int64), int(q), images)


def split_sampler(spec, config: EpisodeConfig | None = None, source: str = "source", split: str = "TEST") -> Sampler:
    """The sampler of a split of a spec (metadataset/spec.py), as the official code builds it
    for evaluation: a bi-level spec (Omniglot) samples through its superclasses, a
    hierarchical one (ImageNet) through its WordNet DAG; class indices are relative to the split."""
    classes = spec.classes(split)
    superclasses = None
    if spec.superclasses:
        superclasses = [np.arange(r.start - classes.start, r.stop - classes.start) for r in spec.superclasses[split]]
    return Sampler([spec.images_per_class[c] for c in classes], config, superclasses, source=source,
                   dag=spec.dag.get(split))


def draw(sampler: Sampler, episodes: int, seed: int, source: str) -> list[Episode]:
    """The episodes of (seed, source), all drawn before any image is read."""
    rng, image_rng = rng_for(seed, source), image_rng_for(seed, source)
    return [sampler.sample(rng, image_rng) for _ in range(episodes)]


def drawn_images(episodes) -> dict[int, np.ndarray]:
    """{class: the sorted distinct image indices the episodes use}: what must be embedded."""
    per_class: dict = {}
    for ep in episodes:
        for c, idx in zip(ep.classes, ep.images):
            per_class.setdefault(int(c), []).append(idx)
    return {c: np.unique(np.concatenate(parts)) for c, parts in sorted(per_class.items())}
