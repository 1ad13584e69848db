import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from evaluate import linear
from evaluate.protocols import PROTOCOLS, Protocol
from evaluate.protocols import cached as cached_module
from pretrain import models
from pretrain.knn import knn_predict, topk_accuracy


def gaussian_task(n_train=2000, n_test=1000, dim=64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (classes, dim))
    def draw(n):
        y = rng.integers(0, classes, n)
        return (centres[y] + rng.normal(0, 2.5, (n, dim))).astype(np.float32), y
    return draw(n_train), draw(n_test)


def test_cached_probe_matches_sklearn_logistic_regression():
    (xtr, ytr), (xte, yte) = gaussian_task()
    wd = 1e-3
    ours, fit = linear.cached(torch.tensor(xtr), torch.tensor(ytr), torch.tensor(xte), torch.tensor(yte), 10,
                              Protocol("cached", lr=1.0, weight_decay=wd, epochs=300))
    assert fit["converged"] and fit["iterations"] < 300
    scaler = StandardScaler().fit(xtr)
    # the same objective: mean CE + wd/2 ||W||^2  <=>  C = 1 / (n * wd)
    sk = LogisticRegression(C=1.0 / (len(xtr) * wd), max_iter=2000).fit(scaler.transform(xtr), ytr)
    sk_acc = 100.0 * (sk.predict(scaler.transform(xte)) == yte).mean()
    assert 30.0 < sk_acc < 95.0  # a task where the probe matters
    assert ours["top1"] == pytest.approx(sk_acc, abs=1.0)


def test_cached_probe_says_when_it_stopped_before_converging():
    (xtr, ytr), _ = gaussian_task(n_train=300)
    x, y = torch.tensor(xtr), torch.tensor(ytr)
    short = linear.fit_cached(x, y, 10, 1e-3, max_iter=5).fit_info
    long = linear.fit_cached(x, y, 10, 1e-3, max_iter=2000).fit_info
    assert short == {**short, "max_iter": 5, "converged": False}
    assert long["converged"] and long["iterations"] < 2000 and long["objective"] < short["objective"]


def test_knn_weighted_vote_known_answer():
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])
    q = torch.nn.functional.normalize(torch.tensor([[0.2, 1.0]]), dim=1)
    scores = knn_predict(q, bank, labels, 2, k=3, t=0.1)
    expected0 = sum(torch.exp(q[0] @ bank[i] / 0.1) for i in (0, 1))
    assert scores[0, 0].item() == pytest.approx(expected0.item(), rel=1e-5)
    assert topk_accuracy(scores, torch.tensor([1]), ks=(1,))["top1"] == 100.0


def probe():
    sd = models.backbone("resnet18").state_dict()
    return linear.probe_model(sd, "resnet18", False, 10)


def test_probe_freezes_everything_but_fc():
    net = probe()
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    linear.check_optimizer(net, torch.optim.SGD(net.fc.parameters(), lr=0.1))


def test_sanity_check_missing_keys_fires():
    sd = models.backbone("resnet18").state_dict()
    del sd["layer4.1.bn2.weight"]
    with pytest.raises(linear.SanityError, match="missing keys must be exactly fc.weight, fc.bias"):
        linear.probe_model(sd, "resnet18", False, 10)
    sd = models.backbone("resnet18").state_dict()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(linear.SanityError, match="unexpected"):
        linear.probe_model(sd, "resnet18", False, 10)


def test_sanity_check_optimizer_fires():
    net = probe()
    with pytest.raises(linear.SanityError, match="only the linear layer"):
        linear.check_optimizer(net, torch.optim.SGD(net.parameters(), lr=0.1))
    net.layer1[0].conv1.weight.requires_grad = True
    with pytest.raises(linear.SanityError, match="requires_grad=False"):
        linear.check_optimizer(net, torch.optim.SGD(net.fc.parameters(), lr=0.1))


def test_sanity_check_backbone_unchanged_fires_on_bn_update():
    net = probe()
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    linear.check_unchanged(net, ref)
    net.train()  # the bug the check exists for: BN in train mode updates running statistics
    net(torch.randn(4, 3, 32, 32))
    with pytest.raises(linear.SanityError, match="bn1.running_mean changed"):
        linear.check_unchanged(net, ref)


