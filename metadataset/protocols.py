"""The two Meta-Dataset evaluations of frozen features, always labelled in their records.

A ("linear"): a per-domain linear probe, a fast proxy for the Ring paper's transfer setting
   whose exact recipe it does not claim to reproduce (its records say so). Per source, all
   its classes (train, valid and test alike: the backbone never saw any of them), a seeded
   stratified split of each class's images into train / test, a multinomial logistic
   regression on cached, unaugmented, unnormalised frozen features fitted with
   core.logreg.fit_cached (L-BFGS), top-1 on the test images.
B ("episodic"): Meta-Dataset's evaluation. Test-split classes only, 600 episodes
   sampled as metadataset.episodes describes (all drawn first; then only their images are
   embedded, metadataset.features), a prototype or logistic-regression head
   (metadataset.heads) fitted on each episode's support set; mean top-1 over episodes and
   the 95% confidence interval 1.96 * std / sqrt(episodes) (numpy std, ddof 0, as the
   official code reports it).
"""
from __future__ import annotations

import numpy as np
import torch

from metadataset import heads
from metadataset.episodes import EpisodeConfig, draw, drawn_images, split_sampler
from metadataset.errors import MetaDatasetError
from metadataset.features import FeatureCache
from metadataset.records import Source


def stratified_split(labels: np.ndarray, test_fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): per class a seeded round(test_fraction * n) images to test,
    at least one each side when the class has two or more images."""
    train, test = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(max(int(round(test_fraction * len(rows))), 1 if len(rows) > 1 else 0), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def linear(cache: FeatureCache, source: Source, seed: int = 0, test_fraction: float = 0.2, per_class: int = 0,
           weight_decay: float = 1e-5, max_iter: int = 300) -> dict:
    """Protocol A on one source: {"top1": %} plus the counts that went into it."""
    from core.logreg import fit_cached
    if not 0 < test_fraction < 1:
        raise MetaDatasetError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    class_ids = range(source.spec.num_classes)
    feats = cache.classes(source, class_ids, per_class, seed)
    x = torch.cat(feats)
    y = np.concatenate([np.full(len(f), i) for i, f in enumerate(feats)])
    if len(feats) < 2:
        raise MetaDatasetError(f"{source.root}: a linear probe needs at least 2 classes, the source has {len(feats)}")
    train, test = stratified_split(y, test_fraction, np.random.default_rng(seed))
    yt = torch.as_tensor(y)
    with torch.enable_grad():
        layer = fit_cached(x[train], yt[train], len(feats), weight_decay, max_iter)
    with torch.no_grad():
        top1 = 100.0 * (layer(x[test]).argmax(1) == yt[test]).float().mean().item()
    return {"top1": top1, "classes": len(feats), "train_images": len(train), "test_images": len(test)}


def mean_ci95(accuracies) -> tuple[float, float]:
    a = np.asarray(accuracies, dtype=np.float64)
    return float(a.mean()), float(1.96 * a.std() / np.sqrt(len(a)))


def evaluate(table, test_start: int, episodes, head_names) -> tuple[dict, dict]:
    """({head: [top-1 per episode]}, episode statistics) of drawn episodes whose features are in
    `table` (keyed by absolute class id = test_start + the episode's split-relative class)."""
    accs = {h: [] for h in head_names}
    ways, support_sizes, query_sizes = [], [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # episode-sized problems: thread start-up costs more than it saves (5x on 2 busy cores)
    try:
        for ep in episodes:
            cls = [test_start + int(c) for c in ep.classes]
            s = torch.cat([table.features(c, ep.support(j)) for j, c in enumerate(cls)])
            q = torch.cat([table.features(c, ep.query(j)) for j, c in enumerate(cls)])
            sy, qy = torch.as_tensor(ep.support_labels), torch.as_tensor(ep.query_labels)
            for h in head_names:
                accs[h].append(heads.accuracy(h, s, sy, q, qy, ep.ways))
            ways.append(ep.ways)
            support_sizes.append(len(s))
            query_sizes.append(len(q))
    finally:
        torch.set_num_threads(threads)
    return accs, {"mean_ways": float(np.mean(ways)), "mean_support": float(np.mean(support_sizes)),
                  "mean_query": float(np.mean(query_sizes))}


def episodic(cache: FeatureCache, source: Source, head_names, episodes: int = 600, seed: int = 0,
             config: EpisodeConfig | None = None) -> dict:
    """Protocol B on one source: {head: {"top1": mean %, "ci95": %, "episodes": n}} plus episode
    statistics. The episodes are drawn first, then only the images they hold are embedded, each
    once: the cost grows with the episodes, not with the source (a QuickDraw test class holds
    up to 340,029 images, 600 episodes use a few thousand of them)."""
    config = config or EpisodeConfig()  # (the official variable-way variable-shot sampler)
    spec = source.spec
    test = spec.classes("TEST")
    sampler = split_sampler(spec, config, str(source.root))
    if episodes < 1:
        raise MetaDatasetError(f"--episodes must be at least 1, got {episodes}")
    drawn = draw(sampler, episodes, seed, source.name)
    wanted = {test.start + c: idx for c, idx in drawn_images(drawn).items()}
    table, counts = cache.drawn(source, wanted)
    accs, stats = evaluate(table, test.start, drawn, head_names)
    out = {}
    for h in head_names:
        mean, ci = mean_ci95(accs[h])
        out[h] = {"top1": mean, "ci95": ci, "episodes": episodes}
    stats.update({"test_classes": len(test), "test_images": int(sum(spec.images_per_class[c] for c in test)),
                  "images_drawn": counts["drawn"], "images_embedded": counts["embedded"],
                  "images_reused": counts["reused"],
                  "class_sampling": {"BiLevelDatasetSpecification": "bi-level (superclass first)",
                                     "HierarchicalDatasetSpecification": "the WordNet DAG (an internal node's leaves)",
                                     }.get(spec.kind, "uniform") if config.num_ways is None else "uniform (fixed way)"})
    return {"heads": out, "stats": stats}
