/** The config of quick mode (`portico serve --listen ADDR --to URL`): no file, same schema, same messages. */
import { ConfigError, configErrorMap, deepFreeze } from './load.ts'
import { configSchema } from './schema.ts'
import type { Config, ConfigInput } from './schema.ts'

/** Options of quick mode, as given on the command line. */
export interface QuickOptions {
  /** `host:port` to listen on (`--listen`), e.g. `"127.0.0.1:8080"`. */
  listen: string
  /** Endpoint URLs (`--to`, repeatable), e.g. `["http://127.0.0.1:3000"]`. At least one. */
  to: string[]
  /** Put internal addresses and raw error text in error responses. Default false. */
  exposeErrorDetails?: boolean
  /** Access log format. Default `json`. */
  logFormat?: 'json' | 'text'
  /** Worker processes (`--workers`): `auto` or a number. Default `auto`. */
  workers?: 'auto' | number
}

const FILE = '<command line>'

/**
 * Builds the config of quick mode: one listener, one catch-all route named `default`
 * to one upstream named `default` holding the given endpoints; everything else takes
 * the schema defaults. Validated by the same schema as portico.yaml.
 *
 * @returns the validated config, deep-frozen
 * @throws {ConfigError} with file `<command line>` at 1:1, one problem per bad option;
 *   messages name the option (`--to http://x/y: expected an endpoint URL ...`)
 */
export function quickConfig(opts: QuickOptions): Config {
  const input: ConfigInput = {
    listeners: [{ address: opts.listen }],
    routes: [{ name: 'default', upstream: 'default' }],
    upstreams: { default: { endpoints: opts.to } },
    access_log: { format: opts.logFormat ?? 'json' },
    expose_error_details: opts.exposeErrorDetails ?? false,
    workers: opts.workers ?? 'auto',
  }
  const result = configSchema.safeParse(input, { error: configErrorMap, reportInput: true })
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const [top, , , index] = issue.path
      const option =
        top === 'listeners' ? `--listen ${opts.listen}`
        : top === 'upstreams' && typeof index === 'number' ? `--to ${opts.to[index]}`
        : top === 'upstreams' ? '--to'
        : top === 'access_log' ? `--log-format ${String(opts.logFormat)}`
        : top === 'workers' ? `--workers ${String(opts.workers)}`
        : String(top ?? 'options')
      return { file: FILE, line: 1, column: 1, message: `${option}: ${issue.message}` }
    })
    throw new ConfigError(problems)
  }
  return deepFreeze(result.data)
}
