#!/usr/bin/env bash
# CPU time per proxied request of two Portico checkouts, side by side: how a change to
# the request path shows when the machine is too noisy for requests/s to tell.
#
#   bash bench/compare.sh DIR_A DIR_B [ROUNDS]
#
# Both run `portico serve` on the proxy CPU in front of one nginx backend (bench/conf/
# backend-nginx.conf) on the load CPU, each with its JSON access log to a file. After a
# 12 s warm-up of each, wrk (64 connections, 2 threads) loads A and B in turn for 2 s,
# ROUNDS times (default 10); each slice gives the requests/s and the CPU time (user +
# system, from /proc/PID/stat) the process spent per request. Prints the medians of each
# side, then every slice. Only 127.0.0.1 is used; the whole run lasts about 12 + 4 x
# ROUNDS seconds. DIR_B may be the same tree as DIR_A (an A/A run shows the noise).
#
# COMPARE_CONFIG_A / COMPARE_CONFIG_B: run that side from a config file instead of quick
# mode, a template of bench/conf/ whose @PORT@ and @BACKEND@ are filled in. The cost of
# the filtering phase (one access rule list and one rate limit) is:
#   COMPARE_CONFIG_A=bench/conf/portico-plain.yaml COMPARE_CONFIG_B=bench/conf/portico-filter.yaml \
#     bash bench/compare.sh . .
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: bash bench/compare.sh DIR_A DIR_B [ROUNDS]" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-10}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number" >&2; exit 2; }
cd "$(dirname "$0")/.."
ROOT=$PWD
NODE=$ROOT/node_modules/.bin/node
export PATH="$PATH:/usr/sbin:/sbin"
for t in wrk nginx taskset; do command -v "$t" >/dev/null || { echo "missing $t (bash bench/run.sh installs it)" >&2; exit 1; }; done
for d in "$A" "$B"; do [[ -f $d/src/cli/main.ts ]] || { echo "$d is not a Portico checkout" >&2; exit 2; }; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/portico-compare.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

read -r LOAD_CPU PROXY_CPU < <(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status | tr ',-' '  ' | awk '{print $1, ($2 == "" ? $1 : $2)}')

free_port() { "$NODE" -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
wait_port() {
  local i
  for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}

BACKEND=$(free_port)
mkdir -p "$TMP/backend"
sed -e "s|@DIR@|$TMP/backend|g" -e "s|@PORT@|$BACKEND|g" bench/conf/backend-nginx.conf > "$TMP/backend/nginx.conf"
setsid taskset -c "$LOAD_CPU" nginx -p "$TMP/backend" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/error.log" &
PIDS+=($!)
wait_port "$BACKEND"

for c in "${COMPARE_CONFIG_A:-}" "${COMPARE_CONFIG_B:-}"; do [[ -z $c || -f $c ]] || { echo "no config template $c" >&2; exit 2; }; done
CONF_A=${COMPARE_CONFIG_A:+$(realpath "$COMPARE_CONFIG_A")}
CONF_B=${COMPARE_CONFIG_B:+$(realpath "$COMPARE_CONFIG_B")}
start() { # start DIR PORT NAME [CONFIG_TEMPLATE]
  if [[ -n ${4:-} ]]; then
    sed -e "s|@PORT@|$2|g" -e "s|@BACKEND@|$BACKEND|g" "$4" > "$TMP/$3.yaml"
    (cd "$1" && exec setsid taskset -c "$PROXY_CPU" "$NODE" src/cli/main.ts serve -c "$TMP/$3.yaml" > "$TMP/$3.log" 2>&1) &
  else
    (cd "$1" && exec setsid taskset -c "$PROXY_CPU" "$NODE" src/cli/main.ts serve --listen "127.0.0.1:$2" --to "http://127.0.0.1:$BACKEND" > "$TMP/$3.log" 2>&1) &
  fi
  PIDS+=($!)
  wait_port "$2"
}
PORT_A=$(free_port); start "$A" "$PORT_A" a "$CONF_A"
PORT_B=$(free_port); start "$B" "$PORT_B" b "$CONF_B"
proxy_pid() { pgrep -f "serve --listen 127.0.0.1:$1" || pgrep -f "serve -c $TMP/$2.yaml"; }
PID_A=$(proxy_pid "$PORT_A" a)
PID_B=$(proxy_pid "$PORT_B" b)

load() { taskset -c "$LOAD_CPU" wrk -t2 -c64 -d"$2"s "http://127.0.0.1:$1/"; }
for p in "$PORT_A" "$PORT_B" "$PORT_A" "$PORT_B"; do load "$p" 3 >/dev/null; done

# slice PID PORT: "requests/s CPU-µs-per-request"
slice() {
  local before after out requests
  before=$(awk '{print $14 + $15}' "/proc/$1/stat")
  out=$(load "$2" 2)
  after=$(awk '{print $14 + $15}' "/proc/$1/stat")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  # /proc times are in clock ticks (USER_HZ, 100 a second on Linux).
  echo "$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out") $(( (after - before) * 10000 * 1000 / requests / 1000 ))"
}
SA=(); SB=()
for _ in $(seq "$ROUNDS"); do SA+=("$(slice "$PID_A" "$PORT_A")"); SB+=("$(slice "$PID_B" "$PORT_B")"); done

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
report() { # report NAME DIR SLICES...
  local name=$1 dir=$2; shift 2
  printf '%s  median %s requests/s, %s us CPU per request   (%s)\n' "$name" \
    "$(printf '%s\n' "$@" | awk '{print $1}' | median)" "$(printf '%s\n' "$@" | awk '{print $2}' | median)" "$dir"
  printf '   slices (requests/s / us per request): %s\n' "$(printf '%s\n' "$@" | awk '{printf "%s/%s ", $1, $2}')"
}
report A "$A" "${SA[@]}"
report B "$B" "${SB[@]}"
