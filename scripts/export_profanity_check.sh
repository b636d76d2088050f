#!/usr/bin/env bash
# Exports alt-profanity-check 1.9.1 (MIT) to data/scorers/profanity_check/ and
# regenerates the Rust cross-check fixtures in tests/data/toxicity/.
#
# Run once, from the repository root: scripts/export_profanity_check.sh
# Needs python3 (3.11) and pip access to PyPI. Everything else (the wheel,
# a venv with exactly scikit-learn 1.9.1, whose pickles the wheel holds)
# lives in a throwaway directory under /tmp and is deleted afterwards.
set -euo pipefail

VERSION=1.9.1
WHEEL_SHA256=cccb8ce072306bac21188670777a25cfb1de978aa8c7a93c8e4a43c03b3945c3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/data/scorers/profanity_check"
FIX="$ROOT/tests/data/toxicity"
TMP=$(mktemp -d /tmp/profanity-export.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

pip download --quiet --no-deps -d "$TMP/wheels" "alt-profanity-check==$VERSION"
WHEEL="$TMP/wheels/alt_profanity_check-$VERSION-py3-none-any.whl"
echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c -

python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet scikit-learn==1.9.1 joblib==1.6.0
"$TMP/venv/bin/pip" install --quiet --no-deps "$WHEEL"

mkdir -p "$OUT" "$FIX"
(cd "$TMP" && unzip -q -o "$WHEEL" 'alt_profanity_check-*.dist-info/licenses/LICENSE')
cp "$TMP"/alt_profanity_check-$VERSION.dist-info/licenses/LICENSE "$OUT/LICENSE"
"$TMP/venv/bin/python" "$ROOT/scripts/export_profanity_check.py" export \
    "$OUT/profanity_check.json" "$WHEEL_SHA256"
"$TMP/venv/bin/python" "$ROOT/scripts/export_profanity_check.py" reference \
    "$ROOT/data/rtp_subset" "$FIX"
sha256sum "$OUT/profanity_check.json"
ls -l "$OUT" "$FIX"
