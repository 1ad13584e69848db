"""Negative strategies beside Ring (docs/design.md §11): DCL and HCL against a transcription of
their authors' published loss (chingyaoc/DCL main.py, joshr17/HCL image/main.py: the estimator
Ng, its clamp at N e^{-1/t}, the loss -log(pos / (pos + Ng))), wired into every method that uses
InfoNCE, refused where they make no sense, and compared in the report against the method's
own baseline."""
import math

import numpy as np
import pytest
import torch

from core import records
from pretrain import config, methods
from pretrain.negatives import NegativeSampler
from pretrain.objectives import debiased_nce, info_nce
from reports import tables


def authors(pos, neg, t, tau_plus, beta):
    """The authors' estimator, transcribed in NumPy (float64): exponentiated similarities,
    importance weights neg^beta normalised by their mean, the debiased sum, the clamp."""
    pos_e, neg_e = np.exp(np.asarray(pos, float) / t), np.exp(np.asarray(neg, float) / t)
    n = neg_e.shape[1]
    imp = np.exp(beta * np.log(neg_e))
    reweight = (imp * neg_e).sum(-1) / imp.mean(-1)
    ng = (-tau_plus * n * pos_e + reweight) / (1 - tau_plus)
    ng = np.maximum(ng, n * math.e ** (-1 / t))
    return float(np.mean(-np.log(pos_e / (pos_e + ng))))


def test_the_known_value_on_fixed_numbers():
    pos, neg = torch.tensor([0.5, 0.2]), torch.tensor([[0.4, 0.1, -0.2], [0.9, 0.3, 0.0]])
    # by hand: row 0 (DCL, t = 0.5, tau+ = 0.1): e^1 = 2.7183; sum e^{s/t} = 2.2255 + 1.2214 + 0.6703 = 4.1172;
    # Ng = (4.1172 - 0.1 * 3 * 2.7183) / 0.9 = 3.6686; -log(2.7183 / 6.3869) = 0.8542
    row0 = debiased_nce(pos[:1], neg[:1], 0.5, 0.1)
    assert row0.item() == pytest.approx(0.8542, abs=1e-4)
    for beta in (0.0, 1.0, 2.5):
        for tau in (0.0, 0.1, 0.3):
            got = debiased_nce(pos, neg, 0.5, tau, beta).item()
            assert got == pytest.approx(authors(pos, neg, 0.5, tau, beta), rel=1e-5), (beta, tau)


@pytest.mark.parametrize("t", [0.07, 0.2, 0.5])
def test_random_inputs_match_the_authors_estimator(t):
    g = torch.Generator().manual_seed(3)
    z = torch.nn.functional.normalize(torch.randn(9, 16, generator=g), dim=1)
    pos, neg = (z[:8] * z[1:]).sum(1), z[:8] @ torch.nn.functional.normalize(torch.randn(30, 16, generator=g), dim=1).T
    for beta in (0.0, 1.0):
        assert debiased_nce(pos, neg, t, 0.1, beta).item() == pytest.approx(authors(pos, neg, t, 0.1, beta), rel=1e-4)


def test_the_clamp_holds_the_negative_term_at_its_floor():
    """A large tau+ and an easy positive drive the debiased sum below N e^{-1/t}: the clamp."""
    pos, neg, t = torch.tensor([0.9]), torch.tensor([[-0.5, -0.6, -0.7, -0.8]]), 0.5
    unclamped = (np.exp(neg.numpy() / t).sum() - 0.5 * 4 * math.exp(0.9 / t)) / 0.5
    assert unclamped < 4 * math.e ** (-1 / t)  # the clamp is active here
    floor = 4 * math.e ** (-1 / t)
    expected = -math.log(math.exp(0.9 / t) / (math.exp(0.9 / t) + floor))
    assert debiased_nce(pos, neg, t, 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert debiased_nce(pos, neg, t, 0.5).item() == pytest.approx(authors(pos, neg, t, 0.5, 0.0), rel=1e-6)


def test_special_cases_and_masks():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.rand(6, generator=g), torch.rand(6, 10, generator=g) * 2 - 1
    # tau+ = 0, beta = 0: plain InfoNCE
    assert debiased_nce(pos, neg, 0.2, 0.0).item() == pytest.approx(info_nce(pos, neg, 0.2).item(), rel=1e-6)
    # a mask leaves the masked-out columns out of the sum, the mean of the weights and N
    mask = torch.zeros(6, 10, dtype=torch.bool)
    mask[:, 2:7] = True
    for beta in (0.0, 1.0):
        assert debiased_nce(pos, neg, 0.2, 0.1, beta, mask).item() == pytest.approx(
            debiased_nce(pos, neg[:, 2:7], 0.2, 0.1, beta).item(), rel=1e-6)
    with pytest.raises(ValueError, match="tau_plus"):
        debiased_nce(pos, neg, 0.2, 1.0)


def build(name, objective, **over):
    sets = [f"method.name={name}", "negatives.sampler=uniform", f"negatives.objective={objective}", "negatives.num=64",
            "method.moco.queue_size=128", "model.feat_dim=16", "optim.batch_size=16"] + [f"{k}={v}" for k, v in over.items()]
    cfg = config.load(None, sets)
    torch.manual_seed(0)
    m = methods.build(cfg, 128, NegativeSampler.from_config(cfg.negatives, seed=0, device="cpu"))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 32, 32, generator=g) * 2 - 1
    return m, [x, x + 0.3 * torch.randn(16, 3, 32, 32, generator=g)], torch.arange(16) * 5


