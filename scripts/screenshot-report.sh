#!/usr/bin/env bash
# Renders paper/report.html in headless Chromium to a PNG, to check that the
# report page looks right in a real browser.
#   bash scripts/screenshot-report.sh [HTML] [PNG]
# Needs Debian's chromium (installed here if missing and we are root).
set -euo pipefail
html=${1:-paper/report.html}
png=${2:-target/report-screenshot.png}
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "chromium is not installed: apt-get install chromium" >&2; exit 2
  fi
fi
mkdir -p "$(dirname "$png")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1280,4200 \
  --screenshot="$png" "file://$(realpath "$html")" >/dev/null 2>&1
test -s "$png"
echo "$png"
