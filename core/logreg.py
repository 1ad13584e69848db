"""The linear classifier on fixed features that two harnesses fit: the cached linear probe
(evaluate/linear.py, docs/design.md §5.1) and Meta-Dataset's logistic-regression head
(metadataset/heads.py)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def fit_cached(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, weight_decay: float,
               max_iter: int = 300) -> nn.Linear:
    """Multinomial logistic regression on fixed features: L-BFGS on the full batch, minimising
    mean cross-entropy + weight_decay/2 * ||W||^2 (the same objective SGD with weight decay
    descends), from features standardised with training statistics."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x = (train_x - mean) / std
    layer = nn.Linear(x.shape[1], num_classes).to(x.device)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(x), train_y) + 0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # L-BFGS stops at a tolerance or at max_iter; reaching the cap means it did not converge,
    # which on nearly separable features (weak wd) can cost several points: say so in the record
    state, cap = opt.state[layer.weight], opt.param_groups[0]["max_eval"]
    used = state["n_iter"]
    layer.fit_info = {"iterations": used, "max_iter": max_iter, "objective": float(closure().detach()),
                      "converged": used < max_iter and state["func_evals"] < cap}
    # fold the standardisation into the layer: it then applies to raw features
    with torch.no_grad():
        w = layer.weight / std
        layer.bias.sub_((w * mean).sum(1))
        layer.weight.copy_(w)
    return layer
