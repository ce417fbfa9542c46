/**
 * `portico reload -c FILE`: validates the file, then asks the running instance to reload
 * through the admin API (`POST /reload`), like `nginx -s reload` after `nginx -t`.
 */
import { ConfigError, formatProblems, loadConfigFile, type ConfigProblem } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { describeReload, type ReloadSummary } from '../server/reload.ts'
import { splitAddress } from '../server/gateway.ts'
import { readAdminToken } from '../admin/server.ts'

/** Options of `portico reload`. */
export interface ReloadOptions {
  /** The config file: validated here, and its `admin.address` says where the instance listens. */
  config: string
  /** Admin API `host:port` to use instead of the file's `admin.address`. */
  admin?: string
  /** How long to wait for the instance's answer, in ms. Default 10000. */
  timeoutMs?: number
}

/**
 * Validates the file, then POSTs `/reload` to the running instance's admin API, as JSON
 * and with the bearer token of the file's `admin.token_file` when it has one. The
 * instance re-reads the file it was started from (normally the same file).
 *
 * Writes one `file:line:column: message` line per problem to `err` when the file (or the
 * instance's copy of it) is invalid; on success one `reloaded: ...` summary line to `out`.
 *
 * @returns the exit code: 0 reloaded, 1 invalid config, no admin API, refused or unreachable
 */
export async function reloadCommand(opts: ReloadOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  let config: Config
  try {
    config = await loadConfigFile(opts.config)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    err.write(`${formatProblems(e.problems)}\n`)
    return 1
  }
  const address = opts.admin ?? config.admin?.address
  if (address === undefined) {
    err.write(`portico reload: ${opts.config} has no "admin" section, so there is no admin API to ask; add admin: { address: 127.0.0.1:9901 }, give --admin, or send SIGHUP to the process\n`)
    return 1
  }
  let host: string
  let port: number
  try {
    ({ host, port } = splitAddress(address))
  } catch (e) {
    err.write(`portico reload: ${(e as Error).message}\n`)
    return 1
  }
  // A wildcard listen address is reached on loopback.
  if (host === '0.0.0.0') host = '127.0.0.1'
  if (host === '::') host = '::1'
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/reload`
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  const tokenFile = config.admin?.token_file
  if (tokenFile !== undefined) {
    try {
      headers.authorization = `Bearer ${readAdminToken(tokenFile)}`
    } catch (e) {
      err.write(`portico reload: ${(e as Error).message}\n`)
      return 1
    }
  }
  let res: Response
  try {
    res = await fetch(url, { method: 'POST', headers, body: '{}', signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) })
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message
    err.write(`portico reload: cannot reach the admin API at ${url}: ${cause}; is portico serve running with this config?\n`)
    return 1
  }
  const body = await res.json().catch(() => null) as { ok?: boolean; error?: string; message?: string; problems?: ConfigProblem[]; refused?: string; workers?: Array<{ ok: boolean }> } & Partial<ReloadSummary> | null
  if (res.ok && body?.ok === true) {
    out.write(`${describeReload(body as ReloadSummary)}${body.workers ? ` (in ${body.workers.length} worker${body.workers.length === 1 ? '' : 's'})` : ''}\n`)
    for (const w of body.warnings ?? []) out.write(`warning: ${w}\n`)
    return 0
  }
  if (body?.problems && body.problems.length > 0) err.write(`${formatProblems(body.problems)}\n`)
  if (body?.refused === 'workers') {
    // The file was valid: some workers run it, the others do not.
    err.write(`portico reload: applied by ${body.workers?.filter((w) => w.ok).length ?? 0} of ${body.workers?.length ?? 0} workers: ${body.error}\n`)
    return 1
  }
  err.write(`portico reload: refused (${res.status}): ${body?.message ?? body?.error ?? 'unexpected answer'}; the running config keeps serving\n`)
  return 1
}
