#!/usr/bin/env bash
# bench/serve/overhead.sh — what the server adds to a request: p50 end-to-end
# latency minus p50 compute, on a tiny model with binary tensors. For a quiet
# machine; prints its figures and every command it ran.
#
#   bench/serve/overhead.sh [--seconds 10] [--smoke] [--kiln PATH] [--gen PATH]
#
# The model is generated: y = x * 2 + 1, x float [batch, 4] (Mul, Add), one
# single-core instance, no queue delay. kiln perf runs a closed loop at
# concurrency 1 with binary tensors and reports the client's p50 end-to-end
# latency and the server's p50 compute time (interpolated in the server's
# compute-duration histogram, GET /metrics, whose buckets start at 10 us) and
# mean compute time (GET .../stats). Overhead = p50 end-to-end - p50 compute,
# target <= 150 us. Client and server share the machine, so the figure
# includes the client's own HTTP work. --smoke: 2 s, figures mean nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN:-$here/../../build/kiln}
gen=${KILN_GEN_MODEL:-$here/../../build/tests/serve/kiln_gen_model}
seconds=10 smoke=0
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --smoke) smoke=1; seconds=2; shift ;;
    --kiln) kiln=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "overhead.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/kiln-overhead-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT
. "$here/lib.sh"
echo "# cpu: $(nproc) cores usable, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
mkdir -p "$work/repo/tiny/1"
run "$gen" "$work/repo/tiny/1/model.onnx" affine
echo '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_us": 0},
       "instance_group": {"count": 1, "cores": 1}}' >"$work/repo/tiny/config.json"
echo "# config.json: $(tr -s ' \n' ' ' <"$work/repo/tiny/config.json")"
start_server "$work/repo" "$work/serve.log"
run "$kiln" perf --url "$url" --model tiny --binary --concurrency 1 --seconds "$seconds" --warmup 1 \
  --json "$work/perf.json" || true
rc=0; stop_server || rc=$?
j=$work/perf.json
p50=$(jget p50_ms "$j"); p99=$(jget p99_ms "$j")
cp50=$(jget server_compute_p50_ms "$j"); cmean=$(jget server_compute_ms "$j"); qmean=$(jget server_queue_ms "$j")
n=$(jget ok "$j"); errs=$(jget errors "$j")
# no figures (perf failed, or the server answered nothing): say so, never "meets"
over=$(awk -v a="$p50" -v b="$cp50" 'BEGIN { if (a == "" || b == "" || b == "null" || a == "null") print "nan"; else printf "%.1f", (a - b) * 1000 }')
verdict=$(awk -v o="$over" 'BEGIN { print (o != "nan" && o <= 150) ? "meets" : "MISSES" }')
echo
echo "== overhead: y = x*2+1 on [1,4], binary tensors, concurrency 1 =="
echo "requests            $n ok, $errs errors"
echo "end-to-end          p50 $p50 ms, p99 $p99 ms (client)"
echo "server compute      p50 $cp50 ms (histogram), mean $cmean ms; queue mean $qmean ms"
echo "overhead            $over us = p50 end-to-end - p50 compute   (target <= 150 us: $verdict)"
echo "server exit         $rc after SIGTERM"
[ "$smoke" = 1 ] && echo "(smoke run: too short for the figures to mean anything)"
exit 0
