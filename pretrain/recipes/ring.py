"""The instance-discrimination recipe the official Ring code defaults to: grayscale with p 0.2,
then colour jitter (0.4, 0.4, 0.4, 0.4) always."""
from pretrain.recipes import RECIPES, Recipe


class Ring(Recipe):
    def on_cpu(self, size):
        from torchvision.transforms import v2
        return [v2.RandomGrayscale(p=0.2), v2.ColorJitter(0.4, 0.4, 0.4, 0.4)]

    def on_device(self, size):
        import kornia.augmentation as K
        return [K.RandomGrayscale(p=0.2), K.ColorJitter(0.4, 0.4, 0.4, 0.4, p=1.0)]


RECIPES.register("ring", Ring(), label="the official Ring code's", order=1)
