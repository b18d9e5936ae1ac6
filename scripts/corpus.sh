#!/usr/bin/env bash
# Installs the Debian packages the debian-mix corpus is made of (corpus/debian-mix.json).
#   scripts/corpus.sh           installs the missing ones when run as root, else prints the
#                               `sudo apt-get install` line to run (and exits 1)
#   scripts/corpus.sh --check   only reports: exit 0 when all are installed, 1 otherwise
#   scripts/corpus.sh --list    prints the package names, one per line
# The names are read from the manifest (every "packages" array), so the two cannot drift.
# Then: build/moelab prepare --manifest corpus/debian-mix.json --out data/mix --vocab 4096
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFEST=${MANIFEST:-corpus/debian-mix.json}
mode=install
for a in "$@"; do
    case "$a" in
    --check) mode=check ;;
    --list) mode=list ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "corpus.sh: unknown option $a" >&2; exit 1 ;;
    esac
done
[ -r "$MANIFEST" ] || { echo "corpus.sh: cannot read $MANIFEST" >&2; exit 1; }

# "packages": ["a", "b"] arrays, each on one line in the manifest.
mapfile -t pkgs < <(grep -oE '"packages"[[:space:]]*:[[:space:]]*\[[^]]*\]' "$MANIFEST" |
    sed -E 's/^"packages"[[:space:]]*:[[:space:]]*\[//; s/\]$//' | tr ',' '\n' | tr -d ' "' | grep -v '^$' | sort -u)
[ ${#pkgs[@]} -gt 0 ] || { echo "corpus.sh: no packages found in $MANIFEST" >&2; exit 1; }
if [ "$mode" = list ]; then
    printf '%s\n' "${pkgs[@]}"
    exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    [ "$mode" = check ] || echo "corpus.sh: all ${#pkgs[@]} packages of $MANIFEST are installed"
    exit 0
fi
if [ "$mode" = check ] || [ "$(id -u)" != 0 ]; then
    echo "the $(basename "$MANIFEST" .json) corpus needs these Debian packages: ${missing[*]}" >&2
    echo "install them with:  sudo scripts/corpus.sh   (or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
fi
echo "corpus.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
