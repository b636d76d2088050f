#!/usr/bin/env bash
# Runs repro's decode_bench and llama.cpp (scripts/decode_bench_llama_cpp.py)
# one after the other, ROUNDS times, on the same prompts, and prints each
# run's "| batch | prefill tok/s | generation tok/s |" row and, at the end,
# the median of each side and the median of the per-pair ratios (repro /
# llama.cpp). Taking the two in turn keeps a drift of the machine's speed
# from favouring either side (README "Decoding against llama.cpp").
#
#   bash scripts/decode_in_turn.sh ROUNDS PROMPT_IDS NEW_TOKENS [LLAMA_PYTHON] [F32_GGUF]
#
# PROMPT_IDS is a file written by `decode_bench --prompt-ids-out` (or its
# first lines); LLAMA_PYTHON the Python of a venv with llama-cpp-python
# 0.3.36 (default /tmp/lcp/bin/python); F32_GGUF the f32 copy written by
# `decode_bench --f32-gguf-out` (default /tmp/db/smol-f32.gguf). Both sides
# use 2 threads and batch 1; decode_bench must be built
# (`cargo build --release --example decode_bench`).
set -euo pipefail

if [ $# -lt 3 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
rounds=$1
prompt_ids=$(realpath -m "$2")
new_tokens=$3
python=$(realpath -ms "${4:-/tmp/lcp/bin/python}")
gguf=$(realpath -m "${5:-/tmp/db/smol-f32.gguf}")
cd "$(dirname "$0")/.."
bench=target/release/examples/decode_bench
for f in "$bench" "$python" "$gguf" "$prompt_ids"; do
  [ -e "$f" ] || { echo "decode_in_turn: $f not found (run it without arguments for its usage)" >&2; exit 2; }
done
prompts=$(grep -c . "$prompt_ids")

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for _ in $(seq "$rounds"); do
  RAYON_NUM_THREADS=2 "$bench" --prompts "$prompts" --new-tokens "$new_tokens" --batch 1 2>&1 |
    grep '^| 1 |' | sed 's/^/repro /' | tee -a "$rows"
  "$python" scripts/decode_bench_llama_cpp.py --model "$gguf" --prompt-ids "$prompt_ids" \
    --new-tokens "$new_tokens" --threads 2 2>&1 |
    grep '^| 1 (llama.cpp)' | sed 's/^/llama /' | tee -a "$rows"
done

# Columns of a row, split on '|': $4 prefill tok/s, $5 generation tok/s.
python3 - "$rows" <<'EOF'
import statistics, sys
repro, llama = [], []
for line in open(sys.argv[1]):
    side, cells = line.split(" ", 1)
    c = [x.strip() for x in cells.split("|")]
    (repro if side == "repro" else llama).append((float(c[2]), float(c[3])))
pairs = list(zip(repro, llama))
for i, what in ((0, "prefill tok/s"), (1, "generation tok/s")):
    a = statistics.median(r[i] for r in repro)
    b = statistics.median(l[i] for l in llama)
    ratios = [r[i] / l[i] for r, l in pairs]
    print(f"{what}: repro {a:.1f}, llama.cpp {b:.1f} (medians of {len(repro)} and {len(llama)}); "
          f"repro / llama.cpp by pair: median {statistics.median(ratios):.3f}, "
          f"from {min(ratios):.3f} to {max(ratios):.3f}")
EOF
