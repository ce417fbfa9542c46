#!/usr/bin/env bash
# conformance-cache.sh - run the HTTP WG cache test suite (github.com/http-tests/cache-tests)
# against Portico with caching on, and print "passed N of M".
#
# Usage: bash scripts/conformance-cache.sh [extra options for run-cache-tests.sh, e.g. -g]
# Environment:
#   CACHE_TESTS_DIR  a checkout of http-tests/cache-tests; when unset, the script clones it
#                    (git clone --depth 1) into a temporary directory, removed at exit
#   RUN_CACHE_TESTS  the suite runner (default ../shared/tools/run-cache-tests.sh beside the checkout)
#   PORTICO_NODE     Node.js >= 23.6 that runs Portico's .ts (default ./node_modules/.bin/node);
#                    not NODE, which npm sets to the Node.js that runs npm itself
# The suite's code is fetched at run time and never committed here.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NODE="${PORTICO_NODE:-$ROOT/node_modules/.bin/node}"
RUNNER="${RUN_CACHE_TESTS:-$ROOT/../shared/tools/run-cache-tests.sh}"
WORK="$(mktemp -d)"
PORTICO_PID=""

cleanup() {
  if [ -n "$PORTICO_PID" ] && kill -0 "$PORTICO_PID" 2>/dev/null; then
    kill "$PORTICO_PID" 2>/dev/null || true
    wait "$PORTICO_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$NODE" ] && ! command -v "$NODE" >/dev/null; then
  echo "conformance-cache: no Node.js at $NODE (set PORTICO_NODE)" >&2
  exit 3
fi
if [ ! -f "$RUNNER" ]; then
  echo "conformance-cache: the suite runner $RUNNER is missing (set RUN_CACHE_TESTS)" >&2
  exit 3
fi

if [ -z "${CACHE_TESTS_DIR:-}" ]; then
  CACHE_TESTS_DIR="$WORK/cache-tests"
  echo "conformance-cache: CACHE_TESTS_DIR is unset; cloning https://github.com/http-tests/cache-tests ..." >&2
  if ! git clone --quiet --depth 1 https://github.com/http-tests/cache-tests "$CACHE_TESTS_DIR" 2>"$WORK/clone.err"; then
    echo "conformance-cache: cannot clone https://github.com/http-tests/cache-tests:" >&2
    sed 's/^/  /' "$WORK/clone.err" >&2
    echo "  This machine cannot reach GitHub. Copy a checkout of the repository here and run:" >&2
    echo "    CACHE_TESTS_DIR=/path/to/cache-tests bash scripts/conformance-cache.sh" >&2
    exit 3
  fi
fi
if [ ! -d "$CACHE_TESTS_DIR" ]; then
  echo "conformance-cache: CACHE_TESTS_DIR=$CACHE_TESTS_DIR is not a directory" >&2
  exit 3
fi

# Two free loopback ports: Portico's listener and the suite's origin.
read -r PORTICO_PORT ORIGIN_PORT < <("$NODE" -e '
const net = require("node:net")
const free = () => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)) }) })
Promise.all([free(), free()]).then((p) => console.log(p.join(" ")))')

cat > "$WORK/portico.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$PORTICO_PORT
routes:
  - upstream: origin
    cache:
      enabled: true
      max_object_size: 8MiB
upstreams:
  origin:
    endpoints: [ "http://127.0.0.1:$ORIGIN_PORT" ]
    retries: { attempts: 1 }
    outlier_detection: { consecutive_failures: 0 }
cache:
  max_size: 256MiB
access_log:
  path: $WORK/access.log
YAML

"$NODE" "$ROOT/src/cli/main.ts" serve -c "$WORK/portico.yaml" >"$WORK/portico.out" 2>&1 &
PORTICO_PID=$!
for _ in $(seq 1 100); do
  if "$NODE" -e 'require("node:net").connect(+process.argv[1], "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))' "$PORTICO_PORT"; then
    break
  fi
  if ! kill -0 "$PORTICO_PID" 2>/dev/null; then
    echo "conformance-cache: Portico did not start:" >&2
    cat "$WORK/portico.out" >&2
    exit 3
  fi
  sleep 0.1
done

set +e
ORIGIN_PORT="$ORIGIN_PORT" bash "$RUNNER" -p "$ORIGIN_PORT" "$@" "http://127.0.0.1:$PORTICO_PORT" "$CACHE_TESTS_DIR"
status=$?
set -e
exit "$status"
