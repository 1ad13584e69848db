"""MoCo v2's recipe (Chen et al. 2020): colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
grayscale with p 0.2, and Gaussian blur (sigma 0.1-2) with p 0.5 where images are large
enough for it (64 px and up)."""
from pretrain.recipes import RECIPES, Recipe, blur_kernel


class MocoV2(Recipe):
    def on_cpu(self, size):
        from torchvision.transforms import v2
        ops = [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
        if size >= 64:
            ops.append(v2.RandomApply([v2.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))], p=0.5))
        return ops

    def on_device(self, size):
        import kornia.augmentation as K
        ops = [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
        if size >= 64:
            k = blur_kernel(size)
            ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5))
        return ops


RECIPES.register("moco_v2", MocoV2(), label="MoCo v2", order=0)
