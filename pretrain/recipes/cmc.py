"""CMC's: crop and flip only. Colour is what its L and ab views predict from each other."""
from pretrain.recipes import RECIPES, Recipe

RECIPES.register("cmc", Recipe(), label="crop and flip", order=2)
