"""The one error type of the Meta-Dataset harness.

A UserError (core.errors imports nothing), not pretrain.data.DataError, so that reading
and converting records never has to import torch; the CLI reports it like the other
harnesses report theirs.
"""
from core.errors import UserError


class MetaDatasetError(UserError):
    """Missing source or class file, corrupt record, bad dataset spec or bad request; the
    message is one line and names the file (or the source) at fault."""
