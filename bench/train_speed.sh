#!/usr/bin/env bash
# Training speed: repro's candle LLaMA (`repro bench-train`) against the same
# model in PyTorch eager (bench/train_speed/torch_llama.py), tokens/s on CPU,
# side by side. Manual only: CI never runs it (it installs PyTorch, ~5 GB with
# the CUDA runtime wheels the PyPI torch wheel pulls in, into a throw-away venv;
# the default run takes 2-3 minutes on an idle 2-core machine, plus the build).
#
#   bench/train_speed.sh                         # sizes s,m,l; batch 16 x seq 128; 2 repeats
#   bench/train_speed.sh --sizes s,m,l,30m       # 30m = the 27.4M model of shared/notes/candle.md
#   bench/train_speed.sh --batch 8,16 --seq 128,256 --steps 10 --repeats 3
#   bench/train_speed.sh --torch-only            # PyTorch columns only
#   bench/train_speed.sh --out FILE              # also write the markdown report to FILE
#
# Options:
#   --sizes LIST    config names from bench/train_speed/configs/ (s, m, l, 30m;
#                   s, mini_m, mini_l are exactly the miniature's three bases) or
#                   paths to Hugging Face LLaMA config.json files (default s,m,l)
#   --batch LIST    batch sizes (default 16)
#   --seq LIST      sequence lengths (default 128; at most max_position_embeddings)
#   --steps N       timed steps per run (default 8)
#   --warmup N      untimed steps before them (default 1)
#   --repeats N     runs of each implementation; they alternate repro, torch,
#                   torch SDPA, repro, ... and the table shows medians (default 2)
#   --threads N     threads for both sides: torch.set_num_threads(N) and
#                   RAYON_NUM_THREADS=N for repro (default 2)
#   --no-sdpa       skip the torch SDPA column
#   --torch-only    skip repro (also what happens when `repro bench-train` is missing)
#   --out FILE      also write the markdown report to FILE
#
# Environment:
#   BENCH_VENV     venv holding torch (default /tmp/repro-torch-venv; created with
#                  `pip install torch` when torch is missing). Benchmark peer only,
#                  never a dependency of repro.
#   REPRO_BIN      a repro binary to time instead of `cargo build --release` of this checkout
#   BENCH_SCRATCH  raw results (default /tmp/repro-train-speed): results.jsonl, results.md
#
# One step on both sides = forward (logits at every position) + cross-entropy over
# all positions of random token ids + backward + gradient clipping at 1.0 +
# AdamW(lr 1e-3, betas 0.9/0.95, weight decay 0.1 on matrices); f32; init N(0, 0.02).
# Both print {"tokens_per_s": f, "step_seconds": [..], "params": n,
# "forward_s": f, "backward_s": f, "optimizer_s": f} (the last three optional).
#
# Run it on an idle machine: PyTorch's OpenMP threads spin-wait, and with a
# compile running beside it, it measured up to 40x slower (m: 423 instead of ~19,800 tok/s),
# while candle slowed ~3x. The script warns when the load average is high.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/bench/train_speed"
VENV="${BENCH_VENV:-/tmp/repro-torch-venv}"
SCRATCH="${BENCH_SCRATCH:-/tmp/repro-train-speed}"

if [[ "${CI:-}" == "true" ]]; then
    echo "bench/train_speed.sh: refusing to run under CI (manual benchmark)" >&2
    exit 0
fi

sizes="s,m,l"; batches="16"; seqs="128"; steps=8; warmup=1; repeats=2; threads=2
sdpa=1; torch_only=0; out=""
cmd="bench/train_speed.sh"
[[ $# -gt 0 ]] && cmd+=" $*"
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "bench/train_speed.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) need "$@"; sizes="$2"; shift ;;
        --batch) need "$@"; batches="$2"; shift ;;
        --seq) need "$@"; seqs="$2"; shift ;;
        --steps) need "$@"; steps="$2"; shift ;;
        --warmup) need "$@"; warmup="$2"; shift ;;
        --repeats) need "$@"; repeats="$2"; shift ;;
        --threads) need "$@"; threads="$2"; shift ;;
        --no-sdpa) sdpa=0 ;;
        --torch-only) torch_only=1 ;;
        --out) need "$@"; out="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/train_speed.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in "$steps" "$warmup" "$repeats" "$threads"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "bench/train_speed.sh: not a number: $n" >&2; exit 2; }
done
(( steps >= 1 && repeats >= 1 && threads >= 1 )) || { echo "bench/train_speed.sh: --steps, --repeats and --threads must be >= 1" >&2; exit 2; }

