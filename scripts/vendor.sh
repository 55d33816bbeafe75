#!/usr/bin/env bash
# Maintainer target (`make vendor`): fetch front-end packages from the npm registry and commit the
# built files with their licences under static/vendor/. `make run`, `make test` and CI never need
# node: they use the committed copies. static/vendor/VERSIONS.txt records versions and checksums.
set -euo pipefail
cd "$(dirname "$0")/.."
out=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# package@version  file-in-package  destination
packages=(
  "htmx.org@2.0.11 dist/htmx.min.js htmx/htmx.min.js"
)

: > "$work/versions"
for entry in "${packages[@]}"; do
  read -r spec file dest <<<"$entry"
  name=${spec%@*}
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tgz=$(ls "$work"/*.tgz | head -n 1)
  mkdir -p "$work/x" && tar -xzf "$tgz" -C "$work/x"
  mkdir -p "$out/$(dirname "$dest")"
  cp "$work/x/package/$file" "$out/$dest"
  cp "$work/x/package/LICENSE"* "$out/$(dirname "$dest")/" 2>/dev/null || true
  echo "$spec $dest sha256:$(sha256sum "$out/$dest" | cut -d' ' -f1)" >> "$work/versions"
  rm -rf "$work/x" "$tgz"
  echo "vendored $name -> $out/$dest"
done
sort "$work/versions" > "$out/VERSIONS.txt"
