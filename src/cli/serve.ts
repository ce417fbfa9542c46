/**
 * `portico serve`: runs the gateway from a config file or quick-mode flags; SIGHUP reloads
 * the file (like `nginx -s reload`), SIGTERM/SIGINT drain and stop.
 */
import type { Config } from '../config/schema.ts'
import { logger } from '../lib/logger.ts'

/** Options of `portico serve` as commander parses them. */
export interface ServeOptions {
  config?: string
  listen: string
  to?: string[]
  logFormat?: 'json' | 'text'
  exposeErrorDetails?: boolean
  /** Worker processes (`--workers`): `auto` or a number; overrides the file's `workers`. */
  workers?: string
}

/** Parses `--workers`: `auto` or a whole number from 1 to 256; null when it is neither. */
export function parseWorkers(text: string): 'auto' | number | null {
  if (text === 'auto') return 'auto'
  const n = Number(text)
  return /^\d+$/.test(text) && n >= 1 && n <= 256 ? n : null
}

/**
 * Loads the config, starts the gateway, and runs it until SIGINT/SIGTERM.
 *
 * - SIGHUP (config file only) re-reads the file: an invalid one is refused, its
 *   `file:line:column: message` lines written to stderr and the process log, and the
 *   running config keeps serving; a valid one is swapped in (`Gateway.reload`).
 * - SIGTERM/SIGINT drain: no new connections, in-flight requests finish for up to
 *   `shutdown.drain_timeout`, the access log is flushed, exit 0. A second signal stops at once.
 *
 * @returns the exit code: 0 after a clean stop, 1 when the config is invalid or a listener cannot bind, 2 on usage errors
 */
export async function serveCommand(opts: ServeOptions): Promise<number> {
  // Validation runs in a child process, so the YAML parser and zod never load here.
  const { ConfigError, formatProblems } = await import('../config/problems.ts')
  const { loadConfigIsolated } = await import('../config/isolated.ts')
  const loadConfigFile = (file: string): Promise<Config> => loadConfigIsolated({ file })
  let config: Config
  const workers = opts.workers === undefined ? undefined : parseWorkers(opts.workers)
  if (workers === null) {
    process.stderr.write(`portico serve: --workers ${opts.workers}: expected "auto" or a number of worker processes from 1 to 256\n`)
    return 2
  }
  try {
    if (opts.config) {
      config = await loadConfigFile(opts.config)
      if (opts.logFormat) config = { ...config, access_log: { ...config.access_log, format: opts.logFormat } }
    } else if (opts.to && opts.to.length > 0) {
      config = await loadConfigIsolated({ quick: { listen: opts.listen, to: opts.to, exposeErrorDetails: opts.exposeErrorDetails, logFormat: opts.logFormat, workers } })
    } else {
      process.stderr.write('portico serve: give -c portico.yaml, or --to http://host:port (quick mode)\n')
      return 2
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(formatProblems(err.problems) + '\n')
      return 1
    }
    throw err
  }
  const file = opts.config
  const loadConfig = file === undefined ? undefined : async (): Promise<Config> => {
    try {
      const c = await loadConfigFile(file)
      return opts.logFormat ? { ...c, access_log: { ...c.access_log, format: opts.logFormat } } : c
    } catch (err) {
      if (err instanceof ConfigError) process.stderr.write(`portico: reload refused, the running config keeps serving:\n${formatProblems(err.problems)}\n`)
      throw err
    }
  }
  const { workerCount } = await import('../cluster/count.ts')
  const count = await workerCount(workers ?? config.workers)
  if (count > 1) return serveCluster(config, count, loadConfig, file)
  const { Gateway } = await import('../server/gateway.ts')
  const { AdminServer } = await import('../admin/server.ts')
  const gw = new Gateway(config, { loadConfig, admin: (g) => new AdminServer(g) })
  // Taken before the listeners bind: a SIGTERM during the start drains once started, it does not kill.
  const stopSignal = waitForStopSignal()
  try {
    await gw.start()
  } catch (err) {
    process.stderr.write(`portico serve: cannot listen: ${(err as Error).message}\n`)
    // Listeners bound before the failure would keep the process up.
    await gw.stop(0)
    return 1
  }
  for (const l of gw.listeners) {
    const host = l.address.family === 'IPv6' ? `[${l.address.address}]` : l.address.address
    process.stderr.write(`portico: listening on ${l.config.tls ? 'https' : 'http'}://${host}:${l.address.port}\n`)
  }
  if (gw.admin?.address) {
    const a = gw.admin.address
    process.stderr.write(`portico: admin API on http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}\n`)
  }
  const onHup = (): void => {
    if (loadConfig === undefined) {
      logger.warn('SIGHUP ignored: quick mode has no config file to reload')
      return
    }
    void gw.reloadFromSource().then((r) => {
      if (r.ok) process.stderr.write(`portico: reloaded ${file}\n`)
    }, (err: Error) => logger.error({ err }, 'reload failed'))
  }
  process.on('SIGHUP', onHup)
  const signal = await stopSignal
  process.removeListener('SIGHUP', onHup)
  const drainMs = gw.runtime.config.shutdown.drain_timeout
  logger.info({ signal, drain_timeout_ms: drainMs }, `${signal}: draining, then stopping`)
  return drainAndStop(gw, drainMs)
}

