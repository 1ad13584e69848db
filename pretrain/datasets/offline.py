"""The embedded offline datasets, built from registry packages (pretrain/offline.py): the
photo patches and mnist5k, for smoke runs and tests without downloads."""
from pretrain.datasets import dataset


def _offline(name: str, native: int, order: int):
    @dataset(name, order=order, pretrain="train", train="train", test="test", native=native, classes=10)
    def read(root, split, verify):
        from pretrain import offline
        return offline.load(name, split)


_offline("photo_patches", 32, 5)
_offline("mnist5k", 28, 6)
