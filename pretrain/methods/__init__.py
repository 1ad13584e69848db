"""Base methods, one short file each, looked up by config name."""
from pretrain.methods.ir import IR
from pretrain.methods.moco import MoCo

METHODS = {"ir": IR, "moco": MoCo}


def build(cfg, num_samples: int, sampler):
    return METHODS[cfg.method.name](cfg, num_samples, sampler)
