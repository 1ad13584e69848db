"""docs/design.md says what the code does: the lists it gives are checked against the code."""
import re
from pathlib import Path

DESIGN = (Path(__file__).parent.parent / "docs" / "design.md").read_text()


def test_the_documented_resumable_keys_are_the_codes():
    from pretrain.train import RESUMABLE_CHANGES
    sentence = re.search(r"Resume refuses a\s+changed config key, except (.*?)\n\s*\(`RESUMABLE_CHANGES`", DESIGN, re.S)
    assert sentence, "docs/design.md §7 no longer lists the keys a resume may change"
    assert sorted(re.findall(r"`([\w.]+)`", sentence[1])) == sorted(RESUMABLE_CHANGES)


def test_every_error_class_the_design_names_exists():
    import builtins
    import importlib
    named = {n for n in re.findall(r"`(\w+Error)`", DESIGN) if not hasattr(builtins, n)}  # (OSError is Python's)
    assert named, "docs/design.md names no error class"
    modules = [importlib.import_module(m) for m in (
        "pretrain.errors", "pretrain.config", "pretrain.data", "pretrain.checkpoint", "pretrain.train",
        "metadataset.records", "detection.train", "evaluate.linear", "reports.tables")]
    missing = [name for name in named if not any(hasattr(m, name) for m in modules)]
    assert not missing, f"docs/design.md names error classes that do not exist: {missing}"
