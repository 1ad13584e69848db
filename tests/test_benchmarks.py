"""The benchmark scripts run end to end on tiny settings (no timing is asserted here: speed
targets are read off the scripts' side-by-side output, never off a unit test)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ring_speed_fills_every_cell_on_tiny_settings():
    # a 2,000-row bank with K = 64 and m = 256: the estimated mode takes its subset path
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ring_speed.py"), "--device", "cpu",
                          "--banks", "2000", "--queue", "1024", "--k", "64", "--estimate", "256", "--batch", "8",
                          "--steps", "1", "--warmup", "1", "--workers", "0", "--skip-reference-compile",
                          "--peak-tflops", "1.0"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for section in ("(a) training-step time", "(b) pretraining throughput", "(c) peak memory",
                    "(d) against a plain supervised step"):
        assert section in text
    # the tables are right-aligned markdown: a row is its stripped cells
    def rows(section: str) -> list[list[str]]:
        body = text.split(section)[1].split("\n\n")[0].splitlines()
        return [[c.strip() for c in line.strip().strip("|").split("|")] for line in body if line.startswith("|")]

    # (a) and (c): 2 settings x 4 samplers, every cell measured
    for section in ("(a) training-step time", "(c) peak memory"):
        cells = [r for r in rows(section) if r[0].startswith(("IR bank", "MOCO"))]
        assert len(cells) == 2 and all(float(c) > 0 for r in cells for c in r[1:]), text
    # (d): the eager plain step and every step cell measured: ms, images/s, FLOPs, MFU, ratios
    d = {r[0]: r[1:] for r in rows("(d) against")}
    plain = d["plain step, eager"]
    assert float(plain[0]) > 0 and float(plain[2]) > 0 and plain[3].endswith("%")  # GFLOP counted
    assert d["plain step, compiled"][0] == "—"  # skipped here, and said so
    steps = [v for k, v in d.items() if k.startswith(("IR bank", "MOCO"))]
    assert len(steps) == 8 and all(float(v[0]) > 0 and v[3].endswith("%") and float(v[4]) > 0 for v in steps)
    assert "failed" not in text and out.stderr.strip() == "", out.stderr[-2000:]


def test_ring_accuracy_scores_estimated_negatives_by_their_exact_ranks(tmp_path):
    import json
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ring_accuracy.py"), "--pool", "40000",
                          "--anchors", "8", "--k", "256", "--estimate", "2048", "--outer", "1.0", "0.1",
                          "--json", str(tmp_path / "acc.json")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "drawing (IR, CMC)" in out.stdout and "masking (MoCo, SimCLR, LA)" in out.stdout
    rows = json.loads((tmp_path / "acc.json").read_text())["rows"]
    assert [r["outer"] for r in rows] == [1.0, 0.1]
    for r in rows:
        exact, est, mask = r["exact_draws"], r["estimated_draws"], r["estimated_mask"]
        # the reference is exact by construction; the estimate is close but not identical
        assert exact["in_band"] == 1.0 and exact["past_high_edge_pp"] == exact["past_low_edge_pp"] == 0.0
        assert 0.9 < est["in_band"] < 1.0 and est["distinct"] == 1.0 and est["ks"] < 0.2
        assert 0.85 < mask["jaccard"] < 1.0 and 0.8 < mask["size_ratio"] < 1.2
        assert mask["high_edge_err_pp"] < 5 * r["se_high_edge_pp"] and mask["low_edge_err_pp"] <= 5 * r["se_low_edge_pp"]
    assert rows[0]["se_low_edge_pp"] == 0.0 and rows[0]["estimated_mask"]["low_edge_err_pp"] == 0.0  # outer = 1: no low edge


def test_every_ring_mutation_still_applies():
    """benchmarks/ring_mutations.py (too slow for the suite: about 40 s per mutation) must keep
    pointing at code that exists: each mutated text occurs exactly once in its file."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ring_mutations
    for name, (path, old, _) in ring_mutations.MUTATIONS.items():
        assert (ring_mutations.ROOT / path).read_text().count(old) == 1, name
