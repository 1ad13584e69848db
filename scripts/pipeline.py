"""The whole pipeline behind run_all.sh: plan a profile's runs (presets x seeds x sweep grid),
run every stage of each run (pretraining, linear probe, kNN, Meta-Dataset, detectron2) through
a launcher, then the toy MI and the report (docs/design.md §9).

Seeds pair runs: a run with seed s of a method's baseline and one with seed s of its ring
share initialisation, data order and augmentation draws, which is what lets the report pair
their difference. A sweep grid applies to the ring presets (or, over a strategy's own settings
such as negatives.hcl.beta, to that strategy's presets); the baseline runs once per
seed. Launchers: `local` (N jobs at a time; on GPUs, N per GPU from its free memory) and
`slurm` (one job per run through submitit).

    python scripts/pipeline.py --profile mini|paper|gpu|gpu-sweep|cpu-sweep|cpu-strategies [--seeds N | --seed-list 0,1]
        [--grid KEY=V1,V2 ...] [--launcher local|slurm] [--jobs N] [--data-root DIR] [--out DIR] [--resume]
"""
from __future__ import annotations

import argparse
import fnmatch
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import cli  # noqa: E402
from core.errors import UserError  # noqa: E402

# The sweep of docs/design.md §9: ring width, with and without linear annealing, and the
# official code's neighbour views at the default width
SWEEP = ({"negatives.outer": [1.0, 0.5, 0.25, 0.1], "negatives.anneal.schedule": ["none", "linear"]},
         [{"negatives.outer": 0.1, "negatives.anneal.schedule": "none", "negatives.neighbor_views": True}])


@dataclass
class Profile:
    configs: str                    # preset folder
    seeds: int                      # default number of seeds
    linear: str                     # linear-probe protocol
    episodes: int = 0               # Meta-Dataset episodes per source (0: no Meta-Dataset stage)
    detection: str | None = None    # "mini" (tiny COCO) or "coco" (ImageNet runs) or None
    detection_methods: tuple = ("*",)  # the methods whose runs detection transfers (globs)
    only: tuple = ("*",)            # run names (globs) to take from the folder
    sweep: bool = False             # apply SWEEP to the ring presets
    anneal_epochs: float = 0.0      # the sweep's linear anneal length
    gpu_mem_gib: float = 8.0        # a run's GPU memory, for packing runs onto a GPU
    jobs: int = 1                   # runs at a time on CPU (default)


PROFILES = {
    "mini": Profile("configs/mini", 1, "cached", episodes=50, detection="mini", detection_methods=("ir", "moco"),
                    jobs=2, only=("mini_*_uniform", "mini_*_ring", "mini_*_ball")),  # the strategies: cpu-strategies
    "paper": Profile("configs/paper", 1, "paper", episodes=600, detection="coco"),
    "gpu": Profile("configs/gpu", 3, "cached", episodes=50, gpu_mem_gib=4.0),
    "gpu-sweep": Profile("configs/gpu", 3, "cached", only=("gpu_photos_ir_*", "gpu_photos_moco_*"), sweep=True,
                         anneal_epochs=10, gpu_mem_gib=4.0),
    # uniform, Ring, DCL and HCL for IR and MoCo on the mini data (docs/design.md §11)
    "cpu-strategies": Profile("configs/mini", 2, "cached", only=("mini_ir_*", "mini_moco_*"), jobs=2),
    "cpu-sweep": Profile("configs/mini", 2, "cached", only=("mini_ir_*", "mini_moco_*"), sweep=True,
                         anneal_epochs=2, jobs=2),
}


@dataclass
class Run:
    name: str
    config: Path
    seed: int
    sets: list = field(default_factory=list)  # sweep overrides
    method: str = ""
    dataset: str = ""


# ---------------------------------------------------------------- planning

def parse_grid(items: list[str]) -> list[dict]:
    """['negatives.outer=1,0.5', ...] -> the grid's points; every key and value is checked
    against the config schema first (one line for an unknown key or a bad value)."""
    from pretrain import config
    axes = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. negatives.outer=1.0,0.5")
        key, values = item.split("=", 1)
        import yaml  # (not at the top: run_all.sh checks its arguments with the bare python3, before set-up)
        axes[key] = [yaml.safe_load(v) for v in values.split(",")]
        for v in axes[key]:
            try:
                config.load(None, [f"{key}={v}", "negatives.sampler=ring"])
            except config.ConfigError as exc:
                raise UserError(f"--grid {item}: {exc}") from None
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else []


