#!/usr/bin/env bash
# Installs what moelab needs from Debian's packages.
#   scripts/setup.sh           build and test dependencies
#   scripts/setup.sh --torch   also python3-torch (the PyTorch mirror: fixtures and `make bench`)
#   scripts/setup.sh --check   installs only when something is missing (used by make)
#   scripts/setup.sh --fuzz    also clang, libFuzzer and LLVM's OpenMP (make fuzz)
set -euo pipefail
want_torch=0 check=0 want_fuzz=0
for a in "$@"; do
    case "$a" in
    --torch) want_torch=1 ;;
    --check) check=1 ;;
    --fuzz) want_fuzz=1 ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 1 ;;
    esac
done
pkgs=(gcc make libc6-dev libopenblas-openmp-dev libdnnl-dev libcjson-dev zlib1g-dev python3 python3-numpy)
# moelab report draws its charts with gnuplot; its tests load the page in headless chromium.
pkgs+=(gnuplot-nox chromium fonts-dejavu-core)
# Open MPI: `mpirun -np N build/moelab train ...` (the Makefile builds with it when present).
pkgs+=(libopenmpi-dev openmpi-bin)
[ "$want_torch" = 1 ] && pkgs+=(python3-torch)
[ "$want_fuzz" = 1 ] && pkgs+=(clang libclang-rt-14-dev libomp-dev)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any CBLAS will do for building; the OpenMP OpenBLAS is the one we tune for. oneDNN (libdnnl-dev)
# runs the bf16 matrix products.
have_cblas() { [ -e /usr/include/cblas.h ] || ls /usr/include/*/cblas.h >/dev/null 2>&1; }
if [ "$check" = 1 ] && [ "$want_torch" = 0 ] && [ "$want_fuzz" = 0 ] && command -v gcc >/dev/null && command -v make >/dev/null &&
    [ -e /usr/include/cjson/cJSON.h ] && [ -e /usr/include/zlib.h ] && [ -e /usr/include/oneapi/dnnl/dnnl.h ] && have_cblas &&
    command -v mpicc >/dev/null; then
    missing=()
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "moelab needs these Debian packages: ${missing[*]}" >&2
    echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
