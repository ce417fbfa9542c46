/** HTTP probe: `curl -I`-like HEAD then repeated GETs over raw sockets, judged against the proxy's first-byte timeout and header size limit. */
import { formatDuration } from '../../config/units.ts'
import type { Finding } from '../finding.ts'
import type { CauseType } from '../../failures/causes.ts'
import { exchange, type ExchangeResult } from './exchange.ts'
import { fixes, hostPort, type ProbeOutput, type Target } from './target.ts'

/** Latency distribution of the time to a complete response header, ms (nearest-rank percentiles). */
export interface LatencyStats {
  count: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** Raw results of the HTTP probe. */
export interface HttpResult {
  /** Address used (the first one that accepted TCP). */
  address: string
  head: ExchangeResult
  /** GET samples, in order; stops at the first failure. */
  samples: ExchangeResult[]
  /** Over the successful samples (HEAD excluded). */
  latency?: LatencyStats
  /** The first failed exchange, if any. */
  failure?: ExchangeResult
  /** The first GET whose body did not arrive whole and steadily (cut short, stalled or still arriving at the bound), if any. */
  bodyProblem?: ExchangeResult
  /** Longest silence between body reads over all GETs, ms. */
  bodyMaxGapMs?: number
}

/** Options of {@link probeHttp}. */
export interface HttpProbeOptions {
  /** Upper bound for any single wait (connect, header, one whole body), ms. */
  timeoutMs: number
  /** Number of GETs for the latency distribution; default 10, at most 100. */
  samples?: number
}

/** Nearest-rank percentile (RFC 2330-style) of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** p50/p90/p99/max of a list of ms values. */
export function latencyStats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b)
  return { count: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] }
}

/**
 * Sends HEAD, then `samples` sequential GETs, each on a new connection to `address`
 * with `Connection: close` (what curl does), and judges the answers. The header wait
 * waits up to `timeoutMs` whatever the proxy's first-byte timeout, so the latency a fix
 * must cover is measured; sampling stops after two answers slower than the proxy allows.
 * Each GET reads the whole body (at most {@link MAX_PROBE_BODY_BYTES}, within `timeoutMs`),
 * and a silence between two body reads is bounded the same way by the proxy's idle timeout.
 * Sampling stops at the first failure or body problem. Never throws.
 *
 * Findings: `http.no_header` (http_response_timeout), `http.terminated`
 * (connection_terminated), `http.garbage` / `http.tls_on_http` (http_protocol_error),
 * `http.header_size` (http_response_header_section_size), `http.slow` (p99 against the
 * first-byte timeout), `http.body_incomplete` (http_response_incomplete: closed or reset
 * before the Content-Length or last chunk), `http.body_stall` / `http.body_stall_near`
 * (connection_read_timeout: a silence mid-body against the idle timeout), `http.body_slow`,
 * `http.backend_5xx`, `http.ok` (info).
 */
/** Most body bytes one GET of the HTTP probe reads: 8 MiB. */
export const MAX_PROBE_BODY_BYTES = 8 * 1024 * 1024

export async function probeHttp(target: Target, address: string, opts: HttpProbeOptions): Promise<ProbeOutput<HttpResult>> {
  const n = Math.max(1, Math.min(100, Math.floor(opts.samples ?? 10)))
  // Wait up to --timeout whatever the proxy's timeout: a fix must name a value above the real latency, so it has to be measured.
  const headerTimeoutMs = Math.max(1, opts.timeoutMs)
  const common = {
    address, port: target.port, path: target.path, hostHeader: hostPort(target.host, target.port),
    tls: target.scheme === 'https' ? { servername: servername(target.host) } : undefined,
    connectTimeoutMs: Math.min(opts.timeoutMs, target.proxy.connectTimeoutMs), headerTimeoutMs,
  }
  const bodyIdleBoundMs = Math.max(1, opts.timeoutMs)
  const started = performance.now()
  const head = await exchange({ ...common, method: 'HEAD' })
  const result: HttpResult = { address, head, samples: [] }
  if (head.outcome !== 'response') result.failure = head
  else {
    for (let i = 0; i < n; i++) {
      const r = await exchange({
        ...common, method: 'GET', readBody: true, maxBodyBytes: MAX_PROBE_BODY_BYTES,
        bodyTimeoutMs: opts.timeoutMs, bodyIdleTimeoutMs: bodyIdleBoundMs,
      })
      result.samples.push(r)
      if (r.outcome !== 'response') {
        result.failure = r
        break
      }
      if (r.bodyMaxGapMs !== undefined) result.bodyMaxGapMs = Math.max(result.bodyMaxGapMs ?? 0, r.bodyMaxGapMs)
      if (r.bodyEnd && r.bodyEnd !== 'complete' && r.bodyEnd !== 'limit') {
        result.bodyProblem = r
        break
      }
      // A slow backend is proven by two answers slower than the proxy allows; and the whole probe stays within about 2 × --timeout.
      const slow = result.samples.filter((x) => (x.headerMs ?? 0) >= target.proxy.responseHeaderTimeoutMs).length
      if (slow >= 2 || performance.now() - started > 2 * opts.timeoutMs) break
    }
    const ok = result.samples.filter((s) => s.outcome === 'response' && s.headerMs !== undefined)
    if (ok.length) result.latency = latencyStats(ok.map((s) => s.headerMs as number))
  }
  return { result, findings: httpFindings(target, result, headerTimeoutMs, opts.timeoutMs) }
}

