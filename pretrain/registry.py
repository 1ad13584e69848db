"""Pretraining's registries: methods, negative samplers, negative strategies, datasets and
augmentation recipes (the class is core.registry.Registry; the evaluation protocols are
evaluate/protocols/'s).

`names(config)` is what a results record says about these names, so that the report, which
imports no stage, can label and order what it reads (docs/design.md §1)."""
from __future__ import annotations

from core import records
from core.registry import Registry

METHODS = Registry("method", "pretrain.methods")
SAMPLERS = Registry("negative sampler", "pretrain.negatives")
DATASETS = Registry("dataset", "pretrain.datasets")
STRATEGIES = Registry("negative strategy", "pretrain.strategies")
RECIPES = Registry("augmentation recipe", "pretrain.recipes")


def names(config: dict | None) -> dict:
    """The record fields the registries answer for a run's pretraining config: the method's own
    baseline sampler, and `labels` (the method's label and place in the report's order, a label
    for each part of the negatives' name). Empty for a foreign checkpoint."""
    prov = records.provenance(config)
    method, negatives = prov["method"], prov["negatives"]
    if method not in METHODS:
        return {}
    parts = {p: (SAMPLERS if p in SAMPLERS else STRATEGIES).label(p) for p in (negatives or "").split("+") if p}
    return {"baseline_sampler": METHODS[method].baseline_sampler,
            "labels": {"method": METHODS.label(method), "method_order": METHODS.meta(method).get("order"),
                       "negatives": parts}}
