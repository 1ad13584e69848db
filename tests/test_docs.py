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
        "core.errors", "pretrain.config", "pretrain.data", "core.checkpoint", "pretrain.train",
        "metadataset.records", "detection.train", "evaluate.linear", "reports.tables")]
    missing = [name for name in named if not any(hasattr(m, name) for m in modules)]
    assert not missing, f"docs/design.md names error classes that do not exist: {missing}"


ROOT = Path(__file__).parent.parent


def test_the_committed_config_reference_is_what_the_command_prints():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "pretrain", "--config-reference"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (ROOT / "docs" / "config.md").read_text(), \
        "docs/config.md is stale: python -m pretrain --config-reference > docs/config.md"


def test_the_config_reference_has_every_key_with_its_comment_and_range():
    from pretrain import config, reference
    rows = {k: (d, a, m) for _, section in reference.sections() for k, d, a, m in section}
    flat = config._flat(config.to_dict(config.load(None, [])))
    assert set(rows) == set(flat)  # every key of the resolved default config, nothing else
    assert all(m for _, _, m in rows.values()), [k for k, (_, _, m) in rows.items() if not m]
    assert rows["negatives.outer"] == ("`0.1`", "a number in (0, 1]",
                                       "keep the closest `outer` fraction of the pool (thres_outer)")
    assert rows["method.moco.exclude_own_key"][0] == "true"
    assert rows["negatives.sampler"][1] == "one of `uniform`, `ring`, `ball`"


def test_field_comments_above_beside_and_continued_are_read():
    from dataclasses import dataclass

    from pretrain import reference

    @dataclass
    class Demo:
        # above, line one
        # above, line two
        a: int = 1
        b: str = "x#y"   # beside
                         # continued
        c: float = 0.5
        d: bool = True   # d's own

    assert reference.comments(Demo) == {"a": "above, line one above, line two", "b": "beside continued", "c": "",
                                         "d": "d's own"}


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), link
    guide = (ROOT / "docs" / "guide.md").read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", guide):
        assert (ROOT / "docs" / link).exists(), link
