/** `portico check -c FILE`: validates a config without starting anything, like `nginx -t`. */
import { basename } from 'node:path'
import { readAdminToken } from '../admin/server.ts'
import { ConfigError, formatProblems, loadConfigFile } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { certificateWarnings } from '../server/tls.ts'

/**
 * Validates a config file and reports the outcome.
 *
 * On success writes one line to `out`, e.g.
 * `portico.yaml: ok (1 listener, 3 routes, 2 upstreams, 5 endpoints)`, and returns 0,
 * after one `warning: ...` line per problem that does not stop Portico to `err` (two
 * certificates of one key type for the same names, an OCSP response that cannot be stapled).
 * On failure writes one `file:line:column: message` line per problem to `err` (or
 * `file: key: message` for a certificate, key, OCSP response or token file that cannot
 * be read or is invalid) and returns 1. Never throws for a bad or unreadable config; other errors propagate.
 *
 * @param file path of the config file, printed as given in problems and by base name in the summary
 * @returns the process exit code (0 valid, 1 invalid)
 */
export async function checkCommand(file: string, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  let config: Config
  try {
    config = await loadConfigFile(file)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    err.write(`${formatProblems(e.problems)}\n`)
    return 1
  }
  // Like `nginx -t`, the files the config names must be readable: certificates, keys, OCSP responses, the admin token.
  const errors: string[] = []
  const warnings: string[] = []
  config.listeners.forEach((lc, i) => {
    if (!lc.tls) return
    try {
      for (const w of certificateWarnings(lc.tls)) warnings.push(`${file}: listeners[${i}].tls.certificates: ${w}`)
    } catch (e) {
      errors.push(`${file}: listeners[${i}].tls.certificates: ${(e as Error).message}`)
    }
  })
  if (config.admin?.token_file !== undefined) {
    try {
      readAdminToken(config.admin.token_file)
    } catch (e) {
      errors.push(`${file}: admin.token_file: ${(e as Error).message}`)
    }
  }
  for (const w of warnings) err.write(`warning: ${w}\n`)
  if (errors.length > 0) {
    err.write(`${errors.join('\n')}\n`)
    return 1
  }
  out.write(`${basename(file)}: ok (${summary(config)})\n`)
  return 0
}

function summary(config: Config): string {
  const upstreams = Object.values(config.upstreams)
  const endpoints = upstreams.reduce((n, u) => n + u.endpoints.length, 0)
  return [
    count(config.listeners.length, 'listener'),
    count(config.routes.length, 'route'),
    count(upstreams.length, 'upstream'),
    count(endpoints, 'endpoint'),
  ].join(', ')
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
