#!/usr/bin/env bash
# The whole pipeline: set-up, pretraining of every config in the profile, linear + kNN
# evaluation of each checkpoint, and the report.
#
#   bash run_all.sh                                   # offline `mini` profile, CPU, minutes
#   bash run_all.sh --profile paper --data-root DIR   # paper-scale configs on real data (GPU)
#
# Options: --profile mini|paper, --data-root DIR, --out DIR (default: work/<profile>),
#          --resume (continue interrupted runs from their newest valid checkpoint).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

profile=mini data_root=data out="" resume=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data-root) data_root="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --resume) resume=(--resume auto); shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  mini) linear_protocol=cached ;;
  paper) linear_protocol=paper
         [[ -d "$data_root" ]] || { echo "run_all.sh: --data-root '$data_root' is not a directory" >&2; exit 2; } ;;
  *) echo "run_all.sh: unknown profile '$profile' (expected mini or paper)" >&2; exit 2 ;;
esac
out="${out:-work/$profile}"

bash scripts/setup_env.sh
py=.venv/bin/python
start=$(date +%s)
for config in configs/"$profile"/*.yaml; do
  name=$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$config")
  echo "=== $name ($config)"
  "$py" -m pretrain --config "$config" --data-root "$data_root" --out "$out/runs" --results "$out/results" "${resume[@]}"
  ckpt="$out/runs/$name/final.pt"
  "$py" -m evaluate linear --protocol "$linear_protocol" --ckpt "$ckpt" --data-root "$data_root" --results "$out/results"
  "$py" -m evaluate knn --ckpt "$ckpt" --data-root "$data_root" --results "$out/results"
done
"$py" -m reports --results "$out/results" --out "$out/report"
echo "run_all.sh: profile $profile finished in $(( $(date +%s) - start )) s (after set-up)"
echo "run_all.sh: report at $out/report/report.md"
