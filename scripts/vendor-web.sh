#!/usr/bin/env bash
# The dashboard's browser libraries (web/package.json, pinned by web/package-lock.json from the npm
# registry): `npm ci`, then copy the built files the page loads, with their licences, into
# src/patronus/dashboard/static/vendor/ (git-ignored; the wheel includes it as package data). Skipped
# when the copy is newer than the lock file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$here/web"
vendor="$here/src/patronus/dashboard/static/vendor"
stamp="$vendor/.installed"

if [[ -f "$stamp" && "$stamp" -nt "$web/package-lock.json" ]]; then
    exit 0
fi
command -v npm >/dev/null || { echo "error: npm is needed for the dashboard's libraries" >&2; exit 1; }
echo "==> installing the dashboard's browser libraries (npm ci)" >&2
(cd "$web" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$vendor"
mkdir -p "$vendor"
modules="$web/node_modules"
cp "$modules/cytoscape/dist/cytoscape.min.js" "$vendor/"
cp "$modules/cytoscape/LICENSE" "$vendor/cytoscape.LICENSE"
cp "$modules/uplot/dist/uPlot.iife.min.js" "$modules/uplot/dist/uPlot.min.css" "$vendor/"
cp "$modules/uplot/LICENSE" "$vendor/uPlot.LICENSE"
touch "$stamp"
