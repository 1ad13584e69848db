"""Registries, as detectron2's: each method, negative sampler, strategy, dataset and evaluation
protocol registers itself with one decorator (or one call) in its own file, and config choices,
the CLI's choices, the tests' parametrisations and the benchmarks' choices are read from the
registry. The stage that owns a kind of thing holds its registry (pretrain/registry.py,
evaluate/protocols/); this module is only the class.

A registry imports the modules that fill it (`source`) the first time it is read, so a
reader never sees a half-filled list and this module itself imports nothing heavy."""
from __future__ import annotations

import importlib


class Registry:
    def __init__(self, kind: str, source: str):
        self.kind, self.source = kind, source
        self._entries: dict[str, tuple[object, dict]] = {}
        self._loaded = False

    def register(self, name: str, obj=None, **meta):
        """`@REGISTRY.register("name", label=..., order=...)` on a class or function, or
        `REGISTRY.register("name", obj)` for a plain object."""
        def add(o):
            if name in self._entries and self._entries[name][0] is not o:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (o, meta)
            return o
        return add if obj is None else add(obj)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.source)

    def __getitem__(self, name: str):
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}, expected one of {', '.join(self.names())}")
        return self._entries[name][0]

    def __contains__(self, name) -> bool:
        self._load()
        return name in self._entries

    def meta(self, name: str) -> dict:
        self[name]  # noqa: B018 - the same error for an unknown name
        return self._entries[name][1]

    def label(self, name: str) -> str:
        return self.meta(name).get("label", name) if name in self else name

    def names(self) -> tuple[str, ...]:
        """Every registered name: by `order` where given, else in registration order."""
        self._load()
        keys = list(self._entries)
        return tuple(sorted(keys, key=lambda n: (self._entries[n][1].get("order", float("inf")), keys.index(n))))

    def items(self):
        return [(n, self[n]) for n in self.names()]

