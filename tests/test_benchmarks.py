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


# ---------------------------------------------------------------- the linear probes (issue 29)

TINY = ["data.dataset=photo_patches", "data.limit=64", "data.workers=0", "optim.batch_size=32", "optim.epochs=1",
        "model.feat_dim=16", "negatives.num=16", "train.knn_every=0", "method.name=ir"]


@pytest.fixture(scope="module")
def ir_pair(tmp_path_factory):
    """Two tiny IR checkpoints, the baseline (uniform) and the ring, of one seed."""
    from pretrain.__main__ import main as pretrain_main
    tmp = tmp_path_factory.mktemp("probes")
    for sampler in ("uniform", "ring"):
        sets = [*TINY, f"name=ir_{sampler}", f"negatives.sampler={sampler}"]
        assert pretrain_main(["--out", str(tmp / "runs"), "--results", str(tmp / "results"),
                              *[x for s in sets for x in ("--set", s)]]) == 0
    return tmp / "runs" / "ir_ring" / "final.pt", tmp / "runs" / "ir_uniform" / "final.pt"


def script(name: str, *args) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


PROBES = ["--limit", 40, "--paper-epochs", 1, "--workers", 0, "--device", "cpu"]


def test_linear_protocols_prints_both_probes_on_tiny_settings(ir_pair):
    text = script("linear_protocols.py", "--ckpt", ir_pair[0], "--views", 0, 2, *PROBES).stdout
    assert "(40 train / 40 test images)" in text
    rows = {r[0]: r[1:] for r in table(text)}
    assert set(rows) == {"cached, unaugmented", "cached, 2 views", "paper (1 epochs)"}
    assert all(float(c) >= 0 for cells in rows.values() for c in cells)
    assert text.count("x faster than the paper protocol (1 epochs)") == 2


def table(text: str) -> list[list[str]]:
    """The markdown rows of a script's output, each a list of stripped cells (no header rules)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|-")][1:]


def test_probe_agreement_prints_every_row_and_the_agreement_and_resumes(ir_pair, tmp_path):
    import json
    out = tmp_path / "agreement.json"
    first = script("probe_agreement.py", "--ckpts", *ir_pair, "--views", 0, 1, 2, "--json", out, *PROBES)
    text = first.stdout
    rows = [r for r in table(text.split("\n\n")[1])]
    assert [r[0] for r in rows] == ["ir_ring", "ir_uniform"]
    saved = json.loads(out.read_text())
    for r, s in zip(rows, saved["rows"]):  # each row: paper top-1, then each view's top-1 (paper − cached)
        paper = s["paper"]["top1"]
        assert r[1] == f"{paper:.2f}"
        assert r[3:6] == [f"{s['cached'][v]['top1']:.2f} ({paper - s['cached'][v]['top1']:+.2f})" for v in "012"]
    summary = {r[0]: r for r in table(text.split("Over the 2 checkpoints")[1].split("\n\n")[1])}
    assert set(summary) == {"0 (unaug.)", "1", "2"} and all(r[5] == "1/1" or r[5] == "0/1" for r in summary.values())
    assert [q["views"] for q in saved["summary"]] == [0, 1, 2] and len(saved["summary"][0]["pairs"]) == 1
    assert all(len(r["weights"]) == 64 for r in saved["rows"]) and saved["rows"][0]["weights"] != saved["rows"][1]["weights"]
    assert "Ring − baseline pairs" in text and "| ir " in text.split("Ring − baseline pairs")[1]
    # measured once: a second run reuses both rows (no probe runs) and prints the same table
    again = script("probe_agreement.py", "--ckpts", *ir_pair, "--views", 0, 1, 2, "--json", out, "--resume", *PROBES)
    assert again.stdout.count("(reused)") == 2 and "cached, 0 views" not in again.stderr
    assert "[linear] epoch 1/1" in first.stderr  # (the paper protocol did run the first time)
    assert again.stdout.split("Over the")[1] == text.split("Over the")[1]
    # a row stands for its backbone's weights: another checkpoint at the same path is measured anew
    rows_file = json.loads(out.read_text())
    rows_file["rows"][0]["weights"] = "0" * 64
    out.write_text(json.dumps(rows_file))
    third = script("probe_agreement.py", "--ckpts", *ir_pair, "--views", 0, 1, 2, "--json", out, "--resume", *PROBES)
    assert third.stdout.count("(reused)") == 1 and "ir_ring: cached, 0 views" in third.stderr
    # other views, the paper protocol's results taken from the first run (not measured again)
    other = script("probe_agreement.py", "--ckpts", *ir_pair, "--views", 3, "--json", tmp_path / "v3.json",
                   "--reuse-paper", out, *PROBES)
    assert other.stdout.count("(paper reused)") == 2 and "[linear] epoch" not in other.stderr
    v3 = json.loads((tmp_path / "v3.json").read_text())["rows"]
    now = json.loads(out.read_text())["rows"]
    assert [r["paper"] for r in v3] == [r["paper"] for r in now] and list(v3[0]["cached"]) == ["3"]


def test_probe_agreement_known_answers():
    """Gaps, Kendall's τ and the paired differences of hand-made rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import probe_agreement

    def row(name, method, sampler, paper, cached, baseline="uniform"):
        return {"name": name, "method": method, "sampler": sampler, "baseline": baseline, "seed": 0,
                "dataset": "d", "paper": {"top1": paper, "seconds": 100.0}, "cached": {4: {"top1": cached, "seconds": 4.0}}}

    rows = [row("ir_r", "ir", "ring", 60.0, 58.0), row("ir_u", "ir", "uniform", 50.0, 49.0),
            row("la_r", "la", "ring", 40.0, 41.0, "ball"), row("la_b", "la", "ball", 45.0, 40.5, "ball"),
            row("la_u", "la", "uniform", 70.0, 70.0, "ball")]  # LA's baseline is its ball, not uniform
    a = probe_agreement.agreement(rows, 4, tolerance=1.0)
    assert a["mean_gap"] == pytest.approx((2 + 1 - 1 + 4.5 + 0) / 5) and a["max_abs_gap"] == 4.5
    # of the 10 pairs of models one is ranked differently (la_r, la_b): tau = (9 - 1) / 10
    assert a["tau"] == pytest.approx(0.8) and a["speedup"] == pytest.approx(25.0)
    ir, la = a["pairs"]
    assert (ir["method"], ir["baseline"], ir["d_paper"], ir["d_cached"]) == ("ir", "ir_u", 10.0, 9.0)
    assert ir["sign_agrees"] and ir["within"]
    assert (la["baseline"], la["d_paper"], la["d_cached"]) == ("la_b", -5.0, 0.5)
    assert not la["sign_agrees"] and not la["within"]


