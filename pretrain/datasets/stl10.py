"""STL-10: torchvision's binaries; pretraining also reads the 100,000 unlabelled images."""
from pretrain.datasets import dataset


@dataset("stl10", order=2, pretrain="train+unlabeled", train="train", test="test", native=96, classes=10,
         folder="stl10_binary",
         expected="the STL-10 binaries (train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin, test_y.bin)")
def _stl10(root, split, verify):
    from pretrain.data import STL10
    return STL10(root, split=split, verify=verify)
