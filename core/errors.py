"""The error every command reports as bad input: one line on stderr, exit status 2, nothing
written. Each stage's own error (ConfigError, DataError, CheckpointError, MetaDatasetError,
DetectionError) derives from it, so that every entry point catches one type. Kept free of
imports: the Meta-Dataset readers and the report use it without loading torch."""


class UserError(ValueError):
    """Bad input; the message is one line that names the file, key or flag, the value and
    what was expected."""
