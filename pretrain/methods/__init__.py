"""Base methods, one short file each, looked up by config name."""
from pretrain.methods.cmc import CMC
from pretrain.methods.ir import IR
from pretrain.methods.la import LA
from pretrain.methods.moco import MoCo
from pretrain.methods.simclr import SimCLR

METHODS = {"ir": IR, "moco": MoCo, "simclr": SimCLR, "la": LA, "cmc": CMC}


def build(cfg, num_samples: int, sampler):
    return METHODS[cfg.method.name](cfg, num_samples, sampler)
