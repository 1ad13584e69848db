"""The project's own tooling: the lint configuration the code passes, the installed command."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# a one-epoch IR pretraining in a copied tree: tiny(name, *more --set overrides)
TINY = '''
from pretrain.__main__ import main as pretrain
def tiny(name, *sets):
    args = ["--out", "runs", "--results", "results"]
    for s in ("method.name=ir", "data.dataset=photo_patches", "data.limit=64", "data.workers=0", "optim.batch_size=32",
              "optim.epochs=1", "model.feat_dim=16", "train.knn_every=0", f"name={name}", *sets):
        args += ["--set", s]
    assert pretrain(args) == 0
'''


def test_the_code_passes_its_ruff_configuration():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]


def test_ringbench_command_runs_every_stage(tmp_path, capsys):
    from core.cli import STAGES, ringbench
    assert ringbench(["--help"]) == 0 and "ringbench {pretrain,evaluate" in capsys.readouterr().out
    assert ringbench(["train"]) == 2 and "unknown stage 'train'" in capsys.readouterr().err
    assert ringbench(["report", "--results", str(tmp_path / "none")]) == 2  # the stage's own command line
    assert "results directory not found" in capsys.readouterr().err
    for stage in STAGES:  # each stage's own --help, through the dispatcher
        with pytest.raises(SystemExit) as done:
            ringbench([stage, "--help"])
        assert done.value.code in (0, None) and "usage:" in capsys.readouterr().out, stage
    script = shutil.which("ringbench", path=str(Path(sys.executable).parent))
    if script is not None:  # and the installed script, where it is installed
        out = subprocess.run([script, "report", "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-500:]
    assert "ringbench = \"core.cli:ringbench\"" in (ROOT / "pyproject.toml").read_text()


def test_adding_a_method_is_one_file(tmp_path):
    """A new file in pretrain/methods/ is all it takes: the config accepts its name and its own
    settings, the report knows its label and place, training runs it, the tests' list has it."""
    import os
    for part in ("core", "pretrain", "evaluate", "reports", "metadataset", "detection", "benchmarks"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "pretrain" / "methods" / "demo.py").write_text('''
from dataclasses import dataclass

from pretrain.methods.base import Method
from pretrain.objectives import info_nce
from pretrain.registry import METHODS
from pretrain.settings import at_least


@dataclass
class DemoSettings:
    extra: int = at_least(3, 1)


@METHODS.register("demo", label="Demo", order=9, config=DemoSettings)
class Demo(Method):
    views = 2

    def forward(self, views, index, epoch):
        a, b = self.encoder(views[0]), self.encoder(views[1])
        sim = a @ b.T
        neg = sim.masked_fill(__import__("torch").eye(len(a), dtype=bool), float("-inf"))
        return info_nce(sim.diagonal(), neg, self.t), {}
''')
    check = '''
import sys
sys.path.insert(0, "benchmarks")
from pretrain import config
from pretrain.__main__ import main
import fault_injection, argparse
c = config.load(None, ["method.name=demo", "method.demo.extra=5"])
assert c.method.demo.extra == 5
sets = ["name=d", "method.name=demo", "data.dataset=photo_patches", "data.limit=64", "data.workers=0",
        "optim.batch_size=32", "optim.epochs=1", "model.feat_dim=16", "train.knn_every=0"]
args = ["--out", "runs", "--results", "results"]
for s in sets:
    args += ["--set", s]
assert main(args) == 0
print("ok")
'''
    # the report, which imports no stage, names and places the method from its records
    report = '''
import sys
from core import records
from reports import tables
tables.learn_names(records.load_all("results"))
assert tables.METHOD_NAMES["demo"] == "Demo" and list(tables.METHOD_NAMES)[-1] == "demo", tables.METHOD_NAMES
assert not any(m in sys.modules for m in ("torch", "pretrain")), "a stage or torch was imported"
print("ok")
'''
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    out = subprocess.run([sys.executable, "-c", report], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    listed = subprocess.run([sys.executable, "-c", "from pretrain.registry import METHODS; print(METHODS.names())"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "'demo'" in listed.stdout  # what tests/test_methods.py parametrises over


def test_adding_an_evaluation_protocol_is_one_file(tmp_path):
    """A new file in evaluate/protocols/ is all it takes: the CLI offers it, it runs with its own
    `run`, its record names it, and the report titles its table and places it by the registry's
    order (after the shipped probes, before kNN) without importing the stage."""
    import os
    for part in ("core", "pretrain", "evaluate", "reports", "configs"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "evaluate" / "protocols" / "ncm.py").write_text('''
from dataclasses import dataclass
from typing import ClassVar

from evaluate.protocols import PROTOCOLS, Protocol


@dataclass
class NearestMean(Protocol):
    every_rank: ClassVar[bool] = False

    def setting(self):
        return "nearest class mean of unaugmented, unit-length features"

    def task_name(self):
        return "linear_ncm"

    def run(self, job):
        import torch
        import torch.nn.functional as F
        from evaluate import linear
        from pretrain import data
        from pretrain.knn import topk_accuracy
        plain = data.eval_transform(job.size, job.native)
        tx, ty = linear.view_features(job.net, job.train, plain, [0], job.device, job.seed, 0)
        qx, qy = linear.view_features(job.net, job.test, plain, [0], job.device, job.seed, 0)
        means = torch.stack([F.normalize(tx[ty == c].mean(0), dim=0) for c in range(job.classes)])
        return topk_accuracy(F.normalize(qx, dim=1) @ means.nan_to_num().T, qy), {"classes_seen": int(ty.unique().numel())}


PROTOCOLS.register("ncm", NearestMean("ncm", lr=0.0, weight_decay=0.0, epochs=0, follows="a one-file demo",
                                      title="Nearest class mean"), order=5)
''')
    run = TINY + '''
import json
from evaluate.__main__ import main as evaluate
tiny("n")
assert evaluate(["linear", "--protocol", "ncm", "--ckpt", "runs/n/final.pt", "--results", "results", "--workers", "0"]) == 0
rec = json.load(open("results/n/evaluate/linear_ncm_photo_patches.json"))
assert rec["evaluation"] == "linear_ncm" and rec["classes_seen"] == 10, rec
assert rec["labels"]["evaluation"] == {"title": "Nearest class mean", "order": 5}, rec["labels"]
print("ok")
'''
    report = '''
import sys
from core import records
from reports import tables
tables.learn_names(records.load_all("results"))
assert list(tables.EVAL_TITLES) == ["linear_paper", "linear_moco", "linear_cached", "linear_ncm", "knn"], tables.EVAL_TITLES
assert tables.EVAL_TITLES["linear_ncm"] == "Nearest class mean"
assert not any(m in sys.modules for m in ("torch", "evaluate")), "a stage or torch was imported"
print("ok")
'''
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for code, limit in ((run, 300), (report, 120)):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=limit)
        assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    helped = subprocess.run([sys.executable, "-m", "evaluate", "linear", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "ncm" in helped.stdout


def test_adding_a_dataset_and_an_augmentation_recipe_is_one_file_each(tmp_path):
    """A new file in pretrain/datasets/ (scikit-learn's 8x8 digits, grown to 32 px) and one in
    pretrain/recipes/ (a solarizing recipe, on the CPU and on the device): the config accepts
    both names, the CLI lists them, pretraining trains on them and kNN evaluates on the dataset."""
    import os
    for part in ("core", "pretrain", "evaluate", "reports", "configs"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "pretrain" / "datasets" / "digits.py").write_text('''
from pretrain.datasets import dataset


@dataset("digits", order=9, pretrain="train", train="train", test="test", native=32, classes=10)
def _digits(root, split, verify):
    import numpy as np
    from sklearn.datasets import load_digits
    from pretrain.offline import ArrayDataset
    d = load_digits()
    x = np.kron(d.images / 16.0 * 255, np.ones((4, 4))).astype(np.uint8)  # 8 -> 32 px
    keep = np.arange(len(x)) % 5 != 0 if split == "train" else np.arange(len(x)) % 5 == 0
    return ArrayDataset(np.repeat(x[keep, :, :, None], 3, axis=3), d.target[keep], [str(i) for i in range(10)])
''')
    (tmp_path / "pretrain" / "recipes" / "solarize.py").write_text('''
from pretrain.recipes import RECIPES, Recipe


class Solarize(Recipe):
    def on_cpu(self, size):
        from torchvision.transforms import v2
        return [v2.RandomSolarize(threshold=128, p=0.5)]

    def on_device(self, size):
        import kornia.augmentation as K
        return [K.RandomSolarize(thresholds=0.0, additions=0.0, p=0.5)]


RECIPES.register("solarize", Solarize(), order=9)
''')
    run = TINY + '''
import json
import torch
from pretrain import config, data
from evaluate.__main__ import main as evaluate
from pretrain.registry import DATASETS, RECIPES
assert DATASETS.names()[-1] == "digits" and RECIPES.names()[-1] == "solarize"
c = config.load(None, ["data.dataset=digits", "data.augment=solarize"])
views = data.Views(data.load("digits", ".", "train"), data.train_transform("solarize", 32), n_views=2)
x = views[(0, 0)][0]
assert len(x) == 2 and x[0].shape == (3, 32, 32)
from pretrain.device_augment import DeviceAugment
batch = DeviceAugment("solarize", 32)(torch.full((4, 3, 32, 32), 200, dtype=torch.uint8))
assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.float32
tiny("g", "data.dataset=digits", "data.augment=solarize")
assert evaluate(["knn", "--ckpt", "runs/g/final.pt", "--results", "results", "--workers", "0", "--k", "5"]) == 0
rec = json.load(open("results/g/evaluate/knn_k5_t0.07_digits.json"))
assert rec["dataset"] == "digits" and 0 <= rec["metrics"]["top1"] <= 100, rec
print("ok")
'''
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    helped = subprocess.run([sys.executable, "-m", "evaluate", "knn", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "digits" in helped.stdout


def test_the_config_names_no_method_recipe_or_dataset():
    """What a method, recipe or dataset needs of the config comes from its own file: config.py's
    code compares no name of theirs and names none of their keys (the defaults of its fields aside:
    the official Ring code's IR, MoCo v2 recipe, CIFAR-10)."""
    import ast

    from pretrain.registry import DATASETS, METHODS, RECIPES, SAMPLERS
    tree = ast.parse((ROOT / "pretrain" / "config.py").read_text())
    left_out = {id(n.body[0].value) for n in ast.walk(tree)  # docstrings
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    left_out |= {id(c) for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and n.value is not None
                 for c in ast.walk(n.value)}  # the fields' defaults
    names = (set(METHODS.names()) | set(RECIPES.names()) | set(DATASETS.names())) - set(SAMPLERS.names())
    found = [(c.lineno, c.value) for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)
             and id(c) not in left_out
             and (c.value in names or any(f"method.{m}." in c.value for m in METHODS.names()))]
    assert not found, found


def test_help_imports_no_torch_for_pretrain_evaluate_and_reports():
    """--help answers at once (issue 26): pretrain, evaluate and reports parse before their heavy
    imports; evaluate's dataset and protocol choices come from registries that import no torch."""
    import subprocess
    import sys
    for module in ("pretrain", "evaluate", "reports"):
        code = (f"import runpy, sys; sys.argv = ['{module}', '--help']\n"
                f"try:\n    runpy.run_module('{module}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                f"assert not any(m in sys.modules for m in ('torch', 'pandas', 'matplotlib')), '{module}'")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr


def test_the_report_imports_no_stage_and_no_torch(tmp_path):
    """python -m reports, a whole report of pretraining and evaluation records, imports neither
    torch nor any stage (docs/design.md §1): the labels it needs travel in the records."""
    from core import records
    cfg = {"method": {"name": "ir"}, "negatives": {"sampler": "ring"}, "train": {"seed": 0}}
    for run, sampler, top1 in (("a", "uniform", 50.0), ("b", "ring", 52.0)):
        c = {**cfg, "negatives": {"sampler": sampler}}
        records.write(records.make(run, "evaluate", "knn_cifar10", "cifar10", {"top1": top1}, c, seed=0), tmp_path / "res")
    code = (f"import runpy, sys; sys.argv = ['reports', '--results', {str(tmp_path / 'res')!r}, '--out', "
            f"{str(tmp_path / 'rep')!r}]\n"
            "try:\n    runpy.run_module('reports', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pretrain', 'evaluate', 'metadataset', 'detection')]\n"
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "rep" / "report.md").exists()


def test_no_folder_imports_a_folder_above_it():
    """The layers (docs/design.md §1): core imports no stage; pretrain imports core; the
    harnesses import core and pretrain (backbones, data); reports imports core only. Every
    import statement of the package code, lazy ones included."""
    import ast
    allowed = {"core": {"core"}, "pretrain": {"core", "pretrain"},
               "evaluate": {"core", "pretrain", "evaluate"}, "metadataset": {"core", "pretrain", "metadataset"},
               "detection": {"core", "pretrain", "detection"}, "reports": {"core", "reports"}}
    ours = set(allowed)
    wrong = []
    for folder, may in allowed.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                wrong += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ours and n.split(".")[0] not in may]
    assert not wrong, wrong
