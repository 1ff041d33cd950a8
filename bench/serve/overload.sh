#!/usr/bin/env bash
# bench/serve/overload.sh — `kiln serve` at several times its capacity, then
# SIGTERM under load. Loopback only; bounded in time (about SECONDS + 15 s).
#
#   bench/serve/overload.sh [--model M.onnx] [--config config.json] [--seconds 20]
#                           [--factor 3] [--max-503-p99-ms 50] [--functional]
#                           [--concurrency 32] [--kiln PATH] [--gen PATH]
#
#  1. serves MODEL (default: a generated MatMul/Relu chain, x [batch,32,512],
#     8 layers, about 10 ms per request on one core) with dynamic batching, one
#     single-core instance per usable core and a bounded queue
#     (max_queue_size 64);
#  2. measures capacity: kiln perf closed loop at --concurrency (keep it
#     within the queue, or the probe itself is refused), 3 s; then restarts
#     the server, so its own counts cover the overload run only;
#  3. offers FACTOR x capacity open loop (kiln perf --rate) for SECONDS while
#     sampling the server's RSS (VmRSS) every second;
#  4. at SECONDS, with the load still running, sends the server SIGTERM (and
#     kiln perf SIGUSR1, which marks the moment) and keeps sending for 3 s.
#
# Checks (FAIL lines; exit 1 if any): the server never died and exits 0 after
# SIGTERM; every response is 200 or 503 (connection refused once the listener
# has closed is expected and reported apart); no accepted request was lost —
# the server's own count of delivered 200s equals the client's and it reports
# no undelivered or failed inference; max RSS within a bound of the RSS at
# the start (2x + 128 MiB: 1024 connections may hold a 64 KiB buffer each;
# --functional: 4x + 256 MiB). Without --functional also: no RSS growth
# over time (max of the second half <= 1.1 x max of the first + 16 MiB), p99
# latency of the 503 answers <= --max-503-p99-ms, and some requests succeed
# during the overload. Open-loop latency counts from the scheduled send time,
# so a client starved of CPU inflates it: the client's lag is printed too.
#
# --functional is the ctest version (tests/serve/CMakeLists.txt, label
# server): a small generated model, one instance, queue of 8, 1 s capacity
# probe, 5 s of overload, 2 s after SIGTERM, no timing assertions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN:-$here/../../build/kiln}
gen=${KILN_GEN_MODEL:-$here/../../build/tests/serve/kiln_gen_model}
model= config= seconds=20 factor=3 max503=50 functional=0 tail=3 cap_s=3 conc=32
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --factor) factor=$2; shift 2 ;;
    --max-503-p99-ms) max503=$2; shift 2 ;;
    --functional) functional=1; conc=8; shift ;;
    --concurrency) conc=$2; shift 2 ;;
    --kiln) kiln=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    -h|--help) sed -n 2,39p "$0"; exit 0 ;;
    *) echo "overload.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$functional" = 1 ]; then tail=2; cap_s=1; fi

work=$(mktemp -d /tmp/kiln-overload-XXXXXX)
pid= perf_pid= rss_pid=
cleanup() {
  for p in $rss_pid $perf_pid $pid; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }
. "$here/lib.sh"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- the repository ------------------------------------------------------------
mkdir -p "$work/repo/m/1"
ncores=$(nproc)
if [ -n "$model" ]; then
  case $model in
    *.kiln) cp "$model" "$work/repo/m/1/model.kiln" ;;
    *) cp "$model" "$work/repo/m/1/model.onnx" ;;
  esac
elif [ "$functional" = 1 ]; then
  run "$gen" "$work/repo/m/1/model.onnx" mlp 32 256 4
else
  run "$gen" "$work/repo/m/1/model.onnx" mlp 32 512 8
fi
if [ -n "$config" ]; then
  cp "$config" "$work/repo/m/config.json"
