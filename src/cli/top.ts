/**
 * `portico top`: the dashboard's live view in a terminal (after `varnishstat` and `htop`),
 * for an SSH session where the admin port is not reachable from a browser. It reads the
 * admin API's `GET /stats` every second and redraws in place, worst rows first; `q` quits;
 * `--once` prints one frame for scripts.
 */
import { ConfigError, formatProblems, loadConfigFile } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { readAdminToken } from '../admin/server.ts'
import type { StatsView } from '../admin/stats.ts'
import { splitAddress } from '../server/gateway.ts'

/** Options of `portico top`. */
export interface TopOptions {
  /** Config file: its `admin.address` and `admin.token_file` say where to ask and with what. */
  config?: string
  /** Admin API `host:port`; default the config's `admin.address`, else 127.0.0.1:9901. */
  admin?: string
  /** File holding the admin token; default the config's `admin.token_file`. */
  tokenFile?: string
  /** Print one frame and exit. */
  once?: boolean
  /** Refresh period in ms; default 1000. */
  intervalMs?: number
}

/** The admin API address used when neither `--admin` nor a config says one. */
export const DEFAULT_ADMIN = '127.0.0.1:9901'

/** A terminal to draw on: standard output, or a test's stream with a size. */
export interface TopOutput extends NodeJS.WritableStream {
  columns?: number
  rows?: number
  isTTY?: boolean
}

/** A keyboard: standard input in raw mode, or a test's stream. */
export interface TopInput extends NodeJS.ReadableStream {
  isTTY?: boolean
  setRawMode?(mode: boolean): unknown
}

const pad = (s: string, n: number): string => (s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length))
const rpad = (s: string, n: number): string => (s.length >= n ? s.slice(0, n) : ' '.repeat(n - s.length) + s)
const ms = (v: number | null): string => (v === null ? '-' : v < 10 ? v.toFixed(1) : String(Math.round(v)))
const pct = (v: number | null): string => (v === null ? '-' : v === 0 ? '0' : (v * 100).toFixed(v < 0.1 ? 1 : 0))
const rate = (v: number): string => (v === 0 ? '0' : v < 10 ? v.toFixed(1) : String(Math.round(v)))

