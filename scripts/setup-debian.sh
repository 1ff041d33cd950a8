#!/usr/bin/env bash
# setup-debian.sh — installs every Debian package that building kiln, its tests,
# the sanitizer build and the libFuzzer target need. Idempotent and quiet:
# when everything is already installed it does nothing (no network at all).
# Runs as root (CI); uses sudo only when not root.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  clang libomp-dev            # libFuzzer target (clang -fsanitize=fuzzer) + OpenMP for clang
  libdnnl-dev                 # oneDNN 2.6
  protobuf-c-compiler libprotobuf-c-dev
  libpng-dev libjpeg-dev libjpeg62-turbo-dev
  libmicrohttpd-dev libjson-c-dev libcurl4-openssl-dev
  libssl-dev                  # SHA-256 of source models in compiled plans (libcrypto)
  nodejs
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${PKGS[@]}"; do
  # "install ok installed" only for fully installed packages
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
# npm: the nodejs builds from some repositories ship npm themselves and
# conflict with Debian's npm package; install it only when the command is absent.
need_npm=0
if ! command -v npm >/dev/null 2>&1; then
  need_npm=1
fi

if [ "${#missing[@]}" -eq 0 ] && [ "$need_npm" -eq 0 ]; then
  echo "setup-debian: all packages present"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup-debian: installing ${missing[*]}$([ "$need_npm" -eq 1 ] && echo " npm")"
$SUDO apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$need_npm" -eq 1 ] && ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
echo "setup-debian: done"
