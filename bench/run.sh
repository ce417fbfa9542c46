#!/usr/bin/env bash
# Portico load benchmarks: Portico, nginx and HAProxy side by side in one run, on
# 127.0.0.1 only, with bounded durations. See bench/README.md for the method.
#
#   bash bench/run.sh            # baseline: throughput and latency, backend direct vs proxies
#   bash bench/run.sh failover   # three backends, one killed under load: failed requests per proxy
#   bash bench/run.sh all        # both
#
# Settings (environment):
#   BENCH_DURATION=10            measured seconds per baseline target (after a BENCH_WARMUP=3 s warm-up),
#   BENCH_ROUNDS=5               taken as 5 slices interleaved with the other targets
#   BENCH_CONNECTIONS=64 BENCH_THREADS=2   wrk connections and threads for the baseline
#   BENCH_BACKEND=nginx|node     backend: nginx `return 200` (default) or bench/backend.ts
#   BENCH_PORTICO_STANDIN=nginx  put a second nginx where Portico goes: an A/A run that shows
#                                how far apart two identical proxies land on this machine
#   BENCH_FAILOVER_DURATION=15 BENCH_KILL_AFTER=5 BENCH_FAILOVER_CONNECTIONS=16 BENCH_FAILOVER_RATE=1000
#   BENCH_PORTICO_FAILOVER_CONFIG=FILE   another Portico failover config (same @PORT@ @B1@ @B2@ @B3@
#                                placeholders as bench/conf/portico-failover.yaml), to try a variant
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
NODE=$ROOT/node_modules/.bin/node
export PATH="$PATH:/usr/sbin:/sbin"

SCENARIO=${1:-baseline}
case $SCENARIO in
  baseline|failover|all) ;;
  *) echo "usage: bash bench/run.sh [baseline|failover|all]" >&2; exit 2 ;;
esac

