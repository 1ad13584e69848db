"""ImageNet and ImageNet-100: ImageFolder trees of JPEGs (train/ and val/, a folder per class)."""
from pathlib import Path

from pretrain.datasets import dataset


def _image_folder(name: str, classes: int, order: int):
    @dataset(name, order=order, pretrain="train", train="train", test="val", native=None, classes=classes,
             folder=name, expected=f"an ImageFolder tree {name}/{{train,val}}/<class>/*.JPEG")
    def read(root, split, verify):
        import torchvision
        return torchvision.datasets.ImageFolder(str(Path(root) / name / split))


_image_folder("imagenet", 1000, 3)
_image_folder("imagenet100", 100, 4)
