"""README's per-stage commands run as written: the block between the readme-stages markers,
line by line in an empty folder (with configs/ beside it), with the environment's python
first on PATH as README tells users to activate it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def stage_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-stages.*?-->\s*```bash\n(.*?)```\s*<!-- /readme-stages -->", text, re.S)
    assert block, "README.md lost its readme-stages block"
    return [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow
def test_readme_stage_commands_run_as_written(tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = stage_commands()
    assert [c.split()[2] for c in commands[:2]] == ["pretrain", "evaluate"] and len(commands) >= 8
    for command in commands:
        out = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{command}\n{out.stderr[-2000:]}"
    report = (tmp_path / "report" / "report.md").read_text()
    for stage in ("evaluate", "metadataset", "detection", "toy_mi", "pretrain"):
        assert list((tmp_path / "results").glob(f"*/{stage}/*.json")), stage
    assert "Warnings" not in report, report[report.find("## Warnings"):]
