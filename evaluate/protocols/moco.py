"""MoCo's linear evaluation (He et al. 2020): SGD lr 30, wd 0, lr x0.1 at epochs 60 and 80,
trained on random-resized crops and flips."""
from evaluate.protocols import PROTOCOLS, Protocol

PROTOCOLS.register("moco", Protocol("moco", lr=30.0, weight_decay=0.0, epochs=100, milestones=[60, 80],
                                    augment="crop_flip", follows="MoCo's linear evaluation (He et al. 2020)",
                                    title="Linear probe with MoCo's settings"), order=1)
