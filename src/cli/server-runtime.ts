/**
 * The runtime settings of a serving process, which glibc reads only when a process starts:
 * `portico serve` replaces its own process image once with them (execve: same PID, same
 * standard streams, the same arguments), before loading anything else. (Worker processes
 * also get a smaller young generation: see `WORKER_NODE_FLAGS` in src/cluster/primary.ts.)
 *
 * - `MALLOC_ARENA_MAX=1`: glibc gives each thread (V8's compiler and GC helpers, libuv's
 *   pool) a malloc arena of its own and seldom returns their free memory; one arena holds
 *   3 to 5 MB less under load, and the CPU per request does not change (the request path
 *   runs on one thread; the helpers allocate little through malloc). Settings already in
 *   the environment or on the command line win.
 *
 * `PORTICO_NODE_DEFAULTS=1` keeps Node's own defaults (no re-exec).
 */

/**
 * V8 flags added for `serve`, unless the command line sets them already:
 * `--initial-old-space-size=64` (MB). Since the serving process loads little (the bundle,
 * the lazy built-ins), its CPU per request in bench/compare.sh was 3 µs above what it was
 * before; with this flag it measured 33 against 36 µs and 35 against 38 in the two orders,
 * with the same RSS idle and under load (bench/run.sh memory). Why is not traced:
 * `--trace-gc` shows few full GCs either way (3 in 6 s of wrk load without the flag). A single serving process keeps V8's
 * young generation as it grows it; worker processes, whose memory their number multiplies,
 * get a small one instead (WORKER_NODE_FLAGS in src/cluster/primary.ts), without this flag.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64']
/** Environment settings added for `serve`, unless already set. */
export const SERVE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' }
/** Set in the re-executed process, so it does not do it again (nor do workers it forks). */
const APPLIED = 'PORTICO_SERVER_RUNTIME'

/**
 * Re-executes this process with {@link SERVE_NODE_FLAGS} and {@link SERVE_ENV} when they are
 * not in force yet; returns (doing nothing) when they are, when `PORTICO_NODE_DEFAULTS=1`,
 * or where `process.execve` does not exist (Windows). It does not return otherwise.
 */
export function applyServerRuntime(): void {
  if (process.env[APPLIED] === '1' || process.env.PORTICO_NODE_DEFAULTS === '1' || typeof process.execve !== 'function') return
  const script = process.argv[1]
  if (script === undefined) return
  const flags = SERVE_NODE_FLAGS.filter((f) => !process.execArgv.some((a) => a.split('=')[0] === f.split('=')[0]))
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, script, ...process.argv.slice(2)], { ...SERVE_ENV, ...process.env, [APPLIED]: '1' })
}
