#!/usr/bin/env bash
# bench/serve/run.sh — serve one model and measure it with `kiln perf`.
#
#   bench/serve/run.sh MODEL.onnx [CONFIG.json] [-- kiln perf options]
#
# Builds a throw-away repository (model "bench", version 1), starts
# `kiln serve` on a free loopback port, waits until ready, prints the CPU and
# the effective model config, runs kiln perf (default: closed loop
# 1,2,4,8,16 for 5 s each; pass e.g. -- --rate 500 --distribution poisson for
# open loop), and stops the server with SIGTERM. Speed goals live here, never
# in timed tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN:-$here/../../build/kiln}
[ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
model=$1; shift
config=
if [ $# -ge 1 ] && [ "$1" != "--" ]; then config=$1; shift; fi
[ "${1:-}" = "--" ] && shift
perf_args=("$@")
[ ${#perf_args[@]} -gt 0 ] || perf_args=(--concurrency 1,2,4,8,16 --seconds 5)

repo=$(mktemp -d /tmp/kiln-bench-serve-XXXXXX)
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$repo"' EXIT
mkdir -p "$repo/bench/1"
cp "$model" "$repo/bench/1/$(basename "$model" | sed 's/.*\.kiln$/model.kiln/;s/.*\.onnx$/model.onnx/')"
[ -n "$config" ] && cp "$config" "$repo/bench/config.json"

out=$repo/serve.log
"$kiln" serve --model-repository "$repo" --http-port 0 >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "kiln serve: ready" "$out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$out"; exit 1; }
  sleep 0.1
done
port=$(sed -n 's/^kiln serve: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$out")
url=http://127.0.0.1:$port
echo "# cpu: $(nproc) cores usable, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
curl -s "$url/v2/models/bench/config"; echo
"$kiln" perf --url "$url" --model bench "${perf_args[@]}"