export BENCH_DURATION=${BENCH_DURATION:-10}
export BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
export BENCH_THREADS=${BENCH_THREADS:-2}
export BENCH_BACKEND=${BENCH_BACKEND:-nginx}
export BENCH_KILL_AFTER=${BENCH_KILL_AFTER:-5}
export BENCH_ROUNDS=${BENCH_ROUNDS:-5}
WARMUP=${BENCH_WARMUP:-3}
STANDIN=${BENCH_PORTICO_STANDIN:-}
FAILOVER_DURATION=${BENCH_FAILOVER_DURATION:-15}
FAILOVER_CONNECTIONS=${BENCH_FAILOVER_CONNECTIONS:-16}
# Failover load is a steady rate, not as fast as possible: each connection pauses
# before each request, so every proxy sees about the same requests per second.
export BENCH_FAILOVER_RATE=${BENCH_FAILOVER_RATE:-1000}
PORTICO_FAILOVER_CONFIG=${BENCH_PORTICO_FAILOVER_CONFIG:-portico-failover.yaml}
[[ $PORTICO_FAILOVER_CONFIG == */* ]] && PORTICO_FAILOVER_CONFIG=$(realpath "$PORTICO_FAILOVER_CONFIG")
# Time for active health checks to see every backend up before load starts
# (Portico and HAProxy: 2 passing checks at 1 s).
SETTLE=3
RESULTS=$BENCH/results

for n in BENCH_FAILOVER_RATE BENCH_DURATION BENCH_ROUNDS BENCH_CONNECTIONS BENCH_THREADS BENCH_KILL_AFTER WARMUP FAILOVER_DURATION FAILOVER_CONNECTIONS; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive whole number, got '${!n}'" >&2; exit 2; }
done
# Each round gives every target one slice of SLICE whole seconds (wrk takes whole seconds).
ROUNDS=$BENCH_ROUNDS
SLICE=$((BENCH_DURATION / ROUNDS))
((SLICE >= 1)) || { ROUNDS=$BENCH_DURATION; SLICE=1; }
export BENCH_SLICE=$SLICE BENCH_ROUNDS=$ROUNDS
[[ $BENCH_BACKEND == nginx || $BENCH_BACKEND == node ]] || { echo "BENCH_BACKEND must be nginx or node" >&2; exit 2; }
[[ -z $STANDIN || $STANDIN == nginx ]] || { echo "BENCH_PORTICO_STANDIN must be empty or nginx" >&2; exit 2; }

log() { printf '» %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------
ensure_tools() {
  local missing=() t
  for t in wrk nginx haproxy taskset curl; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) && return 0
  local pkgs=("${missing[@]/taskset/util-linux}")
  log "installing ${pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${pkgs[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null; }
}
ensure_tools
[[ -x $NODE ]] || { echo "missing $NODE: run npm install first" >&2; exit 1; }

# --- temp dir and process cleanup ----------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/portico-bench.XXXXXX")
# Every service runs in its own session (setsid), so its pid is also its process-group
# id and stopping it takes its children (nginx workers) with it.
SERVICES=()
cleanup() {
  local pid
  for pid in "${SERVICES[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  [[ -n ${KILLER:-} ]] && kill -KILL "$KILLER" 2>/dev/null
  [[ -n ${WRK:-} ]] && kill -KILL "$WRK" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- CPU pinning: backend and wrk share the first CPU, the proxy under test gets the second.
allowed_cpus() {
  local list part out=()
  list=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
  IFS=, read -ra parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}
read -ra CPUS <<<"$(allowed_cpus)"
if ((${#CPUS[@]} >= 2)); then
  PIN_LOAD=(taskset -c "${CPUS[0]}")
  PIN_PROXY=(taskset -c "${CPUS[1]}")
  export BENCH_PINNING="backend and wrk on CPU ${CPUS[0]}, proxy on CPU ${CPUS[1]}"
else
  PIN_LOAD=()
  PIN_PROXY=()
  export BENCH_PINNING="none (only ${#CPUS[@]} CPU available)"
  log "warning: fewer than 2 CPUs, running unpinned; load generator and proxy compete"
fi

export BENCH_VERSION_NODE=$("$NODE" --version)
export BENCH_VERSION_NGINX=$(nginx -v 2>&1 | sed 's|^nginx version: nginx/||')
export BENCH_VERSION_HAPROXY=$(haproxy -v 2>&1 | awk 'NR==1 {print $3}')
export BENCH_VERSION_WRK=$(wrk -v 2>&1 | awk 'NR==1 {print $2}')

# --- helpers -----------------------------------------------------------------------
# free_ports N: N distinct free TCP ports on 127.0.0.1.
free_ports() {
  "$NODE" --input-type=module -e '
    import { createServer } from "node:net"
    const servers = await Promise.all(Array.from({ length: Number(process.argv[1]) }, () =>
      new Promise((ok) => { const s = createServer(); s.listen(0, "127.0.0.1", () => ok(s)) })))
    console.log(servers.map((s) => s.address().port).join(" "))
    for (const s of servers) s.close()' "$1"
}

# render TEMPLATE OUT DIR PORT [B1 B2 B3]: fills the @X@ placeholders of a template,
# a file name in bench/conf/ or a path.
render() {
  local template=$1
  [[ $template == */* ]] || template=$BENCH/conf/$template
  sed -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@B1@|${5:-}|g" -e "s|@B2@|${6:-}|g" -e "s|@B3@|${7:-}|g" \
    "$template" >"$2"
}

# spawn NAME CMD...: starts CMD in its own session, stdout/stderr to $TMP/NAME.{out,err};
# sets SPAWNED to its pid.
spawn() {
  local name=$1; shift
  setsid "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  SPAWNED=$!
  SERVICES+=("$SPAWNED")
}

# stop PID: stops the service's process group, politely first.
stop() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for i in $(seq 20); do alive "$pid" || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  { wait "$pid"; } 2>/dev/null || true
}

# alive PID: the process runs (an exited child stays a zombie until waited for, and
# kill -0 still succeeds on a zombie).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# wait_ready PID PORT NAME: waits (up to 10 s) for GET / on PORT to answer 200.
wait_ready() {
  local pid=$1 port=$2 name=$3 i code
  for i in $(seq 100); do
    if ! alive "$pid"; then
      log "$name exited during startup:"; tail -n 5 "$TMP/$name.err" "$TMP/$name.out" >&2 2>/dev/null || true
      return 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on 127.0.0.1:$port within 10 s (last status: ${code:-none})"
  tail -n 5 "$TMP/$name.err" >&2 2>/dev/null || true
  return 1
}

