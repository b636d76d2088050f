#!/usr/bin/env bash
# The no-op benchmark: repro vs DVC and Snakemake on generated pipelines of
# 1,000 and 10,000 nodes (a chain, and a fan-out sweep feeding one report),
# plus hashing a 1 GiB `file:` input. Manual only: CI never runs it (it takes
# up to ~60 minutes on the 2-core machine and installs DVC and Snakemake into
# a throw-away venv).
#
#   bench/run.sh                 # N=100,300,1000,10000, 5 runs (20-60 min: peers
#                                # whose first run would pass 10 min are skipped)
#   bench/run.sh --quick         # N<=1000 only, 3 runs (~15 min)
#   bench/run.sh --peers none    # repro only (a few minutes)
#   bench/run.sh --out FILE      # also write the markdown report to FILE
#
# Any other option goes to bench/bench.py (see `python3 bench/bench.py -h`):
# --sizes 1000,10000, --runs 5, --peer-limit 600, --budget 60, --no-hash, ...
#
# Environment:
#   BENCH_VENV     venv holding dvc and snakemake (default /tmp/repro-bench-venv;
#                  created with `pip install dvc snakemake` when missing). They
#                  are benchmark peers only, never dependencies of repro.
#   BENCH_SCRATCH  scratch directory, emptied first (default /tmp/repro-bench)
#   BENCH_SHARED   directory with gen_peers.py and measure.py
#                  (default ../shared/bench beside the repository)
#   BENCH_REPRO    a repro binary to time instead of building this checkout
#                  (e.g. a release build of another commit; BENCH_REPRO_DESC
#                  says which, in the report)
#   BENCH_NO_APT=1 do not try `apt-get install b3sum` when b3sum is missing
#
# Results: a markdown table on stdout and in $BENCH_SCRATCH/results.md; raw
# per-run figures in $BENCH_SCRATCH/results.jsonl. BENCHMARKS.md holds the
# last published run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-/tmp/repro-bench-venv}"
SCRATCH="${BENCH_SCRATCH:-/tmp/repro-bench}"
SHARED="${BENCH_SHARED:-$ROOT/../shared/bench}"

if [[ "${CI:-}" == "true" ]]; then
    echo "bench/run.sh: refusing to run under CI (manual benchmark)" >&2
    exit 0
fi
for f in gen_peers.py measure.py; do
    [[ -f "$SHARED/$f" ]] || { echo "bench/run.sh: $SHARED/$f not found (set BENCH_SHARED)" >&2; exit 2; }
done
SHARED="$(cd "$SHARED" && pwd)"

quick=0
peers="dvc,snakemake"
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; args+=("$1") ;;
        --peers) peers="$2"; args+=("$1" "$2"); shift ;;
        --peers=*) peers="${1#--peers=}"; args+=("$1") ;;
        *) args+=("$1") ;;
    esac
    shift
done

if [[ -n "${BENCH_REPRO:-}" ]]; then
    REPRO="$(realpath "$BENCH_REPRO")"
    echo "== using $REPRO (BENCH_REPRO; not rebuilt)" >&2
else
    echo "== building repro (release)" >&2
    (cd "$ROOT" && cargo build --release --locked --quiet)
    REPRO="$ROOT/target/release/repro"
fi

if [[ "$peers" != "none" && "$peers" != "" ]]; then
    if [[ ! -x "$VENV/bin/dvc" || ! -x "$VENV/bin/snakemake" ]]; then
        echo "== creating $VENV with dvc and snakemake (benchmark only)" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet dvc snakemake
    fi
fi

if ! command -v b3sum >/dev/null 2>&1 && [[ -z "${BENCH_NO_APT:-}" ]] \
    && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing b3sum (Debian) for the hashing comparison" >&2
    (apt-get install -y -q b3sum >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q b3sum >/dev/null 2>&1; }) \
        || echo "   b3sum not installable: hashing is compared with cat read speed" >&2
