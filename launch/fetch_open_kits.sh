#!/usr/bin/env bash
# Fetch the open drum kits that Debian's packages ship (see the README's "Data" section) and
# unpack them into a folder, without installing anything system-wide.
#
#   bash launch/fetch_open_kits.sh [DEST]
#
# DEST defaults to $DRUMLAYER_KITS or ~/.local/share/drumlayer/open-kits, which configs/snare.py
# searches by itself (as it does /usr/share when the packages are installed with apt-get).
set -euo pipefail

dest="${1:-${DRUMLAYER_KITS:-${XDG_DATA_HOME:-$HOME/.local/share}/drumlayer/open-kits}}"
packages=(hydrogen-drumkits hydrogen-data lmms-common fluid-soundfont-gm csound-soundfont
          timgm6mb-soundfont chuck-data)

if ! command -v apt-get >/dev/null; then
  echo "error: apt-get not found: this script needs a Debian or Ubuntu system." >&2
  echo "On other systems, point data.roots (or --roots) at your own sample folders." >&2
  exit 1
fi
if [ -f "$dest/.complete" ]; then
  echo "open kits already in $dest"
  exit 0
fi
mkdir -p "$dest"
debs="$(mktemp -d)"
trap 'rm -rf "$debs"' EXIT
cd "$debs"
if ! apt-get download "${packages[@]}" >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet; refreshing them needs root.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq
  fi
  apt-get download "${packages[@]}"
fi
for deb in ./*.deb; do
  echo "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$dest"
done
touch "$dest/.complete"
echo "open kits unpacked into $dest ($(du -sh "$dest" | cut -f1))"
