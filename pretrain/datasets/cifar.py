"""CIFAR-10 and CIFAR-100: torchvision's python pickles."""
from pretrain.datasets import dataset


@dataset("cifar10", order=0, pretrain="train", train="train", test="test", native=32, classes=10,
         folder="cifar-10-batches-py", expected="the CIFAR-10 python pickles (data_batch_1..5, test_batch, batches.meta)")
def _cifar10(root, split, verify):
    from pretrain.data import CIFAR10
    return CIFAR10(root, train=split == "train", verify=verify)


@dataset("cifar100", order=1, pretrain="train", train="train", test="test", native=32, classes=100,
         folder="cifar-100-python", expected="the CIFAR-100 python pickles (train, test, meta)")
def _cifar100(root, split, verify):
    from pretrain.data import CIFAR100
    return CIFAR100(root, train=split == "train", verify=verify)
