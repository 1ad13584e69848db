"""Negative strategies: how a method's negatives enter its loss (docs/design.md §11). A sampler
(uniform, ring, ball) chooses *which* pool entries are negatives; a strategy says how they are
counted. `infonce` counts each once (the methods' own loss); `dcl` and `hcl` reweight and
debias them, one file each, registered with @STRATEGIES.register and their settings, which
become `negatives.<name>.*` in the config. Importing the package imports them all."""
import importlib
import pkgutil

from pretrain.objectives import info_nce
from pretrain.registry import STRATEGIES


@STRATEGIES.register("infonce", label="InfoNCE", order=0)
def infonce(pos, neg, temperature, neg_mask=None, pos_mask=None, settings=None):
    """Every negative counts once: InfoNCE (CNCE where the sampler keeps a ring)."""
    return info_nce(pos, neg, temperature, neg_mask, pos_mask=pos_mask)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
