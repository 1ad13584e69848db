#!/usr/bin/env bash
# The whole pipeline: set-up, pretraining of every config in the profile, linear + kNN
# evaluation of each checkpoint, Meta-Dataset transfer (both protocols), detectron2 transfer,
# and the report.
#
#   bash run_all.sh                                   # offline `mini` profile, CPU, minutes
#   bash run_all.sh --profile paper --data-root DIR   # paper-scale configs on real data (GPU)
#
# Options: --profile mini|paper, --data-root DIR, --out DIR (default: work/<profile>),
#          --resume (continue interrupted runs from their newest valid checkpoint),
#          --jobs N (configs run at once, each with its share of the CPU threads; default:
#          2 for mini where there are 2+ cores, 1 for paper, whose runs each take the GPUs).
#          Each config's output goes to OUT/logs/<name>.log; its results are printed at its end.
#
# mini: the 10 offline runs (5 methods x baseline/ring, photo_patches), cached linear probe,
#       kNN, the mini Meta-Dataset (50 episodes per source), and 20 CPU iterations of Mask
#       R-CNN and Keypoint R-CNN (R18-FPN) for the IR and MoCo runs, the toy MI. Smoke numbers,
#       not a benchmark.
# paper: the paper presets; Meta-Dataset records are read from DATA_ROOT/metadataset (official
#        converted records) and the ImageNet runs go to COCO (DATA_ROOT/coco: annotations/ +
#        train2017/ + val2017/) on NUM_GPUS GPUs (default 1); each stage is skipped when its
#        data is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

profile=mini data_root=data out="" resume=() resume_d2=() jobs=""
value() {  # the value after an option, or one line saying it is missing
  [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || { echo "run_all.sh: $1 needs a value (try --help)" >&2; exit 2; }
  printf '%s' "$2"
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$(value "$@")"; shift 2 ;;
    --data-root) data_root="$(value "$@")"; shift 2 ;;
    --out) out="$(value "$@")"; shift 2 ;;
    --resume) resume=(--resume auto) resume_d2=(--resume); shift ;;
    --jobs) jobs="$(value "$@")"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  mini) linear_protocol=cached episodes=50 cores=$(nproc)
        jobs="${jobs:-$(( cores >= 2 ? 2 : 1 ))}" ;;
  paper) linear_protocol=paper episodes=600 jobs="${jobs:-1}"
         [[ -d "$data_root" ]] || { echo "run_all.sh: --data-root '$data_root' is not a directory" >&2; exit 2; } ;;
  *) echo "run_all.sh: unknown profile '$profile' (expected mini or paper)" >&2; exit 2 ;;
esac
out="${out:-work/$profile}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "run_all.sh: --jobs '$jobs' is not a positive integer" >&2; exit 2; }

bash scripts/setup_env.sh
py="${RINGBENCH_VENV:-.venv}/bin/python"  # the environment setup_env.sh made (RINGBENCH_VENV moves it)
start=$(date +%s)
records="$data_root/metadataset"
if [[ "$profile" == mini ]]; then
  records="$out/metadataset"
  "$py" -m metadataset build-mini "$records"
fi
run_config() {  # every stage for one config, in order
  local config="$1" name="$2" ckpt="$out/runs/$2/final.pt"
  "$py" -m pretrain --config "$config" --data-root "$data_root" --out "$out/runs" --results "$out/results" "${resume[@]}"
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
      "$py" -m detection mini --ckpt "$ckpt" --out "$out/runs" --results "$out/results" --max-iter 20 ;;
    esac
  elif [[ "$name" == *imagenet* && -d "$data_root/coco" ]]; then  # the paper transfers its ImageNet runs
    local weights="$out/runs/$name/detection/weights.pkl" task
    "$py" -m detection convert "$ckpt" "$weights"
    for task in coco_mask_fpn coco_kp_fpn; do  # C4 needs a bottleneck R50; the presets are R18
      "$py" -m detection train --task "$task" --weights "$weights" --dataset-root "$data_root/coco" \
        --num-gpus "${NUM_GPUS:-1}" --out "$out/runs" --results "$out/results" --run "$name" "${resume_d2[@]}"
    done
  fi
}

finish() {  # wait for one config's job; print its results lines, or its log's tail if it failed
  local pid="$1" name="$2" log="$out/logs/$2.log"
  if wait "$pid"; then
    echo "=== $name done ($log)"
    grep -E '^\[(pretrain|evaluate|detection)\] .*(top1|AP)|^\[metadataset\] (linear|episodic) ' "$log" || true
  else
    echo "run_all.sh: $name failed; the end of $log:" >&2
    tail -n 15 "$log" >&2
    failed+=("$name")
  fi
}

# Configs run `jobs` at a time, each writing its own log (on CPU, two 1-thread processes
# outrun one 2-thread process: the mini stages are small and partly serial). With one job at
# a time the output is also shown as it comes.
mkdir -p "$out/logs"
threads=$(( $(nproc) / jobs )); (( threads >= 1 )) || threads=1
pids=() names=() failed=() next=0
for config in configs/"$profile"/*.yaml; do
  name=$("$py" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$config")
  echo "=== $name ($config)"
  if (( jobs == 1 )); then
    set +e
    ( set -e; run_config "$config" "$name" ) 2>&1 | tee "$out/logs/$name.log"
    status=${PIPESTATUS[0]}
    set -e
    (( status == 0 )) || { echo "run_all.sh: $name failed (exit $status); log: $out/logs/$name.log" >&2; failed+=("$name"); }
    continue
  fi
  ( export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
    run_config "$config" "$name" ) > "$out/logs/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
  while (( $(jobs -rp | wc -l) >= jobs )); do sleep 1; done  # at the limit: wait for a free slot
  running=$(jobs -rp)  # ($(...) sees this shell's jobs; a bare pipeline would not)
  while (( next < ${#pids[@]} )) && ! grep -qx "${pids[$next]}" <<< "$running"; do  # report finished ones, in order
    finish "${pids[$next]}" "${names[$next]}"; next=$((next + 1))
  done
done
for (( ; next < ${#pids[@]}; next++ )); do finish "${pids[$next]}" "${names[$next]}"; done
if (( ${#failed[@]} )); then
  echo "run_all.sh: failed: ${failed[*]} (the other runs' results are in $out/results)" >&2
  exit 1
fi
"$py" -m pretrain.toy_mi --results "$out/results" --out "$out/toy_mi"  # NCE vs CNCE, known true MI
"$py" -m reports --results "$out/results" --out "$out/report"
echo "run_all.sh: profile $profile finished in $(( $(date +%s) - start )) s (after set-up)"
echo "run_all.sh: report at $out/report/report.md"