def test_fault_injection_script_prints_its_verdict(tmp_path):
    out = script("fault_injection.py", "--kills", 1, "--method", "ir", "--work", tmp_path)
    assert "[faults] OK: 1 SIGKILLs, final weights identical to the uninterrupted run" in out.stdout


def test_ring_mutations_runs_a_mutation_against_a_test():
    """A full run is about 40 s per mutation (test_every_ring_mutation_still_applies keeps its
    targets honest); here one mutation against the one test that pins it: the script applies
    it in its scratch copy, runs the test there, and prints the verdict and the count."""
    out = script("ring_mutations.py", "--only", "inner cut dropped",
                 "--tests", "tests/test_negatives.py::test_band_limits_truncate_as_the_official_code")
    assert "- inner cut dropped: caught by 1 test(s): tests/test_negatives.py::test_band_limits_truncate" in out.stdout
    assert out.stdout.rstrip().endswith("1 of 1 mutations caught")


def test_mutation_script_scores_a_file_on_tiny_settings(tmp_path):
    """The whole run is about half an hour (docs/mutation.md); here mutmut mutates kNN alone
    against its two known-answer tests, in a scratch copy: one score line per file, the
    survivors listed with their diffs, and the exit status says whether the file met 90%."""
    import re
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mutation.py"), "--scratch", tmp_path / "m",
                          "--workers", "2", "--files", "pretrain/knn.py", "--tests",
                          "tests/test_known_answers.py::test_knn_votes_with_the_k_most_similar_rows_only",
                          "tests/test_evaluate.py::test_knn_weighted_vote_known_answer"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = re.search(r"^pretrain/knn.py\s+(\d+) / (\d+)\s+killed\s+([\d.]+)%", out.stdout, re.M)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    killed, scored, score = int(line[1]), int(line[2]), float(line[3])
    assert 0 < killed <= scored and score == pytest.approx(100 * killed / scored, abs=0.05)
    assert out.returncode == (0 if score >= 90 else 1)
    assert "x_knn_predict__mutmut_" in out.stdout or killed == scored  # the survivors, by name
    assert (tmp_path / "m" / "scores.json").is_file() and not (ROOT / "mutants").exists()  # the tree untouched
