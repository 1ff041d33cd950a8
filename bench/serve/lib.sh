# bench/serve/lib.sh — helpers shared by the bench/serve scripts (sourced).
# The caller sets: kiln (the binary), work (a scratch folder), and traps EXIT
# to kill "$pid" if set.

# run CMD...: prints the command, then runs it
run() { echo "+ $*" >&2; "$@"; }

# jget KEY FILE: a top-level value from a one-line JSON object (kiln perf
# --json, kiln bench --json); the last line wins when FILE has several
jget() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2" | tail -1; }

# start_server REPO LOG: starts kiln serve on a free loopback port and waits
# until it is ready; sets pid and url
start_server() {
  local repo=$1 log=$2 port
  echo "+ $kiln serve --model-repository $repo --http-port 0 > $log 2>&1 &" >&2
  "$kiln" serve --model-repository "$repo" --http-port 0 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do
    grep -q "kiln serve: ready" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "FAIL server did not start"; exit 1; }
    sleep 0.1
  done
  grep -q "kiln serve: ready" "$log" || { cat "$log"; echo "FAIL server not ready after 120 s"; exit 1; }
  port=$(sed -n 's/^kiln serve: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$log")
  url=http://127.0.0.1:$port
}

# stop_server: SIGTERM, wait; returns the server's exit status
stop_server() {
  local rc=0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || rc=$?
  pid=
  return $rc
}
