/**
 * The ranking rule of `portico doctor` (docs/doctor.md, "Ranking"): a probe-proven cause
 * that explains logged errors first, as one finding with the log lines as evidence; then
 * probe-proven causes, log-only symptoms, configuration and host risks, info.
 */
import type { CauseType } from '../failures/causes.ts'
import { SEVERITY_ORDER, type Finding } from './finding.ts'
import { hostPort } from './probes/target.ts'

/** Where a finding comes from: a probe measured it, a log shows it, or only the configuration or host suggests it. */
function origin(f: Finding): 'probe' | 'log' | 'static' {
  if (f.id.startsWith('logs.')) return 'log'
  return /^(dns|tcp|tls|http|keepalive|bypass|unix|fastcgi)\./.test(f.id) ? 'probe' : 'static'
}

/**
 * Log causes that a proven cause explains besides its own: what the proxy logs for it.
 * E.g. a TLS port behind http:// makes nginx log `upstream prematurely closed connection`
 * (connection_terminated); a refused or missing endpoint ends in `no live upstreams`.
 */
const ALSO_EXPLAINS: Partial<Record<CauseType, CauseType[]>> = {
  http_protocol_error: ['connection_terminated', 'http_response_incomplete'],
  tls_protocol_error: ['connection_terminated', 'http_protocol_error'],
  connection_refused: ['destination_unavailable'],
  connection_timeout: ['destination_unavailable', 'http_response_timeout'],
  dns_error: ['dns_timeout', 'destination_unavailable'],
  dns_timeout: ['dns_error', 'destination_unavailable'],
  destination_ip_unroutable: ['destination_unavailable'],
  connection_terminated: ['http_response_incomplete', 'destination_unavailable'],
  http_response_incomplete: ['connection_terminated'],
  connection_read_timeout: ['http_response_incomplete', 'http_response_timeout'],
  tls_certificate_error: ['tls_protocol_error', 'destination_unavailable'],
  http_response_header_section_size: ['http_protocol_error'],
}

/** Probe findings that prove the application itself answered a gateway status (explaining 502s a log cannot classify). */
const APP_MADE = new Set(['bypass.backend_side', 'http.backend_5xx', 'fastcgi.status'])

/** `host:port` (or `unix:/path`, or the bare host) of a finding's target URL, to match the endpoints a log names. */
function endpointsOf(f: Finding): string[] {
  const t = f.target ?? ''
  const unix = /unix:(\/[^:]*)/.exec(t)
  if (unix) return [`unix:${unix[1]}`]
  try {
    const u = new URL(t)
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
    const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80)
    return [hostPort(host, port), host]
  } catch {
    return [t]
  }
}

function explains(p: Finding, log: Finding): boolean {
  if (p.severity === 'info') return false
  const logEndpoints = log.logEndpoints ?? []
  if (logEndpoints.length && origin(p) === 'probe' && !endpointsOf(p).some((e) => logEndpoints.includes(e))) return false
  if (log.cause === null) return APP_MADE.has(p.id)
  if (p.cause === null) return false
  return p.cause === log.cause || (ALSO_EXPLAINS[p.cause]?.includes(log.cause) ?? false)
}

const worse = (a: Finding['severity'], b: Finding['severity']) => (SEVERITY_ORDER[a] <= SEVERITY_ORDER[b] ? a : b)
const byWeight = (a: Finding, b: Finding) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || b.likelihood - a.likelihood

/**
 * Ranks findings by one rule (docs/doctor.md, "Ranking"):
 * 0. a probe-proven cause that explains logged errors, as one finding: the probe's
 *    cause, title, evidence and fix, then the matching log lines with their counts as
 *    evidence (no separate log finding); a configuration finding explains logged errors
 *    the same way when no probe does;
 * 1. probe-proven causes;
 * 2. log-only symptoms;
 * 3. configuration and host risks no probe or log confirmed;
 * then every info finding. Within a rank: severity, then likelihood, then id.
 * A bypass finding of the same cause and endpoint as another probe finding, and a
 * configuration finding of a cause a probe proved, are folded into that finding as
 * evidence. Identical findings are dropped.
 */
export function rankFindings(findings: Finding[]): Finding[] {
  const seen = new Set<string>()
  let list = findings.filter((f) => {
    const k = `${f.id}\u0000${f.target ?? ''}\u0000${f.title}`
    if (seen.has(k)) return false
    seen.add(k)
    return true
  }).map((f) => ({ ...f, evidence: [...f.evidence] }))
  const rank = new Map<Finding, number>()
  // The bypass comparison confirms a probe finding of the same cause and endpoint: one finding.
  for (const b of list.filter((f) => f.id.startsWith('bypass.') && f.cause !== null && f.severity !== 'info')) {
    const primary = list.filter((p) => p !== b && origin(p) === 'probe' && !p.id.startsWith('bypass.') && p.cause === b.cause && p.target === b.target && p.severity !== 'info').sort(byWeight)[0]
    if (!primary) continue
    primary.evidence.push(...b.evidence.map((e) => `through the proxy: ${e}`))
    primary.severity = worse(primary.severity, b.severity)
    list = list.filter((f) => f !== b)
  }
  for (const log of list.filter((f) => origin(f) === 'log' && f.severity !== 'info')) {
    const candidates = list.filter((p) => origin(p) !== 'log' && explains(p, log))
    const best = candidates.filter((p) => origin(p) === 'probe').sort(byWeight)[0] ?? candidates.sort(byWeight)[0]
    if (!best) continue
    best.evidence.push(...log.evidence.map((e) => `log: ${e}`))
    best.severity = worse(best.severity, log.severity)
    best.likelihood = Math.max(best.likelihood, log.likelihood)
    rank.set(best, 0)
    list = list.filter((f) => f !== log)
  }
  // A configuration finding of a cause a probe proved says the same thing from the config: evidence, not a second finding.
  for (const c of list.filter((f) => origin(f) === 'static' && !f.id.startsWith('host.') && f.cause !== null && f.severity !== 'info')) {
    const proven = list.filter((p) => origin(p) === 'probe' && p.cause === c.cause && p.severity !== 'info').sort((a, b) => (rank.get(a) ?? 1) - (rank.get(b) ?? 1) || byWeight(a, b))[0]
    if (!proven) continue
    proven.evidence.push(`config: ${c.title}`, ...c.evidence.map((e) => `config: ${e}`))
    list = list.filter((f) => f !== c)
  }
  const rankOf = (f: Finding): number => {
    if (f.severity === 'info') return 4
    return rank.get(f) ?? { probe: 1, log: 2, static: 3 }[origin(f)]
  }
  return list
    .map((f) => ({ f, r: rankOf(f) }))
    .sort((a, b) => a.r - b.r || SEVERITY_ORDER[a.f.severity] - SEVERITY_ORDER[b.f.severity] || b.f.likelihood - a.f.likelihood || a.f.id.localeCompare(b.f.id))
    .map(({ f, r }) => {
      const { logEndpoints: _, ...out } = f
      return { ...out, rank: r }
    })
}
