"""JPEG decode on the training device (data.gpu_decode) against the CPU recipe, run here on the
CPU device: the same code path, with torchvision's CPU decoder standing in for nvJPEG."""
import formats
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images

from pretrain import data, device_decode
from pretrain.__main__ import main as pretrain_main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photographs (scikit-learn's two 427 x 640 samples) as an image folder, with the
    files a device decoder cannot read: grayscale and CMYK JPEG, and a PNG named .JPEG."""
    root = tmp_path_factory.mktemp("photos")
    china, flower = load_sample_images().images
    (root / "a").mkdir()
    (root / "b").mkdir()
    Image.fromarray(china).save(root / "a" / "china.JPEG", quality=90)
    Image.fromarray(flower).save(root / "b" / "flower.JPEG", quality=90)
    Image.fromarray(china[:300, 100:]).convert("L").save(root / "a" / "gray.JPEG", quality=90)
    Image.fromarray(flower).convert("CMYK").save(root / "b" / "cmyk.JPEG", quality=90)
    Image.fromarray(flower[::2, ::2]).save(root / "b" / "png.JPEG", format="PNG")
    return torchvision.datasets.ImageFolder(str(root))


def test_decoded_views_are_the_cpu_recipes_views(photos):
    """Same seeds, same crop windows and flips; the pixels agree to the last level for JPEGs
    (decoder and antialiased resize rounding) and nearly so for re-encoded files."""
    size, seeds = 64, range(100, 104)
    cpu = data.Views(photos, data.train_transform("cmc", size, on_device=True), n_views=2)
    encoded = device_decode.EncodedViews(photos, size, n_views=2)
    for seed in seeds:
        batch = device_decode.collate([encoded[(i, seed + i)] for i in range(len(photos))])
        (files, windows), targets, index = batch
        assert windows.shape == (len(photos), 2, 5) and index.tolist() == list(range(len(photos)))
        assert targets.tolist() == [t for _, t in photos.samples]
        views = device_decode.decode_views(files, windows, size, torch.device("cpu"))
        assert [v.shape for v in views] == [(len(photos), 3, size, size)] * 2 and views[0].dtype == torch.uint8
        for i, (path, _) in enumerate(photos.samples):
            ref = cpu[(i, seed + i)][0]
            for v in range(2):
                diff = (views[v][i].int() - ref[v].as_subclass(torch.Tensor).int()).abs().float()
                if path.endswith(("china.JPEG", "flower.JPEG", "gray.JPEG")):
                    assert diff.max() <= 1 and diff.mean() < 0.05, (path, seed, v)
                else:  # decoded by PIL in the worker, re-encoded at quality 100, 4:4:4
                    assert diff.mean() < 1.0, (path, seed, v)
    # a view whose window or flip differs from the CPU recipe's is far off: the test can tell
    (files, windows), _, _ = device_decode.collate([encoded[(0, 999)]])
    other = device_decode.decode_views(files, windows, size, torch.device("cpu"))[0][0]
    assert (other.int() - cpu[(0, 100)][0][0].as_subclass(torch.Tensor).int()).abs().float().mean() > 5


def test_a_file_the_device_decoder_refuses_is_decoded_on_the_cpu(photos, monkeypatch):
    """One file nvJPEG refuses fails its whole batch: the batch is then decoded file by file,
    and that file on the CPU. Here the stand-in device decoder refuses batches and one file."""
    files = [torch.frombuffer(bytearray(open(p, "rb").read()), dtype=torch.uint8) for p, _ in photos.samples[:3]]
    expected = torchvision.io.decode_jpeg(files, mode=torchvision.io.ImageReadMode.RGB)
    real, calls = torchvision.io.decode_jpeg, []

    def device_decoder(data, mode, device="cpu"):
        calls.append("batch" if isinstance(data, list) else ("cpu" if device == "cpu" else "file"))
        if isinstance(data, list) or (data is files[1] and device != "cpu"):
            raise RuntimeError("nvjpegDecode failed")
        return real(data, mode=mode, device=device)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", device_decoder)
    decoded = device_decode.decode(files, torch.device("cpu:0"))
    assert calls == ["batch", "file", "file", "cpu", "file"]
    assert all(torch.equal(a, b) for a, b in zip(decoded, expected))


def pretrain(tmp_path, *sets) -> int:
    args = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for s in sets:
        args += ["--set", s]
    return pretrain_main(args)


def test_pretraining_decodes_on_the_device(tmp_path):
    formats.write_imagefolder(tmp_path / "imagenet", per_class=12, size=48)
    assert pretrain(tmp_path, "name=decoded", "data.dataset=imagenet", f"data.root={tmp_path}", "data.image_size=32",
                    "data.gpu_augment=true", "data.gpu_decode=true", "data.workers=0", "data.verify_checksums=false",
                    "optim.batch_size=12", "optim.epochs=1", "model.feat_dim=16", "negatives.sampler=ring",
                    "negatives.num=8", "train.knn_every=0", "train.log_every=1", "model.cifar_stem=true") == 0
    assert (tmp_path / "runs" / "decoded" / "final.pt").exists()


@pytest.mark.parametrize("sets,message", [
    (["data.gpu_decode=true"], "key 'data.gpu_decode' = true needs data.gpu_augment = true"),
    (["data.gpu_decode=true", "data.gpu_augment=true"],
     "key 'data.gpu_decode' = true: data.dataset = 'photo_patches' is not read from image files; expected an "
     "image-folder dataset"),
])
def test_gpu_decode_needs_device_augmentation_and_image_files(tmp_path, capsys, sets, message):
    assert pretrain(tmp_path, "name=bad", "data.dataset=photo_patches", "data.limit=64", "data.workers=0", *sets) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
