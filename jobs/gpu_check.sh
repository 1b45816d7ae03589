#!/usr/bin/env bash
# The GPU check of the distributed path (issue #14), for a lent CUDA machine that has
# Python and torch but no Ray and no network. Run from the repository root:
#
#   here:  echo /.devray/ >> .git/info/exclude
#          bash ../shared/tools/gpu-ray/build.sh .devray HAVE   # prints INSTALL, the install line
#          mkdir -p .devray/records && cp REFERENCE.csv + ~120 .hea/.mat files there (carry: .devray)
#   there: INSTALL (plus `chmod +x` of ray/core/src/ray/{gcs/gcs_server,raylet/raylet} under
#          /tmp/site: build.sh's unzip drops the executable bits) && bash jobs/gpu_check.sh .devray/records DIR
#
# With 120 records the steps before the benchmark took 7.5 min on an H200; the exact command
# and what it gave are in results/gpu/README.md. $OUT returns at most 8 files: tar DIR into it.
#
# Steps, each logged to OUT (default results/gpu): the device; prepare of the carried
# records; the smoke sweep's stage 1 with --gpus-per-trial 0.25 (4 trials share the GPU);
# a 1-GPU `train` SIGKILLed after its first checkpoint and resumed (epochs must run on
# from the checkpoint, none lost or repeated: the resume-on-GPU defect); the same train
# in fp32 and bf16; `ecg-ray bench --sections gpu` (TorchTrainer vs bare torch on CUDA).
# Each step's exit status goes to OUT/summary.txt; the script goes on after a failure.
# GPU_CHECK_CPU=1 runs the same steps without a GPU (no --use-gpu, no GPU share per trial,
# a 3-epoch kill/resume run): a dry run of the script itself on a CPU machine.
set -uo pipefail
records=${1:?raw records folder (REFERENCE.csv with .hea/.mat files)}
out=${2:-results/gpu}
work=${GPU_CHECK_WORK:-/tmp/ecg_gpu_check}
mkdir -p "$out" "$work"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ecg=(python3 -m ecg_ray.cli)
gpu=(--use-gpu --cpus-per-worker 4) share=(--gpus-per-trial 0.25 --max-concurrent 4) epochs=4
if [ -n "${GPU_CHECK_CPU:-}" ]; then gpu=(--cpus-per-worker 1) share=(--max-concurrent 2) epochs=3; fi
ray_stop() { python3 -m ray.scripts.scripts stop --force > /dev/null 2>&1 || true; }
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, record the exit status
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$out/summary.txt"
  return $rc
}
: > "$out/summary.txt"

step device bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader;
  python3 -c "import torch, ray; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda,
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA device\", \"ray\", ray.__version__)"'
step prepare "${ecg[@]}" prepare --data-dir "$records" --out "$work/prepared" --workers 8
prepared=$work/prepared

# 4 trials on one GPU: stage 1 of the smoke grid, 2 epochs, trials of 0.25 GPU + 1 CPU
step sweep_quarter_gpu "${ecg[@]}" sweep search_spaces/smoke.yaml --data "$prepared" --storage "$work/runs" \
  "${share[@]}" --stage1-only --set scheduler.max_t=2
ray_stop

# a 1-GPU train killed once its first checkpoint exists, then resumed
train=("${ecg[@]}" train --data "$prepared" --model resnet_stages --num-epochs "$epochs" "${gpu[@]}")
"${train[@]}" --out "$work/train_kill" > "$out/train_killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  ls -d "$work"/train_kill/ray_train/checkpoint_*/ > /dev/null 2>&1 && break  # folders: not the manager's snapshot file
  sleep 1
done
kill -9 "$pid" 2> /dev/null; ray_stop
echo "train_killed after $(ls -d "$work"/train_kill/ray_train/checkpoint_*/ 2> /dev/null | wc -l) checkpoint(s)" \
  | tee -a "$out/summary.txt"
step train_resumed "${train[@]}" --out "$work/train_kill" --resume
python3 - "$work/train_kill/history.json" "$epochs" <<'EOF' 2>&1 | tee -a "$out/summary.txt"
import json, sys
epochs = [h["epoch"] for h in json.load(open(sys.argv[1]))]
print("resume epochs", epochs, "OK" if epochs == list(range(int(sys.argv[2]))) else "NOT OK")
EOF
ray_stop

for precision in fp32 bf16; do
  step "train_$precision" "${ecg[@]}" train --data "$prepared" --model resnet_stages --num-epochs 2 "${gpu[@]}" \
    --precision "$precision" --out "$work/train_$precision"
  ray_stop
done
python3 - "$work" <<'EOF' 2>&1 | tee -a "$out/summary.txt"
import json, sys
for p in ("fp32", "bf16"):
    h = json.load(open(f"{sys.argv[1]}/train_{p}/history.json"))
    print(p, "crops/s", [round(e["segments_per_s"]) for e in h], "val F1", [round(e["val_f1_cinc"], 3) for e in h])
EOF

step bench_gpu "${ecg[@]}" bench --sections gpu --data "$prepared" --out "$out" --repeats 3 --warmup 1 \
  --train-records 0 --models resnet_stages,cnn_lstm,cnn_only --threads 4
ray_stop
cat "$out/summary.txt"
