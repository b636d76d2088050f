#!/usr/bin/env bash
# The torch engine of `lm.finetune` (trainer/fsdp_train.py) on the CPU,
# against the candle engine: tests/torch_engine.rs, which `cargo test` skips
# (its tests are ignored without a Python environment).
#
#   scripts/check-torch-engine.sh            # venv (reused) + the four checks
#   TORCH_CHECK_FRESH=1 scripts/...          # rebuild the venv from scratch
#
# 1. Makes a throw-away venv from trainer/requirements.lock (the same pins
#    the engine uses; PyPI's torch wheel is the CUDA build, about 5 GB with
#    NVIDIA's runtime wheels, and runs on the CPU). Reused when its lock
#    digest matches.
# 2. Runs, with REPRO_PYTHON pointing at it:
#    - parity: a tiny LLaMA in f32, one process, engine torch against engine
#      candle on the same windows, 20 steps: losses within 1e-4;
#    - sharding: FSDP2 on 2 processes (gloo) against 1: losses within 1e-5,
#      weights within 1e-4;
#    - round trip: the exported directory loads in repro; greedy generations
#      equal those of transformers, next-token logits within 1e-4;
#    - resume: a run killed after step 12 (checkpoints every 5) and resumed
#      from step 10 equals an uninterrupted run exactly.
#    Each prints its measurements on `torch-check:` lines.
#
# Environment:
#   TORCH_CHECK_VENV   the venv (default /tmp/repro-torch-check-venv)
#   TORCH_CHECK_FRESH  1 = delete and recreate the venv
#
# Not run by CI (.ci/run): the venv install alone downloads about 5 GB.
# Exit status: 0 when all four checks pass.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${TORCH_CHECK_VENV:-/tmp/repro-torch-check-venv}"
LOCK=trainer/requirements.lock
digest=$(sha256sum "$LOCK" | cut -c1-16)
t0=$(date +%s)
if [[ "${TORCH_CHECK_FRESH:-0}" == 1 ]]; then rm -rf "$VENV"; fi
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.lock-digest" 2>/dev/null)" != "$digest" ]]; then
    echo "check-torch-engine: creating $VENV from $LOCK (about 5 GB)" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$LOCK"
    echo "$digest" > "$VENV/.lock-digest"
fi
t1=$(date +%s)
echo "check-torch-engine: venv ready in $((t1 - t0)) s" >&2
REPRO_PYTHON="$VENV/bin/python" cargo test --test torch_engine -- \
    --ignored --test-threads=1 --nocapture 2>&1 | tee /tmp/check-torch-engine.log |
    grep -E '^torch-check:|^test |^test result|panicked|error' || true
t2=$(date +%s)
echo "check-torch-engine: tests took $((t2 - t1)) s (venv $((t1 - t0)) s); full log /tmp/check-torch-engine.log" >&2
grep -q '^test result: ok. 4 passed' /tmp/check-torch-engine.log
