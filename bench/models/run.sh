#!/usr/bin/env bash
# bench/models/run.sh — kiln vs ONNX Runtime on real models, side by side.
#
#   bench/models/run.sh [options] [MODEL...]
#
# MODEL is a folder name under ../shared/models (resnet50, bert_mini, ...) or a
# path to an .onnx file; default: every ../shared/models/*/model.onnx.
# For each model and batch size it runs `kiln bench --json` and
# `../shared/peers/ort bench` alternately, ROUNDS times each, in this one shell
# session (same machine state for both), and prints the median p50 latency of
# each and the median over rounds of the per-round ratio kiln_p50 / ort_p50
# (below 1: kiln is faster), and kiln's resident memory after its runs
# (kiln_rss_mb: median over rounds of bench's rss_mb).
#
# Options (defaults in brackets):
#   --rounds R       alternating rounds per model and batch size [5]
#   --threads T      intra-op threads for both runtimes [nproc]
#   --batch B,...    batch sizes [1]
#   --iters N        timed runs per round [100]
#   --warmup W       warm-up runs per round [10]
#   --dim SYM=V      passed to both (repeatable)
#   --raw FILE       also append every JSON line (both runtimes) to FILE
#   --kiln PATH      kiln binary [build/kiln]
#   --instances N    kiln only: N pinned sessions of the model in one process
#                    (kiln bench --instances; --threads is then split among them)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/.." && pwd)/shared

rounds=5 threads=$(nproc) batches=1 iters=100 warmup=10 raw="" kiln="$root/build/kiln"
dims=() models=() kinst=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batch) batches=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --dim) dims+=(--dim "$2"); shift 2 ;;
    --raw) raw=$2; shift 2 ;;
    --kiln) kiln=$2; shift 2 ;;
    --instances) kinst=(--instances "$2"); [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "run.sh: '$2' is not a positive integer" >&2; exit 2; }; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
for v in "$rounds" "$threads" "$iters" "$warmup"; do
  [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || { echo "run.sh: '$v' is not a positive integer" >&2; exit 2; }
done

[ -x "$kiln" ] || { echo "run.sh: $kiln not found; build first: cmake -S . -B build && make -C build -j2" >&2; exit 2; }
ort="$shared/peers/ort"
have_ort=1
if [ ! -x "$ort" ]; then
  echo "run.sh: $ort not found: ONNX Runtime columns will be empty" >&2; have_ort=0
elif ! [ -d "${KILN_PEERS_HOME:-$HOME/.cache/kiln-peers}/node_modules/onnxruntime-node" ]; then
  echo "run.sh: ONNX Runtime is not set up (run '$ort setup' once): its columns will be empty" >&2; have_ort=0
fi

# model arguments -> .onnx paths
paths=()
if [ ${#models[@]} -eq 0 ]; then
  for f in "$shared"/models/*/model.onnx; do [ -f "$f" ] && paths+=("$f"); done
else
  for m in "${models[@]}"; do
    if [ -f "$m" ]; then paths+=("$m")
    elif [ -f "$shared/models/$m/model.onnx" ]; then paths+=("$shared/models/$m/model.onnx")
    else echo "run.sh: no model '$m' (not a file, not a folder of $shared/models)" >&2; exit 2
    fi
  done
fi
[ ${#paths[@]} -gt 0 ] || { echo "run.sh: no models found under $shared/models" >&2; exit 2; }

label() { local d; d=$(basename "$(dirname "$1")"); [ "$(basename "$1")" = model.onnx ] && echo "$d" || basename "$1" .onnx; }
# the value of a flat numeric JSON key: json_num KEY <<< LINE
json_num() { sed -n "s/.*\"$1\":\(-\{0,1\}[0-9.eE+-]*\).*/\1/p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '# kiln vs ONNX Runtime: median p50 latency (ms) over %d alternating rounds; each round: warmup %d, %d timed runs, %d threads\n' \
  "$rounds" "$warmup" "$iters" "$threads"
printf '# kiln %s, %s\n' "$("$kiln" --version 2>/dev/null | awk '{print $2}')" "$(uname -m) $(nproc) CPUs"
[ ${#kinst[@]} -gt 0 ] && printf '# kiln: %s instances sharing the %d threads\n' "${kinst[1]}" "$threads"
printf '%-18s %5s %7s %12s %12s %10s %12s  %s\n' model batch threads kiln_p50_ms ort_p50_ms kiln/ort kiln_rss_mb note
IFS=, read -r -a blist <<< "$batches"
for path in "${paths[@]}"; do
  name=$(label "$path")
  for b in "${blist[@]}"; do
    : > "$tmp/k"; : > "$tmp/o"; : > "$tmp/r"; : > "$tmp/m"; note=""
    for ((r = 1; r <= rounds; r++)); do
      kl=$("$kiln" bench "$path" --json --batch "$b" --threads "$threads" --iters "$iters" --warmup "$warmup" "${kinst[@]}" "${dims[@]}" 2>"$tmp/kerr" | tail -1)
      kp=$(json_num p50_ms <<< "$kl")
      km=$(json_num rss_mb <<< "$kl")
      [ -n "$km" ] && echo "$km" >> "$tmp/m"
      [ -n "$raw" ] && [ -n "$kp" ] && echo "$kl" >> "$raw"
      # the reason, without the repeated "kiln bench: ... MODEL: " prefix
      [ -n "$kp" ] || note="kiln: $(grep -v '^kiln bench: note' "$tmp/kerr" | tail -1 | sed 's/^kiln bench: //' | awk -v p="$path: " '{ i = index($0, p); print (i ? substr($0, 1, i - 1) substr($0, i + length(p)) : $0) }' | cut -c1-160)"
      op=""
      if [ $have_ort = 1 ]; then
        ol=$("$ort" bench "$path" --batch "$b" --threads "$threads" --iters "$iters" --warmup "$warmup" "${dims[@]}" 2>"$tmp/oerr" | tail -1)
        op=$(json_num p50_ms <<< "$ol")
        [ -n "$op" ] || note="${note:+$note; }ort: $(tail -1 "$tmp/oerr" | cut -c1-120)"
        [ -n "$raw" ] && [ -n "$op" ] && echo "$ol" >> "$raw"
      fi
      [ -n "$kp" ] && echo "$kp" >> "$tmp/k"
      [ -n "$op" ] && echo "$op" >> "$tmp/o"
      [ -n "$kp" ] && [ -n "$op" ] && awk -v k="$kp" -v o="$op" 'BEGIN { if (o > 0) printf "%.4f\n", k / o }' >> "$tmp/r"
      [ -z "$kp" ] && [ -z "$op" ] && break   # neither runs this model: no point repeating
      [ -z "$kp" ] && [ $have_ort = 0 ] && break
    done
    printf '%-18s %5s %7s %12s %12s %10s %12s  %s\n' "$name" "$b" "$threads" \
      "$(median < "$tmp/k")" "$(median < "$tmp/o")" "$(median < "$tmp/r")" "$(median < "$tmp/m")" "$note"
  done
done