# start_backend NAME PORT: one backend on the load CPU; sets SPAWNED.
start_backend() {
  local name=$1 port=$2 dir=$TMP/$1
  mkdir -p "$dir"
  if [[ $BENCH_BACKEND == node ]]; then
    spawn "$name" "${PIN_LOAD[@]}" "$NODE" "$BENCH/backend.ts" "$port"
  else
    render backend-nginx.conf "$dir/nginx.conf" "$dir" "$port"
    spawn "$name" "${PIN_LOAD[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
  fi
  wait_ready "$SPAWNED" "$port" "$name"
}

# start_reference nginx|haproxy NAME PORT POOL_TEMPLATE B1 [B2 B3]: a reference proxy on
# the proxy CPU; POOL_TEMPLATE (nginx upstream block or HAProxy backend section) names
# the backends. HAProxy's access log goes to NAME.out.
start_reference() {
  local kind=$1 name=$2 port=$3 dir=$TMP/$2
  mkdir -p "$dir"
  render "$4" "$dir/pool.conf" "$dir" "$port" "${@:5}"
  if [[ $kind == nginx ]]; then
    render nginx-proxy.conf "$dir/main.conf" "$dir" "$port"
    spawn "$name" "${PIN_PROXY[@]}" nginx -p "$dir" -c "$dir/main.conf" -e "$dir/error.log"
  else
    render haproxy-common.cfg "$dir/main.conf" "$dir" "$port"
    spawn "$name" "${PIN_PROXY[@]}" haproxy -db -f "$dir/main.conf" -f "$dir/pool.conf"
  fi
  wait_ready "$SPAWNED" "$port" "$name"
}

# start_portico NAME PORT ARGS...: Portico on the proxy CPU, JSON access log to NAME.out.
start_portico() {
  local name=$1 port=$2; shift 2
  spawn "$name" "${PIN_PROXY[@]}" "$NODE" "$ROOT/src/cli/main.ts" "$@"
  wait_ready "$SPAWNED" "$port" "$name"
}

# warm NAME PORT: an unmeasured wrk run, so JIT, connection pools and caches are warm.
warm() {
  log "$1: warm-up ${WARMUP}s"
  "${PIN_LOAD[@]}" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$2/" >/dev/null
}

# measure NAME PORT ROUND: one measured wrk slice; its output goes to $TMP/wrk-NAME-ROUND.txt.
measure() {
  "${PIN_LOAD[@]}" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${SLICE}s" --latency \
    -s "$BENCH/report.lua" "http://127.0.0.1:$2/" >"$TMP/wrk-$1-$3.txt"
}

skip() { printf '%s\t\t%s\n' "$1" "$2" >>"$RUNS"; log "$1: skipped ($2)"; }

portico_missing() { [[ ! -f $ROOT/src/cli/main.ts ]]; }

