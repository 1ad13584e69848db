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
    # (d): the eager plain step and every step cell measured: ms, images/s, FLOPs, MFU, ratios
    d = text.split("(d) against")[1].splitlines()
    plain = next(line for line in d if line.startswith("| plain step, eager"))
    assert "—" not in plain.split("|")[2] and float(plain.split("|")[4]) > 0  # GFLOP counted
    ir_ring = next(line for line in d if "IR bank 2,000, ring |" in line)
    assert "%" in ir_ring and float(ir_ring.split("|")[6]) > 0
    rows = [line for line in text.splitlines() if line.startswith("|") and ("IR bank" in line or "MOCO" in line)]
    assert len(rows) == 4 and all("—" not in r for r in rows), text  # 2 settings x (time, memory), all measured
    assert "failed" not in text and out.stderr.strip() == "", out.stderr[-2000:]


def test_every_ring_mutation_still_applies():
    """benchmarks/ring_mutations.py (too slow for the suite: about 40 s per mutation) must keep
    pointing at code that exists: each mutated text occurs exactly once in its file."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ring_mutations
    for name, (path, old, _) in ring_mutations.MUTATIONS.items():
        assert (ring_mutations.ROOT / path).read_text().count(old) == 1, name