fi

cmd="bench/run.sh"
[[ ${#args[@]} -gt 0 ]] && cmd+=" ${args[*]}"
python3 "$ROOT/bench/bench.py" --repro "$REPRO" --venv "$VENV" --scratch "$SCRATCH" \
    --shared "$SHARED" --command "$cmd" ${args[@]+"${args[@]}"}
echo "results: $SCRATCH/results.md, raw: $SCRATCH/results.jsonl" >&2

# Rendering the paper's reports from a warm cache (tables, figures, page):
# a copy of pipelines/paper.yaml in a scratch project (with the repository's
# data/, as a clone has it), timed with measure.py. Every timed command is
# first run once, untimed: if it fails, or does not do what its row says,
# the benchmark stops with its output instead of timing a failure.
report_dir="$SCRATCH/report"
rm -rf "$report_dir" && mkdir -p "$report_dir/pipelines"
cp -r "$ROOT/pipelines/paper.yaml" "$ROOT/pipelines/published" "$report_dir/pipelines/"
cp -r "$ROOT/templates" "$report_dir/"
ln -s "$ROOT/data" "$report_dir/data"
checked() {  # checked EXPECTED CMD...: runs CMD once in $report_dir; stops on failure
    local expected="$1" out; shift
    if ! out=$(cd "$report_dir" && "$@" 2>&1); then
        printf 'bench/run.sh: `%s` failed in %s:\n%s\n' "$*" "$report_dir" "$out" >&2
        exit 1
    fi
    if [[ "$out" != *"$expected"* ]]; then
        printf 'bench/run.sh: `%s` did not print "%s":\n%s\n' "$*" "$expected" "$out" >&2
        exit 1
    fi
}
checked "repro report: " "$REPRO" report -p paper
# A real re-render: before each timed run (untimed, measure.py --prepare) the
# records of the 8 report nodes are dropped, so `repro report` renders all of
# them again from the cached inputs.
drop='grep -l "\"op\": \"report\." cache/records/*.json | xargs rm -f'
{
    echo
    echo "## Rendering the paper's reports (warm cache)"
    echo
    echo "| what | median wall ms | peak RSS MiB |"
    echo "|---|---:|---:|"
    for what in noop rerender; do
        if [[ $what == noop ]]; then
            prepare=":"; expected="0 rendered"
            label="\`repro report -p paper\` (all cached: nothing to render)"
        else
            prepare="$drop"; expected="8 rendered"
            label="\`repro report -p paper\` after dropping the 8 report nodes' records (re-render 3 tables, 4 figures as SVG+PNG, 1 page)"
        fi
        (cd "$report_dir" && bash -c "$prepare")
        checked "$expected" "$REPRO" report -p paper
        argv=("$REPRO" report -p paper)
        out=$(python3 "$SHARED/measure.py" -r 5 -w 1 --prepare "$prepare" --cwd "$report_dir" -- "${argv[@]}" 2>&1)
        [[ "$out" == *"exit codes [0]"* ]] || { printf 'bench/run.sh: a timed run failed:\n%s\n' "$out" >&2; exit 1; }
        med=$(echo "$out" | grep -E "wall" | head -1 | grep -oE "[0-9.]+" | sed -n 2p)
        out=$(python3 "$SHARED/measure.py" -r 3 -w 0 --prepare "$prepare" --cwd "$report_dir" -- "${argv[@]}" 2>&1)
        [[ "$out" == *"exit codes [0]"* ]] || { printf 'bench/run.sh: a timed run failed:\n%s\n' "$out" >&2; exit 1; }
        rss=$(echo "$out" | grep -iE "rss|MiB" | grep -oE "[0-9.]+" | sed -n 2p)
        echo "| $label | $(python3 -c "print(round(float('${med:-0}')*1000))") | ${rss:-} |"
    done
} | tee -a "$SCRATCH/results.md"
