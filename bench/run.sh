#!/usr/bin/env bash
# Portico load benchmarks: Portico, nginx and HAProxy side by side in one run, on
# 127.0.0.1 only, with bounded durations. See bench/README.md for the method.
#
#   bash bench/run.sh            # baseline: throughput and latency, backend direct vs proxies
#   bash bench/run.sh failover   # three backends, one killed under load: failed requests per proxy
#   bash bench/run.sh cache      # cache hits: Portico's route cache vs nginx proxy_cache, same object
#   bash bench/run.sh https      # HTTP/1.1 over TLS 1.3 keep-alive: Portico vs nginx, same certificate
#   bash bench/run.sh workers    # Portico with 1 and 2 worker processes beside nginx with 1 and 2 workers
#   bash bench/run.sh all        # all five
#   bash bench/run.sh memory     # RSS of one Portico worker and one nginx worker, idle and under load (bench/memory.ts)
#
# Settings (environment):
#   BENCH_DURATION=10            measured seconds per target of baseline, cache and https
#                                (after a BENCH_WARMUP=20 s warm-up, taken in unmeasured rounds like the measured ones),
#   BENCH_ROUNDS=5               taken as 5 slices interleaved with the other targets
#   BENCH_CONNECTIONS=64 BENCH_THREADS=2   wrk connections and threads for baseline, cache and https
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
[[ $SCENARIO == memory ]] && exec "$NODE" "$BENCH/memory.ts"
case $SCENARIO in
  baseline|failover|cache|https|workers|all) ;;
  *) echo "usage: bash bench/run.sh [baseline|failover|cache|https|workers|all|memory]" >&2; exit 2 ;;
esac

export BENCH_DURATION=${BENCH_DURATION:-10}
export BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
export BENCH_THREADS=${BENCH_THREADS:-2}
export BENCH_BACKEND=${BENCH_BACKEND:-nginx}
export BENCH_KILL_AFTER=${BENCH_KILL_AFTER:-5}
export BENCH_ROUNDS=${BENCH_ROUNDS:-5}
WARMUP=${BENCH_WARMUP:-20}
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
  for t in wrk nginx haproxy taskset curl openssl; do
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

