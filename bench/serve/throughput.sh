#!/usr/bin/env bash
# bench/serve/throughput.sh — served throughput against the best offline
# throughput, and tail latency at 70% of it. For a quiet machine; it prints
# its figures and every command it ran.
#
#   bench/serve/throughput.sh [--model M.onnx] [--config config.json]
#                             [--seconds 10] [--smoke] [--kiln PATH]
#
#  1. offline: kiln bench MODEL --batch 1,2,4,8 --threads 1 --instances N
#     (N = usable cores, one single-threaded instance per core; when this
#     kiln bench has no --instances: one session with --threads N), best
#     throughput over the batch sizes;
#  2. served: kiln serve with dynamic batching (max_batch_size 8, 2 ms queue
#     delay) and one single-core instance per core, driven by kiln perf
#     closed loop at rising concurrency (binary tensors); best throughput;
#     prints served / offline (target >= 0.9);
#  3. at 70% of the served throughput with Poisson arrivals (kiln perf --rate
#     R --distribution poisson, 20 s): p99 / p50 of the latency (target <= 2).
#
# Default model: ../shared/models/resnet50/model.onnx (relative to the source
# tree). --smoke: 3 bench iterations, 2 s per level, 3 s of Poisson — checks
# that the script runs, the figures mean nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN:-$here/../../build/kiln}
model=$here/../../../shared/models/resnet50/model.onnx
config= seconds=10 poisson_s=20 smoke=0
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --smoke) smoke=1; seconds=2; poisson_s=3; shift ;;
    --kiln) kiln=$2; shift 2 ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "throughput.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$model" ] || { echo "throughput.sh: no model $model" >&2; exit 2; }
work=$(mktemp -d /tmp/kiln-throughput-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT
. "$here/lib.sh"
ncores=$(nproc)
echo "# cpu: $ncores cores usable, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "# model: $model"

# ---- 1. offline ---------------------------------------------------------------------
iters=(--seconds "$seconds")
[ "$smoke" = 1 ] && iters=(--iters 3 --warmup 1)
if "$kiln" bench --help 2>&1 | grep -q -- "--instances"; then
  offline_how="--threads 1 --instances $ncores"
  run "$kiln" bench "$model" --batch 1,2,4,8 --threads 1 --instances "$ncores" "${iters[@]}" --json \
    >"$work/bench.json"
else
  offline_how="--threads $ncores (this kiln bench has no --instances: one session, all cores)"
  echo "# note: kiln bench has no --instances here; offline figure is one session with --threads $ncores"
  run "$kiln" bench "$model" --batch 1,2,4,8 --threads "$ncores" "${iters[@]}" --json >"$work/bench.json"
fi
cat "$work/bench.json"
offline=0 offline_batch=0
while read -r line; do
  t=$(sed -n 's/.*"throughput_per_s":\([^,}]*\).*/\1/p' <<<"$line")
  b=$(sed -n 's/.*"batch":\([^,}]*\).*/\1/p' <<<"$line")
  [ -n "$t" ] || continue
  if awk -v t="$t" -v o="$offline" 'BEGIN { exit !(t > o) }'; then offline=$t; offline_batch=$b; fi
done <"$work/bench.json"
awk -v o="$offline" 'BEGIN { exit !(o > 0) }' || { echo "FAIL no offline throughput"; exit 1; }

# ---- 2. served, closed loop ----------------------------------------------------------
mkdir -p "$work/repo/m/1"
case $model in
  *.kiln) cp "$model" "$work/repo/m/1/model.kiln" ;;
  *) cp "$model" "$work/repo/m/1/model.onnx" ;;
esac
if [ -n "$config" ]; then cp "$config" "$work/repo/m/config.json"
else
  echo "{\"max_batch_size\": 8, \"dynamic_batching\": {\"max_queue_delay_us\": 2000},
         \"instance_group\": {\"count\": $ncores, \"cores\": 1}}" >"$work/repo/m/config.json"
fi
echo "# config.json: $(tr -s ' \n' ' ' <"$work/repo/m/config.json")"
start_server "$work/repo" "$work/serve.log"
# enough requests in flight to fill every instance's batch twice over
levels=$ncores c=$ncores
while [ "$c" -lt $((ncores * 16)) ]; do c=$((c * 2)); levels="$levels,$c"; done
[ "$smoke" = 1 ] && levels=$((ncores * 8))
run "$kiln" perf --url "$url" --model m --binary --concurrency "$levels" --seconds "$seconds" \
  --json "$work/closed.json" || true
served=0 served_c=0
while read -r line; do
  t=$(sed -n 's/.*"throughput":\([^,}]*\).*/\1/p' <<<"$line")
  l=$(sed -n 's/.*"level":\([^,}]*\).*/\1/p' <<<"$line")
  [ -n "$t" ] && [ "$t" != null ] || continue
  if awk -v t="$t" -v o="$served" 'BEGIN { exit !(t > o) }'; then served=$t; served_c=$l; fi
done <"$work/closed.json"
awk -v o="$served" 'BEGIN { exit !(o > 0) }' || { echo "FAIL no served throughput"; exit 1; }

# ---- 3. Poisson at 70% ----------------------------------------------------------------
rate=$(awk -v s="$served" 'BEGIN { printf "%.1f", s * 0.7 }')
run "$kiln" perf --url "$url" --model m --binary --rate "$rate" --distribution poisson --seconds "$poisson_s" \
  --json "$work/poisson.json" || true
p50=$(jget p50_ms "$work/poisson.json"); p99=$(jget p99_ms "$work/poisson.json")
errs=$(jget errors "$work/poisson.json")
rc=0; stop_server || rc=$?

ratio=$(awk -v s="$served" -v o="$offline" 'BEGIN { printf "%.3f", s / o }')
tail_ratio=$(awk -v a="$p99" -v b="$p50" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
verdict() { awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { ok = op == ">=" ? x >= t : x <= t; print ok ? "meets" : "MISSES" }'; }
echo
echo "== throughput: $(basename "$model"), $ncores cores =="
echo "offline best        $offline inferences/s (batch $offline_batch, kiln bench $offline_how)"
echo "served best         $served inferences/s (kiln perf closed loop, concurrency $served_c)"
echo "served / offline    $ratio   (target >= 0.9: $(verdict "$ratio" 0.9 ">="))"
echo "Poisson at 70%      $rate requests/s for $poisson_s s: p50 $p50 ms, p99 $p99 ms, errors $errs"
echo "p99 / p50           $tail_ratio   (target <= 2: $(verdict "$tail_ratio" 2 "<="))"
echo "server exit         $rc after SIGTERM"
[ "$smoke" = 1 ] && echo "(smoke run: durations too short for the figures to mean anything)"
exit 0
