"""Speed and memory of Ring, side by side in one run (docs/design.md §6, issue 9).

    python benchmarks/ring_speed.py                       # CPU-sized defaults
    python benchmarks/ring_speed.py --device cuda --arch resnet50 --batch 256 --image-size 224 \
        --compile --pipeline-dataset imagenet --data-root DIR --workers 16 --gpu-decode

(a) Full training-step time (forward, backward, SGD step, memory update) through the real
    methods on synthetic inputs: IR with a 50,000-row and a 1,281,167-row bank, MoCo with a
    65,536-key queue; negatives uniform, ring (exact, topk), ring (estimated percentiles) and
    the official code's way (a full descending sort per anchor), with ratios to uniform.
(b) Pretraining images/s of the real pipeline (loader, augmentation, step) against the same
    step on synthetic tensors already on the device: the data pipeline's ceiling.
(c) Peak memory of every cell: CUDA peak allocated on GPU, peak RSS of a fresh process on CPU.
(d) The limit, measured in the same run: a plain supervised training step of the same backbone
    (a linear classifier on it, cross-entropy), eager and torch.compile'd; every step cell's
    ratio to both, its images/s and its model FLOP utilisation (forward + backward FLOPs counted
    by torch.utils.flop_counter, over the peak given by --peak-tflops or known for the GPU).
    `--compile` compiles the methods' backbones and heads too (train.compile).

Every cell runs in its own subprocess, so peak memory is its own and caches do not carry.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

IMAGENET = 1_281_167


def official_sampler(base):
    """The official Ring code's selection: sort every anchor's whole pool, slice the band."""
    class FullSort(type(base)):
        @torch.no_grad()
        def band(self, sim, exclude=None, epoch=0.0, scratch=False):
            sim, lo, hi = self.ranked(sim, exclude, epoch, scratch)
            return torch.sort(sim, dim=1, descending=True).indices[:, lo:hi]

    base.__class__ = FullSort
    base.estimate = 0
    return base


def cfg_for(a, method: str, negatives: str, pool: int):
    from pretrain import config

    sets = [f"method.name={method}", f"model.arch={a.arch}", f"model.cifar_stem={a.image_size <= 64}",
            f"optim.batch_size={a.batch}", f"negatives.num={a.k}", f"train.device={a.device}",
            f"train.precision={a.precision}", f"data.image_size={a.image_size}", f"train.compile={a.compile}",
            f"train.compile_mode={a.compile_mode}",
            f"negatives.sampler={'uniform' if negatives == 'uniform' else 'ring'}",
            f"negatives.estimate={a.estimate if negatives == 'ring_est' else 0}"]
    if method == "moco":
        sets += [f"method.moco.queue_size={pool}", "model.bn_splits=1"]
    return config.load(None, sets)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cell_step(a, method: str, negatives: str, pool: int) -> dict:
    """(a): ms per full training step on synthetic inputs."""
    from pretrain import methods
    from pretrain.negatives import NegativeSampler
    from pretrain.train import Trainer

    cfg = cfg_for(a, method, negatives, pool)
    device = torch.device(a.device)
    sampler = NegativeSampler.from_config(cfg.negatives, 0, device)
    if negatives == "official":
        official_sampler(sampler)
    n = pool if method == "ir" else 1000
    model = methods.build(cfg, n, sampler).to(device)
    t = Trainer.__new__(Trainer)  # only its precision / channels_last handling
    t.cfg, t.device, t.method, t.device_augment = cfg, device, model, None
    t._set_precision()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9,
                          fused=device.type == "cuda" or None)
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(a.batch, 3, a.image_size, a.image_size, generator=g) for _ in range(model.views)]

    def step():
        index = torch.randperm(n, generator=g)[: a.batch].to(device)
        loss, _ = model(t._inputs(x), index, 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.step_end()
    return timed(step, a, device)


def timed(step, a, device) -> dict:
    """Median ms of `step` after warm-up, its forward + backward FLOPs, peak memory."""
    from torch.utils.flop_counter import FlopCounterMode
    times = []
    for i in range(a.warmup + a.steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        if i >= a.warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    with FlopCounterMode(display=False) as counter:  # one more step, counted (not timed)
        step()
    return {"ms": 1000 * times[len(times) // 2], "flops": counter.get_total_flops(), "peak_mb": peak_mb(device)}


def cell_reference(a, compiled: bool) -> dict:
    """(d): a plain supervised step of the same backbone: the limit a method's step is held to."""
    import torch.nn as nn

    from pretrain import models
    device = torch.device(a.device)
    backbone = models.backbone(a.arch, a.image_size <= 64)
    net = nn.Sequential(backbone, nn.Linear(backbone.out_dim, 1000)).to(device)
    bf16 = a.precision == "bf16" or (a.precision == "auto" and device.type == "cuda")
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, fused=device.type == "cuda" or None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size, generator=g).to(device)
    y = torch.randint(1000, (a.batch,), generator=g).to(device)
    run = torch.compile(net, mode=a.compile_mode) if compiled else net

    def step():
        if compiled and a.compile_mode != "default":
            torch.compiler.cudagraph_mark_step_begin()  # as Trainer.train_step
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return timed(step, a, device)