elif [ "$functional" = 1 ]; then
  echo '{"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_us": 1000, "max_queue_size": 8},
         "instance_group": {"count": 1, "cores": 1}}' > "$work/repo/m/config.json"
else
  echo "{\"max_batch_size\": 8, \"dynamic_batching\": {\"max_queue_delay_us\": 2000, \"max_queue_size\": 64},
         \"instance_group\": {\"count\": $ncores, \"cores\": 1}}" > "$work/repo/m/config.json"
fi

# ---- capacity -------------------------------------------------------------------
start_server "$work/repo" "$work/serve1.log"
run "$kiln" perf --url "$url" --model m --binary --concurrency $conc --seconds "$cap_s" --warmup 0.5 \
  --json "$work/cap.json" >"$work/cap.txt" || true
cat "$work/cap.txt"
capacity=$(jget throughput "$work/cap.json")
[ -n "$capacity" ] && [ "$capacity" != null ] || { echo "FAIL no capacity figure"; exit 1; }
rc=0; stop_server || rc=$?
[ "$rc" = 0 ] || fail "server exit status $rc after the capacity run"
rate=$(awk -v c="$capacity" -v f="$factor" 'BEGIN { printf "%.0f", c * f }')
echo "# capacity $capacity requests/s (closed loop, concurrency $conc); offering ${factor}x = $rate requests/s"

# ---- overload, then SIGTERM under load ----------------------------------------------
start_server "$work/repo" "$work/serve2.log"
rss0=$(rss_kb "$pid")
( while kill -0 "$pid" 2>/dev/null; do rss_kb "$pid"; sleep 1; done ) >"$work/rss.txt" &
rss_pid=$!
total=$(awk -v s="$seconds" -v t="$tail" 'BEGIN { print s + t }')
echo "+ $kiln perf --url $url --model m --binary --rate $rate --seconds $total --warmup 0 --json $work/over.json &" >&2
"$kiln" perf --url "$url" --model m --binary --rate "$rate" --seconds "$total" --warmup 0 \
  --json "$work/over.json" >"$work/over.txt" 2>&1 &
perf_pid=$!
sleep "$seconds"
alive=1
kill -0 "$pid" 2>/dev/null || alive=0
echo "+ kill -USR1 $perf_pid; kill -TERM $pid   # at ${seconds} s, load still running" >&2
kill -USR1 "$perf_pid" 2>/dev/null || true
t_term=$(date +%s.%N)
kill -TERM "$pid" 2>/dev/null || true
rc=0; wait "$pid" || rc=$?
t_exit=$(date +%s.%N)
pid=
wait "$perf_pid" || true
perf_pid=
wait "$rss_pid" 2>/dev/null || true
rss_pid=
cat "$work/over.txt"
echo "# server log:"; sed 's/^/#   /' "$work/serve2.log"

# ---- figures and checks -----------------------------------------------------------
j=$work/over.json
[ -s "$j" ] || { echo "FAIL kiln perf wrote no result"; exit 1; }
n200=$(jget n200 "$j"); n503=$(jget n503 "$j"); oh=$(jget other_http "$j")
refused=$(jget refused "$j"); reset=$(jget reset "$j"); tmo=$(jget timeout "$j"); oe=$(jget other_error "$j")
a200=$(jget after_mark_n200 "$j"); a503=$(jget after_mark_n503 "$j")
p99_503=$(jget p99_503_ms "$j"); p50_503=$(jget p50_503_ms "$j"); p99_200=$(jget p99_200_ms "$j")
sent=$(jget sent "$j"); late=$(jget late "$j"); lag=$(jget client_lag_p99_ms "$j")
read -r s_ok s_rej s_other <<<"$(sed -n 's/.*inference responses: \([0-9]*\) ok (200), \([0-9]*\) rejected (503), \([0-9]*\) other.*/\1 \2 \3/p' "$work/serve2.log")"
rssmax=$(sort -n "$work/rss.txt" | tail -1); rssmax=${rssmax:-0}
[ "$rssmax" -ge "$rss0" ] || rssmax=$rss0
drain=$(awk -v a="$t_term" -v b="$t_exit" 'BEGIN { printf "%.2f", b - a }')
good=$(awk -v n="$n200" -v a="$a200" -v s="$seconds" 'BEGIN { printf "%.1f", (n - a) / s }')