def test_full_path_and_cached_path_agree_on_an_easy_task(tmp_path):
    """Same frozen backbone, same data: SGD through the real image pipeline and L-BFGS on
    cached features reach the same accuracy (classes differ by colour; no augmentation)."""
    import formats
    from torch.utils.data import DataLoader

    from pretrain import data
    from pretrain.knn import features
    formats.write_cifar10(tmp_path, per_batch=40, test=100)
    train = data.load("cifar10", tmp_path, "train", verify=False)
    test = data.load("cifar10", tmp_path, "test", verify=False)
    torch.manual_seed(0)
    net = models.backbone("resnet18")
    plain = Protocol("plain", lr=0.05, weight_decay=0.0, epochs=20, augment="none", batch_size=64)
    full = linear.full_path(net.state_dict(), "resnet18", False, plain, train, test, 10, 32, 32, "moco_v2",
                            "cpu", workers=0, log=lambda *_: None)
    loader = lambda ds: DataLoader(data.Views(ds, data.eval_transform(32, 32)), batch_size=256)
    tx, ty = features(net, loader(train), "cpu", normalize=False)
    qx, qy = features(net, loader(test), "cpu", normalize=False)
    cached, _ = linear.cached(tx, ty, qx, qy, 10, PROTOCOLS["cached"])
    assert full["top1"] >= 95.0 and cached["top1"] >= 95.0
    assert full["top1"] == pytest.approx(cached["top1"], abs=3.0)


def test_linear_probe_resumes_exactly(tmp_path):
    import formats

    from pretrain import data
    formats.write_cifar10(tmp_path, per_batch=20, test=20)
    train = data.load("cifar10", tmp_path, "train", verify=False)
    test = data.load("cifar10", tmp_path, "test", verify=False)
    sd = models.backbone("resnet18").state_dict()
    proto = Protocol("t", lr=0.05, weight_decay=1e-4, epochs=3, augment="crop_flip", batch_size=32)
    run = lambda p, state: linear.full_path(sd, "resnet18", False, p, train, test, 10, 32, 32, "moco_v2", "cpu",
                                            workers=0, log=lambda *_: None, state=str(state))
    straight = run(proto, tmp_path / "a.pt")
    run(proto.with_epochs(1), tmp_path / "b.pt")  # "killed" after epoch 1
    resumed = run(proto, tmp_path / "b.pt")
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert all(torch.equal(a["fc"][k], b["fc"][k]) for k in a["fc"]) and straight == resumed


# ---------------------------------------------------------------- cached views (issue 29)

def tiny_photos(n=24):
    from pretrain import data
    return data.subset(data.load("photo_patches", "data", "train"), n)


def test_cached_views_are_drawn_once_whatever_else_is_asked():
    """View v of image i depends on (seed, v, i) alone: the first V views of a 3-view cache are
    the V-view cache, batching changes nothing, and another seed draws other views."""
    ds = tiny_photos()
    torch.manual_seed(0)
    net = models.backbone("resnet18")
    crop = linear._train_transform(PROTOCOLS["cached"].with_views(4), "moco_v2", 32, 32)
    three, y3 = linear.view_features(net, ds, crop, range(3), "cpu", seed=1, workers=0)
    two, y2 = linear.view_features(net, ds, crop, range(2), "cpu", seed=1, workers=0, batch_size=7)
    third, _ = linear.view_features(net, ds, crop, [2], "cpu", seed=1, workers=0, batch_size=5)
    assert three.shape == (3 * len(ds), 512) and torch.equal(y3, y2.repeat(2)[: 3 * len(ds)])
    assert torch.allclose(three[: 2 * len(ds)], two, atol=1e-5) and torch.allclose(three[2 * len(ds):], third, atol=1e-5)
    assert not torch.allclose(three[: len(ds)], three[len(ds): 2 * len(ds)])  # views differ from each other
    other, _ = linear.view_features(net, ds, crop, [0], "cpu", seed=2, workers=0)
    assert not torch.allclose(other, three[: len(ds)])


def test_cached_views_are_the_paper_protocols_crop_and_flip():
    """The views' transform is the pretraining crop (scale 0.2-1) and flip, without the colour:
    an image of one colour stays that colour, and a crop of it is the whole image resized."""
    from PIL import Image
    crop = linear._train_transform(PROTOCOLS["cached"].with_views(4), "moco_v2", 32, 32)
    ops = [type(t).__name__ for t in crop.transforms]
    assert ops[:2] == ["RandomResizedCrop", "RandomHorizontalFlip"] and crop.transforms[0].scale == (0.2, 1.0)
    flat = Image.new("RGB", (32, 32), (200, 30, 90))
    plain = linear.data.eval_transform(32, 32)(flat)
    assert all(torch.allclose(crop(flat), plain, atol=1e-6) for _ in range(5))


