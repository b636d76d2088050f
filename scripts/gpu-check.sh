#!/usr/bin/env bash
# The GPU check (issue 15): repro's model layer on one NVIDIA GPU against
# PyTorch on the same GPU. Two modes:
#
#   scripts/gpu-check.sh build            # on a machine with cargo (no GPU needed)
#   scripts/gpu-check.sh run [OUT_DIR]    # on the GPU machine (no cargo needed)
#   scripts/gpu-check.sh run --cpu-smoke [OUT_DIR]   # the same flow on the CPU, tiny shapes
#
# `build` compiles examples/gpu_check.rs with `--features cuda` for Hopper
# (CUDA_COMPUTE_CAP=90) against a CUDA 13.0 toolkit made of NVIDIA's PyPI
# wheels (as scripts/check-cuda.sh does, plus cuBLAS, cuRAND and NVRTC to
# link against, and a generated stub of libcuda.so, which no wheel ships),
# release profile, and puts the stripped binary, xz-compressed (61 MiB ->
# 7.4 MiB), into .gpu-check/ (listed in .git/info/exclude), with
# libcudart.so.13, BUILD.json and the sources' checksums. That folder is
# what a device `run` call carries (`carry: [".gpu-check"]`, 64 MiB at most).
# 13.0 and not newer: the binary's PTX must not be newer than what the GPU
# machine's driver (580, CUDA 13.0) can load. The first build downloads
# about 1.2 GB of wheels and compiles candle-kernels' CUDA sources (10
# minutes on the 2-core machine); rebuilds after a change to the example
# take a minute.
#
# `run` writes results.jsonl (one JSON object per measurement, and one
# {"part": "status"} line per step), summary.md and the logs to OUT_DIR
# (default: $OUT, which the device tool sets, else /tmp/repro-gpu-check-out).
# Steps, each under its own time limit inside a total budget
# (GPU_CHECK_BUDGET_S, default 460 s, so that the whole stays under 8 min):
#   preflight  nvidia-smi, the binary (unpacked, checksum) and its libraries,
#              torch; then `device`: CUDA opens and a product runs from repro
#   setup      a SmolLM2-135M-shaped model with random weights written by
#              transformers (safetensors), prompt ids, a 374M LLaMA config
#   logits     bf16 on the GPU against f32 on the CPU (tests/dtype.rs's tiny
#              LLaMA and GPT-2 with its bounds; the SmolLM2-shaped model)
#   generate   tokens/s at batch 1, 16, 64 (128 new tokens, no stop), repro
#              then transformers' generate (bf16, greedy, min = max new tokens)
#   train      tokens/s and peak memory of the 374M LLaMA (seq 1024,
#              micro-batch 8, bf16 weights with f32 master copies, AdamW):
#              repro (candle autograd), then PyTorch eager with the same
#              recipe, then PyTorch with bf16 autocast over f32 weights
# Peak memory: nvidia-smi's memory.used polled every 100 ms during each
# step (the same for both sides), and torch.cuda.max_memory_allocated.
# Exit status: 0 when every step passed; 1 otherwise, with the failed steps
# named on stderr and at the top of summary.md. Nothing fails silently.
#
# Environment:
#   PYTHON                the Python with torch and transformers (default python3)
#   GPU_CHECK_BIN         the binary to run (default: .gpu-check/gpu_check.xz unpacked
#                         into GPU_CHECK_WORK; with --cpu-smoke
#                         target/release/examples/gpu_check)
#   GPU_CHECK_BUDGET_S    total seconds for `run` (default 460)
#   GPU_CHECK_WORK        scratch folder for models (default /tmp/repro-gpu-check-work)
#   GPU_CHECK_VENV        build: venv holding the wheels (default /tmp/repro-cuda13.0-venv)
#   GPU_CHECK_CUDA_WHEEL  build: version of the `cuda-toolkit` metapackage (default 13.0.3.0)
#   CUDA_COMPUTE_CAP      build: GPU architecture (default 90: H100/H200)
#   CARGO_TARGET_DIR      build: cargo's target folder (default target/)
#   GPU_CHECK_NICE        build: nice level (default 19)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.gpu-check"
PY="${PYTHON:-python3}"
HELPER="$ROOT/scripts/gpu_check.py"