def cell_pipeline(a, synthetic: bool) -> dict:
    """(b): images/s of Trainer.train_step fed by the real loader, or by device tensors."""
    import tempfile

    from pretrain import config
    from pretrain.train import Trainer

    sets = ["method.name=moco", f"model.arch={a.arch}", f"model.cifar_stem={a.image_size <= 64}",
            f"optim.batch_size={a.batch}", f"train.device={a.device}", f"train.precision={a.precision}",
            f"data.dataset={a.pipeline_dataset}", f"data.root={a.data_root}", f"data.image_size={a.image_size}",
            f"data.workers={a.workers}", f"data.gpu_augment={a.gpu_augment}",
            # the pure cell's inputs are decoded views already on the device
            f"data.gpu_decode={a.gpu_decode and not synthetic}", f"train.compile={a.compile}",
            f"train.compile_mode={a.compile_mode}", "method.moco.queue_size=4096",
            "negatives.sampler=ring", "train.knn_every=0", "model.bn_splits=1"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(config.load(None, sets), tmp)
        t.method.train()
        t.order.set_epoch(0)
        steps = min(a.warmup + a.steps, t.order.steps())
        if synthetic:
            g = torch.Generator().manual_seed(0)
            shape = (t.local_batch, 3, a.image_size, a.image_size)
            fixed = ([torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(t.device)] * 2 if a.gpu_augment
                     else [torch.randn(*shape, generator=g).to(t.device)] * 2)
            index = torch.arange(t.local_batch)
            batches = ((fixed, None, index) for _ in range(steps))
        else:
            batches = iter(t.loader)
        images = 0
        for i in range(steps):
            if i == a.warmup:
                sync(t.device)
                start = time.perf_counter()
            views, _, index = next(batches)
            t.train_step(views, index, 0.0)
            if i >= a.warmup:
                images += len(index)
        sync(t.device)
        wall = time.perf_counter() - start
        return {"images_per_s": images / wall, "steps": steps - a.warmup, "peak_mb": peak_mb(t.device)}


def run_cell(a, spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--cell", json.dumps(spec)] + a.passthrough
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--k", type=int, default=4096, help="IR negatives per anchor (official: 4096)")
    p.add_argument("--estimate", type=int, default=16384, help="subsample of the estimated-percentile mode")
    p.add_argument("--banks", type=int, nargs="+", default=[50_000, IMAGENET])
    p.add_argument("--queue", type=int, default=65_536)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pipeline-dataset", default="photo_patches")
    p.add_argument("--data-root", default="data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpu-augment", action="store_true")
    p.add_argument("--gpu-decode", action="store_true", help="decode JPEGs on the device too (implies --gpu-augment)")
    p.add_argument("--skip-official-above", type=int, default=IMAGENET + 1,
                   help="skip the full-sort column for pools larger than this (it is slow on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the methods' backbones and heads")
    p.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile's mode for --compile (train.compile_mode) and the compiled reference")
    p.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (default: known GPUs' bf16 dense peak)")
    p.add_argument("--skip-reference-compile", action="store_true", help="no compiled reference (slow to build on CPU)")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.passthrough = [x for x in (argv if argv is not None else sys.argv[1:])]
    a.gpu_augment = a.gpu_augment or a.gpu_decode

    if a.cell:
        spec = json.loads(a.cell)
        torch.manual_seed(0)
        result = (cell_pipeline(a, spec["synthetic"]) if spec["kind"] == "pipeline"
                  else cell_reference(a, spec["compiled"]) if spec["kind"] == "reference"
                  else cell_step(a, spec["method"], spec["negatives"], spec["pool"]))
        print(json.dumps(result))
        return 0

    device = torch.device(a.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# ring_speed: {where}; torch {torch.__version__}; {a.arch}, batch {a.batch}, {a.image_size} px, "
          f"precision {a.precision}, K={a.k}, estimate m={a.estimate}\n")
    modes = ["uniform", "ring", "ring_est", "official"]
    rows, mem_rows, cells = [], [], []
    settings = [("ir", n) for n in a.banks] + [("moco", a.queue)]
    for method, pool in settings:
        res = {}
        for mode in modes:
            if mode == "official" and pool > a.skip_official_above:
                res[mode] = {"error": "skipped"}
                continue
            res[mode] = run_cell(a, {"kind": "step", "method": method, "negatives": mode, "pool": pool})
        ms = {m: r.get("ms") for m, r in res.items()}
        fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "—"
        ratio = lambda m, ms=ms: f"{ms[m] / ms['uniform']:.3f}" if ms.get(m) and ms.get("uniform") else "—"
        label = f"{method.upper()} {'bank' if method == 'ir' else 'queue'} {pool:,}"
        rows.append([label] + [fmt(ms[m]) for m in modes] + [ratio("ring"), ratio("ring_est"), ratio("official")])
        mem_rows.append([label] + [fmt(res[m].get("peak_mb")) for m in modes])
        cells += [(f"{label}, {m}", r) for m, r in res.items() if "ms" in r]
        for m, r in res.items():
            if "error" in r and r["error"] != "skipped":
                print(f"  {label} {m}: {r['error']}", file=sys.stderr)
    print("(a) training-step time, ms (median)")
    print(table(["setting", "uniform", "ring", "ring est.", "official sort", "ring/unif", "est/unif", "sort/unif"], rows))

    pipe = run_cell(a, {"kind": "pipeline", "synthetic": False})
    pure = run_cell(a, {"kind": "pipeline", "synthetic": True})
    print(f"\n(b) pretraining throughput, images/s (MoCo ring, {a.pipeline_dataset}, {a.workers} workers, "
          f"gpu_augment={a.gpu_augment}, gpu_decode={a.gpu_decode}, compile={a.compile})")
    if "error" in pipe or "error" in pure:
        print(f"  failed: {pipe.get('error') or pure.get('error')}")
    else:
        print(table(["pipeline", "pure model", "pipeline/pure", "peak MiB pipeline", "peak MiB pure"],
                    [[f"{pipe['images_per_s']:.1f}", f"{pure['images_per_s']:.1f}",
                      f"{pipe['images_per_s'] / pure['images_per_s']:.3f}", f"{pipe['peak_mb']:.0f}",
                      f"{pure['peak_mb']:.0f}"]]))
    kind = "CUDA peak allocated" if device.type == "cuda" else "peak RSS of the process"
    print(f"\n(c) peak memory of the step cells, MiB ({kind}; pipeline cells in (b))")
    print(table(["setting"] + modes, mem_rows))

    eager = run_cell(a, {"kind": "reference", "compiled": False})
    compiled = ({"error": "skipped"} if a.skip_reference_compile
                else run_cell(a, {"kind": "reference", "compiled": True}))
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in where), None)
    print(f"\n(d) against a plain supervised step of {a.arch} (batch {a.batch}); MFU over "
          f"{f'{peak:g} TFLOP/s' if peak else 'an unknown peak (--peak-tflops)'}")
    drows = []
    for label, r in [("plain step, eager", eager), ("plain step, compiled", compiled)] + cells:
        if "ms" not in r:
            drows.append([label] + ["—"] * 6)
            continue
        ips = a.batch / (r["ms"] / 1000)
        mfu = f"{r['flops'] / (r['ms'] / 1000) / (peak * 1e12):.1%}" if peak else "—"
        vs = lambda ref, r=r: f"{r['ms'] / ref['ms']:.3f}" if "ms" in ref else "—"  # noqa: E731
        drows.append([label, f"{r['ms']:.1f}", f"{ips:.0f}", f"{r['flops'] / 1e9:.1f}", mfu, vs(eager), vs(compiled)])
    print(table(["step", "ms", "images/s", "GFLOP", "MFU", "x plain eager", "x plain compiled"], drows))
    return 0


# bf16 dense tensor-core peaks (TFLOP/s), for MFU when --peak-tflops is not given
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


if __name__ == "__main__":
    sys.exit(main())