def sweep_points(profile: Profile) -> list[dict]:
    axes, extra = SWEEP
    points = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] + list(extra)
    for p in points:
        if p.get("negatives.anneal.schedule") == "linear":
            p["negatives.anneal.epochs"] = profile.anneal_epochs
    return points


def point_name(point: dict) -> str:
    short = {"negatives.outer": "o", "negatives.inner": "i", "negatives.anneal.schedule": "",
             "negatives.anneal.epochs": "ae", "negatives.neighbor_views": "nv"}
    parts = []
    for k, v in point.items():
        tag = short.get(k, k.split(".")[-1])
        if isinstance(v, bool):
            parts += [tag] if v else []
        elif k == "negatives.anneal.schedule":
            parts.append("anneal" + str(v) if v != "none" else "fixed")
        elif k != "negatives.anneal.epochs":
            parts.append(f"{tag}{v:g}" if isinstance(v, float) else f"{tag}{v}")
    return "_".join(parts)


def points_for(cfg, grid: list[dict], profile: Profile, strategies: set) -> list[dict]:
    """The grid points a preset runs: a ring preset the ring's points (or the profile's sweep),
    a strategy's preset (DCL, HCL) the points over its own settings (`negatives.hcl.beta`);
    every other preset, and any preset the grid does not concern, runs once."""
    if cfg.negatives.objective != "infonce":
        own = f"negatives.{cfg.negatives.objective}."
        return [p for p in grid if p and all(k.startswith(own) for k in p)] or [{}]
    if cfg.negatives.sampler != "ring":
        return [{}]
    ring = [p for p in grid if not any(k.split(".")[1] in strategies for k in p)]
    return ring or (sweep_points(profile) if profile.sweep and not grid else [{}])


def plan(profile: Profile, seeds: list[int], grid: list[dict]) -> list[Run]:
    from pretrain import config
    from pretrain.registry import STRATEGIES
    strategies = set(STRATEGIES.names())
    runs = []
    for path in sorted((ROOT / profile.configs).glob("*.yaml")):
        cfg = config.load(path)
        if not any(fnmatch.fnmatch(cfg.name, g) for g in profile.only):
            continue
        points = points_for(cfg, grid, profile, strategies)
        for point, seed in itertools.product(points, seeds):
            name = cfg.name + (f"_{point_name(point)}" if point else "") + (f"_s{seed}" if len(seeds) > 1 else "")
            sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in point.items()]
            runs.append(Run(name, path, seed, sets, cfg.method.name, cfg.data.dataset))
    if not runs:
        raise UserError(f"{profile.configs}: no preset matches {', '.join(profile.only)}")
    return runs


def stages(run: Run, profile: Profile, a, py: str) -> list[list[str]]:
    """The commands of one run, in order."""
    out, results, ckpt = Path(a.out), str(Path(a.out) / "results"), str(Path(a.out) / "runs" / run.name / "final.pt")
    sets = [f"name={run.name}", f"train.seed={run.seed}", *run.sets]
    cmds = [[py, "-m", "pretrain", "--config", str(run.config), "--data-root", a.data_root, "--out", str(out / "runs"),
             "--results", results, *(["--resume", "auto"] if a.resume else []),
             *[x for s in sets for x in ("--set", s)]]]
    common = ["--ckpt", ckpt, "--data-root", a.data_root, "--results", results]
    cmds += [[py, "-m", "evaluate", "linear", "--protocol", profile.linear, *common],
             [py, "-m", "evaluate", "knn", *common]]
    records = Path(a.records)
    if profile.episodes and records.is_dir():
        md = ["--ckpt", ckpt, "--records", str(records), "--domains", "all", "--results", results]
        if run.dataset == "imagenet":  # the backbone saw every ilsvrc_2012 image: Meta-Dataset v2 (docs/design.md §5.3)
            md += ["--md-version", "v2"]
        cmds += [[py, "-m", "metadataset", "linear", *md],
                 [py, "-m", "metadataset", "episodic", *md, "--head", "both", "--episodes", str(profile.episodes)]]
    if not any(fnmatch.fnmatch(run.method, m) for m in profile.detection_methods):
        return cmds
    if profile.detection == "mini":
        cmds.append([py, "-m", "detection", "mini", "--ckpt", ckpt, "--out", str(out / "runs"), "--results", results,
                     "--max-iter", "20"])
    elif profile.detection == "coco" and run.dataset == "imagenet" and (Path(a.data_root) / "coco").is_dir():
        weights = str(out / "runs" / run.name / "detection" / "weights.pkl")
        cmds.append([py, "-m", "detection", "convert", ckpt, weights])
        for task in ("coco_mask_fpn", "coco_kp_fpn"):  # C4 needs a bottleneck R50; the presets are R18
            cmds.append([py, "-m", "detection", "train", "--task", task, "--weights", weights, "--dataset-root",
                         str(Path(a.data_root) / "coco"), "--num-gpus", os.environ.get("NUM_GPUS", "1"), "--out",
                         str(out / "runs"), "--results", results, "--run", run.name,
                         *(["--resume"] if a.resume else [])])
    return cmds


