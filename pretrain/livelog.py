"""Live training curves: TensorBoard event files beside log.jsonl (`tensorboard --logdir runs`).

Every numeric field of a log entry becomes a scalar at its step, so the JSON lines and the
event files say the same thing. After a resume from step S, the events of steps after S (the
part of the interrupted run that is being redone) are purged, as log.jsonl is truncated."""
from __future__ import annotations

import math
from pathlib import Path


class LiveLog:
    def __init__(self, folder: str | Path, prefix: str, enabled: bool = True):
        self.folder, self.prefix, self.enabled = Path(folder), prefix, enabled
        self._writer, self.purge_after = None, None

    def resumed_at(self, step: int) -> None:
        self.purge_after = step

    def scalars(self, entry: dict, step: int) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # (imports tensorboard: only when used)
            purge = None if self.purge_after is None else self.purge_after + 1
            self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge)
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._writer.add_scalar(f"{self.prefix}/{key}", value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