# url_of PORT_OR_URL: a listener's URL; a bare port stands for http://127.0.0.1:PORT/.
url_of() { if [[ $1 == *://* ]]; then echo "$1"; else echo "http://127.0.0.1:$1/"; fi; }

# port_of PORT_OR_URL: the port of a listener.
port_of() { local p=${1##*:}; echo "${p%%/*}"; }

# render TEMPLATES OUT DIR LISTEN [B1 B2 B3]: fills the @X@ placeholders of templates
# (each a file name in bench/conf/ or a path; several joined by + are concatenated).
# LISTEN is a port or a listener URL: @PORT@ is its port, @SSL@ " ssl" for an https
# URL and empty otherwise; @TMP@ is the run's temporary directory.
render() {
  local template templates=() ssl=""
  IFS=+ read -ra templates <<<"$1"
  for template in "${!templates[@]}"; do
    [[ ${templates[template]} == */* ]] || templates[template]=$BENCH/conf/${templates[template]}
  done
  [[ $4 == https://* ]] && ssl=" ssl"
  sed -e "s|@DIR@|$3|g" -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$(port_of "$4")|g" -e "s|@SSL@|$ssl|g" \
    -e "s|@B1@|${5:-}|g" -e "s|@B2@|${6:-}|g" -e "s|@B3@|${7:-}|g" "${templates[@]}" >"$2"
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

# wait_ready PID LISTEN NAME: waits (up to 10 s) for GET / on LISTEN (a port or a
# listener URL; https is not verified, the bench certificate is self-signed) to answer 200.
wait_ready() {
  local pid=$1 url name=$3 i code
  url=$(url_of "$2")
  for i in $(seq 100); do
    if ! alive "$pid"; then
      log "$name exited during startup:"; tail -n 5 "$TMP/$name.err" "$TMP/$name.out" >&2 2>/dev/null || true
      return 1
    fi
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on $url within 10 s (last status: ${code:-none})"
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

# start_reference nginx|haproxy NAME LISTEN POOL_TEMPLATES B1 [B2 B3]: a reference proxy
# on the proxy CPU; POOL_TEMPLATES (nginx upstream block or HAProxy backend section, see
# render) name the backends. LISTEN is a port, or an https URL for nginx over TLS.
# HAProxy's access log goes to NAME.out.
start_reference() {
  local kind=$1 name=$2 listen=$3 dir=$TMP/$2
  mkdir -p "$dir"
  render "$4" "$dir/pool.conf" "$dir" "$listen" "${@:5}"
  if [[ $kind == nginx ]]; then
    render nginx-proxy.conf "$dir/main.conf" "$dir" "$listen"
    spawn "$name" "${PIN_PROXY[@]}" nginx -p "$dir" -c "$dir/main.conf" -e "$dir/error.log"
  else
    render haproxy-common.cfg "$dir/main.conf" "$dir" "$listen"
    spawn "$name" "${PIN_PROXY[@]}" haproxy -db -f "$dir/main.conf" -f "$dir/pool.conf"
  fi
  wait_ready "$SPAWNED" "$listen" "$name"
}

# start_portico NAME LISTEN ARGS...: Portico on the proxy CPU, JSON access log to NAME.out.
start_portico() {
  local name=$1 listen=$2; shift 2
  spawn "$name" "${PIN_PROXY[@]}" "$NODE" "$ROOT/src/cli/main.ts" "$@"
  wait_ready "$SPAWNED" "$listen" "$name"
}

# warm URL SECONDS: one unmeasured wrk run, so JIT, connection pools and caches are warm.
warm() {
  "${PIN_LOAD[@]}" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${2}s" "$1" >/dev/null
}

# measure NAME URL ROUND: one measured wrk slice; its output goes to
# $TMP/SCENARIO-wrk-NAME-ROUND.txt (SCENARIO from RUNS, so runs of `all` stay apart).
measure() {
  "${PIN_LOAD[@]}" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${SLICE}s" --latency \
    -s "$BENCH/report.lua" "$2" >"${RUNS%.tsv}-wrk-$1-$3.txt"
}

skip() { printf '%s\t\t%s\n' "$1" "$2" >>"$RUNS"; log "$1: skipped ($2)"; }

portico_missing() { [[ ! -f $ROOT/src/cli/main.ts ]]; }

# --- baseline, cache and https: targets measured side by side --------------------
# Every target runs at the same time (the idle ones cost next to nothing) and the
# measured time is cut into BENCH_ROUNDS slices taken in turn, the order rotating each
# round: when a neighbour on this shared machine slows it down for a few seconds,
# every target pays, instead of whichever happened to be measured then.
#
# The functions below work on the calling scenario's `targets` (the targets that
# started, as "name=listener URL", in measuring order) and `notes` (name -> why a target
# was not measured), which bash's dynamic scope lets them see and change.

# add_target NAME LISTEN NOTE CMD...: runs CMD, which starts NAME listening on LISTEN (a
# port or a listener URL); NAME becomes a target if it started, else NOTE says why not.
add_target() {
  local name=$1 listen=$2 note=$3; shift 3
  if "$@"; then targets+=("$name=$(url_of "$listen")"); else notes[$name]=$note; fi
}

# add_portico LISTEN POOL_TEMPLATES BACKEND_PORT ARGS...: the "portico" target: Portico
# run with ARGS or, with BENCH_PORTICO_STANDIN=nginx, a second nginx with POOL_TEMPLATES.
add_portico() {
  local listen=$1 pool=$2 backend_port=$3; shift 3
  if [[ $STANDIN == nginx ]]; then
    log "portico: a second nginx stands in for it (BENCH_PORTICO_STANDIN=nginx)"
    notes[portico]="stand-in: a second nginx"
    add_target portico "$listen" "stand-in nginx did not start" start_reference nginx portico "$listen" "$pool" "$backend_port"
  elif portico_missing; then
    notes[portico]="src/cli/main.ts not found"
  else
    add_target portico "$listen" "did not start (see the lines above)" start_portico portico "$listen" "$@"
  fi
}

# keep_passing CHECK PATH: keeps the targets for which `CHECK NAME URL` (URL the
# target's listener URL with PATH) succeeds; a failing CHECK sets CHECK_NOTE, which
# becomes the target's note.
keep_passing() {
  local check=$1 path=$2 kept=() t
  for t in "${targets[@]}"; do
    if "$check" "${t%%=*}" "${t#*=}$path"; then
      kept+=("$t")
    else
      notes[${t%%=*}]=$CHECK_NOTE
      log "${t%%=*}: not measured: $CHECK_NOTE"
    fi
  done
  targets=("${kept[@]}")
}

# measure_rounds [PATH]: warms every target, then the measured rounds, each target
# getting PATH (relative to its listener URL, empty for /).
#
# The warm-up is made of unmeasured rounds like the measured ones (WARMUP seconds per
# target in slices of up to SLICE seconds, targets in turn), so each target meets the
# same pattern before it is measured: load on fresh connections, connections closed
# mid-request at the end of each slice, idle while the others run. A JIT-compiled proxy
# (Portico on V8) deoptimises part of its hot code the first times it meets the end of a
# slice; after one long warm-up run instead, its first measured slices paid for
# recompiling (p99 of 50-200 ms against under 10 ms once settled). Under this pattern
# V8 still compiles some of Portico's code during the first 15-20 s of load, hence 20 s.
measure_rounds() {
  local path=${1:-} t n=${#targets[@]} round i left d
  log "warm-up: ${WARMUP}s per target in slices of up to ${SLICE}s, targets in turn"
  for ((left = WARMUP; left > 0; left -= d)); do
    d=$((left < SLICE ? left : SLICE))
    for t in "${targets[@]}"; do warm "${t#*=}$path" "$d"; done
  done
  log "measuring: $ROUNDS rounds of ${SLICE}s per target, order rotating ($BENCH_CONNECTIONS connections, $BENCH_THREADS threads)"
  for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < n; i++)); do
      t=${targets[(round + i) % n]}
      measure "${t%%=*}" "${t#*=}$path" "$round"
    done
  done
}

# record_rounds NAME...: one RUNS line per name, with its wrk outputs or its note.
record_rounds() {
  local name files
  for name in "$@"; do
    files=$(ls "${RUNS%.tsv}"-wrk-"$name"-*.txt 2>/dev/null | paste -sd, || true)
    printf '%s\t%s\t%s\n' "$name" "$files" "${notes[$name]:-}" >>"$RUNS"
    if [[ -z $files ]]; then log "$name: not measured (${notes[$name]:-})"; fi
  done
}

# throughput_report SCENARIO JSON TITLE: the table of RUNS under a TITLE heading, the
# lines of CHECKS (what was verified before and after measuring) above it, and the JSON
# file in bench/results/.
throughput_report() {
  echo
  echo "## $3"
  echo "($BENCH_PINNING; backend: $BENCH_BACKEND; node $BENCH_VERSION_NODE, nginx $BENCH_VERSION_NGINX, haproxy $BENCH_VERSION_HAPROXY, wrk $BENCH_VERSION_WRK)"
  if ((${#CHECKS[@]} > 0)); then
    echo
    printf -- '- %s\n' "${CHECKS[@]}"
  fi
  echo
  BENCH_CHECKS=$(printf '%s\n' "${CHECKS[@]}") "$NODE" "$BENCH/summarize.ts" "$1" "$RUNS" "$RESULTS/$2"
  echo
  echo "JSON: bench/results/$2"
}

stop_services() {
  stop_all "${SERVICES[@]}"
  SERVICES=()
}

# --- baseline ----------------------------------------------------------------------
baseline() {
  RUNS=$TMP/baseline.tsv
  : >"$RUNS"
  CHECKS=()
  local backend_port portico_port nginx_port haproxy_port
  read -r backend_port portico_port nginx_port haproxy_port <<<"$(free_ports 4)"
  log "baseline: backend ($BENCH_BACKEND) on 127.0.0.1:$backend_port; $BENCH_PINNING"
  start_backend backend "$backend_port" || { echo "the backend did not start" >&2; exit 1; }

  local targets=("backend=$(url_of "$backend_port")")
  local -A notes=()
  add_portico "$portico_port" nginx-upstream-baseline.conf "$backend_port" \
    serve --listen "127.0.0.1:$portico_port" --to "http://127.0.0.1:$backend_port"
  add_target nginx "$nginx_port" "did not start" \
    start_reference nginx nginx "$nginx_port" nginx-upstream-baseline.conf "$backend_port"
  add_target haproxy "$haproxy_port" "did not start" \
    start_reference haproxy haproxy "$haproxy_port" haproxy-backend-baseline.cfg "$backend_port"

  measure_rounds
  record_rounds backend portico nginx haproxy
  stop_services
  throughput_report baseline latest.json \
    "Baseline: $ROUNDS × ${SLICE}s per target, $BENCH_CONNECTIONS keep-alive connections, $BENCH_THREADS wrk threads, ~100-byte responses"
}

# --- cache and https: Portico against nginx on one feature -------------------------
# versus SCENARIO SCHEME PORTICO_TEMPLATE NGINX_TEMPLATE PATH CHECK: the backend, then
# Portico with the config PORTICO_TEMPLATE and nginx with the baseline's upstream block
# plus NGINX_TEMPLATE, both listening on SCHEME (http or https); the targets for which
# CHECK passes (see keep_passing) are measured on PATH. Leaves the services running.
versus() {
  local scenario=$1 scheme=$2 portico_template=$3 nginx_template=$4 path=$5 check=$6
  RUNS=$TMP/$scenario.tsv
  : >"$RUNS"
  CHECKS=()
  local backend_port portico_port nginx_port
  read -r backend_port portico_port nginx_port <<<"$(free_ports 3)"
  log "$scenario: backend ($BENCH_BACKEND) on 127.0.0.1:$backend_port; $BENCH_PINNING"
  start_backend backend "$backend_port" || { echo "the backend did not start" >&2; exit 1; }

  local targets=() pool=nginx-upstream-baseline.conf+$nginx_template
  local -A notes=()
  local portico_url=$scheme://127.0.0.1:$portico_port/ nginx_url=$scheme://127.0.0.1:$nginx_port/
  render "$portico_template" "$TMP/portico-$scenario.yaml" "$TMP" "$portico_url" "$backend_port"
  add_portico "$portico_url" "$pool" "$backend_port" serve -c "$TMP/portico-$scenario.yaml"
  add_target nginx "$nginx_url" "did not start" start_reference nginx nginx "$nginx_url" "$pool" "$backend_port"

  keep_passing "$check" "$path"
  measure_rounds "$path"
  record_rounds portico nginx
}

# get_twice URL: two GETs of URL with curl over HTTP/1.1, as wrk sends them; sets SECOND
# to the header section of the second response and KEPT_ALIVE to yes when the second
# request went over the first one's connection, else no.
get_twice() {
  local headers=$TMP/get-twice.txt connects
  : >"$headers"
  connects=$(curl -sk --http1.1 --max-time 4 -o /dev/null -o /dev/null -D "$headers" -w '%{num_connects} ' "$1" "$1" || true)
  SECOND=$(tr -d '\r' <"$headers" | awk 'BEGIN { RS = "" } { last = $0 } END { print last }')
  KEPT_ALIVE=no
  [[ $connects == "1 0 " ]] && KEPT_ALIVE=yes
  rm -f "$headers"
}

# cache_check NAME URL: of two GETs of URL on one connection, the first stores the
# object and the second must be a hit by the target's own account (Portico:
# `Cache-Status: portico; hit; ...` (RFC 9211); nginx: `X-Cache-Status: HIT`).
cache_check() {
  local status
  get_twice "$2"
  status=$(grep -iE '^(x-)?cache-status:' <<<"$SECOND" | head -n 1 || true)
  CHECKS+=("$1, second of two GETs: ${status:-no Cache-Status or X-Cache-Status header}; connection kept alive: $KEPT_ALIVE")
  if [[ ! ${status,,} =~ ^cache-status:.*\;\ *hit && ${status,,} != 'x-cache-status: hit' ]]; then
    CHECK_NOTE="the second GET was not a cache hit (${status:-no cache status header})"
    return 1
  fi
  [[ $KEPT_ALIVE == yes ]] || { CHECK_NOTE="closes the connection after a response (no keep-alive)"; return 1; }
}

# cache_misses: after the run, how many requests for the object reached the backend
# (by the Via header Portico adds and nginx does not), and how many of the requests
# Portico logged were hits. Each proxy should have sent the backend one request.
cache_misses() {
  local log=$TMP/backend/cacheable.log via novia logged hits
  [[ $BENCH_BACKEND == node ]] && log=$TMP/backend.out
  via=$(grep -c portico "$log" || true)
  novia=$(($(wc -l <"$log") - via))
  CHECKS+=("backend: requests for /cacheable over the whole run: ${via:-0} with Portico's Via, $novia without (nginx)")
  if [[ $STANDIN != nginx ]] && ! portico_missing; then
    logged=$(grep -c '"path":"/cacheable"' "$TMP/portico.out" || true)
    hits=$(grep -c '"path":"/cacheable".*"cache":"portico; hit' "$TMP/portico.out" || true)
    CHECKS+=("portico access log: $hits of $logged requests for /cacheable were hits (warm-up included)")
  fi
}

cache() {
  # nginx started as root runs its workers as nobody, and they write the cache files:
  # let them through the run's directory (they still cannot list it).
  chmod 711 "$TMP"
  versus cache http portico-cache.yaml nginx-cache.conf cacheable cache_check
  stop_services # Portico writes the rest of its access log as it stops
  cache_misses
  throughput_report cache cache.json \
    "Cache hits: $ROUNDS × ${SLICE}s per target, $BENCH_CONNECTIONS keep-alive connections, $BENCH_THREADS wrk threads, GET /cacheable (~100-byte body, Cache-Control: max-age=3600) from each proxy's cache"
}

# make_certificate: the self-signed ECDSA P-256 certificate both HTTPS listeners serve,
# in $TMP/tls.
make_certificate() {
  mkdir -p "$TMP/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>"$TMP/tls/openssl.err" ||
    { log "openssl could not make the certificate:"; cat "$TMP/tls/openssl.err" >&2; exit 1; }
}

# tls_check NAME URL: a handshake with `openssl s_client` offering TLS 1.2 and 1.3 and
# ALPN h2 and http/1.1 must get TLS 1.3 and http/1.1 (wrk offers no ALPN, so HTTP/1.1
# it is for it anyway; this shows that neither side would pick h2), and two GETs must
# share one connection.
tls_check() {
  local out version=none cipher=none alpn=none
  out=$(timeout 5 openssl s_client -connect "127.0.0.1:$(port_of "$2")" -servername localhost \
    -alpn h2,http/1.1 </dev/null 2>&1 || true)
  if [[ $out =~ New,\ (TLSv[0-9.]+),\ Cipher\ is\ ([A-Z0-9_-]+) ]]; then version=${BASH_REMATCH[1]} cipher=${BASH_REMATCH[2]}; fi
  if [[ $out =~ ALPN\ protocol:\ ([^[:space:]]+) ]]; then alpn=${BASH_REMATCH[1]}; fi
  get_twice "$2"
  CHECKS+=("$1, handshake offering h2 and http/1.1: $version, $cipher, ALPN $alpn; connection kept alive: $KEPT_ALIVE")
  if [[ $version != TLSv1.3 || $alpn != http/1.1 ]]; then
    CHECK_NOTE="negotiated $version with ALPN $alpn, not TLSv1.3 with http/1.1"
    return 1
  fi
  [[ $KEPT_ALIVE == yes ]] || { CHECK_NOTE="closes the connection after a response (no keep-alive)"; return 1; }
}

https() {
  make_certificate
  versus https https portico-https.yaml nginx-tls.conf "" tls_check
  stop_services
  local libraries="nginx and wrk: the system's OpenSSL $(openssl version | awk '{print $2}')"
  [[ $STANDIN == nginx ]] || libraries="Portico: Node.js's own OpenSSL $("$NODE" -p process.versions.openssl); $libraries"
  CHECKS+=("TLS libraries: $libraries")
  throughput_report https https.json \
    "HTTPS: $ROUNDS × ${SLICE}s per target, $BENCH_CONNECTIONS keep-alive connections, $BENCH_THREADS wrk threads, HTTP/1.1 over TLS 1.3 (self-signed ECDSA P-256), plain HTTP/1.1 to the backend, ~100-byte responses"
}

# --- workers: every core ---------------------------------------------------------------
# Portico with 1 and 2 worker processes beside nginx with 1 and 2 worker processes, same
# backend, same run, measured in the same interleaved rounds. Nothing is pinned: the
# point is how each proxy spreads over the cores it is given, so the 2-worker proxies get
# every CPU of the host. On a 2-core host they share both cores with wrk and the backend,
# so Portico(2)/Portico(1) there says more about sharing than about scaling; the report
# says so. The ratios that compare like with like are Portico(2)/nginx(2) against
# Portico(1)/nginx(1): workers should scale as well as nginx's do.

# start_nginx_workers NAME LISTEN N BACKEND_PORT: nginx with N worker processes, unpinned.
start_nginx_workers() {
  local name=$1 listen=$2 n=$3 dir=$TMP/$1
  mkdir -p "$dir"
  render nginx-upstream-baseline.conf "$dir/pool.conf" "$dir" "$listen" "$4"
  render nginx-proxy.conf "$dir/main.conf" "$dir" "$listen"
  sed -i "s|^worker_processes 1;|worker_processes $n;|" "$dir/main.conf"
  spawn "$name" nginx -p "$dir" -c "$dir/main.conf" -e "$dir/error.log"
  wait_ready "$SPAWNED" "$listen" "$name"
}

# start_portico_workers NAME LISTEN N BACKEND_PORT: Portico in quick mode with N workers, unpinned.
start_portico_workers() {
  spawn "$1" "$NODE" "$ROOT/src/cli/main.ts" serve --listen "127.0.0.1:$(port_of "$2")" --to "http://127.0.0.1:$4" --workers "$3"
  wait_ready "$SPAWNED" "$2" "$1"
}

# worker_processes NAME: how many processes a target runs (its process group: primary and
# workers, or nginx's master and workers), for the report.
worker_processes() {
  local pid
  pid=$(cat "$TMP/$1.pid" 2>/dev/null) && pgrep -g "$pid" | wc -l || echo "?"
}

workers() {
  RUNS=$TMP/workers.tsv
  : >"$RUNS"
  CHECKS=()
  local backend_port p1 p2 n1 n2 name
  read -r backend_port p1 p2 n1 n2 <<<"$(free_ports 5)"
  local pin_load=("${PIN_LOAD[@]}") pin_proxy=("${PIN_PROXY[@]}")
  # Unpinned, all of it: every proxy may use every CPU.
  PIN_LOAD=() PIN_PROXY=()
  export BENCH_PINNING="none: proxies, wrk and the backend share all ${#CPUS[@]} CPUs"
  log "workers: backend ($BENCH_BACKEND) on 127.0.0.1:$backend_port; $BENCH_PINNING"
  start_backend backend "$backend_port" || { echo "the backend did not start" >&2; exit 1; }

  local targets=()
  local -A notes=()
  if portico_missing; then
    notes[portico1]="src/cli/main.ts not found"; notes[portico2]="src/cli/main.ts not found"
  else
    add_target portico1 "$p1" "did not start (see the lines above)" start_portico_workers portico1 "$p1" 1 "$backend_port"
    echo "$SPAWNED" >"$TMP/portico1.pid"
    add_target portico2 "$p2" "did not start (see the lines above)" start_portico_workers portico2 "$p2" 2 "$backend_port"
    echo "$SPAWNED" >"$TMP/portico2.pid"
  fi
  add_target nginx1 "$n1" "did not start" start_nginx_workers nginx1 "$n1" 1 "$backend_port"
  echo "$SPAWNED" >"$TMP/nginx1.pid"
  add_target nginx2 "$n2" "did not start" start_nginx_workers nginx2 "$n2" 2 "$backend_port"
  echo "$SPAWNED" >"$TMP/nginx2.pid"
  for name in portico1 portico2 nginx1 nginx2; do
    CHECKS+=("$name: $(worker_processes "$name") processes (Portico: primary + workers when more than 1; nginx: master + workers)")
  done
  CHECKS+=("host: ${#CPUS[@]} CPUs; $( ((${#CPUS[@]} < 4)) && echo "the proxies share them with wrk and the backend, so the 2-worker figures show sharing, not scaling" || echo "the proxies share them with wrk and the backend")")

  measure_rounds
  record_rounds portico1 portico2 nginx1 nginx2
  stop_services
  PIN_LOAD=("${pin_load[@]}") PIN_PROXY=("${pin_proxy[@]}")
  throughput_report workers workers.json \
    "Workers: $ROUNDS × ${SLICE}s per target, $BENCH_CONNECTIONS keep-alive connections, $BENCH_THREADS wrk threads, ~100-byte responses; Portico and nginx with 1 and 2 worker processes"
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
  cache) cache ;;
  https) https ;;
  workers) workers ;;
  all) baseline; failover; cache; https; workers ;;
esac
