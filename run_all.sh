#!/usr/bin/env bash
# The whole pipeline: set-up, then for every run of the profile (presets x seeds x sweep grid)
# pretraining, the linear probe and kNN, Meta-Dataset transfer (both protocols), detectron2
# transfer, then the toy MI and the report (scripts/pipeline.py does the work).
#
#   bash run_all.sh                                   # offline `mini` profile, CPU, minutes
#   bash run_all.sh --profile paper --data-root DIR   # paper-scale configs on real data (GPU)
#   bash run_all.sh --profile gpu                     # the one-GPU evidence runs, 3 seeds
#   bash run_all.sh --profile gpu-sweep               # IR and MoCo over ring widths, 3 seeds
#   bash run_all.sh --profile cpu-sweep               # a CPU-sized sweep: IR and MoCo, 2 seeds
#   bash run_all.sh --profile cpu-strategies          # uniform, Ring, DCL, HCL: IR and MoCo, 2 seeds
#
# Options: --profile mini|paper|gpu|gpu-sweep|cpu-sweep|cpu-strategies, --data-root DIR, --out DIR (default:
#          work/<profile>), --resume (continue interrupted runs), --jobs N (runs at a time on
#          CPU), --seeds N or --seed-list 0,1,2 (paired seeds: a method's baseline and ring
#          share each seed), --grid KEY=V1,V2 (sweep the ring presets; repeatable),
#          --launcher local|slurm (slurm: one job per run through submitit; --slurm-partition,
#          --slurm-cpus, --slurm-minutes). Each run's output goes to OUT/logs/<name>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

value() {  # the value after an option, or one line saying it is missing
  [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || { echo "run_all.sh: $1 needs a value (try --help)" >&2; exit 2; }
}
args=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile|--data-root|--out|--jobs|--seeds|--seed-list|--grid|--launcher|--slurm-partition|--slurm-cpus|--slurm-minutes)
      value "$@"; shift 2 ;;
    --resume) shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

# values too (a profile that does not exist, seeds that are not integers) before the long set-up
"${PYTHON:-python3}" scripts/pipeline.py --check-arguments ${args[@]+"${args[@]}"}
bash scripts/setup_env.sh
exec "${RINGBENCH_VENV:-.venv}/bin/python" scripts/pipeline.py ${args[@]+"${args[@]}"}