step() { echo "== gpu-check: $*" >&2; }
die() { echo "gpu-check: FAILED: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# The carry limit of a device call, with room for nothing else.
CARRY_LIMIT=$((64 * 1024 * 1024))

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

build() {
    [[ $# -eq 0 ]] || die "build takes no arguments (got: $*)"
    local venv="${GPU_CHECK_VENV:-/tmp/repro-cuda13.0-venv}"
    local wheel="${GPU_CHECK_CUDA_WHEEL:-13.0.3.0}"
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    local nice_level="${GPU_CHECK_NICE:-19}"
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    for tool in python3 cargo g++ gcc strip readelf sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
    done
    [[ "$wheel" == 13.0.* ]] || step "WARNING: cuda-toolkit $wheel is not 13.0.x; the PTX may be newer than driver 580 loads"

    # 1. The toolkit wheels, in a throw-away venv (see scripts/check-cuda.sh).
    local extras="nvcc,cudart,cccl,cublas,curand,nvrtc"
    local stamp="$venv/.repro-cuda-toolkit-$wheel-$extras"
    if [[ ! -f "$stamp" ]]; then
        step "installing cuda-toolkit[$extras]==$wheel into $venv"
        [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv $venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip || die "pip upgrade in $venv"
        "$venv/bin/python" -m pip install --quiet "cuda-toolkit[$extras]==$wheel" \
            || die "pip install cuda-toolkit[$extras]==$wheel (is PyPI reachable? does that version exist: pip index versions cuda-toolkit)"
        touch "$stamp"
    else
        step "reusing $venv (cuda-toolkit $wheel)"
    fi

    # 2. The toolkit tree and what the build needs from it.
    local site tree=""
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        || die "cannot ask $venv/bin/python for its site-packages"
    for d in "$site"/nvidia/cu*; do
        [[ -x "$d/bin/nvcc" ]] && tree="$d"
    done
    [[ -n "$tree" ]] || die "no bin/nvcc under $site/nvidia/cu*/ (the wheels did not install a compiler)"
    local missing=()
    for f in bin/nvcc bin/ptxas bin/cudafe++ bin/fatbinary nvvm/bin/cicc nvvm/libdevice \
             include/cuda.h include/cuda_runtime.h include/cuda_fp16.h include/cuda_bf16.h \
             include/cublas_v2.h include/curand.h include/nvrtc.h include/cccl/cub/cub.cuh \
             lib/libcudart.so.13 lib/libcublas.so.13 lib/libcublasLt.so.13 \
             lib/libcurand.so.10 lib/libnvrtc.so.13; do
        [[ -e "$tree/$f" ]] || missing+=("$f")
    done
    [[ ${#missing[@]} -eq 0 ]] || die "the toolkit tree $tree lacks: ${missing[*]}"
    [[ -e "$tree/lib64" ]] || ln -s lib "$tree/lib64"
    # The linker looks for lib<name>.so; the wheels ship only lib<name>.so.N.
    local l
    for l in cudart cublas cublasLt curand nvrtc; do
        local versioned
        versioned="$(cd "$tree/lib" && ls "lib$l.so."* 2>/dev/null | grep -E "^lib$l\.so\.[0-9]+$" | head -1)" \
            || die "no lib$l.so.N in $tree/lib"
        ln -sfn "$versioned" "$tree/lib/lib$l.so"
    done

    export PATH="$tree/bin:$PATH"
    export CUDA_ROOT="$tree" CUDA_PATH="$tree" CUDA_HOME="$tree" \
           CUDA_TOOLKIT_ROOT_DIR="$tree" NVCC="$tree/bin/nvcc"
    local nvcc_version major minor
    nvcc_version="$(nvcc --version 2>&1)" || die "nvcc --version failed: $nvcc_version"
    read -r major minor <<<"$(sed -n 's/.*release \([0-9]*\)\.\([0-9]*\),.*/\1 \2/p' <<<"$nvcc_version")"
    [[ -n "${major:-}" ]] || die "cannot read the CUDA release from nvcc --version: $nvcc_version"
    [[ "$major.$minor" == 13.0 ]] || step "WARNING: nvcc is $major.$minor, not 13.0"
    export CUDARC_CUDA_VERSION="${major}0${minor}0"
    step "nvcc $major.$minor at $tree/bin/nvcc; CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"

    # 3. A link-time stub of libcuda.so.1 (the driver; the GPU machine has
    #    the real one): every cu* function cudarc declares, from its source.
    (cd "$ROOT" && cargo fetch --locked --quiet) || die "cargo fetch --locked"
    local cudarc
    cudarc="$(cd "$ROOT" && cargo metadata --locked --format-version 1 --features cuda 2>/dev/null \
        | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')" \
        || die "cannot find cudarc's source through cargo metadata"
    local sys_rs
    sys_rs="$(dirname "$cudarc")/src/driver/sys/mod.rs"
    [[ -f "$sys_rs" ]] || die "cudarc's driver bindings not found at $sys_rs"
    mkdir -p "$tree/lib/stubs"
    local stub_c="$tree/lib/stubs/libcuda_stub.c"
    grep -ho 'pub unsafe fn cu[A-Za-z0-9_]*(' "$sys_rs" | sed 's/pub unsafe fn \(.*\)(/\1/' | sort -u \
        | awk 'BEGIN { print "/* Link-time stub of the CUDA driver API (generated by scripts/gpu-check.sh). */" }
               { print "int " $1 "(void) { return 999; }" }' >"$stub_c"
    local n_sym
    n_sym="$(grep -c '^int cu' "$stub_c")"
    [[ "$n_sym" -gt 100 ]] || die "only $n_sym driver functions found in $sys_rs"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$tree/lib/stubs/libcuda.so" "$stub_c" \
        || die "cannot compile the libcuda stub"
    # For running the CUDA binary's CPU check here (never carried).
    ln -sfn libcuda.so "$tree/lib/stubs/libcuda.so.1"
    step "libcuda.so stub with $n_sym functions in $tree/lib/stubs"

    # 4. The build, in the shared target folder (dependencies built without
    #    CUDA are reused; candle-core and repro get their own CUDA artifacts).
    local log="$target/gpu-check-build.log"
    mkdir -p "$target"
    step "cargo build --locked --release --features cuda --example gpu_check (log $log)"
    local start=$SECONDS status
    set +e
    (cd "$ROOT" && CARGO_TARGET_DIR="$target" nice -n "$nice_level" \
        cargo build --locked --release --features cuda --example gpu_check) 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    if [[ $status -ne 0 ]]; then
        grep -m8 -E 'fatal error|undefined reference|cannot find -l|panicked|error:' "$log" | sed 's/^/gpu-check:   /' >&2 || true
        die "cargo build --features cuda exited $status after $((SECONDS - start)) s (full log: $log)"
    fi
    step "built in $((SECONDS - start)) s"

    # 5. The carried folder: the binary, stripped and xz-compressed (64 MB
    #    of mostly PTX text become about 8 MB; `run` unpacks it with Python's
    #    lzma), libcudart, BUILD.json.
    rm -rf "$CARRY"
    mkdir -p "$CARRY/lib"
    local bin="$target/gpu-check-stripped"
    strip -o "$bin" "$target/release/examples/gpu_check" || die "strip"
    cp -L "$tree/lib/libcudart.so.13" "$CARRY/lib/"
    local needed glibc
    needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
    glibc="$(readelf -V "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
    # --as-needed keeps what is called: cuBLAS (which loads cuBLASLt), cuRAND,
    # the runtime and the driver.
    for l in libcuda.so.1 libcublas.so.13 libcudart.so.13; do
        [[ " $needed " == *" $l "* ]] || die "the binary does not link $l (NEEDED: $needed): not a CUDA build?"
    done
    # The CPU paths of the CUDA binary run here, against the wheels and the stub.
    LD_LIBRARY_PATH="$tree/lib:$tree/lib/stubs" "$bin" device --device cpu >/dev/null \
        || die "the CUDA binary does not run its CPU check here"
    local bin_sha bin_size
    bin_sha="$(sha256sum "$bin" | cut -d' ' -f1)"
    bin_size="$(stat -c %s "$bin")"
    python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.compress(open(sys.argv[1], "rb").read(), preset=6))' \
        "$bin" "$CARRY/gpu_check.xz" || die "cannot compress the binary"
    (cd "$ROOT" && git ls-files src examples Cargo.toml Cargo.lock | sort | xargs sha256sum) >"$CARRY/sources.sha256"
    local commit dirty
    commit="$(cd "$ROOT" && git rev-parse HEAD)"
    dirty="$(cd "$ROOT" && git status --porcelain -- src examples Cargo.toml Cargo.lock | wc -l)"
    python3 - "$CARRY/BUILD.json" <<EOF
import json, sys
json.dump({"commit": "$commit", "uncommitted_source_files": $dirty,
           "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cuda_toolkit_wheel": "$wheel",
           "nvcc": "$major.$minor", "cuda_compute_cap": "$CUDA_COMPUTE_CAP",
           "binary_sha256": "$bin_sha", "binary_bytes": $bin_size,
           "needed": "$needed".split(), "max_glibc": "$glibc",
           "rustc": "$(rustc --version)"}, open(sys.argv[1], "w"), indent=1)
EOF
    local size
    size="$(du -sb "$CARRY" | cut -f1)"
    [[ "$size" -lt "$CARRY_LIMIT" ]] \
        || die "$CARRY is $((size / 1024 / 1024)) MiB, over the 64 MiB a device call carries"
    # Keep the folder out of git (and so out of the tree a device call copies
    # unless `carry` names it).
    local exclude
    exclude="$(cd "$ROOT" && git rev-parse --git-path info/exclude)"
    [[ "$exclude" = /* ]] || exclude="$ROOT/$exclude"
    mkdir -p "$(dirname "$exclude")"
    grep -qxF '/.gpu-check/' "$exclude" 2>/dev/null || echo '/.gpu-check/' >>"$exclude"
    echo "gpu-check: OK: $CARRY is $((size / 1024 / 1024)) MiB (a binary of $((bin_size / 1024 / 1024)) MiB, $(stat -c %s "$CARRY/gpu_check.xz") bytes compressed; needs $glibc or newer; NEEDED: $needed)" >&2
    echo "gpu-check: next, on the GPU machine: scripts/gpu-check.sh run   (carry: [\".gpu-check\"], timeout_s 540)" >&2
}

# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

# Settings of the GPU run, and of the CPU smoke run that exercises the same
# flow in seconds.
set_sizes() {
    if [[ "$SMOKE" == 1 ]]; then
        GEN_SHAPE=tiny-smol TRAIN_SHAPE=tiny-train WRITER=plain DEVICE=cpu
        BATCHES=(1 2 4) NEW_TOKENS=8 PROMPT_LEN=6 REPEATS=2
        SEQ=32 MICRO_BATCH=2 WARMUP_STEPS=2 STEPS=3
    else
        GEN_SHAPE=smol TRAIN_SHAPE=train370m WRITER=transformers DEVICE=cuda
        BATCHES=(1 16 64) NEW_TOKENS=128 PROMPT_LEN=64 REPEATS=3
        SEQ=1024 MICRO_BATCH=8 WARMUP_STEPS=3 STEPS=10
    fi
}

now() { date +%s; }

# Appends one JSON object to results.jsonl.
record() { echo "$1" >>"$RESULTS"; }

status_line() { # name status rc seconds log note
    python3 -c 'import json,sys; print(json.dumps({"part": "status", "name": sys.argv[1], "status": sys.argv[2], "rc": int(sys.argv[3]), "seconds": int(sys.argv[4]), "log": sys.argv[5], "note": sys.argv[6]}))' \
        "$@" >>"$RESULTS"
}

# run_part NAME LIMIT_S CMD...: runs CMD under `timeout`, its stdout's JSON
# lines into results.jsonl, its stdout and stderr into logs/NAME.log; records
# a status line. Skips (and fails the run) when the budget is spent.
run_part() {
    local name="$1" limit="$2"
    shift 2
    local left=$((DEADLINE - $(now)))
    local log="logs/$name.log"
    if [[ $left -lt 15 ]]; then
        step "$name: SKIPPED (${left} s of the budget left)"
        status_line "$name" skipped 0 0 "$log" "out of time: ${left} s of the ${BUDGET} s budget left"
        FAILED+=("$name (skipped: out of time)")
        return 1
    fi
    [[ $limit -le $((left - 5)) ]] || limit=$((left - 5))
    step "$name (at most ${limit} s): $*"
    local t0 rc
    t0=$(now)
    set +e
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT_DIR/$log.stdout" 2>"$OUT_DIR/$log"
    rc=$?
    set -e
    cat "$OUT_DIR/$log.stdout" >>"$OUT_DIR/$log"
    grep -E '^\{' "$OUT_DIR/$log.stdout" >>"$RESULTS" || true
    rm -f "$OUT_DIR/$log.stdout"
    local secs=$(($(now) - t0)) st=ok note=""
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        st=timeout note="killed after ${limit} s"
    elif [[ $rc -ne 0 ]]; then
        st=failed note="$(grep -m1 -iE 'error|out of memory|Traceback' "$OUT_DIR/$log" | cut -c1-300 || true)"
        [[ -n "$note" || $rc -ne 1 ]] || note="a check failed (its record has \"ok\": false)"
    fi
    status_line "$name" "$st" "$rc" "$secs" "$log" "$note"
    if [[ $st != ok ]]; then
        step "$name: ${st^^} (exit $rc after ${secs} s; $OUT_DIR/$log):"
        tail -n 15 "$OUT_DIR/$log" | sed 's/^/    /' >&2
        FAILED+=("$name ($st)")
        return 1
    fi
    step "$name: ok (${secs} s)"
}

# skip_part NAME WHY: a step that cannot run, which fails the run; except
# the torch steps of a CPU smoke run without torch (status n/a).
skip_part() {
    if [[ "$SMOKE" == 1 && "$2" == *"no torch"* ]]; then
        step "$1: n/a ($2)"
        status_line "$1" n/a 0 0 "" "$2"
        return 0
    fi
    step "$1: SKIPPED ($2)"
    status_line "$1" skipped 0 0 "" "$2"
    FAILED+=("$1 (skipped: $2)")
}

# A failed preflight check: in FAILED, on stderr and in the summary's steps.
preflight_fail() {
    step "FAILED: $1"
    FAILED+=("preflight: $1")
    status_line preflight failed 1 0 "" "$1"
}

# Background sampling of the GPU's used memory (MiB), 100 ms apart.
POLL_PID=""
poll_start() { # name
    POLL_FILE="$WORK/mem.$1.txt"
    : >"$POLL_FILE"
    [[ "$HAVE_SMI" == 1 ]] || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" -lms 100 \
        >"$POLL_FILE" 2>/dev/null &
    POLL_PID=$!
    sleep 0.3
}
poll_stop() { # name
    if [[ -n "$POLL_PID" ]]; then
        kill "$POLL_PID" 2>/dev/null || true
        wait "$POLL_PID" 2>/dev/null || true
        POLL_PID=""
    fi
    "$PY_PLAIN" "$HELPER" memory "$POLL_FILE" --what "$1" --baseline "$MEM_BASELINE" >>"$RESULTS" \
        || FAILED+=("memory of $1")
}

run() {
    SMOKE=0
    local out_arg=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --cpu-smoke) SMOKE=1 ;;
            -*) die "run: unknown option $1" ;;
            *) [[ -z "$out_arg" ]] || die "run: one OUT_DIR only"; out_arg="$1" ;;
        esac
        shift
    done
    set_sizes
    OUT_DIR="${out_arg:-${OUT:-/tmp/repro-gpu-check-out}}"
    WORK="${GPU_CHECK_WORK:-/tmp/repro-gpu-check-work}"
    BUDGET="${GPU_CHECK_BUDGET_S:-460}"
    DEADLINE=$(($(now) + BUDGET))
    FAILED=()
    mkdir -p "$OUT_DIR/logs" "$WORK"
    OUT_DIR="$(cd "$OUT_DIR" && pwd)"
    RESULTS="$OUT_DIR/results.jsonl"
    : >"$RESULTS"
    cd "$OUT_DIR"
    # Python for the steps that need no torch (summary, memory, model files).
    PY_PLAIN=python3
    command -v "$PY_PLAIN" >/dev/null 2>&1 || PY_PLAIN="$PY"
    step "run ($([[ $SMOKE == 1 ]] && echo 'CPU smoke' || echo GPU)): results in $OUT_DIR, scratch in $WORK, budget ${BUDGET} s"
    local bin
    BIN_LD_PATH="${LD_LIBRARY_PATH:-}"
    if [[ "$SMOKE" == 1 ]]; then
        bin="${GPU_CHECK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/gpu_check}"
    elif [[ -n "${GPU_CHECK_BIN:-}" ]]; then
        bin="$GPU_CHECK_BIN"
    else
        bin="$WORK/gpu_check"
        unpack_binary "$bin" || bin="$CARRY/gpu_check.xz (not unpacked)"
    fi

    # -- preflight ---------------------------------------------------------
    HAVE_SMI=0 GPU_INDEX=0 MEM_BASELINE=-1
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >"$OUT_DIR/logs/nvidia-smi.txt" 2>&1; then
        HAVE_SMI=1
        nvidia-smi >>"$OUT_DIR/logs/nvidia-smi.txt" 2>&1 || true
        MEM_BASELINE="$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_INDEX" | head -1 | tr -d ' ')"
    elif [[ "$SMOKE" == 0 ]]; then
        preflight_fail "nvidia-smi is missing or fails: no GPU visible (peak memory cannot be measured)"
    fi
    local have_bin=1
    if [[ ! -x "$bin" ]]; then
        have_bin=0
        if [[ "$SMOKE" == 1 ]]; then
            preflight_fail "no binary at $bin (cargo build --release --example gpu_check)"
        else
            preflight_fail "no binary: $bin (scripts/gpu-check.sh build, then carry .gpu-check)"
        fi
    elif [[ "$SMOKE" == 0 ]]; then
        libs_for "$bin" || { have_bin=0; preflight_fail "the binary's shared libraries (logs/ldd.txt)"; }
        if [[ -f "$CARRY/sources.sha256" ]] && ! (cd "$ROOT" && sha256sum --quiet -c "$CARRY/sources.sha256") \
            >"$OUT_DIR/logs/stale-sources.txt" 2>&1; then
            step "WARNING: the binary was built from other sources than this tree's (logs/stale-sources.txt); figures are of the build's commit"
            record "$("$PY_PLAIN" -c 'import json; print(json.dumps({"part": "warning", "note": "the binary was built from sources that differ from this tree (logs/stale-sources.txt)"}))')"
        fi
    fi
    [[ "$bin" == "$WORK/gpu_check" ]] && record "$("$PY_PLAIN" -c 'import json,sys; print(json.dumps(dict(json.load(open(sys.argv[1])), part="build")))' "$CARRY/BUILD.json")"
    local have_torch=1 torch_why="no torch"
    if ! "$PY" -c 'import torch, transformers' >"$OUT_DIR/logs/python.txt" 2>&1; then
        have_torch=0
        torch_why="no torch/transformers in $PY"
        [[ "$SMOKE" == 1 ]] && torch_why="no torch in $PY (CPU smoke run)"
        [[ "$SMOKE" == 1 ]] || preflight_fail "$torch_why (logs/python.txt)"
    elif [[ "$SMOKE" == 0 ]] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >>"$OUT_DIR/logs/python.txt" 2>&1; then
        have_torch=0 torch_why="torch sees no CUDA GPU"
        preflight_fail "$torch_why (logs/python.txt)"
    fi
    [[ $have_torch == 1 ]] && record "$("$PY" "$HELPER" env)"
    # The binary, with its libraries.
    local rb=(env "LD_LIBRARY_PATH=$BIN_LD_PATH" "$bin")
    if [[ $have_bin == 1 ]]; then
        run_part device 60 "${rb[@]}" device --device "$DEVICE" || have_bin=0
    fi

    # -- setup -----------------------------------------------------------
    local writer="$WRITER"
    if [[ "$writer" == transformers && $have_torch == 0 ]]; then
        writer=plain
    fi
    local gen_model="$WORK/$GEN_SHAPE" train_cfg="$WORK/$TRAIN_SHAPE/config.json"
    rm -rf "$gen_model" "$WORK/prompts.jsonl" "$WORK/$TRAIN_SHAPE"
    run_part setup-config 30 "$PY_PLAIN" "$HELPER" make-config "$WORK/$TRAIN_SHAPE" --shape "$TRAIN_SHAPE" || true
    if [[ "$writer" == plain && "$GEN_SHAPE" == smol ]]; then
        skip_part setup-model "no transformers to write the SmolLM2-shaped model ($torch_why)"
    else
        local writer_py="$PY"
        [[ "$writer" == plain ]] && writer_py="$PY_PLAIN"
        run_part setup-model 90 bash -c "set -e
            '$writer_py' '$HELPER' make-model '$gen_model' --shape '$GEN_SHAPE' --writer '$writer'
            '$PY_PLAIN' '$HELPER' prompts '$WORK/prompts.jsonl' --model '$gen_model' --n ${BATCHES[-1]} --len $PROMPT_LEN" || true
    fi
    local have_model=0
    [[ -f "$gen_model/config.json" && -f "$WORK/prompts.jsonl" ]] && have_model=1

    # -- logits ------------------------------------------------------------
    if [[ $have_bin == 1 ]]; then
        run_part logits-tiny-llama 60 "${rb[@]}" logits --builtin tiny-llama --device "$DEVICE" --tolerance 0.05 || true
        run_part logits-tiny-gpt2 60 "${rb[@]}" logits --builtin tiny-gpt2 --device "$DEVICE" --tolerance 0.05 || true
        if [[ $have_model == 1 ]]; then
            run_part logits-smol 90 "${rb[@]}" logits --model "$gen_model" --label "$GEN_SHAPE (random weights)" --device "$DEVICE" || true
        fi
    else
        skip_part logits "no runnable binary"
    fi

    # -- generate ------------------------------------------------------------
    local batch_args=()
    for b in "${BATCHES[@]}"; do batch_args+=(--batch "$b"); done
    if [[ $have_model == 1 && $have_bin == 1 ]]; then
        run_part generate-repro 120 "${rb[@]}" generate --model "$gen_model" --prompt-ids "$WORK/prompts.jsonl" \
            --device "$DEVICE" "${batch_args[@]}" --new-tokens "$NEW_TOKENS" --repeats "$REPEATS" || true
    else
        skip_part generate-repro "no model or no runnable binary"
    fi
    if [[ $have_model == 1 && $have_torch == 1 ]]; then
        run_part generate-torch 100 "$PY" "$HELPER" generate --model "$gen_model" --prompt-ids "$WORK/prompts.jsonl" \
            --device "$DEVICE" "${batch_args[@]}" --new-tokens "$NEW_TOKENS" --repeats "$REPEATS" || true
    else
        skip_part generate-torch "$([[ $have_torch == 0 ]] && echo "$torch_why" || echo "no model")"
    fi

    # -- train -------------------------------------------------------------
    local mb="$MICRO_BATCH"
    local train_args=(--config "$train_cfg" --device "$DEVICE" --seq "$SEQ" --warmup-steps "$WARMUP_STEPS" --steps "$STEPS")
    if [[ -f "$train_cfg" && $have_bin == 1 ]]; then
        poll_start train-repro
        if ! run_part train-repro 120 "${rb[@]}" train "${train_args[@]}" --micro-batch "$mb" \
            && grep -qiE 'out of memory|OUT_OF_MEMORY|ALLOC_FAILED' "$OUT_DIR/logs/train-repro.log" 2>/dev/null && [[ $mb -gt 1 ]]; then
            poll_stop "train repro, micro-batch $mb (out of memory)"
            mb=$((mb / 2))
            step "repro ran out of memory: again at micro-batch $mb, and torch at $mb too"
            record "$("$PY_PLAIN" -c 'import json,sys; print(json.dumps({"part": "warning", "note": "repro ran out of GPU memory at micro-batch %s; both sides trained at %s" % (sys.argv[1], sys.argv[2])}))' "$((mb * 2))" "$mb")"
            poll_start train-repro-half
            # The out-of-memory step stays failed (a finding); the figures
            # come from this one.
            run_part "train-repro-mb$mb" 100 "${rb[@]}" train "${train_args[@]}" --micro-batch "$mb" || true
        fi
        poll_stop "train repro, micro-batch $mb"
    else
        skip_part train-repro "no config or no runnable binary"
    fi
    if [[ -f "$train_cfg" && $have_torch == 1 ]]; then
        local p
        for p in master autocast; do
            poll_start "train-torch-$p"
            run_part "train-torch-$p" 70 "$PY" "$HELPER" train "${train_args[@]}" --micro-batch "$mb" --precision "$p" || true
            poll_stop "train torch $p, micro-batch $mb"
        done
    else
        skip_part train-torch "$([[ $have_torch == 0 ]] && echo "$torch_why" || echo "no config")"
    fi

    # -- summary -----------------------------------------------------------
    "$PY_PLAIN" "$HELPER" summary "$RESULTS" --out "$OUT_DIR/summary.md" \
        || FAILED+=("summary")
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        {
            echo "gpu-check: FAILED steps (${#FAILED[@]}):"
            printf '  - %s\n' "${FAILED[@]}"
            echo "gpu-check: results so far in $OUT_DIR (summary.md, results.jsonl, logs/)"
        } >&2
        exit 1
    fi
    echo "gpu-check: OK: every step passed; $OUT_DIR/summary.md" >&2
}

# Unpacks .gpu-check/gpu_check.xz to $1 and checks it against BUILD.json.
unpack_binary() {
    local dst="$1"
    [[ -f "$CARRY/gpu_check.xz" && -f "$CARRY/BUILD.json" ]] || {
        step "FAILED: $CARRY/gpu_check.xz or BUILD.json missing (scripts/gpu-check.sh build; carry .gpu-check)"
        return 1
    }
    rm -f "$dst"
    "$PY_PLAIN" - "$CARRY/gpu_check.xz" "$dst" "$CARRY/BUILD.json" <<'EOF' || return 1
import hashlib, json, lzma, os, sys
data = lzma.decompress(open(sys.argv[1], "rb").read())
want = json.load(open(sys.argv[3]))["binary_sha256"]
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"gpu-check: FAILED: the unpacked binary's sha256 {got} is not BUILD.json's {want}")
open(sys.argv[2], "wb").write(data)
os.chmod(sys.argv[2], 0o755)
EOF
    step "unpacked the binary to $dst"
}

# Finds the binary's shared libraries: the driver's libcuda, and
# cuBLAS/cuBLASLt/cuRAND/NVRTC 13 from a CUDA 13 toolkit or the Python's
# nvidia wheels (torch's); libcudart.so.13 travels in .gpu-check/lib as a
# fallback. Sets BIN_LD_PATH, the LD_LIBRARY_PATH the binary runs with
# (only the binary: torch keeps its own libraries).
libs_for() {
    local bin="$1" dirs=() d missing site
    for d in "${CUDA_HOME:-/nonexistent}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
             /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/targets/x86_64-linux/lib; do
        [[ -d "$d" ]] && dirs+=("$d")
    done
    for site in $("$PY" -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        for d in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib "$site"/torch/lib; do
            [[ -d "$d" ]] && dirs+=("$d")
        done
    done
    dirs+=("$CARRY/lib")
    BIN_LD_PATH="${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}"; do BIN_LD_PATH="${BIN_LD_PATH:+$BIN_LD_PATH:}$d"; done
    LD_LIBRARY_PATH="$BIN_LD_PATH" ldd "$bin" >"$OUT_DIR/logs/ldd.txt" 2>&1 || true
    missing="$(grep 'not found' "$OUT_DIR/logs/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
    if [[ -n "$missing" ]]; then
        step "FAILED: the binary's libraries not found: $missing"
        step "searched: ${dirs[*]} (and the system's); needed: CUDA 13 cuBLAS, cuRAND and NVRTC (a CUDA 13 toolkit, or pip install nvidia-cublas nvidia-curand nvidia-cuda-nvrtc of CUDA 13 into $PY's environment) and the driver's libcuda.so.1"
        return 1
    fi
    step "libraries resolved (logs/ldd.txt)"
}

case "${1:-}" in
    build) shift; build "$@" ;;
    run) shift; run "$@" ;;
    -h | --help | help | "") usage ;;
    *) die "unknown mode '$1' (build | run; --help)" ;;
esac