/** SNI name: none for IP literals (RFC 6066 §3 forbids them). */
export function servername(host: string): string | undefined {
  return /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host
}

const ms = (n: number | undefined) => (n === undefined ? '?' : `${n.toFixed(1)}ms`)

/** One evidence line describing an exchange, e.g. `HEAD 127.0.0.1:80 → 200 in 3.1ms, header 120 bytes`. */
export function describeExchange(method: string, r: ExchangeResult): string {
  const where = `${method} ${hostPort(r.address, r.port)}`
  if (r.outcome === 'response') {
    const body = r.bodyEnd && r.bodyEnd !== 'complete' ? `; ${describeBody(r)}` : ''
    return `${where} → ${r.status} in ${ms(r.headerMs)}, header ${r.headerBytes} bytes${body}`
  }
  const bytes = r.firstBytesHex ? `, first bytes 0x${r.firstBytesHex}` : ''
  return `${where} → ${r.outcome.replaceAll('_', ' ')}${r.error ? ` (${r.error})` : ''}${bytes}`
}

const BODY_END_WORDS: Record<string, string> = {
  closed: 'then the connection closed (FIN)',
  reset: 'then the connection was reset',
  stalled: 'then nothing more arrived',
  timeout: 'still arriving when the probe stopped',
  limit: 'the probe stopped at its size bound',
  complete: 'complete',
}

/** One phrase describing a body read, e.g. `body 65536 of 1048576 bytes (Content-Length), then the connection was reset (ECONNRESET) after 4.0ms`. */
export function describeBody(r: ExchangeResult): string {
  const of = r.contentLength !== undefined ? ` of ${r.contentLength} bytes (Content-Length)` : r.chunked ? ' bytes (chunked, no last chunk yet)' : ' bytes (until close)'
  const err = r.bodyEnd === 'reset' && r.error ? ` (${r.error})` : ''
  const gap = r.bodyMaxGapMs !== undefined ? `, longest silence ${ms(r.bodyMaxGapMs)}` : ''
  return `body ${r.bodyBytes ?? 0}${r.bodyEnd === 'complete' && r.contentLength !== undefined ? ' bytes' : of}, ${BODY_END_WORDS[r.bodyEnd ?? 'complete']}${err} after ${ms(r.bodyMs)}${gap}`
}