/**
 * `portico serve` with several workers: this process becomes the primary (src/cluster/),
 * which loads no request path; the workers serve. Same signals, same lines on stderr, same
 * exit codes as one process.
 */
async function serveCluster(config: Config, workers: number, loadConfig: (() => Promise<Config>) | undefined, file: string | undefined): Promise<number> {
  const { Primary } = await import('../cluster/primary.ts')
  const { AdminServer } = await import('../admin/server.ts')
  const { hostView } = await import('../admin/host.ts')
  const primary = new Primary(config, { workers, loadConfig, admin: (p) => new AdminServer(hostView(p)) })
  const stopSignal = waitForStopSignal()
  try {
    await primary.start()
  } catch (err) {
    process.stderr.write(`portico serve: cannot listen: ${(err as Error).message}\n`)
    await primary.stop(0)
    return 1
  }
  for (const l of primary.listeners) {
    const host = l.family === 'IPv6' ? `[${l.address}]` : l.address
    process.stderr.write(`portico: listening on ${l.tls ? 'https' : 'http'}://${host}:${l.port}\n`)
  }
  process.stderr.write(`portico: ${workers} workers (${primary.distribution === 'reuseport' ? 'reusePort: the kernel spreads connections' : 'cluster round-robin: reusePort is not available here'})\n`)
  if (primary.admin?.address) {
    const a = primary.admin.address
    process.stderr.write(`portico: admin API on http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}\n`)
  }
  const onHup = (): void => {
    if (loadConfig === undefined) {
      logger.warn('SIGHUP ignored: quick mode has no config file to reload')
      return
    }
    void primary.reloadFromSource().then((r) => {
      if (r.ok) process.stderr.write(`portico: reloaded ${file} in ${r.workers.length} workers\n`)
      else if (r.refused === 'workers') process.stderr.write(`portico: reload ${r.error}\n`)
    }, (err: Error) => logger.error({ err }, 'reload failed'))
  }
  process.on('SIGHUP', onHup)
  const signal = await stopSignal
  process.removeListener('SIGHUP', onHup)
  const drainMs = primary.config.shutdown.drain_timeout
  logger.info({ signal, drain_timeout_ms: drainMs, workers }, `${signal}: draining ${workers} workers, then stopping`)
  return drainAndStop(primary, drainMs)
}

/**
 * Drains and stops `server` (a gateway or the primary of the workers) within `drainMs`; a
 * second SIGINT/SIGTERM exits at once with 1. Flushes the log.
 *
 * @returns 0, the exit code of a clean stop
 */
async function drainAndStop(server: { stop(drainMs: number): Promise<unknown> }, drainMs: number): Promise<number> {
  const force = (): void => {
    logger.warn('second signal: stopping now')
    process.exit(1)
  }
  process.once('SIGINT', force)
  process.once('SIGTERM', force)
  await server.stop(drainMs)
  logger.info('stopped')
  await new Promise<void>((resolve) => logger.flush(() => resolve()))
  // Nothing should keep the process up after a stop; if something does, do not hang the supervisor.
  setTimeout(() => process.exit(0), 1000).unref()
  return 0
}

/** Resolves with the first SIGINT or SIGTERM; its handlers stay from the call on, so no stop signal kills the process meanwhile. */
function waitForStopSignal(): Promise<string> {
  return new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('SIGTERM', () => resolve('SIGTERM'))
  })
}