configs=()
IFS=, read -r -a size_list <<<"$sizes"
for s in "${size_list[@]}"; do
    if [[ -f "$HERE/configs/$s.json" ]]; then configs+=("$HERE/configs/$s.json")
    elif [[ -f "$s" ]]; then configs+=("$(realpath "$s")")
    else echo "bench/train_speed.sh: no config $s (neither $HERE/configs/$s.json nor a file)" >&2; exit 2; fi
done
IFS=, read -r -a batch_list <<<"$batches"
IFS=, read -r -a seq_list <<<"$seqs"

# PyTorch, in a throw-away venv.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "== creating $VENV with torch (benchmark only; ~5 GB download)" >&2
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet torch
fi
PY="$VENV/bin/python"
torch_version="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"

# repro, unless only torch is wanted.
repro_note=""
REPRO=""
if [[ $torch_only == 0 ]]; then
    if [[ -n "${REPRO_BIN:-}" ]]; then
        REPRO="$(realpath "$REPRO_BIN")"
        echo "== using $REPRO (REPRO_BIN; not rebuilt)" >&2
    else
        echo "== building repro (release)" >&2
        (cd "$ROOT" && cargo build --release --locked --quiet)
        REPRO="$ROOT/target/release/repro"
    fi
    if ! "$REPRO" bench-train --help >/dev/null 2>&1; then
        repro_note="\`$REPRO\` has no \`bench-train\` subcommand yet: only the PyTorch columns are measured."
        echo "bench/train_speed.sh: WARNING: $repro_note" >&2
        REPRO=""
    fi
else
    repro_note="--torch-only: repro not measured."
fi

mkdir -p "$SCRATCH"
raw="$SCRATCH/results.jsonl"
: >"$raw"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="${load_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > 0.25 * n) }'; then
    echo "bench/train_speed.sh: WARNING: load average is $load_start on $(nproc) cores: other work competes for the CPU and the numbers will be low (PyTorch especially)" >&2
fi

# One run: appends {"size","batch","seq","impl","result"|"error"} to $raw.
run_one() {  # impl config batch seq
    local impl="$1" config="$2" b="$3" t="$4" size argv outp rc
    size="$(basename "$config" .json)"
    case "$impl" in
        repro) argv=(env RAYON_NUM_THREADS="$threads" "$REPRO" bench-train) ;;
        torch) argv=("$PY" "$HERE/torch_llama.py" --threads "$threads") ;;
        torch_sdpa) argv=("$PY" "$HERE/torch_llama.py" --threads "$threads" --sdpa) ;;
    esac
    argv+=(--config "$config" --batch "$b" --seq "$t" --steps "$steps" --warmup "$warmup" --json)
    echo "== $size b$b x t$t: $impl" >&2
    set +e
    outp="$("${argv[@]}" 2>"$SCRATCH/last.err")"
    rc=$?
    set -e
    SIZE="$size" B="$b" T="$t" IMPL="$impl" RC="$rc" OUTP="$outp" ERRF="$SCRATCH/last.err" python3 - >>"$raw" <<'EOF'
import json, os
rec = {"size": os.environ["SIZE"], "batch": int(os.environ["B"]), "seq": int(os.environ["T"]), "impl": os.environ["IMPL"]}
try:
    last = [l for l in os.environ["OUTP"].splitlines() if l.strip().startswith("{")][-1]
    rec["result"] = json.loads(last)
    float(rec["result"]["tokens_per_s"])
except Exception:
    err = open(os.environ["ERRF"], errors="replace").read().strip().splitlines()
    rec["error"] = f"exit {os.environ['RC']}: " + (err[-1] if err else "no JSON on stdout")
print(json.dumps(rec))
EOF
    if grep -q '"error"' <(tail -1 "$raw"); then
        echo "   failed: $(tail -1 "$raw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"])')" >&2
    else
        echo "   $(tail -1 "$raw" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["result"]["tokens_per_s"]), "tok/s")')" >&2
    fi
}

for config in "${configs[@]}"; do
    for b in "${batch_list[@]}"; do
        for t in "${seq_list[@]}"; do
            for ((r = 1; r <= repeats; r++)); do
                if [[ -n "$REPRO" ]]; then run_one repro "$config" "$b" "$t"; fi
                run_one torch "$config" "$b" "$t"
                if [[ $sdpa == 1 ]]; then run_one torch_sdpa "$config" "$b" "$t"; fi
            done
        done
    done
done