/** Findings about the body of one GET: cut short, a silence against the idle timeout, or still arriving at the bound. */
function bodyFindings(target: Target, r: HttpResult, evidence: string[], timeoutMs: number): Finding[] {
  const idle = target.proxy.bodyIdleTimeoutMs
  const idleText = `the proxy's idle timeout is ${formatDuration(idle)}`
  const p = r.bodyProblem
  const base = { target: target.url }
  if (p && (p.bodyEnd === 'closed' || p.bodyEnd === 'reset')) {
    const how = p.bodyEnd === 'reset' ? 'reset the connection' : 'closed the connection'
    const expected = p.contentLength !== undefined ? `${p.bodyBytes} of ${p.contentLength} bytes` : `${p.bodyBytes} bytes, no last chunk`
    return [{
      ...base, id: 'http.body_incomplete', severity: 'critical', cause: 'http_response_incomplete', likelihood: 0.9,
      evidence: [`${describeBody(p)}`, ...evidence],
      title: `The backend ${how} mid-body: ${expected} received`,
      fix: fixes.incompleteBody(target),
    }]
  }
  const gap = p?.bodyMaxGapMs ?? r.bodyMaxGapMs ?? 0
  if (gap >= idle) {
    const where = p ? ` (${describeBody(p)})` : ''
    return [{
      ...base, id: 'http.body_stall', severity: 'critical', cause: 'connection_read_timeout', likelihood: 0.9,
      evidence: [`longest silence between body reads ${ms(gap)}; ${idleText}${where}`, ...evidence],
      title: `The body stalls for ${ms(gap)} between two reads, longer than the proxy's idle timeout (${formatDuration(idle)})`,
      fix: fixes.bodyIdleTimeout(target, gap),
    }]
  }
  // The read ended in silence but within the proxy's idle timeout: the backend stopped sending and the probe gave up first.
  if (p && (p.bodyEnd === 'stalled' || (p.bodyEnd === 'timeout' && gap >= 0.5 * (p.bodyMs ?? timeoutMs)))) {
    return [{
      ...base, id: 'http.body_stall', severity: 'error', cause: 'connection_read_timeout', likelihood: 0.8,
      evidence: [`${describeBody(p)}; ${idleText}`, ...evidence],
      title: `The body stopped at ${p.bodyBytes}${p.contentLength !== undefined ? ` of ${p.contentLength}` : ''} bytes and nothing came for ${ms(gap)} (the probe stopped waiting; ${idleText})`,
      fix: `The backend stops sending mid-body: a proxy waiting longer ends it with a read timeout, or the client gives up. Check the application for a stuck writer or a slow dependency while streaming. ${fixes.bodyIdleTimeout(target, gap)}`,
    }]
  }
  if (gap >= 0.8 * idle) {
    return [{
      ...base, id: 'http.body_stall_near', severity: 'warning', cause: 'connection_read_timeout', likelihood: 0.5,
      evidence: [`longest silence between body reads ${ms(gap)}; ${idleText}`, ...evidence],
      title: `The body pauses for ${ms(gap)} between two reads, close to the proxy's idle timeout (${formatDuration(idle)})`,
      fix: fixes.bodyIdleTimeout(target, gap),
    }]
  }
  if (p?.bodyEnd === 'timeout') {
    return [{
      ...base, id: 'http.body_slow', severity: 'warning', cause: null, likelihood: 0.3,
      evidence: [describeBody(p), ...evidence],
      title: `The body was still arriving after ${formatDuration(timeoutMs)} (${p.bodyBytes} bytes so far), without a silence near the idle timeout`,
      fix: `A long download is fine for the idle timeout; if the proxy caps the whole exchange (Portico \`upstreams.<name>.timeouts.total\`), check it against this duration.`,
    }]
  }
  return []
}

