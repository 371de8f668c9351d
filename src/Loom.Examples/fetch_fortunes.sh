#!/usr/bin/env bash
# Fetches the language model example's text: Debian's `fortunes` package (English
# fortune cookies: quotations, literature, jokes), version 1:1.99.1-7.3, checked by the
# SHA256 of the .deb and of the text made from it (every cookie file but the binary
# indexes and ascii-art, in C-locale name order). Usage: fetch_fortunes.sh DATA_DIR
set -euo pipefail
DATA=$1
VERSION=1:1.99.1-7.3
DEB_SHA256=41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5
TEXT_SHA256=cf306156a57de55995b90d6e959189a5b6b1920e19f7e0c23425984027d6a7b8
out="$DATA/fortunes/fortunes.txt"
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
[ "$(sha "$out")" = "$TEXT_SHA256" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "==> fetching the text corpus (Debian package fortunes=$VERSION)" >&2
if ! (cd "$tmp" && apt-get download -q "fortunes=$VERSION" >/dev/null 2>&1); then
  # A fresh machine may not have the package index yet.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
  (cd "$tmp" && apt-get download -q "fortunes=$VERSION" >/dev/null) ||
    { echo "could not download Debian's fortunes=$VERSION (apt-get download)" >&2; exit 1; }
fi
deb=$(ls "$tmp"/fortunes_*.deb)
[ "$(sha "$deb")" = "$DEB_SHA256" ] ||
  { echo "$deb: SHA256 $(sha "$deb") is not the expected $DEB_SHA256" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/x"
mkdir -p "$DATA/fortunes"
(cd "$tmp/x/usr/share/games/fortunes" &&
  for f in $(ls | LC_ALL=C sort); do
    case "$f" in *.dat | *.u8 | ascii-art) continue ;; esac
    [ -L "$f" ] || cat "$f"
  done) > "$out.tmp"
[ "$(sha "$out.tmp")" = "$TEXT_SHA256" ] ||
  { echo "the text made from $deb has SHA256 $(sha "$out.tmp"), not $TEXT_SHA256" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -c < "$out") characters)" >&2
