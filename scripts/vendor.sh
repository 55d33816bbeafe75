#!/usr/bin/env bash
# Maintainer target (`make vendor`): fetch front-end packages from the npm registry and commit the
# built files with their licences under static/vendor/. `make run`, `make test` and CI never need
# node: they use the committed copies. static/vendor/VERSIONS.txt records versions and checksums.
#
# Files are copied byte for byte; nothing here edits third-party code. Each package is packed once,
# however many of its files are listed, and its LICENSE goes next to the first destination.
set -euo pipefail
cd "$(dirname "$0")/.."
out=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The Bitrix24 "Air" design tokens: plain CSS custom properties (colours, type, spacing, radii,
# shadows), no component rules. The package's index.css imports ~1.3 MB (dark and edge themes,
# component styles); the app uses only the light theme, so only these three files are taken:
#   001 palette, type scale, spacing, radii, shadows;  003 light-theme semantic colours;
#   007 box shadows, border widths and the radius aliases (--ui-btn-radius, --ui-field-border-radius).
# They are linked from templates/base.html in this order, before static/css/app.css.
b24ui=@bitrix24/b24ui-nuxt@2.13.0
b24ui_tokens=dist/runtime/air-design-tokens

# package@version  file-in-package  destination (under static/vendor/)
packages=(
  "htmx.org@2.0.11 dist/htmx.min.js htmx/htmx.min.js"
  "$b24ui $b24ui_tokens/001_b24_global.css b24ui/001_b24_global.css"
  "$b24ui $b24ui_tokens/003_b24_context_light.css b24ui/003_b24_context_light.css"
  "$b24ui $b24ui_tokens/007_b24_global.css b24ui/007_b24_global.css"
)

: > "$work/versions"
for entry in "${packages[@]}"; do
  read -r spec file dest <<<"$entry"
  # One work directory per package spec ("@bitrix24/b24ui-nuxt@2.13.0" -> "bitrix24_b24ui-nuxt2.13.0").
  pkgdir="$work/$(echo "$spec" | tr -d '@' | tr '/' '_')"
  if [[ ! -d "$pkgdir" ]]; then
    mkdir -p "$pkgdir"
    (cd "$pkgdir" && npm pack --silent "$spec" >/dev/null)
    tar -xzf "$pkgdir"/*.tgz -C "$pkgdir"
    licence_pending=1
  else
    licence_pending=0
  fi
  mkdir -p "$out/$(dirname "$dest")"
  cp "$pkgdir/package/$file" "$out/$dest"
  if [[ $licence_pending == 1 ]]; then
    cp "$pkgdir/package/LICENSE"* "$out/$(dirname "$dest")/" 2>/dev/null \
      || { echo "no LICENSE in $spec" >&2; exit 1; }
  fi
  echo "$spec $dest sha256:$(sha256sum "$out/$dest" | cut -d' ' -f1)" >> "$work/versions"
  echo "vendored $spec $file -> $out/$dest ($(wc -c < "$out/$dest") bytes)"
done
sort "$work/versions" > "$out/VERSIONS.txt"
