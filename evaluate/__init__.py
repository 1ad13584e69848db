"""Linear-probe and kNN evaluation of frozen backbones."""
