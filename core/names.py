"""How the report names what records measure, without importing any stage (docs/design.md §1).

A record written by a stage carries `labels` (pretrain.registry.names): the method's label and
place in the report's order, and a label for each part of its negatives' name, so a method
registered in one file is named in the report without this file. SHIPPED answers for records
that carry none: those written before records carried labels, and hand-made ones."""
from __future__ import annotations

# method: (label, order, baseline sampler)
SHIPPED_METHODS = {"ir": ("IR", 0, "uniform"), "moco": ("MoCo", 1, "uniform"), "cmc": ("CMC", 2, "uniform"),
                   "simclr": ("SimCLR", 3, "uniform"), "la": ("LA", 4, "ball")}
SHIPPED_NEGATIVES = {"uniform": "Uniform (whole pool)", "ring": "Ring", "ball": "Ball",
                     "infonce": "InfoNCE", "dcl": "DCL", "hcl": "HCL"}
SHIPPED_STRATEGIES = ("infonce", "dcl", "hcl")  # (after the samplers in the report's order)


def baseline_sampler(method: str | None) -> str | None:
    """The sampler a shipped method's Ring variant is compared against (None: not shipped)."""
    return SHIPPED_METHODS[method][2] if method in SHIPPED_METHODS else None


class Names:
    """Labels and order of methods and negatives: the shipped ones, then what records say."""

    def __init__(self):
        self.methods = {m: label for m, (label, _, _) in SHIPPED_METHODS.items()}  # in order
        self.order = {m: order for m, (_, order, _) in SHIPPED_METHODS.items()}
        self.negatives = dict(SHIPPED_NEGATIVES)

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
        keys = list(self.methods)
        self.methods = {m: self.methods[m] for m in sorted(keys, key=lambda m: (self.order.get(m, float("inf")), keys.index(m)))}
        return self
