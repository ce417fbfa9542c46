/**
 * `portico serve`: runs the gateway from a config file or quick-mode flags until SIGINT/SIGTERM.
 */
import type { Config } from '../config/schema.ts'
import { Gateway } from '../server/gateway.ts'

/** Options of `portico serve` as commander parses them. */
export interface ServeOptions {
  config?: string
  listen: string
  to?: string[]
  logFormat?: 'json' | 'text'
  exposeErrorDetails?: boolean
}

/**
 * Loads the config, starts the gateway, and stops it on SIGINT/SIGTERM.
 *
 * @returns the exit code: 0 after a clean stop, 1 when the config is invalid or a listener cannot bind, 2 on usage errors
 */
export async function serveCommand(opts: ServeOptions): Promise<number> {
  const { ConfigError, formatProblems, loadConfigFile } = await import('../config/load.ts')
  const { quickConfig } = await import('../config/quick.ts')
  let config: Config
  try {
    if (opts.config) {
      config = await loadConfigFile(opts.config)
      if (opts.logFormat) config = { ...config, access_log: { ...config.access_log, format: opts.logFormat } }
    } else if (opts.to && opts.to.length > 0) {
      config = quickConfig({ listen: opts.listen, to: opts.to, exposeErrorDetails: opts.exposeErrorDetails, logFormat: opts.logFormat })
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
  const gw = new Gateway(config)
  try {
    await gw.start()
  } catch (err) {
    process.stderr.write(`portico serve: cannot listen: ${(err as Error).message}\n`)
    return 1
  }
  for (const l of gw.listeners) {
    process.stderr.write(`portico: listening on http://${l.address.address}:${l.address.port}\n`)
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await gw.stop(10_000)
  return 0
}
