#!/usr/bin/env bash
# The GPU section of `ecg-ray bench` on a CUDA machine, as run for results/benchmarks.md:
# bare-torch (and, where Ray is installed, TorchTrainer) training throughput per
# architecture on a prepared dataset. Usage: jobs/gpu_bench.sh PREPARED OUT_DIR
set -euo pipefail
prepared=${1:?prepared dataset folder}
out=${2:?output folder}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
python -m ecg_ray.cli bench --sections gpu --data "$prepared" --out "$out" \
  --repeats 5 --warmup 1 --train-records 0 --batch-size 64 --threads 4