# --- baseline ----------------------------------------------------------------------
# Every target runs at the same time (the idle ones cost next to nothing) and the
# measured time is cut into BENCH_ROUNDS slices taken in turn, the order rotating each
# round: when a neighbour on this shared machine slows it down for a few seconds,
# every target pays, instead of whichever happened to be measured then.
baseline() {
  RUNS=$TMP/baseline.tsv
  : >"$RUNS"
  local backend_port portico_port nginx_port haproxy_port
  read -r backend_port portico_port nginx_port haproxy_port <<<"$(free_ports 4)"
  log "baseline: backend ($BENCH_BACKEND) on 127.0.0.1:$backend_port; $BENCH_PINNING"
  start_backend backend "$backend_port" || { echo "the backend did not start" >&2; exit 1; }

  # Targets that started, as "name:port"; a target that did not start gets a note.
  local targets=("backend:$backend_port")
  local -A notes=()
  if [[ $STANDIN == nginx ]]; then
    log "portico: a second nginx stands in for it (BENCH_PORTICO_STANDIN=nginx)"
    notes[portico]="stand-in: a second nginx"
    start_reference nginx portico "$portico_port" nginx-upstream-baseline.conf "$backend_port" &&
      targets+=("portico:$portico_port") || notes[portico]="stand-in nginx did not start"
  elif portico_missing; then
    notes[portico]="src/cli/main.ts not found"
  else
    start_portico portico "$portico_port" serve --listen "127.0.0.1:$portico_port" --to "http://127.0.0.1:$backend_port" &&
      targets+=("portico:$portico_port") || notes[portico]="did not start (see the lines above)"
  fi
  start_reference nginx nginx "$nginx_port" nginx-upstream-baseline.conf "$backend_port" &&
    targets+=("nginx:$nginx_port") || notes[nginx]="did not start"
  start_reference haproxy haproxy "$haproxy_port" haproxy-backend-baseline.cfg "$backend_port" &&
    targets+=("haproxy:$haproxy_port") || notes[haproxy]="did not start"

  local t n=${#targets[@]} round i
  for t in "${targets[@]}"; do warm "${t%%:*}" "${t#*:}"; done
  log "measuring: $ROUNDS rounds of ${SLICE}s per target, order rotating ($BENCH_CONNECTIONS connections, $BENCH_THREADS threads)"
  for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < n; i++)); do
      t=${targets[(round + i) % n]}
      measure "${t%%:*}" "${t#*:}" "$round"
    done
  done

  local name files
  for name in backend portico nginx haproxy; do
    files=$(ls "$TMP"/wrk-"$name"-*.txt 2>/dev/null | paste -sd, || true)
    printf '%s\t%s\t%s\n' "$name" "$files" "${notes[$name]:-}" >>"$RUNS"
    [[ -z $files ]] && log "$name: not measured (${notes[$name]:-})"
  done

  echo
  echo "## Baseline: $ROUNDS × ${SLICE}s per target, $BENCH_CONNECTIONS keep-alive connections, $BENCH_THREADS wrk threads, ~100-byte responses"
  echo "($BENCH_PINNING; backend: $BENCH_BACKEND; node $BENCH_VERSION_NODE, nginx $BENCH_VERSION_NGINX, haproxy $BENCH_VERSION_HAPROXY, wrk $BENCH_VERSION_WRK)"
  echo
  "$NODE" "$BENCH/summarize.ts" baseline "$RUNS" "$RESULTS/latest.json"
  echo
  echo "JSON: bench/results/latest.json"
  local pid
  for pid in "${SERVICES[@]}"; do stop "$pid"; done
  SERVICES=()
}

