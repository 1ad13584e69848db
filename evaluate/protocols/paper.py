"""The official Ring code's linear evaluation: SGD lr 0.01, wd 1e-5, 100 epochs, trained on the
pretraining augmentations."""
from evaluate.protocols import PROTOCOLS, Protocol

PROTOCOLS.register("paper", Protocol("paper", lr=0.01, weight_decay=1e-5, epochs=100, augment="pretrain",
                                     follows="the official Ring code's linear evaluation",
                                     title="Linear probe with the official Ring code's settings"), order=0)
