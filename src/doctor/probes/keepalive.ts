/** Keep-alive probe: measures how long the backend keeps an idle connection open and compares it with the proxy's upstream idle timeout (the intermittent-502 race). */
import { formatDuration } from '../../config/units.ts'
import type { Finding } from '../finding.ts'
import { exchange, header } from './exchange.ts'
import { MAX_PROBE_BODY_BYTES, servername } from './http.ts'
import { fixes, hostPort, keepaliveBelow, type ProbeOutput, type Target } from './target.ts'

/** Raw results of the keep-alive probe. Times in ms. */
export interface KeepaliveResult {
  /** `Keep-Alive: timeout=N` advertised by the backend, converted to ms. */
  advertisedTimeoutMs?: number
  /** The backend refused to keep the connection (`Connection: close` or closed right after the response). */
  noReuse: boolean
  /** Time from the end of the response to the backend closing the idle connection. */
  observedIdleMs?: number
  /** How long the probe waited for the close. */
  limitMs: number
  /** The exchange itself failed: no measurement. */
  error?: string
}

/**
 * How long the keep-alive probe waits for the backend to close an idle connection, ms:
 * Node's default `keepAliveTimeout` is 5 s and its server closes 1 s later
 * (`keepAliveTimeoutBuffer`), so 7.5 s measures it with a margin.
 */
export const KEEPALIVE_LIMIT_MS = 7500

/** Parses `timeout=N` (seconds) of a Keep-Alive header (RFC 2068 §19.7.1.1) into ms. */
export function parseKeepAliveTimeout(value: string | undefined): number | undefined {
  const m = value ? /(?:^|[,\s])timeout\s*=\s*(\d+)/i.exec(value) : null
  return m ? Number(m[1]) * 1000 : undefined
}

/**
 * Sends one keep-alive GET, reads the whole response, then waits (up to `limitMs`,
 * default {@link KEEPALIVE_LIMIT_MS}) for the backend to close the idle connection. Never throws.
 *
 * Findings: `keepalive.race` (connection_terminated) when the backend closes idle
 * connections no later than the proxy reuses them; `keepalive.ok` / `keepalive.unknown` (info).
 */
export async function probeKeepalive(target: Target, address: string, opts: { timeoutMs: number; limitMs?: number }): Promise<ProbeOutput<KeepaliveResult>> {
  const limitMs = opts.limitMs ?? KEEPALIVE_LIMIT_MS
  const r = await exchange({
    address, port: target.port, path: target.path, hostHeader: hostPort(target.host, target.port), method: 'GET',
    tls: target.scheme === 'https' ? { servername: servername(target.host) } : undefined,
    connectTimeoutMs: opts.timeoutMs, headerTimeoutMs: opts.timeoutMs, keepOpen: true, readBody: true, maxBodyBytes: MAX_PROBE_BODY_BYTES,
  })
  const result: KeepaliveResult = { noReuse: false, limitMs }
  if (r.outcome !== 'response') {
    result.error = r.error ?? r.outcome
    return { result, findings: [] }
  }
  // A body cut short or not read whole says nothing about keep-alive (the HTTP probe reports the body).
  if (r.bodyEnd !== undefined && r.bodyEnd !== 'complete') {
    r.socket?.destroy()
    result.error = `body ${r.bodyEnd}`
    return { result, findings: [] }
  }
  result.advertisedTimeoutMs = parseKeepAliveTimeout(header(r.headers, 'keep-alive'))
  const socket = r.socket
  if (!socket || header(r.headers, 'connection')?.toLowerCase().includes('close')) {
    socket?.destroy()
    result.noReuse = true
  } else {
    const t0 = performance.now()
    result.observedIdleMs = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy()
        resolve(undefined)
      }, limitMs)
      const closed = () => {
        clearTimeout(timer)
        socket.destroy()
        resolve(performance.now() - t0)
      }
      socket.once('end', closed)
      socket.once('close', closed)
      socket.resume()
    })
  }
  return { result, findings: keepaliveFindings(target, result) }
}

function keepaliveFindings(target: Target, r: KeepaliveResult): Finding[] {
  const proxyMs = target.proxy.keepaliveIdleTimeoutMs
  const evidence: string[] = []
  if (r.noReuse) evidence.push('the backend does not keep connections alive (Connection: close)')
  else if (r.observedIdleMs !== undefined) evidence.push(`the backend closed an idle keep-alive connection after ${r.observedIdleMs.toFixed(0)}ms`)
  else evidence.push(`the backend kept an idle connection open for at least ${formatDuration(r.limitMs)} (probe limit)`)
  evidence.push(r.advertisedTimeoutMs !== undefined ? `Keep-Alive: timeout=${r.advertisedTimeoutMs / 1000} advertised` : 'no Keep-Alive: timeout= advertised')
  const proxyName = target.system === 'nginx' ? `nginx upstream keepalive_timeout` : 'proxy upstream idle timeout (keepalive.idle_timeout)'
  evidence.push(proxyMs === null ? 'nginx does not reuse upstream connections here (no `keepalive` in the upstream block, or proxy_http_version 1.0 / Connection not cleared)' : `${proxyName}: ${formatDuration(proxyMs)}`)
  const base = { target: target.url, evidence }
  const info = (id: string, title: string): Finding[] => [{ ...base, id, severity: 'info', cause: null, likelihood: 0, title, fix: '' }]
  if (r.noReuse) return info('keepalive.off', 'The backend closes every connection after one response: no keep-alive race')
  if (proxyMs === null) return info('keepalive.unused', 'The proxy opens a new upstream connection per request: no keep-alive race')
  // Portico honours a shorter advertised Keep-Alive timeout; nginx ignores the header.
  const honoured = target.system !== 'nginx' && r.advertisedTimeoutMs !== undefined && r.advertisedTimeoutMs < proxyMs
  const backendMs = r.observedIdleMs ?? r.advertisedTimeoutMs
  if (backendMs === undefined) {
    if (r.limitMs >= proxyMs) return info('keepalive.ok', `The backend keeps idle connections longer than the proxy (${formatDuration(proxyMs)})`)
    return info('keepalive.unknown', `The backend kept idle connections past the probe limit (${formatDuration(r.limitMs)}); the proxy keeps them ${formatDuration(proxyMs)}`)
  }
  if (backendMs <= proxyMs && !honoured) {
    const suggested = keepaliveBelow(backendMs)
    return [{
      ...base, id: 'keepalive.race', severity: 'error', cause: 'connection_terminated', likelihood: 0.8,
      title: `The backend closes idle connections after ${formatDuration(Math.round(backendMs))}, before the proxy stops reusing them (${formatDuration(proxyMs)}): intermittent 502s`,
      evidence: [...evidence, 'a request sent on a connection the backend is closing fails with a reset or an empty reply (upstream prematurely closed connection)'],
      fix: fixes.keepaliveIdle(target, suggested, Math.round(backendMs)),
    }]
  }
  return info('keepalive.ok', `The backend keeps idle connections ${formatDuration(Math.round(backendMs))}, longer than the proxy (${formatDuration(proxyMs)})`)
}
