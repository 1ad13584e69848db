#!/usr/bin/env bash
# The whole pipeline: set-up, pretraining of every config in the profile, linear + kNN
# evaluation of each checkpoint, Meta-Dataset transfer (both protocols), detectron2 transfer,
# and the report.
#
#   bash run_all.sh                                   # offline `mini` profile, CPU, minutes
#   bash run_all.sh --profile paper --data-root DIR   # paper-scale configs on real data (GPU)
#
# Options: --profile mini|paper, --data-root DIR, --out DIR (default: work/<profile>),
#          --resume (continue interrupted runs from their newest valid checkpoint).
#
# mini: the 10 offline runs (5 methods x uniform/ring, photo_patches), cached linear probe,
#       kNN, the mini Meta-Dataset (100 episodes per source), and 20 CPU iterations of Mask
#       R-CNN and Keypoint R-CNN (R18-FPN) for the IR and MoCo runs, the toy MI. Smoke numbers,
#       not a benchmark.
# paper: the paper presets; Meta-Dataset records are read from DATA_ROOT/metadataset (official
#        converted records) and the ImageNet runs go to COCO (DATA_ROOT/coco: annotations/ +
#        train2017/ + val2017/) on NUM_GPUS GPUs (default 1); each stage is skipped when its
#        data is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

profile=mini data_root=data out="" resume=() resume_d2=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --data-root) data_root="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --resume) resume=(--resume auto) resume_d2=(--resume); shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  mini) linear_protocol=cached episodes=100 ;;
  paper) linear_protocol=paper episodes=600
         [[ -d "$data_root" ]] || { echo "run_all.sh: --data-root '$data_root' is not a directory" >&2; exit 2; } ;;
  *) echo "run_all.sh: unknown profile '$profile' (expected mini or paper)" >&2; exit 2 ;;
esac
out="${out:-work/$profile}"

bash scripts/setup_env.sh
py=.venv/bin/python
start=$(date +%s)
records="$data_root/metadataset"
if [[ "$profile" == mini ]]; then
  records="$out/metadataset"
  "$py" -m metadataset build-mini "$records"
fi
for config in configs/"$profile"/*.yaml; do
  name=$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$config")
  echo "=== $name ($config)"
  "$py" -m pretrain --config "$config" --data-root "$data_root" --out "$out/runs" --results "$out/results" "${resume[@]}"
  ckpt="$out/runs/$name/final.pt"
  "$py" -m evaluate linear --protocol "$linear_protocol" --ckpt "$ckpt" --data-root "$data_root" --results "$out/results"
  "$py" -m evaluate knn --ckpt "$ckpt" --data-root "$data_root" --results "$out/results"
  if [[ -d "$records" ]]; then
    "$py" -m metadataset linear --ckpt "$ckpt" --records "$records" --domains all --results "$out/results"
    "$py" -m metadataset episodic --ckpt "$ckpt" --records "$records" --domains all --head both \
      --episodes "$episodes" --results "$out/results"
  else
    echo "run_all.sh: no Meta-Dataset records at $records, skipping that stage"
  fi
  if [[ "$profile" == mini ]]; then
    case "$name" in *_ir_*|*_moco_*)
      "$py" -m detection mini --ckpt "$ckpt" --out "$out/runs" --results "$out/results" --max-iter 20 --quiet ;;
    esac
  elif [[ "$name" == *imagenet* && -d "$data_root/coco" ]]; then  # the paper transfers its ImageNet runs
    weights="$out/runs/$name/detection/weights.pkl"
    "$py" -m detection convert "$ckpt" "$weights"
    for task in coco_mask_fpn coco_kp_fpn; do  # C4 needs a bottleneck R50; the presets are R18
      "$py" -m detection train --task "$task" --weights "$weights" --dataset-root "$data_root/coco" \
        --num-gpus "${NUM_GPUS:-1}" --out "$out/runs" --results "$out/results" --run "$name" "${resume_d2[@]}"
    done
  fi
done
"$py" -m pretrain.toy_mi --results "$out/results" --out "$out/toy_mi"  # NCE vs CNCE, known true MI
"$py" -m reports --results "$out/results" --out "$out/report"
echo "run_all.sh: profile $profile finished in $(( $(date +%s) - start )) s (after set-up)"
echo "run_all.sh: report at $out/report/report.md"