cpu_model="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
flags="$(grep -m1 '^flags' /proc/cpuinfo)"
isa="$(for f in avx512f avx2 fma; do [[ " $flags " == *" $f "* ]] && printf '%s ' "$f"; done)"
commit="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
CMD="$cmd" NPROC="$(nproc)" CPU="$cpu_model" ISA="${isa% }" TORCH="$torch_version" \
RUSTC="$(rustc --version 2>/dev/null || echo '?')" COMMIT="$commit" NOTE="$repro_note" \
LOAD_START="$load_start" LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" THREADS="$threads" \
STEPS="$steps" WARMUP="$warmup" REPEATS="$repeats" SDPA="$sdpa" \
python3 - "$raw" <<'EOF' | tee "$SCRATCH/results.md"
import json, os, statistics, sys
e = os.environ
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = []
for r in recs:
    k = (r["size"], r["batch"], r["seq"])
    if k not in keys:
        keys.append(k)

def cell(k, impl):
    rs = [r for r in recs if (r["size"], r["batch"], r["seq"]) == k and r["impl"] == impl]
    ok = [r["result"] for r in rs if "result" in r]
    if not rs:
        return None, None, "—"
    if not ok:
        return None, None, "failed"
    tps = statistics.median(x["tokens_per_s"] for x in ok)
    return tps, ok[0].get("params"), f"{tps:,.0f}"

def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "—"

print("## Training speed: repro (candle) vs PyTorch eager, CPU, f32\n")
print("| size | params | batch x seq | repro tok/s | torch manual tok/s | torch SDPA tok/s | repro / torch manual | repro / torch SDPA |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
notes = []
for k in keys:
    rp, rparams, rs = cell(k, "repro")
    tp, tparams, ts = cell(k, "torch")
    sp, sparams, ss = cell(k, "torch_sdpa")
    params = tparams or sparams or rparams
    pstr = f"{params:,}" if params else "?"
    if rparams and params and rparams != params:
        pstr += f" (repro: {rparams:,}!)"
        notes.append(f"{k[0]}: repro reports {rparams:,} parameters, torch {params:,}: the models differ.")
    print(f"| {k[0]} | {pstr} | {k[1]} x {k[2]} | {rs} | {ts} | {ss} | {ratio(rp, tp)} | {ratio(rp, sp)} |")
failed = [r for r in recs if "error" in r]

def phases(k, impl):
    ok = [r["result"] for r in recs if (r["size"], r["batch"], r["seq"]) == k and r["impl"] == impl and "result" in r]
    ok = [x for x in ok if all(isinstance(x.get(f), (int, float)) for f in ("forward_s", "backward_s", "optimizer_s"))]
    if not ok:
        return "—"
    return " / ".join(f"{1000 * statistics.median(x[f] for x in ok):.1f}" for f in ("forward_s", "backward_s", "optimizer_s"))

print()
print(f"Medians of {e['REPEATS']} alternating runs per cell (repro, torch, torch SDPA, repro, ...); "
      f"{e['STEPS']} timed steps per run after {e['WARMUP']} untimed; {e['THREADS']} threads on both sides. "
      "One step: forward + cross-entropy over all positions + backward + clip 1.0 + AdamW.")
if e["NOTE"]:
    print(f"\n**Note:** {e['NOTE']}")
for n in notes:
    print(f"\n**Parameter mismatch:** {n}")
seen = set()
for r in failed:
    key = (r["impl"], r["size"], r["batch"], r["seq"], r["error"])
    if key not in seen:
        seen.add(key)
        print(f"\n**Failed:** {r['impl']} {r['size']} b{r['batch']} x t{r['seq']}: {r['error']}")
if any("result" in r and "backward_s" in r["result"] for r in recs):
    print()
    print("Milliseconds per step, forward (with loss) / backward / optimizer (with clipping), medians over runs:")
    print()
    print("| size | batch x seq | repro | torch manual | torch SDPA |")
    print("|---|---|---|---|---|")
    for k in keys:
        print(f"| {k[0]} | {k[1]} x {k[2]} | {phases(k, 'repro')} | {phases(k, 'torch')} | {phases(k, 'torch_sdpa')} |")
print()
print(f"- command: `{e['CMD']}`")
print(f"- machine: {e['NPROC']} cores, {e['CPU']} ({e['ISA']}), load average {e['LOAD_START']} at start, {e['LOAD_END']} at end")
print(f"- torch {e['TORCH']} (PyPI wheel, eager, CPU); {e['RUSTC']}; repro at {e['COMMIT']}")
EOF
if [[ -n "$out" ]]; then
    cp "$SCRATCH/results.md" "$out"
    echo "report written to $out" >&2
fi
echo "raw: $raw, report: $SCRATCH/results.md" >&2
