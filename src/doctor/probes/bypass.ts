/** Bypass probe: the same request direct to the backend and through the proxy, compared, to tell proxy-side from backend-side failures. */
import type { CauseType } from '../../failures/causes.ts'
import { CAUSE_TYPES } from '../../failures/causes.ts'
import type { Finding } from '../finding.ts'
import { exchange, header, type ExchangeResult } from './exchange.ts'
import { describeExchange, servername } from './http.ts'
import { hostPort, type ProbeOutput, type Target } from './target.ts'

/** One member of a Proxy-Status field (RFC 9209 §2). */
export interface ProxyStatusMember {
  /** Proxy name, e.g. `portico`. */
  proxy: string
  /** `error` parameter, when the proxy generated the response. */
  error?: string
  /** `received-status` parameter, when the proxy relayed the upstream's status. */
  receivedStatus?: number
  details?: string
}

/**
 * Parses a Proxy-Status field value (an RFC 8941 list: `portico; error=connection_refused, cdn; received-status=502`).
 * Tolerant: members that do not parse are skipped.
 */
export function parseProxyStatus(value: string | undefined): ProxyStatusMember[] {
  if (!value) return []
  const members: ProxyStatusMember[] = []
  // Split on commas outside quoted strings.
  for (const raw of value.match(/(?:[^,"]|"(?:\\.|[^"\\])*")+/g) ?? []) {
    const parts = raw.match(/(?:[^;"]|"(?:\\.|[^"\\])*")+/g) ?? []
    const proxy = parts[0]?.trim().replace(/^"|"$/g, '')
    if (!proxy) continue
    const m: ProxyStatusMember = { proxy }
    for (const p of parts.slice(1)) {
      const eq = p.indexOf('=')
      if (eq < 0) continue
      const key = p.slice(0, eq).trim()
      const val = p.slice(eq + 1).trim().replace(/^"|"$/g, '').replace(/\\(.)/g, '$1')
      if (key === 'error') m.error = val
      else if (key === 'received-status') m.receivedStatus = Number(val)
      else if (key === 'details') m.details = val
    }
    members.push(m)
  }
  return members
}

/** Where the failure lies, from comparing the two answers. */
export type BypassVerdict = 'proxy-side' | 'backend-side' | 'same' | 'proxy-masks'

/** Raw results of the bypass probe. */
export interface BypassResult {
  via: string
  direct: ExchangeResult
  proxied: ExchangeResult
  /** Proxy-Status members from the proxied response. */
  proxyStatus: ProxyStatusMember[]
  verdict: BypassVerdict
  /** What differs between the two answers (status, headers, body digest). */
  differences: string[]
}

/** Whether the body was cut short (closed or reset before its declared end). */
function bodyCut(r: ExchangeResult): boolean {
  return r.bodyEnd === 'closed' || r.bodyEnd === 'reset'
}

function failed(r: ExchangeResult): boolean {
  return r.outcome !== 'response' || (r.status ?? 0) >= 500 || bodyCut(r)
}

function summary(label: string, r: ExchangeResult): string {
  const extra = r.outcome === 'response'
    ? ['proxy-status', 'server', 'content-type'].map((h) => header(r.headers, h)).map((v, i) => (v ? `${['Proxy-Status', 'Server', 'Content-Type'][i]}: ${v}` : '')).filter(Boolean).join('; ')
    : ''
  const digest = r.bodySha256 ? `; body sha256 ${r.bodySha256.slice(0, 16)}… (${r.bodyBytes} bytes)` : ''
  return `${label}: ${describeExchange('GET', r)}${extra ? `; ${extra}` : ''}${digest}`
}

/**
 * Sends the same GET to the backend (`target`, at `address`) and through the proxy at
 * `via` (an http(s) URL of the proxy; its path, or the target's path, is requested),
 * then compares status, Proxy-Status, Server, Content-Type and the body SHA-256.
 * Never throws for network failures.
 *
 * @throws {TypeError} when `via` is not an http(s) URL
 */
export async function probeBypass(target: Target, address: string, via: string, opts: { timeoutMs: number }): Promise<ProbeOutput<BypassResult>> {
  const v = new URL(via)
  if (v.protocol !== 'http:' && v.protocol !== 'https:') throw new TypeError(`invalid --via "${via}": expected an http:// or https:// URL`)
  const vHost = v.hostname.replace(/^\[|\]$/g, '')
  const vPort = v.port ? Number(v.port) : v.protocol === 'https:' ? 443 : 80
  const path = v.pathname !== '/' || v.search ? v.pathname + v.search : target.path
  const common = { method: 'GET' as const, path, connectTimeoutMs: opts.timeoutMs, headerTimeoutMs: opts.timeoutMs, readBody: true, maxBodyBytes: 1024 * 1024 }
  const [direct, proxied] = await Promise.all([
    exchange({ ...common, address, port: target.port, hostHeader: hostPort(target.host, target.port), tls: target.scheme === 'https' ? { servername: servername(target.host) } : undefined }),
    exchange({ ...common, address: vHost, port: vPort, hostHeader: v.host, tls: v.protocol === 'https:' ? { servername: servername(vHost) } : undefined }),
  ])
  const proxyStatus = parseProxyStatus(header(proxied.headers, 'proxy-status'))
  const differences: string[] = []
  if (direct.outcome !== proxied.outcome) differences.push(`outcome: direct ${direct.outcome}, via proxy ${proxied.outcome}`)
  if (direct.status !== proxied.status) differences.push(`status: direct ${direct.status ?? '-'}, via proxy ${proxied.status ?? '-'}`)
  for (const h of ['content-type']) {
    if (header(direct.headers, h) !== header(proxied.headers, h)) differences.push(`${h}: direct ${header(direct.headers, h) ?? '-'}, via proxy ${header(proxied.headers, h) ?? '-'}`)
  }
  if (bodyCut(direct) !== bodyCut(proxied)) differences.push(`body: direct ${direct.bodyBytes ?? 0} bytes (${direct.bodyEnd ?? '-'}), via proxy ${proxied.bodyBytes ?? 0} bytes (${proxied.bodyEnd ?? '-'})`)
  if (direct.bodySha256 && proxied.bodySha256 && direct.bodySha256 !== proxied.bodySha256) differences.push('body SHA-256 differs')
  const verdict: BypassVerdict = failed(direct)
    ? failed(proxied) ? 'backend-side' : 'proxy-masks'
    : failed(proxied) || direct.status !== proxied.status ? 'proxy-side' : 'same'
  const result: BypassResult = { via, direct, proxied, proxyStatus, verdict, differences }
  return { result, findings: bypassFindings(target, result) }
}

function isCause(s: string | undefined): s is CauseType {
  return !!s && (CAUSE_TYPES as readonly string[]).includes(s)
}

function bypassFindings(target: Target, r: BypassResult): Finding[] {
  const evidence = [summary('direct', r.direct), summary(`via ${r.via}`, r.proxied), ...r.differences]
  const generated = r.proxyStatus.find((m) => m.error)
  const relayed = r.proxyStatus.find((m) => m.receivedStatus !== undefined)
  const cause = isCause(generated?.error) ? generated.error : null
  const base = { target: target.url, evidence }
  switch (r.verdict) {
    case 'proxy-side':
      if (r.proxied.outcome === 'response' && (r.proxied.status ?? 0) < 500 && bodyCut(r.proxied) && !generated) {
        return [{
          ...base, id: 'bypass.proxy_cuts_body', severity: 'error', cause: null, likelihood: 0.6,
          title: `Direct requests get the whole body; via the proxy the body is cut short (${r.proxied.bodyBytes ?? 0}${r.proxied.contentLength !== undefined ? ` of ${r.proxied.contentLength}` : ''} bytes)`,
          fix: 'The proxy ended the exchange mid-body: compare its idle and total upstream timeouts with the pauses and duration of this body (the HTTP check shows them), and check its error log.',
        }]
      }
      return [{
        ...base, id: 'bypass.proxy_side', severity: failed(r.proxied) ? 'critical' : 'warning', cause, likelihood: failed(r.proxied) ? 0.9 : 0.4,
        title: failed(r.proxied)
          ? `Direct requests work, requests via the proxy fail${generated ? ` (Proxy-Status: ${generated.proxy}; error=${generated.error})` : ''}: the problem is on the proxy side`
          : 'The proxy changes the response (status, type or body)',
        fix: generated ? `The proxy names the cause: ${generated.error}${generated.details ? ` (${generated.details})` : ''}. Compare the proxy's upstream settings with the backend's behaviour shown by the other checks.` : 'Check the proxy routing for this path and host, and its error and access logs.',
      }]
    case 'backend-side':
      return [{
        ...base, id: 'bypass.backend_side', severity: 'critical', cause: cause ?? null, likelihood: 0.7,
        title: `Direct requests fail the same way as via the proxy: the problem is on the backend side${relayed ? ` (Proxy-Status: received-status=${relayed.receivedStatus})` : ''}`,
        fix: 'Fix the application or its host; the proxy only reports what the backend does.',
      }]
    case 'proxy-masks':
      return [{ ...base, id: 'bypass.proxy_masks', severity: 'warning', cause: null, likelihood: 0.3, title: 'Direct requests to this endpoint fail but the proxy answers (another endpoint, a retry or the cache served it)', fix: 'Fix or remove the failing endpoint.' }]
    default:
      // Bodies often differ legitimately (dates, request IDs, echoed headers): only status and outcome decide.
      return [{ ...base, id: 'bypass.same', severity: 'info', cause: null, likelihood: 0, title: `Direct and proxied requests get the same status${r.differences.length ? ' (bodies or headers differ; see evidence)' : ''}`, fix: '' }]
  }
}