# ---------------------------------------------------------------- launchers

def run_job(commands: list[list[str]], log: str, env: dict, echo: bool = False) -> int:
    """Every stage of one run, in order, into its log (and to the console with `echo`); the
    first failure ends the run."""
    with open(log, "a") as f:
        for cmd in commands:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT, text=True)
            for line in proc.stdout:
                f.write(line)
                if echo:
                    print(line, end="", flush=True)
            if proc.wait():
                return proc.returncode
    return 0


def gpu_slots(gib_per_run: float) -> list[str]:
    """One entry per run that fits at once: each GPU's index, as often as its free memory holds
    a run (at least once); empty without GPUs."""
    probe = ("import torch\nfor i in range(torch.cuda.device_count()):\n"
             "    print(i, torch.cuda.mem_get_info(i)[0])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    slots = []
    for line in out.split("\n"):
        if line.strip():
            gpu, free = line.split()
            slots += [gpu] * max(1, int(int(free) * 0.9 // (gib_per_run * 2**30)))
    return slots


def local(jobs: list[tuple[Run, list]], parallel: int, out: Path, gpus: list[str]) -> list[str]:
    """Run the jobs `parallel` at a time, each with its share of the CPU threads (on GPUs: one
    per slot, pinned to the slot's GPU); each writes OUT/logs/<name>.log, and its results
    lines are printed when it ends (one job at a time: as they come). Returns the failed."""
    import queue
    from concurrent.futures import ThreadPoolExecutor, as_completed

    slots = queue.Queue()
    for slot in gpus or [None] * parallel:
        slots.put(slot)
    threads = max(1, (os.cpu_count() or 1) // (len(gpus) or parallel))
    echo = slots.qsize() == 1

    def work(run: Run, cmds: list) -> int:
        slot = slots.get()
        try:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            if slot is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot
            log = out / "logs" / f"{run.name}.log"
            log.unlink(missing_ok=True)
            return run_job(cmds, str(log), env, echo)
        finally:
            slots.put(slot)

    failed = []
    with ThreadPoolExecutor(slots.qsize()) as pool:
        futures = {pool.submit(work, run, cmds): run for run, cmds in jobs}
        for done in as_completed(futures):
            run = futures[done]
            report_end(run, done.result(), out / "logs" / f"{run.name}.log", failed)
    return failed


def slurm(jobs: list[tuple[Run, list]], out: Path, a, cluster: str = "slurm") -> list[str]:
    """One Slurm job per run through submitit (cluster 'local': submitit's local executor)."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit (pip install submitit; setup_env.sh installs it)") from None
    executor = submitit.AutoExecutor(folder=str(out / "slurm"), cluster=cluster)
    params = {"timeout_min": a.slurm_minutes, "name": "ringbench"}
    if cluster == "slurm":
        params.update(slurm_partition=a.slurm_partition, gpus_per_node=1, cpus_per_task=a.slurm_cpus)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    import shlex
    submitted = []
    for run, cmds in jobs:
        log = out / "logs" / f"{run.name}.log"
        log.unlink(missing_ok=True)
        # one shell script per run (submitit's own CommandFunction: nothing of this file is pickled)
        script = "set -e\n" + "".join(f"echo {shlex.quote('$ ' + ' '.join(c))} >> {shlex.quote(str(log))}\n"
                                        f"{shlex.join(c)} >> {shlex.quote(str(log))} 2>&1\n" for c in cmds)
        fn = submitit.helpers.CommandFunction(["bash", "-c", script], cwd=str(ROOT))
        submitted.append((run, executor.submit(fn), log))
    failed = []
    for run, job, log in submitted:
        try:
            job.result()
            code = 0
        except Exception as exc:  # noqa: BLE001 - a job that died is reported, the others still count
            code = f"job failed ({type(exc).__name__})"
        report_end(run, code, log, failed)
    return failed


def report_end(run: Run, code, log: Path, failed: list) -> None:
    if code == 0:
        print(f"=== {run.name} done ({log})")
        for line in log.read_text().splitlines():
            if line.startswith(("[pretrain]", "[evaluate]", "[detection]", "[metadataset] linear ",
                                "[metadataset] episodic ")) and ("top1" in line or "AP" in line):
                print(line)
    else:
        print(f"run_all.sh: {run.name} failed ({code}); the end of {log}:", file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-15:]) if log.exists() else "(no log)", file=sys.stderr)
        failed.append(run.name)
    sys.stdout.flush()


# ---------------------------------------------------------------- the command

def parser() -> cli.Parser:
    p = cli.Parser(prog="run_all.sh", description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="mini", choices=list(PROFILES))
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", help="default: work/<profile>")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their newest checkpoint")
    p.add_argument("--jobs", type=cli.int_at_least(1), help="runs at a time on CPU (default: the profile's)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=cli.int_at_least(1), help="seeds 0..N-1 (default: the profile's)")
    seeds.add_argument("--seed-list", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="sweep the ring presets (or a strategy's presets, over its own settings) over these "
                        "values (repeatable: the product)")
    p.add_argument("--launcher", default="local", choices=("local", "slurm"))
    p.add_argument("--slurm-partition")
    p.add_argument("--slurm-cpus", type=cli.int_at_least(1), default=10)
    p.add_argument("--slurm-minutes", type=cli.int_at_least(1), default=24 * 60)
    # run_all.sh, before set-up: check the arguments with the standard library alone, then exit
    p.add_argument("--check-arguments", action="store_true", help=argparse.SUPPRESS)
    return p


def seeds_of(a, profile: Profile) -> list[int]:
    if a.seed_list is None:
        return list(range(a.seeds or profile.seeds))
    try:
        seeds = [int(s) for s in a.seed_list.split(",")]
    except ValueError:
        raise UserError(f"--seed-list {a.seed_list!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seed-list {a.seed_list!r}: a seed is listed twice")
    return seeds


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    profile = PROFILES[a.profile]
    if a.check_arguments:
        try:
            seeds_of(a, profile)
        except UserError as exc:
            print(f"run_all.sh: {exc}", file=sys.stderr)
            return 2
        return 0
    a.out = a.out or f"work/{a.profile}"
    py = sys.executable
    try:
        # everything that can be refused is, before anything is written
        seeds, grid = seeds_of(a, profile), parse_grid(a.grid)
        runs = plan(profile, seeds, grid)
        if a.launcher == "slurm":
            import importlib.util
            if importlib.util.find_spec("submitit") is None:
                raise UserError("--launcher slurm needs submitit (pip install submitit; setup_env.sh installs it)")
        if a.profile == "paper" and not Path(a.data_root).is_dir():
            raise UserError(f"--data-root {a.data_root!r} is not a directory")
        out = cli.writable_dir(a.out, "--out")
    except UserError as exc:
        print(f"run_all.sh: {exc}", file=sys.stderr)
        return 2
    start = time.time()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    a.records = str(Path(a.data_root) / "metadataset")
    if a.profile in ("mini", "gpu"):
        a.records = str(out / "metadataset")
        subprocess.run([py, "-m", "metadataset", "build-mini", a.records], check=True, cwd=ROOT)
    jobs = [(run, stages(run, profile, a, py)) for run in runs]
    print(f"run_all.sh: profile {a.profile}: {len(runs)} runs ({len(seeds)} seed(s)"
          f"{f', {len(grid)} grid points' if grid else ''}), launcher {a.launcher}", flush=True)
    if a.launcher == "slurm":
        failed = slurm(jobs, out, a)
    else:
        gpus = gpu_slots(profile.gpu_mem_gib)
        parallel = a.jobs or (profile.jobs if (os.cpu_count() or 1) >= 2 else 1)
        failed = local(jobs, parallel, out, gpus)
    if failed:
        print(f"run_all.sh: failed: {' '.join(failed)} (the other runs' results are in {out / 'results'})",
              file=sys.stderr)
        return 1
    subprocess.run([py, "-m", "pretrain.toy_mi", "--results", str(out / "results"), "--out", str(out / "toy_mi")],
                   check=True, cwd=ROOT)
    subprocess.run([py, "-m", "reports", "--results", str(out / "results"), "--out", str(out / "report")],
                   check=True, cwd=ROOT)
    print(f"run_all.sh: profile {a.profile} finished in {time.time() - start:.0f} s (after set-up)")
    print(f"run_all.sh: report at {out / 'report' / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
