"""How the report names what records measure, without importing any stage (docs/design.md §1).

A record written by a stage carries `labels` (pretrain.registry.names): the method's label and
place in the report's order, a label for each part of its negatives' name, and for an evaluation
record the title and place of its evaluation (evaluate.protocols.label), so a method or protocol
registered in one file is named in the report without this file. SHIPPED answers for records
that carry none: those written before records carried labels, and hand-made ones."""
from __future__ import annotations

# method: (label, order, baseline sampler)
SHIPPED_METHODS = {"ir": ("IR", 0, "uniform"), "moco": ("MoCo", 1, "uniform"), "cmc": ("CMC", 2, "uniform"),
                   "simclr": ("SimCLR", 3, "uniform"), "la": ("LA", 4, "ball")}
SHIPPED_NEGATIVES = {"uniform": "Uniform (whole pool)", "ring": "Ring", "ball": "Ball",
                     "infonce": "InfoNCE", "dcl": "DCL", "hcl": "HCL"}
SHIPPED_STRATEGIES = ("infonce", "dcl", "hcl")  # (after the samplers in the report's order)
# evaluation: (title, order)
SHIPPED_EVALUATIONS = {"linear_paper": ("Linear probe with the official Ring code's settings", 0),
                       "linear_moco": ("Linear probe with MoCo's settings", 1),
                       "linear_cached": ("Linear probe on cached features (a fast proxy, not a published protocol)", 2),
                       "knn": ("Weighted kNN", 1000)}  # (after every probe)


def baseline_sampler(method: str | None) -> str | None:
    """The sampler a shipped method's Ring variant is compared against (None: not shipped)."""
    return SHIPPED_METHODS[method][2] if method in SHIPPED_METHODS else None


class Names:
    """Labels and order of methods, negatives and evaluations: the shipped ones, then what
    records say."""

    def __init__(self):
        self.methods = {m: label for m, (label, _, _) in SHIPPED_METHODS.items()}  # in order
        self.order = {m: order for m, (_, order, _) in SHIPPED_METHODS.items()}
        self.negatives = dict(SHIPPED_NEGATIVES)
        self.evaluations = dict(SHIPPED_EVALUATIONS)  # evaluation: (title, order); in order once learnt

    def learn(self, records: list[dict]) -> Names:
        """Take the labels records carry (a record's own label wins over the shipped one)."""
        for r in records:
            labels, method = r.get("labels"), r.get("method")
            if not isinstance(labels, dict) or not isinstance(method, str):
                continue
            if isinstance(labels.get("method"), str):
                self.methods[method] = labels["method"]
            if isinstance(labels.get("method_order"), (int, float)):
                self.order[method] = labels["method_order"]
            if isinstance(labels.get("negatives"), dict):
                self.negatives.update({k: v for k, v in labels["negatives"].items() if isinstance(v, str)})
            ev = labels.get("evaluation")
            if isinstance(ev, dict) and isinstance(r.get("evaluation"), str) and isinstance(ev.get("title"), str):
                order = ev.get("order")
                self.evaluations[r["evaluation"]] = (ev["title"], order if isinstance(order, (int, float)) else
                                                     float("inf"))
        keys = list(self.methods)
        self.methods = {m: self.methods[m] for m in sorted(keys, key=lambda m: (self.order.get(m, float("inf")), keys.index(m)))}
        evs = list(self.evaluations)
        self.evaluations = {e: self.evaluations[e] for e in sorted(evs, key=lambda e: (self.evaluations[e][1], evs.index(e)))}
        return self
