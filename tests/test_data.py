import formats
import numpy as np
import pytest
import torch

from pretrain import data


def as_array(img):
    return np.asarray(img.convert("RGB"))


def test_cifar10_real_format_roundtrip(tmp_path):
    written = formats.write_cifar10(tmp_path)
    with pytest.raises(data.DataError, match="cannot read cifar10"):
        data.load("cifar10", tmp_path, "train", verify=True)  # md5s of the real files do not match
    train = data.load("cifar10", tmp_path, "train", verify=False)
    test = data.load("cifar10", tmp_path, "test", verify=False)
    assert len(train) == 100 and len(test) == 20
    x, y = written["data_batch_2"]
    img, target = train[20 + 3]
    assert np.array_equal(as_array(img), x[3]) and target == y[3]
    assert train.classes[0] == "airplane"


def test_cifar100_real_format_roundtrip(tmp_path):
    written = formats.write_cifar100(tmp_path)
    ds = data.load("cifar100", tmp_path, "test", verify=False)
    img, target = ds[7]
    assert np.array_equal(as_array(img), written["test"][0][7]) and target == written["test"][1][7]
    assert len(data.load("cifar100", tmp_path, "train", verify=False)) == 60


def test_stl10_real_format_roundtrip(tmp_path):
    written = formats.write_stl10(tmp_path)
    train = data.load("stl10", tmp_path, "train", verify=False)
    both = data.load("stl10", tmp_path, "train+unlabeled", verify=False)
    test = data.load("stl10", tmp_path, "test", verify=False)
    assert (len(train), len(both), len(test)) == (20, 30, 20)
    img, target = test[5]
    assert np.array_equal(as_array(img), written["test"][0][5]) and target == written["test"][1][5]
    img, target = both[25]
    assert np.array_equal(as_array(img), written["unlabeled"][0][5]) and target == -1


def test_imagefolder(tmp_path):
    formats.write_imagefolder(tmp_path / "imagenet")
    ds = data.load("imagenet", tmp_path, "train")
    assert len(ds) == 12 and ds.classes == ["n01", "n02", "n03"]
    views = data.Views(ds, data.train_transform("moco_v2", 32), n_views=2)
    (a, b), target, index = views[(5, 11)]
    assert a.shape == (3, 32, 32) and index == 5 and target == 1
    assert not torch.equal(a, b)  # two independent augmentations


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "imagenet", "imagenet100"])
def test_missing_directory_is_one_clear_line(tmp_path, name):
    with pytest.raises(data.DataError) as exc:
        data.load(name, tmp_path / "nowhere", "train")
    msg = str(exc.value)
    assert "directory not found" in msg and "nowhere" in msg and "expected" in msg and "\n" not in msg


def test_wrong_format_is_one_clear_line(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]:
        (d / name).write_bytes(b"this is not a pickle")
    with pytest.raises(data.DataError, match="cannot read cifar10"):
        data.load("cifar10", tmp_path, "train", verify=False)


def test_offline_datasets_are_real_and_disjoint():
    train, test = data.load("photo_patches", ".", "train"), data.load("photo_patches", ".", "test")
    assert (len(train), len(test)) == (5000, 1000)
    assert data.targets(train).bincount().tolist() == [500] * 10
    assert train.images.std() > 20  # real photos, not constant
    assert not (set(map(bytes, train.images[:500])) & set(map(bytes, test.images[:100])))
    m_train, m_test = data.load("mnist5k", ".", "train"), data.load("mnist5k", ".", "test")
    assert (len(m_train), len(m_test)) == (4000, 1000)
    assert data.targets(m_test).bincount().tolist() == [100] * 10


def test_augmentation_is_a_function_of_seed_epoch_index():
    ds = data.Views(data.load("photo_patches", ".", "train"), data.train_transform("ring", 32))
    before = torch.get_rng_state()
    a = ds[(3, data.item_seed(0, 1, 3))][0][0]
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    assert torch.equal(a, ds[(3, data.item_seed(0, 1, 3))][0][0])
    assert not torch.equal(a, ds[(3, data.item_seed(0, 2, 3))][0][0])


def test_epoch_sampler_resume_and_ranks():
    s = data.EpochSampler(103, batch=10, seed=4)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 100 and len({i for i, _ in full}) == 100
    s.set_epoch(2, start=37)
    assert list(s) == full[37:]
    s.set_epoch(3)
    assert list(s) != full
    # two ranks see, step by step, the two halves of the same global batches
    r0, r1 = data.EpochSampler(103, 10, 4, rank=0, world=2), data.EpochSampler(103, 10, 4, rank=1, world=2)
    for r in (r0, r1):
        r.set_epoch(2)
    a, b = list(r0), list(r1)
    merged = [x for pair in zip(a, b) for x in pair]  # rank r holds positions r::2 of each batch
    assert merged == full


def test_imagefolder_eval_view_has_the_requested_size(tmp_path):
    formats.write_imagefolder(tmp_path / "imagenet", size=70)  # 70 x 78 images
    ds = data.load("imagenet", tmp_path, "val")
    native = data.info("imagenet").native
    view = data.Views(ds, data.eval_transform(64, native))[0][0][0]
    assert view.shape == (3, 64, 64)


class Labelled(torch.utils.data.Dataset):
    """Items in class order, as the offline sets are stored."""

    def __init__(self, labels):
        self.targets = list(labels)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return i, self.targets[i]


def test_a_limit_keeps_every_class_in_proportion_and_one_subset_for_every_run():
    labels = [c for c, n in enumerate([50, 30, 20]) for _ in range(n)]  # class order, unequal classes
    ds = Labelled(labels)
    sub = data.subset(ds, 10)
    assert data.class_counts(sub) == {"0": 5, "1": 3, "2": 2}  # not ten items of class 0
    assert list(sub.indices) == sorted(sub.indices) and len(set(sub.indices)) == 10
    assert data.subset(ds, 10).indices == sub.indices  # the same subset whatever the run
    assert sub.indices != list(range(10)) and sub.indices[:5] != list(range(5))  # seeded, not the first of a class
    # largest remainders: 7 of (50, 30, 20) is 3.5, 2.1, 1.4 -> 4, 2, 1
    assert data.class_counts(data.subset(ds, 7)) == {"0": 4, "1": 2, "2": 1}
    assert data.subset(ds, 0) is ds and data.subset(ds, 100) is ds


@pytest.mark.parametrize("name,limit", [("photo_patches", 256), ("photo_patches", 3000), ("mnist5k", 500)])
def test_limits_of_the_offline_sets_cover_every_class(name, limit):
    """The README's example (photo patches, limit 256) and the mini preset's 3,000 train on every class."""
    full = data.load(name, "data", data.info(name).pretrain, False)
    counts = data.class_counts(data.subset(full, limit))
    every = data.class_counts(full)
    assert counts.keys() == every.keys() and sum(counts.values()) == limit
    for label, n in counts.items():
        assert abs(n - every[label] * limit / len(full)) < 1


def test_the_pretraining_record_says_how_many_images_of_each_class_trained(tmp_path):
    import json

    from tests.test_bad_input import pretrain
    assert pretrain(tmp_path, "limited", "data.limit=64") == 0
    rec = json.loads((tmp_path / "results" / "limited" / "pretrain" / "pretrain.json").read_text())
    assert rec["trained_images"] == 64 and len(rec["trained_classes"]) == 10
    assert sum(rec["trained_classes"].values()) == 64 and min(rec["trained_classes"].values()) >= 6