function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`
}

const RED = '\x1b[31;1m'
const AMBER = '\x1b[33m'
const BOLD = '\x1b[1m'
const RESET = '\x1b[0m'

/**
 * One frame of `portico top`: lines no wider than `width`, at most `height` of them.
 * Endpoints worst first (as `GET /stats` sorts them), then gateway errors of the last hour
 * by cause, then the latest failures in the rows left.
 *
 * @param color ANSI colours for rows that hurt (a terminal); plain text for scripts
 */
export function renderTop(v: StatsView, source: string, width = 80, height = 24, color = false): string[] {
  width = Math.max(60, width)
  height = Math.max(12, height)
  const now = Date.parse(v.at)
  const paint = (line: string, sev: 'bad' | 'warn' | 'ok' | 'head'): string => {
    const l = pad(line, width).trimEnd()
    if (!color) return l
    return sev === 'bad' ? RED + l + RESET : sev === 'warn' ? AMBER + l + RESET : sev === 'head' ? BOLD + l + RESET : l
  }
  const notUp = v.upstreams.reduce((n, u) => n + u.endpoints.filter((e) => e.state !== 'up').length, 0)
  const head = [
    paint(`portico top  ${source}  ${v.at.slice(11, 19)} UTC  ${v.errors_window} errors/min  ${notUp} not up`, 'head'),
    '',
  ]
  // Columns: endpoint, state, since, [in flight], req/s, [p50], p99, err%, then causes of the last minute;
  // in flight and p50 only when the terminal is 100 columns or wider.
  const wide = width >= 100
  const cols = (ep: string, state: string, since: string, infl: string, rps: string, p50: string, p99: string, err: string): string =>
    `${pad(ep, 21)} ${pad(state, 8)} ${rpad(since, 4)} ${wide ? `${rpad(infl, 4)} ` : ''}${rpad(rps, 5)} ${wide ? `${rpad(p50, 5)} ` : ''}${rpad(p99, 5)} ${rpad(err, 4)} `
  const tableHead = paint(`${cols('UPSTREAM/ENDPOINT', 'STATE', 'SINC', 'INFL', 'REQ/S', 'P50ms', 'P99ms', 'ERR%')}ERRORS/MIN BY CAUSE`, 'head')
  const rows: string[] = []
  for (const u of v.upstreams) {
    const r = u.retries
    rows.push(paint(`${u.name}  (${u.load_balancing}; retries ${r.another_endpoint} another endpoint, ${r.fresh_connection} fresh; budget refused ${r.budget_exhausted})`, u.severity === 'ok' ? 'ok' : u.severity))
    for (const e of u.endpoints) {
      const causes = Object.entries(e.causes_window).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} ${n}`).join(', ')
      const state = e.state === 'dns_failing' ? 'dns-fail' : e.state
      rows.push(paint(`${cols(` ${e.address}`, state, ago(e.since, now), String(e.in_flight), rate(e.requests_per_s), ms(e.p50_ms), ms(e.p99_ms), pct(e.error_rate))}${causes}`, e.severity))
    }
  }
  const hour = Object.entries(v.errors.causes).map(([t, c]) => [t, c.reduce((a, b) => a + b, 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
  const causeLines: string[] = [paint('GATEWAY ERRORS, LAST HOUR, BY CAUSE', 'head')]
  let line = ''
  for (const [t, n] of hour) {
    const item = `${t} ${n}`
    if (line !== '' && line.length + 2 + item.length > width) {
      causeLines.push(line)
      line = ''
    }
    line = line === '' ? item : `${line}  ${item}`
  }
  causeLines.push(line === '' ? 'none' : line)
  const footer = paint(`q quit  ·  refresh 1 s  ·  ${v.failures_total} failures since start`, 'head')
  // Failures get at least 3 rows; the table what is left.
  const fixedRows = head.length + 1 + causeLines.length + 1 + 1 + 1
  const failureRows = Math.max(3, Math.min(v.failures.length, 8))
  const tableRoom = Math.max(2, height - fixedRows - failureRows - 1)
  let table = rows
  if (rows.length > tableRoom) table = [...rows.slice(0, tableRoom - 1), `… ${rows.length - tableRoom + 1} more rows (worst shown first)`]
  const room = Math.max(0, height - head.length - 1 - table.length - causeLines.length - 1 - 1 - 1)
  const failures = v.failures.slice(0, room).map((f) =>
    paint(`${f.ts.slice(11, 19)} ${f.status} ${pad(f.error, 22)} ${pad(`${f.upstream ?? '-'} ${f.endpoint ?? ''}`.trim(), 24)} ${f.request_id}`, f.status >= 500 ? 'bad' : 'warn'))
  const out = [...head, tableHead, ...table, ...causeLines, paint('LATEST FAILURES', 'head'), ...(failures.length === 0 ? ['none'] : failures)]
  while (out.length < height - 1) out.push('')
  out.length = Math.min(out.length, height - 1)
  out.push(footer)
  return out.map((l) => (color ? l : l.slice(0, width)))
}

/** Where to ask and with which token. @throws {Error} with a message for the user */
async function target(opts: TopOptions): Promise<{ url: string; source: string; token: string | null }> {
  let config: Config | null = null
  if (opts.config !== undefined) {
    try {
      config = await loadConfigFile(opts.config)
    } catch (e) {
      if (e instanceof ConfigError) throw new Error(formatProblems(e.problems))
      throw e
    }
  }
  const address = opts.admin ?? config?.admin?.address ?? DEFAULT_ADMIN
  let { host, port } = splitAddress(address)
  // A wildcard listen address is reached on loopback.
  if (host === '0.0.0.0') host = '127.0.0.1'
  if (host === '::') host = '::1'
  const shown = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  const tokenFile = opts.tokenFile ?? config?.admin?.token_file
  return { url: `http://${shown}/stats`, source: shown, token: tokenFile === undefined ? null : readAdminToken(tokenFile) }
}

async function fetchStats(url: string, token: string | null): Promise<StatsView> {
  let res: Response
  try {
    res = await fetch(url, { headers: token === null ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) })
  } catch (e) {
    // undici puts the socket error in `cause` (an AggregateError of the addresses tried, on some systems).
    const c = (e as { cause?: { code?: string; errors?: Array<{ code?: string }> } }).cause
    const cause = c?.code ?? c?.errors?.[0]?.code ?? (e as Error).message
    throw new Error(`cannot reach the admin API at ${url}: ${cause}; is Portico running with an admin section (admin.address)?`)
  }
  if (res.status === 401) throw new Error(`the admin API at ${url} needs the token: give --token-file, or -c with the config whose admin.token_file holds it`)
  if (!res.ok) throw new Error(`the admin API at ${url} answered ${res.status}`)
  return await res.json() as StatsView
}

/**
 * Runs `portico top`.
 *
 * @returns the exit code: 0 after `q` (or one frame with `--once`), 1 when the admin API cannot be read
 */
export async function topCommand(opts: TopOptions, out: TopOutput, err: NodeJS.WritableStream, input: TopInput = process.stdin): Promise<number> {
  let t: Awaited<ReturnType<typeof target>>
  try {
    t = await target(opts)
  } catch (e) {
    err.write(`portico top: ${(e as Error).message}\n`)
    return 1
  }
  if (opts.once === true) {
    try {
      const v = await fetchStats(t.url, t.token)
      out.write(renderTop(v, t.source, out.columns ?? 80, out.rows ?? 24, false).join('\n') + '\n')
      return 0
    } catch (e) {
      err.write(`portico top: ${(e as Error).message}\n`)
      return 1
    }
  }
  const interval = opts.intervalMs ?? 1000
  // Alternate screen, cursor hidden: the terminal comes back as it was on quit.
  out.write('\x1b[?1049h\x1b[?25l')
  input.setRawMode?.(true)
  input.resume()
  let timer: NodeJS.Timeout | null = null
  let quit: () => void = () => {}
  const done = new Promise<void>((resolve) => { quit = resolve })
  const onKey = (chunk: Buffer | string) => {
    const s = chunk.toString()
    // q, Q, Ctrl-C, Ctrl-D
    if (/[qQ\x03\x04]/.test(s)) quit()
  }
  input.on('data', onKey)
  // Without raw mode (input not a terminal) Ctrl-C is a signal: quit the same way, terminal restored.
  const onSignal = () => quit()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const draw = async () => {
    const width = out.columns ?? 80
    const height = out.rows ?? 24
    let lines: string[]
    try {
      lines = renderTop(await fetchStats(t.url, t.token), t.source, width, height, true)
    } catch (e) {
      lines = [`portico top  ${t.source}`, '', (e as Error).message, '', 'retrying every second; q quits']
    }
    out.write('\x1b[H' + lines.map((l) => `${l}\x1b[K`).join('\r\n') + '\x1b[J')
  }
  let running = true
  const loop = async () => {
    if (!running) return
    await draw()
    if (running) timer = setTimeout(loop, interval)
  }
  void loop()
  await done
  running = false
  if (timer !== null) clearTimeout(timer)
  input.removeListener('data', onKey)
  process.removeListener('SIGINT', onSignal)
  process.removeListener('SIGTERM', onSignal)
  input.setRawMode?.(false)
  input.pause()
  out.write('\x1b[?25h\x1b[?1049l')
  return 0
}
