/**
 * Findings from a log summary: one per cause seen, with counts, endpoints, bursts and
 * sample lines as evidence, and the fix in the vocabulary of the system that wrote the log.
 */
import { causeOf, type Cause, type CauseType } from '../../failures/causes.ts'
import type { Finding, Severity } from '../finding.ts'
import type { CauseKey, CauseSummary, LogSummary } from '../logs/summary.ts'
import type { Correlation } from '../logs/correlate.ts'

/** Options of {@link checkLogs}. */
export interface LogCheckOptions {
  /** Which system wrote the log: decides the vocabulary of the fixes. */
  system: 'portico' | 'nginx'
  /** Result of correlate(), to say per cause whether the backend saw the failed requests. */
  correlation?: Correlation
}

/** The Portico fix of a cause, with the upstream name filled in when the log names one. */
function porticoFix(cause: Cause, up: string): string {
  return cause.fix.portico.replaceAll('upstreams.<name>', `upstreams.${up}`)
}

/**
 * The row of the cause table for a group of log lines: a type with variants (a 400, 408 or
 * 431 `http_request_error`) is told apart by the status the lines sent most often.
 */
function rowOf(cause: CauseType, byStatus: Record<string, number>): Cause {
  let status: number | null = null
  let most = 0
  for (const [k, n] of Object.entries(byStatus)) {
    if (n > most && /^\d+$/.test(k)) {
      most = n
      status = Number(k)
    }
  }
  return causeOf(cause, status)
}

function top(rec: Record<string, number>, n = 5): string {
  return Object.entries(rec).filter(([k]) => k !== '-').sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${k} (${v})`).join(', ')
}

function severityOf(cause: CauseKey): Severity {
  if (cause === 'unclassified') return 'warning'
  return causeOf(cause).status === null ? 'warning' : 'error'
}

function fixFor(c: CauseSummary, system: LogCheckOptions['system']): string {
  if (c.cause === 'unclassified') {
    return system === 'nginx'
      ? 'The access log shows the status but not why: read the nginx error.log for the same minutes (`portico doctor --log /var/log/nginx/error.log`), or log `$upstream_status $upstream_addr $upstream_response_time` in the access log format.'
      : 'These failures carry no cause: check the upstream application logs for the same minutes.'
  }
  if (system === 'portico') {
    const ups = Object.keys(c.byUpstream).filter((k) => k !== '-')
    return porticoFix(rowOf(c.cause, c.byStatus), ups.length === 1 ? ups[0] : '<name>')
  }
  const fix = rowOf(c.cause, c.byStatus).fix
  const details = Object.keys(c.byDetail).map((d) => fix.nginxDetails?.[d]).filter((d): d is string => !!d)
  return [fix.nginx, ...details].join(' ')
}

function span(c: CauseSummary): string {
  return c.firstSeen.getTime() === c.lastSeen.getTime() ? `at ${c.firstSeen.toISOString()}` : `from ${c.firstSeen.toISOString()} to ${c.lastSeen.toISOString()}`
}

/**
 * One finding per cause seen in a log summary, most frequent first, with id
 * `logs.<cause>` (`logs.unclassified` for 502/503/504 an access log does not explain).
 * Likelihood is the cause's share of the gateway errors. Evidence: counts and share,
 * first/last seen, endpoints, upstreams and statuses, the burst minute when the cause's
 * busiest minute is a burst, the backend correlation when given, and up to 3 sample lines
 * (`path:line: text`). The fix is the cause table's (src/failures/causes.ts): nginx
 * directives with their block, plus the text for the error.log detail; or Portico keys
 * with the upstream name filled in when the log names one upstream.
 *
 * @param summary from readLog
 * @param opts.system the system that wrote the log
 * @param opts.correlation from correlate(), optional
 * @returns findings; empty when the log has no gateway errors
 */
export function checkLogs(summary: LogSummary, opts: LogCheckOptions): Finding[] {
  const bursts = new Map(summary.bursts.map((b) => [b.minute, b]))
  return summary.causes.map((c): Finding => {
    const share = summary.failures > 0 ? c.count / summary.failures : 0
    const title = c.cause === 'unclassified'
      ? `${c.count} gateway error${c.count === 1 ? '' : 's'} (${top(c.byStatus)}) that the log does not explain`
      : `${rowOf(c.cause, c.byStatus).title}: ${c.count} time${c.count === 1 ? '' : 's'} in ${summary.path}`
    const evidence = [`${c.count} of ${summary.failures} gateway errors (${Math.round(share * 100)}%) ${span(c)}`]
    const endpoints = top(c.byEndpoint)
    if (endpoints) evidence.push(`endpoints: ${endpoints}`)
    const upstreams = top(c.byUpstream)
    if (upstreams) evidence.push(`upstreams: ${upstreams}`)
    const details = top(c.byDetail)
    if (details) evidence.push(`details: ${details}`)
    const burst = bursts.get(c.peakMinute)
    if (burst) evidence.push(`burst at ${c.peakMinute} UTC: ${c.peakCount} of this cause (${burst.count} gateway errors that minute, median ${burst.median}/min)`)
    const corr = opts.correlation?.byCause[c.cause]
    if (corr) evidence.push(`backend log ${opts.correlation?.backendLog}: ${corr.seen} of ${corr.seen + corr.notSeen} failed request IDs reached the backend, ${corr.notSeen} never did`)
    for (const s of c.samples) evidence.push(`${summary.path}:${s.line}: ${s.raw}`)
    return {
      id: `logs.${c.cause}`, severity: severityOf(c.cause), cause: c.cause === 'unclassified' ? null : c.cause,
      title, evidence, fix: fixFor(c, opts.system), likelihood: share, target: summary.path,
    }
  })
}
