"""What every evaluation stage (evaluate, metadataset, detection) does before and after its own
work, once: check where its records go and the run name before any work, name the run its
records belong to from the checkpoint, hold each record's lock while it is measured, and write
each record atomically with the fields every record of the checkpoint carries. The stage keeps
only its own arguments and work (docs/design.md §1)."""
from __future__ import annotations

from pathlib import Path

from core import cli, records, rundir


class Harness:
    def __init__(self, stage: str, results: str | Path, run: str | None = None):
        """Refuses an unwritable --results or a bad --run before any work."""
        self.stage, self._run = stage, run
        self.results = cli.writable_dir(results, "--results")
        if run:
            cli.check_run_name(run, "--run")
        self.run, self.config, self.fields = None, {}, {}

    def checkpoint(self, config: dict | None, weights: str | Path, **fields) -> str:
        """Take the checkpoint's pretraining config (None: a foreign checkpoint) and the fields
        every record carries (e.g. checkpoint, arch, what the registries say of the names);
        returns the run name: --run, else the checkpoint's run name, else the weights file's stem."""
        self.config, self.fields = config or {}, fields
        self.run = cli.record_run_name(self._run, config, weights)
        return self.run

    def lock(self, task: str):
        """The lock of the record `task` while it is measured: a second evaluation of the same
        record stops at once instead of racing this one."""
        return rundir.record_lock(self.results, self.run, self.stage, task)

    def write(self, task: str, dataset: str, metrics: dict, **fields) -> Path:
        """The record, written atomically (readers never see half of it)."""
        rec = records.make(self.run, self.stage, task, dataset, metrics, self.config, **{**self.fields, **fields})
        return records.write(rec, self.results)