function failureFinding(target: Target, f: ExchangeResult, evidence: string[], headerTimeoutMs: number): Finding | null {
  const base = { target: target.url, evidence }
  const mk = (id: string, cause: CauseType, likelihood: number, title: string, fix: string): Finding => ({ ...base, id, cause, severity: 'critical', likelihood, title, fix })
  switch (f.outcome) {
    case 'header_timeout': {
      const beyond = headerTimeoutMs >= target.proxy.responseHeaderTimeoutMs
      return mk('http.no_header', 'http_response_timeout', 0.9,
        `No response header within ${formatDuration(headerTimeoutMs)}${beyond ? ` (the proxy's first-byte timeout is ${formatDuration(target.proxy.responseHeaderTimeoutMs)})` : ''}`,
        `The application accepts connections but does not answer: check it for stuck workers, deadlocks or slow dependencies. ${fixes.responseHeaderTimeout(target, headerTimeoutMs, false)}`)
    }
    case 'reset_before_header':
    case 'closed_before_header':
      return mk('http.terminated', 'connection_terminated', 0.85,
        `The backend ${f.outcome === 'reset_before_header' ? 'reset' : 'closed'} the connection before sending a response header`,
        'Check the application logs for crashes, killed workers or a request it rejects by closing; check that nothing between (a load balancer, a firewall) cuts connections.')
    case 'garbage':
      return mk('http.garbage', 'http_protocol_error', 0.85, 'The backend answered with bytes that are not HTTP/1.x',
        `Check that ${hostPort(target.host, target.port)} is the HTTP port of the application (not a database, gRPC-only or another protocol).`)
    case 'tls_bytes':
      return mk('http.tls_on_http', 'http_protocol_error', 0.9, `The backend speaks TLS on ${target.url} (an http:// endpoint)`, fixes.scheme(target, 'https'))
    case 'header_too_large':
      return mk('http.header_size', 'http_response_header_section_size', 0.9, `The response header section exceeds ${f.headerBytes} bytes`, fixes.headerSize(target, f.headerBytes ?? 0))
    case 'tls_error':
      return mk('http.tls_error', 'tls_protocol_error', 0.6, `TLS to ${hostPort(target.host, target.port)} failed (${f.error})`, fixes.scheme(target, 'http'))
    case 'refused':
      return mk('http.refused', 'connection_refused', 0.6, 'The backend refused a connection during the HTTP probe', fixes.refused(target))
    case 'connect_timeout':
      return mk('http.connect_timeout', 'connection_timeout', 0.6, 'A connect timed out during the HTTP probe (intermittent: full backlog?)', fixes.connect(target))
    case 'unreachable':
      return mk('http.unreachable', 'destination_ip_unroutable', 0.6, 'The backend became unreachable during the HTTP probe', 'Check routes and firewall rules.')
    default:
      return null
  }
}

function httpFindings(target: Target, r: HttpResult, headerTimeoutMs: number, timeoutMs: number): Finding[] {
  const evidence = [describeExchange('HEAD', r.head), ...r.samples.slice(0, 3).map((s) => describeExchange('GET', s))]
  if (r.samples.length > 3 && r.failure && !evidence.includes(describeExchange('GET', r.failure))) evidence.push(describeExchange('GET', r.failure))
  const findings: Finding[] = []
  if (r.failure) {
    const f = failureFinding(target, r.failure, evidence, headerTimeoutMs)
    if (f) findings.push(f)
  }
  findings.push(...bodyFindings(target, r, evidence, timeoutMs))
  const responses = [r.head, ...r.samples].filter((x) => x.outcome === 'response')
  const biggest = Math.max(0, ...responses.map((x) => x.headerBytes ?? 0))
  const limit = target.proxy.maxResponseHeaderBytes
  if (biggest > limit) {
    findings.push({ target: target.url, evidence: [...evidence, `largest header section ${biggest} bytes > the proxy's limit ${limit} bytes`], id: 'http.header_size', severity: 'critical', cause: 'http_response_header_section_size', likelihood: 0.9, title: `The response header section (${biggest} bytes) is larger than the proxy accepts (${limit} bytes)`, fix: fixes.headerSize(target, Math.max(biggest, limit)) })
  } else if (biggest > 0.8 * limit) {
    findings.push({ target: target.url, evidence: [...evidence, `largest header section ${biggest} bytes, limit ${limit} bytes`], id: 'http.header_size_near', severity: 'warning', cause: 'http_response_header_section_size', likelihood: 0.4, title: `The response header section (${biggest} bytes) is close to the proxy's limit (${limit} bytes)`, fix: fixes.headerSize(target, Math.max(biggest, limit)) })
  }
  const fiveXX = responses.find((x) => x.status === 502 || x.status === 503 || x.status === 504)
  if (fiveXX) {
    findings.push({ target: target.url, evidence, id: 'http.backend_5xx', severity: 'error', cause: null, likelihood: 0.6, title: `The backend itself answers ${fiveXX.status}`, fix: 'The proxy only relays this status: look at the application (or the next proxy behind it), not at the proxy in front.' })
  }
  if (r.latency) {
    const l = r.latency
    const t = target.proxy.responseHeaderTimeoutMs
    const dist = `first-byte latency over ${l.count} GETs: p50 ${ms(l.p50)}, p90 ${ms(l.p90)}, p99 ${ms(l.p99)}, max ${ms(l.max)}; proxy first-byte timeout ${formatDuration(t)}`
    if (l.p99 >= t) {
      findings.push({ target: target.url, evidence: [dist, ...evidence], id: 'http.slow', severity: 'error', cause: 'http_response_timeout', likelihood: 0.8, title: `p99 first-byte latency (${ms(l.p99)}) exceeds the proxy's first-byte timeout (${formatDuration(t)})`, fix: fixes.responseHeaderTimeout(target, l.max) })
    } else if (l.p99 >= 0.8 * t) {
      findings.push({ target: target.url, evidence: [dist, ...evidence], id: 'http.slow_near', severity: 'warning', cause: 'http_response_timeout', likelihood: 0.5, title: `p99 first-byte latency (${ms(l.p99)}) is close to the proxy's first-byte timeout (${formatDuration(t)})`, fix: fixes.responseHeaderTimeout(target, l.max) })
    } else if (!r.failure && !r.bodyProblem) {
      findings.push({ target: target.url, evidence: [dist, ...evidence], id: 'http.ok', severity: 'info', cause: null, likelihood: 0, title: `HTTP answers ${r.head.status} (p99 ${ms(l.p99)})`, fix: '' })
    }
  }
  return findings
}