@pytest.mark.parametrize("name", ["ir", "moco", "simclr", "cmc"])
@pytest.mark.parametrize("objective,module", [("dcl", "dcl"), ("hcl", "hcl")])
def test_every_infonce_method_runs_the_strategy_it_is_given(monkeypatch, name, objective, module):
    """The loss a method returns is the strategy's loss of the logits it computed; a method
    that silently fell back to InfoNCE (the strategy bypassed) fails here."""
    from pretrain import strategies
    mod = getattr(strategies, module)
    calls, real = [], mod.debiased_nce
    monkeypatch.setattr(mod, "debiased_nce", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    m, views, index = build(name, objective)
    loss = m(views, index, 0.0)[0]
    assert len(calls) == (2 if name == "cmc" else 1)
    expected = sum(real(*a, **k) for a, k in calls)
    plain = sum(info_nce(a[0], a[1], a[2], a[5]) for a, _ in calls)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and abs(loss.item() - plain.item()) > 1e-4
    settings = getattr(m.cfg.negatives, objective)
    assert calls[0][0][3] == settings.tau_plus and calls[0][0][4] == (0.0 if objective == "dcl" else settings.beta)


def test_strategies_are_refused_where_they_make_no_sense():
    with pytest.raises(config.ConfigError, match=r"expected infonce \(method la.s loss is not InfoNCE\)"):
        config.load(None, ["method.name=la", "negatives.objective=dcl"])
    with pytest.raises(config.ConfigError, match="negatives.neighbor_views"):
        config.load(None, ["negatives.sampler=ring", "negatives.neighbor_views=true", "negatives.objective=hcl"])
    with pytest.raises(config.ConfigError, match=r"negatives.dcl.tau_plus' = 1.0, expected a number in \[0, 1\)"):
        config.load(None, ["negatives.objective=dcl", "negatives.dcl.tau_plus=1.0"])
    with pytest.raises(config.ConfigError, match="negatives.hcl.beta' = -1"):
        config.load(None, ["negatives.objective=hcl", "negatives.hcl.beta=-1"])
    with pytest.raises(config.ConfigError, match="expected one of infonce, dcl, hcl"):
        config.load(None, ["negatives.objective=focal"])


def strategy_rec(run, objective, top1, seed, sampler="uniform", **own):
    neg = {"sampler": sampler, "objective": objective, "outer": 0.1, "inner": 0.1}
    if own:
        neg[objective] = own
    cfg = {"method": {"name": "ir"}, "negatives": neg, "train": {"seed": seed}, "data": {"dataset": "cifar10"}}
    return records.make(run, "evaluate", "linear_cached_i300_cifar10", "cifar10", {"top1": top1, "top5": 99.0}, cfg)


def test_the_report_compares_each_strategy_with_the_methods_own_baseline():
    recs = [strategy_rec(f"u{s}", "infonce", 60.0 + s, s) for s in (0, 1)]
    recs += [strategy_rec(f"d{s}", "dcl", 63.0 + s, s, tau_plus=0.1) for s in (0, 1)]
    recs += [strategy_rec(f"h{s}", "hcl", 61.0 + 2 * s, s, tau_plus=0.1, beta=1.0) for s in (0, 1)]
    recs += [strategy_rec(f"rh{s}", "hcl", 59.0, s, sampler="ring", tau_plus=0.05, beta=0.5) for s in (0, 1)]
    assert [r["negatives"] for r in recs[::2]] == ["uniform", "dcl", "hcl", "ring+hcl"]
    main = tables.ring_vs_baseline(tables.evaluations(recs)).set_index("model")
    assert main.loc["IR + DCL (τ⁺ 0.1)", "delta_mean"] == pytest.approx(3.0)
    assert main.loc["IR + HCL (τ⁺ 0.1, β 1)", "delta_mean"] == pytest.approx(1.5)
    assert main.loc["IR + Ring + HCL (outer 0.1, inner 0.1, τ⁺ 0.05, β 0.5)", "delta_mean"] == pytest.approx(-1.5)
    assert set(main["pairs"]) == {2} and set(main["baseline"]) == {"60.50 ± 6.35 (n=2)"}
