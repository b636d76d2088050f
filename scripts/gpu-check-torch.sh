#!/usr/bin/env bash
# The torch engine's trainer on one GPU (needs CUDA and a Python with the
# packages of trainer/requirements.lock; never run by CI, never run here: no
# GPU was available to this project when it was written, so no figures exist).
#
#   PYTHON=/path/to/venv/bin/python scripts/gpu-check-torch.sh [OUT_DIR]
#
# Measures, each with random weights, sequence 2,048, micro-batch 1,
# activation checkpointing, bf16 compute with f32 master weights, AdamW,
# 20 steps, one process:
#   1. trainer/fsdp_train.py (FSDP2, world size 1) on a LLaMA-7B-shaped model;
#   2. trainer/fsdp_train.py on a 1.1B LLaMA (TinyLlama's shape);
#   3. plain unsharded PyTorch (no FSDP; HF model, autocast) on the same 1.1B model.
# Prints one JSON line each: peak allocated GPU memory (GiB) and tokens/s
# (median of steps 6-20). A 7B full fine-tune needs about 112 GB of weights,
# gradients and AdamW state in f32 alone, so (1) needs an 80 GB+ GPU with
# room to spare (H100/H200 141 GB, or several GPUs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
OUT="${1:-/tmp/repro-gpu-check}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
rm -rf "$OUT"; mkdir -p "$OUT"
for shape in 7b 1b; do
    "$PY" "$ROOT/scripts/gpu_check_torch.py" setup "$OUT/$shape" "$shape"
    "$PY" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=1 \
        "$ROOT/trainer/fsdp_train.py" --plan "$OUT/$shape/run/plan.json" --random-init --no-export \
        > "$OUT/$shape/trainer.log" 2>&1 || { tail -30 "$OUT/$shape/trainer.log"; exit 1; }
    "$PY" "$ROOT/scripts/gpu_check_torch.py" summary "$OUT/$shape" "fsdp_train.py $shape" | tee -a "$OUT/results.jsonl"
done
"$PY" "$ROOT/scripts/gpu_check_torch.py" plain 1b | tee -a "$OUT/results.jsonl"
echo "gpu-check-torch: results in $OUT/results.jsonl" >&2