echo
echo "== overload: ${factor}x capacity ($rate/s offered, capacity $capacity/s) for $seconds s, then SIGTERM =="
echo "requests sent                $sent (skipped by the client: $late; client lag p99 $lag ms)"
echo "responses 200                $n200 (of which completed after SIGTERM: $a200), p99 $p99_200 ms"
echo "responses 503                $n503 (after SIGTERM: $a503), p50 $p50_503 ms, p99 $p99_503 ms"
echo "other HTTP statuses          $oh"
echo "refused (listener closed)    $refused"
echo "reset before a reply         $reset"
echo "timeouts / other errors      $tmo / $oe"
echo "goodput before SIGTERM       $good requests/s (capacity $capacity)"
echo "server RSS                   start $((rss0 / 1024)) MiB, max $((rssmax / 1024)) MiB ($(wc -l <"$work/rss.txt") samples)"
echo "server after SIGTERM         exit $rc after $drain s; its counts: ${s_ok:-?} ok, ${s_rej:-?} rejected, ${s_other:-?} other/undelivered"
echo

[ "$alive" = 1 ] && ok "server alive through the overload" || fail "server died during the overload"
[ "$rc" = 0 ] && ok "server exit status 0 after SIGTERM" || fail "server exit status $rc after SIGTERM"
[ "$oh" = 0 ] && [ "$tmo" = 0 ] && [ "$oe" = 0 ] && ok "every response is 200 or 503" \
  || fail "responses other than 200/503: $oh other statuses, $tmo timeouts, $oe other errors"
if [ "${s_ok:-x}" = "$n200" ] && [ "${s_other:-x}" = 0 ]; then
  ok "no accepted request lost: the server delivered $s_ok 200s, the client received $n200; reset before a reply: $reset (never accepted)"
else
  fail "accepted requests lost: server delivered ${s_ok:-?} 200s and ${s_other:-?} other/undelivered, client received $n200"
fi
if [ "$functional" = 1 ]; then rlim=$((rss0 * 4 + 262144)); else rlim=$((rss0 * 2 + 131072)); fi
[ "$rssmax" -le "$rlim" ] && ok "RSS bounded: max $rssmax kB <= $rlim kB" || fail "RSS grew: max $rssmax kB > $rlim kB"
if [ "$functional" = 0 ]; then
  # samples taken during the overload (one a second): no upward trend
  read -r h1 h2 <<<"$(head -n "$seconds" "$work/rss.txt" | awk '{ v[NR] = $1 } END {
    h = int(NR / 2); for (i = 1; i <= NR; i++) { if (i <= h) { if (v[i] > a) a = v[i] } else if (v[i] > b) b = v[i] }
    print a + 0, b + 0 }')"
  awk -v a="$h1" -v b="$h2" 'BEGIN { exit !(b <= a * 1.1 + 16384) }' \
    && ok "RSS flat during the overload: max $h1 kB (first half), $h2 kB (second half)" \
    || fail "RSS still growing: max $h1 kB in the first half, $h2 kB in the second"
  [ "$n503" -gt 0 ] && awk -v p="$p99_503" -v m="$max503" 'BEGIN { exit !(p <= m) }' \
    && ok "503s are quick: p99 $p99_503 ms <= $max503 ms" || fail "503 p99 $p99_503 ms (limit $max503 ms, $n503 503s)"
  [ "$n200" -gt 0 ] && ok "accepted requests complete during the overload ($n200)" || fail "no request succeeded"
fi
[ "$fails" = 0 ] && echo "overload: all checks passed" || echo "overload: $fails check(s) failed"
[ "$fails" = 0 ]