def test_zero_views_is_the_probe_records_had_before_views():
    """--views 0 caches the unaugmented training images and keeps the old task name and setting,
    so its records group with the records written before issue 29."""
    p = PROTOCOLS["cached"].with_views(0)
    assert p.augment == "none" and p.task_name() == "linear_cached_i300"
    assert p.setting() == ("logistic regression by L-BFGS (300 iterations, wd 1e-05) on cached, unaugmented, "
                                 "standardised features of the frozen backbone")
    ds = tiny_photos(8)
    net = models.backbone("resnet18")
    tx, ty, qx, qy = linear.cached_features(net, p, ds, ds, 32, 32, "cpu", workers=0)
    assert torch.allclose(tx, qx) and torch.equal(ty, qy)  # train and test alike: the eval transform


def test_views_are_named_in_the_task_and_setting_and_are_not_a_departure():
    four = PROTOCOLS["cached"].with_views(4)
    one = PROTOCOLS["cached"].with_views(0).with_views(1)
    assert four.task_name() == "linear_cached_i300_v4" and one.task_name() == "linear_cached_i300_v1"
    assert "4 augmented views of each training image" in four.setting()
    assert "1 augmented view of each" in one.setting() and one.augment == "pretrain_crop_flip"
    assert four.setting() != four.with_views(8).setting()  # never one table
    d = four.describe()
    assert d["views"] == 4 and d["follows"] == PROTOCOLS["cached"].follows and d["paper_protocol"] is False
    assert "views" not in PROTOCOLS["paper"].describe()
    assert four.with_epochs(5).describe()["follows"].endswith("with epochs 300 -> 5")
    assert PROTOCOLS["cached"].views == cached_module.VIEWS == 0  # the default, from the measured curve (design.md §5.1)


def test_evaluate_cached_writes_the_views_into_the_record(tmp_path, capsys):
    import json

    import formats

    from evaluate.__main__ import main as evaluate_main
    from pretrain.__main__ import main as pretrain_main
    sets = ["data.dataset=photo_patches", "data.limit=64", "data.workers=0", "optim.batch_size=32", "optim.epochs=1",
            "model.feat_dim=16", "negatives.num=16", "train.knn_every=0", "name=t"]
    assert pretrain_main(["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
                          *[x for s in sets for x in ("--set", s)]]) == 0
    formats.write_cifar10(tmp_path / "data", per_batch=10, test=20)  # 50 training images: seconds, not minutes
    common = ["--ckpt", str(tmp_path / "runs/t/final.pt"), "--results", str(tmp_path / "res"), "--workers", "0",
              "--epochs", "5", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--no-verify"]
    assert evaluate_main(["linear", "--protocol", "cached", "--views", "3", *common]) == 0
    rec = json.loads((tmp_path / "res/t/evaluate/linear_cached_i5_v3_cifar10.json").read_text())
    assert rec["protocol"]["views"] == 3 and "3 augmented views of each training image" in rec["setting"]
    assert rec["evaluation"] == "linear_cached" and rec["fit"]["max_iter"] == 5
    assert evaluate_main(["linear", "--protocol", "cached", "--views", "0", *common]) == 0
    old = json.loads((tmp_path / "res/t/evaluate/linear_cached_i5_cifar10.json").read_text())
    assert "unaugmented" in old["setting"] and old["protocol"]["views"] == 0
    capsys.readouterr()
    assert evaluate_main(["linear", "--protocol", "paper", "--views", "2", *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--views 2: only the cached probe caches views" in err


def test_the_reports_shipped_titles_are_what_the_protocols_records_carry():
    """core/names.py titles and orders records written before they carried labels: it must say
    what the shipped protocols' records say (and kNN's, which it defines)."""
    from core.names import SHIPPED_EVALUATIONS
    from evaluate import protocols
    shipped = {e: {"title": title, "order": order} for e, (title, order) in SHIPPED_EVALUATIONS.items()}
    carried = {p.evaluation: protocols.label(p.evaluation) for _, p in PROTOCOLS.items()}
    assert carried == {e: shipped[e] for e in carried} and protocols.label("knn") == shipped["knn"]
