import pytest
import torch
import torchvision

from core import checkpoint
from pretrain import models


def test_resnet50_checkpoint_loads_strictly_into_torchvision(tmp_path):
    net = models.backbone("resnet50")
    payload = {"format": checkpoint.FORMAT, "version": 1, "arch": "resnet50", "cifar_stem": False,
               "backbone": net.state_dict(), "config": None}
    path = tmp_path / "c.pt"
    checkpoint.atomic_save(payload, path)
    tv = torchvision.models.resnet50(weights=None)
    tv.fc = torch.nn.Identity()
    tv.load_state_dict(checkpoint.read(path)["backbone"], strict=True)
    x = torch.randn(2, 3, 64, 64)
    net.eval(), tv.eval()
    assert torch.allclose(net(x), tv(x))


def test_cifar_stem_and_feature_dims():
    for arch, dim in models.FEATURE_DIMS.items():
        net = models.backbone(arch, cifar_stem=True)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)
        assert net.conv1.stride == (1, 1) and isinstance(net.maxpool, torch.nn.Identity)


def test_split_batchnorm_matches_per_group_bn_and_keeps_keys():
    torch.manual_seed(0)
    split = models.SplitBatchNorm(8, splits=4)
    x = torch.randn(16, 8, 5, 5)
    out = split(x)
    # group g holds samples g, g+4, g+8, ... (the reshape interleaves them)
    for g in range(4):
        ref = torch.nn.functional.batch_norm(x[g::4], None, None, training=True)
        assert torch.allclose(out[g::4], ref, atol=1e-5)
    assert set(split.state_dict()) == set(torch.nn.BatchNorm2d(8).state_dict())


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.atomic_save({"a": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_save({"a": Boom()}, path)
    assert torch.equal(checkpoint.read(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_truncated_and_missing_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.atomic_save({"backbone": models.backbone("resnet18").state_dict()}, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.read(path)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint not found"):
        models.load_backbone(tmp_path / "none.pt")


def test_foreign_formats_and_arch_refusal(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    net, info = models.load_backbone(tmp_path / "tv.pt")
    assert info["kind"] == "torchvision" and info["arch"] == "resnet18"
    assert torch.equal(net.conv1.weight, tv.conv1.weight)
    # MoCo's format: module.encoder_q.* with an MLP head at fc.0 / fc.2
    moco = {f"module.encoder_q.{k}": v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    moco.update({"module.encoder_q.fc.0.weight": torch.zeros(512, 512), "module.encoder_q.fc.2.weight": torch.zeros(128, 512),
                 "module.queue": torch.zeros(128, 10)})
    torch.save({"state_dict": moco, "epoch": 200}, tmp_path / "moco.pth.tar")
    net, info = models.load_backbone(tmp_path / "moco.pth.tar")
    assert info["kind"] == "moco" and torch.equal(net.layer4[1].bn2.weight, tv.layer4[1].bn2.weight)
    with pytest.raises(checkpoint.CheckpointError, match="holds a resnet18 backbone, but resnet50 was requested"):
        models.load_backbone(tmp_path / "tv.pt", arch="resnet50")
    torch.save({"x": 1}, tmp_path / "junk.pt")
    with pytest.raises(checkpoint.CheckpointError, match="no state dict found"):
        models.load_backbone(tmp_path / "junk.pt")


def test_lab_conversion_matches_scikit_image():
    from skimage.color import rgb2lab

    from pretrain.color import rgb_to_lab
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    ref = torch.tensor(rgb2lab(x.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    assert torch.allclose(rgb_to_lab(x), ref, atol=1e-3)


def test_cmc_backbone_halves_load_strictly_and_roundtrip(tmp_path):
    net = models.backbone("cmc_resnet18")
    assert net.l.conv1.in_channels == 1 and net.ab.conv1.in_channels == 2 and net.l.out_dim == 256
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "version": 1, "arch": "cmc_resnet18", "cifar_stem": False,
                            "backbone": net.state_dict(), "config": None}, tmp_path / "c.pt")
    loaded, info = models.load_backbone(tmp_path / "c.pt")
    assert info["arch"] == "cmc_resnet18"
    x = torch.rand(2, 3, 32, 32)
    net.eval(), loaded.eval()
    assert torch.equal(net(x), loaded(x)) and net(x).shape == (2, 512)
