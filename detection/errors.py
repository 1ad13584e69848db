"""The one error type of the detection harness.

A UserError (core.errors imports nothing) so that converting weights and writing the
tiny dataset never import detectron2; the CLI prints it as one line and exits with status 2,
writing no record.
"""
from core.errors import UserError


class DetectionError(UserError):
    """detectron2 missing, bad weights file, unsupported backbone layout, missing dataset
    file or bad request; the message is one line and names the file at fault."""


class UnsupportedBackbone(DetectionError):
    """A backbone with no detectron2 ResNet counterpart (CMC's two half-width ResNets, a CIFAR
    stem): `mini` skips such a checkpoint, every other command refuses it."""
