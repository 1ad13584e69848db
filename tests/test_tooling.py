"""The project's own tooling: the lint configuration the code passes, the installed command."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_code_passes_its_ruff_configuration():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]


def test_ringbench_command_runs_every_stage(tmp_path, capsys):
    from pretrain.cli import STAGES, ringbench
    assert ringbench(["--help"]) == 0 and "ringbench {pretrain,evaluate" in capsys.readouterr().out
    assert ringbench(["train"]) == 2 and "unknown stage 'train'" in capsys.readouterr().err
    assert ringbench(["report", "--results", str(tmp_path / "none")]) == 2  # the stage's own command line
    assert "results directory not found" in capsys.readouterr().err
    for stage in STAGES:  # each stage's --help through the installed script, where it is installed
        script = shutil.which("ringbench", path=str(Path(sys.executable).parent))
        if script is None:
            break
        out = subprocess.run([script, stage, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, (stage, out.stderr[-500:])
    assert "ringbench = \"pretrain.cli:ringbench\"" in (ROOT / "pyproject.toml").read_text()
