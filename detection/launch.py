"""Start detectron2 workers on one or several machines.

With GPUs this is detectron2's own `launch` (NCCL, one process per GPU, `--num-machines`,
`--machine-rank`, `--dist-url`). detectron2 0.6, the build CPU machines install, asserts CUDA
in its worker, so without GPUs the same steps run here with the gloo backend, as later
detectron2 releases do: one process per machine unless told otherwise, the global rank
machine_rank * processes + local rank, detectron2's per-machine process group, and its DDP
wrapper without device ids (a CPU module takes none)."""
from __future__ import annotations

import functools


def launch(worker, procs_per_machine: int, num_machines: int, machine_rank: int, dist_url: str, args: tuple) -> None:
    import torch

    if torch.cuda.is_available() and procs_per_machine > 0:
        from detectron2.engine import launch as d2_launch
        d2_launch(worker, procs_per_machine, num_machines=num_machines, machine_rank=machine_rank,
                  dist_url=dist_url, args=args)
        return
    procs = max(procs_per_machine, 1)
    if procs * num_machines == 1:
        worker(*args)
        return
    if dist_url == "auto":
        from detectron2.engine.launch import _find_free_port
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    import torch.multiprocessing as mp
    mp.start_processes(_cpu_worker, nprocs=procs, start_method="spawn", join=True,
                       args=(worker, procs, num_machines, machine_rank, dist_url, args))


def _cpu_worker(local_rank, worker, procs, num_machines, machine_rank, dist_url, args) -> None:
    import torch.distributed as dist
    from detectron2.engine import defaults
    from detectron2.utils import comm

    dist.init_process_group("gloo", init_method=dist_url, world_size=procs * num_machines,
                            rank=machine_rank * procs + local_rank)
    for m in range(num_machines):  # detectron2's local (per-machine) process group
        group = dist.new_group(list(range(m * procs, (m + 1) * procs)))
        if m == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    # detectron2 0.6 passes device_ids=[local rank], which DDP refuses for a CPU module
    defaults.create_ddp_model = functools.partial(defaults.create_ddp_model, device_ids=None)
    comm.synchronize()
    try:
        worker(*args)
    finally:
        dist.destroy_process_group()
