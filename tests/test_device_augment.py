"""The device (batched, kornia) half of the augmentation recipes against the CPU reference."""
import pytest
import torch

from pretrain import data, offline
from pretrain.device_augment import DeviceAugment


def images(n=256):
    train = offline.photo_patches("train")
    return [train[i][0] for i in range(n)]


def cpu_batch(recipe, imgs, on_device, seed=0):
    tf = data.Views(imgs_dataset(imgs), data.train_transform(recipe, 32, on_device=on_device))
    return torch.stack([tf[(i, seed + i)][0][0] for i in range(len(imgs))])


class imgs_dataset(torch.utils.data.Dataset):
    def __init__(self, imgs):
        self.imgs = imgs

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.imgs[i], 0


def test_crop_only_recipe_is_exactly_the_cpu_recipe():
    """cmc has no photometric step: device path = same seeded crop/flip + the same normalisation."""
    imgs = images(32)
    ref = cpu_batch("cmc", imgs, on_device=False)
    dev = DeviceAugment("cmc", 32)(cpu_batch("cmc", imgs, on_device=True))
    assert dev.dtype == torch.float32 and dev.shape == ref.shape
    # uint8 rounding happens after the crop in both paths: the same pixels
    assert torch.allclose(dev, ref, atol=1e-5)


@pytest.mark.parametrize("recipe", ["moco_v2", "ring"])
def test_photometric_statistics_match_the_cpu_recipe(recipe):
    """The device recipe draws from the same distribution as the CPU one. Over 512 images:
    - per-channel means of the per-image mean and std agree within 4 standard errors of their
      difference (measured over 3 seeds: at most 1.35 se);
    - the spread over images of the per-image channel means (what colour jitter creates)
      agrees within a factor e^0.15 (measured: at most e^0.072; dropping, halving or doubling
      the jitter strengths gives e^0.23 or more);
    - the share of grey views is p = 0.2 in both."""
    torch.manual_seed(0)
    imgs = images(512)
    ref = cpu_batch(recipe, imgs, on_device=False)
    dev = DeviceAugment(recipe, 32)(cpu_batch(recipe, imgs, on_device=True))
    for stat in (lambda x: x.mean((2, 3)), lambda x: x.std((2, 3))):
        a, b = stat(dev), stat(ref)  # (images, channels)
        z = (a.mean(0) - b.mean(0)).abs() / (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
        assert (z < 4).all(), z
    spread = dev.mean((2, 3)).std(0) / ref.mean((2, 3)).std(0)
    assert (spread.log().abs() < 0.15).all(), spread
    pixels = lambda x: x * torch.tensor(data.STD).view(1, 3, 1, 1) + torch.tensor(data.MEAN).view(1, 3, 1, 1)
    grey = lambda x: (pixels(x).std(1).amax((1, 2)) < 0.01).float().mean().item()
    # binomial(512, 0.2): sd 0.018, so 0.2 +- 0.07 is ~4 sd
    assert abs(grey(dev) - 0.2) < 0.07 and abs(grey(ref) - 0.2) < 0.07


def test_every_image_gets_its_own_parameters():
    torch.manual_seed(0)
    img = images(1)[0]
    x = cpu_batch("cmc", [img] * 16, on_device=True, seed=0)
    x[:] = x[0]  # 16 identical crops
    out = DeviceAugment("ring", 32)(x)
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) == 16


def test_unknown_recipe():
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        DeviceAugment("simclr_v9", 32)