# --- failover ----------------------------------------------------------------------
# portico_failover_config PORT B1 B2 B3: writes $TMP/portico.yaml and sets PORTICO_NOTE;
# falls back to the config without health_check when `portico check` rejects it.
portico_failover_config() {
  local file=$TMP/portico.yaml
  render "$PORTICO_FAILOVER_CONFIG" "$file" "$TMP" "$@"
  PORTICO_NOTE="active health checks + 3 attempts"
  [[ $PORTICO_FAILOVER_CONFIG == */* ]] && PORTICO_NOTE="$PORTICO_FAILOVER_CONFIG"
  if "$NODE" "$ROOT/src/cli/main.ts" check -c "$file" >"$TMP/check.out" 2>&1; then return 0; fi
  grep -v 'health_check:' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  if "$NODE" "$ROOT/src/cli/main.ts" check -c "$file" >"$TMP/check.out" 2>&1; then
    PORTICO_NOTE="health_check rejected by portico check; ran without active health checks (retries only)"
    log "portico: $PORTICO_NOTE"
    return 0
  fi
  log "portico: portico check rejects the failover config:"; tail -n 5 "$TMP/check.out" >&2
  return 1
}

# failover_run NAME: fresh backends, the proxy, wrk with count.lua, one backend killed.
failover_run() {
  local name=$1 port b1 b2 b3 pid victim note=""
  read -r port b1 b2 b3 <<<"$(free_ports 4)"
  local backends=() i=1 b
  for b in "$b1" "$b2" "$b3"; do
    start_backend "$name-backend$i" "$b" || { skip "$name" "backend $i did not start"; return; }
    backends+=("$SPAWNED"); i=$((i + 1))
  done
  victim=${backends[1]}

  case $name in
    portico)
      if portico_missing; then skip portico "src/cli/main.ts not found"; stop_all "${backends[@]}"; return; fi
      if ! portico_failover_config "$port" "$b1" "$b2" "$b3"; then skip portico "config rejected by portico check"; stop_all "${backends[@]}"; return; fi
      note=$PORTICO_NOTE
      start_portico portico "$port" serve -c "$TMP/portico.yaml" || { skip portico "did not start"; stop_all "${backends[@]}"; return; } ;;
    nginx)
      note="passive: max_fails=1 fail_timeout=10s, proxy_next_upstream error timeout http_502"
      start_reference nginx nginx "$port" nginx-upstream-failover.conf "$b1" "$b2" "$b3" || { skip nginx "did not start"; stop_all "${backends[@]}"; return; } ;;
    haproxy)
      note="httpchk inter 1s fall 2 rise 2, retries 3, redispatch"
      start_reference haproxy haproxy "$port" haproxy-backend-failover.cfg "$b1" "$b2" "$b3" || { skip haproxy "did not start"; stop_all "${backends[@]}"; return; } ;;
  esac
  pid=$SPAWNED
  sleep "$SETTLE"

  log "$name: ${FAILOVER_DURATION}s at up to $BENCH_FAILOVER_RATE requests/s ($FAILOVER_CONNECTIONS connections), backend 2 of 3 killed (SIGKILL) at ${BENCH_KILL_AFTER}s"
  "${PIN_LOAD[@]}" wrk -t1 -c"$FAILOVER_CONNECTIONS" -d"${FAILOVER_DURATION}s" --latency \
    -s "$BENCH/count.lua" "http://127.0.0.1:$port/" -- "$((FAILOVER_CONNECTIONS * 1000 / BENCH_FAILOVER_RATE))" \
    >"$TMP/wrk-failover-$name.txt" &
  WRK=$!
  sleep "$BENCH_KILL_AFTER"
  kill -KILL -- "-$victim" 2>/dev/null || true
  { wait "$victim"; } 2>/dev/null || true # reap it quietly (no "Killed" line from bash)
  wait "$WRK" || true
  WRK=
  printf '%s\t%s\t%s\n' "$name" "$TMP/wrk-failover-$name.txt" "$note" >>"$RUNS"
  stop_all "$pid" "${backends[@]}"
  keep_failure_logs "$name"
}

# keep_failure_logs NAME: copies the proxy's log lines about requests that did not get a
# 200 (and its error log) to bench/results/failover-logs/, so each failure can be traced
# to its cause after the temporary directory is gone.
keep_failure_logs() {
  local name=$1 out=$RESULTS/failover-logs
  mkdir -p "$out"
  case $name in
    portico) grep -v '"status":200,' "$TMP/portico.out" >"$out/portico-access.log" || true
             cp "$TMP/portico.err" "$out/portico-stderr.log" ;;
    nginx) grep -v '" 200 ' "$TMP/nginx/access.log" >"$out/nginx-access.log" || true
           cp "$TMP/nginx/error.log" "$out/nginx-error.log" ;;
    haproxy) grep -v ' 200 ' "$TMP/haproxy.out" >"$out/haproxy.log" || true
             cp "$TMP/haproxy.err" "$out/haproxy-stderr.log" ;;
  esac
}

stop_all() { local p; for p in "$@"; do stop "$p"; done; }

failover() {
  RUNS=$TMP/failover.tsv
  : >"$RUNS"
  rm -rf "$RESULTS/failover-logs"
  local name
  for name in portico nginx haproxy; do failover_run "$name"; done
  echo
  echo "## Failover: 3 backends, backend 2 killed at ${BENCH_KILL_AFTER}s of ${FAILOVER_DURATION}s under load (up to $BENCH_FAILOVER_RATE requests/s over $FAILOVER_CONNECTIONS keep-alive connections)"
  echo "(failed = non-2xx responses + wrk socket errors; $BENCH_PINNING)"
  echo
  "$NODE" "$BENCH/summarize.ts" failover "$RUNS" "$RESULTS/failover.json"
  echo
  echo "JSON: bench/results/failover.json; log lines of failed requests: bench/results/failover-logs/"
}

case $SCENARIO in
  baseline) baseline ;;
  failover) failover ;;
  all) baseline; failover ;;
esac
