"""Base methods, one short file each. Every module here registers its method with
@METHODS.register; importing the package imports them all, so adding a method is adding a
file (and its presets)."""
import importlib
import pkgutil

from pretrain.registry import METHODS

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def build(cfg, num_samples: int, sampler):
    return METHODS[cfg.method.name](cfg, num_samples, sampler)
