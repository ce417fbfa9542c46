/**
 * `GET /stats`: the live view of the dashboard and `portico top` in one JSON document:
 * each upstream and endpoint with its state (and since when), rates and latency; gateway
 * errors of the last hour by RFC 9209 cause; cache and retry counts; the latest failures
 * with the cause's explanation and the `portico doctor` command to run.
 *
 * Counts come from the live statistics ring ({@link LiveExport}, mergeable across worker
 * processes); states from the pools in force, sampled every second to know since when.
 */
import { CAUSES, CAUSE_TYPES, type CauseType } from '../failures/causes.ts'
import type { FailureRecord } from '../observe/failures.ts'
import { summarizeLive, type LiveExport, type LiveEndpointSummary } from '../observe/live.ts'
import type { Runtime } from '../proxy/runtime.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { NameStatus } from '../upstream/names.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import { nameView, retryView, type NameView, type RetryView } from './server.ts'

/**
 * The state of an endpoint on the dashboard:
 * - `up`: available for new requests;
 * - `down`: active health checks say down;
 * - `ejected`: outlier ejection keeps it out of rotation for a while;
 * - `draining`: Portico is stopping, or a reload removed it and its requests in flight finish;
 * - `dns_failing`: the host name it was resolved from fails to resolve now (its last
 *   addresses are kept during the grace period; without addresses the row is the name itself).
 */
export type LiveState = 'up' | 'down' | 'ejected' | 'draining' | 'dns_failing'

/** How much a row hurts: `bad` rows are red, `warn` ones amber; sorting puts them first. */
export type Severity = 'bad' | 'warn' | 'ok'

/** What `GET /stats` reads; the gateway (or a primary summing its workers) provides it. */
export interface StatsSource {
  readonly runtime: Pick<Runtime, 'config' | 'pools'>
  /** The live statistics ring; a primary gives the sum of its workers' exports. */
  readonly live?: { export(now?: number): LiveExport }
  readonly failures: { readonly total: number; list(): FailureRecord[] }
  /** Whether Portico is stopping. */
  readonly draining?: boolean
  /** Pools replaced by a reload with requests still in flight. */
  retiringPools?(): UpstreamPool[]
}

/** One endpoint row of `GET /stats`. Rates and percentiles are over `window_ms` (the last minute). */
export interface EndpointStats {
  /** `host:port` (as in the access log), or the host name for a name that resolves to nothing. */
  address: string
  url: string | null
  state: LiveState
  severity: Severity
  /** RFC 9209 type of why it is not up, else null. */
  reason: string | null
  reason_detail: string | null
  /** ISO 8601 time the state was first seen (to the second; the start of Portico for states held since). */
  since: string
  in_flight: number
  requests_per_s: number
  /** Gateway failures / requests over the window, 0…1; null without requests. */
  error_rate: number | null
  p50_ms: number | null
  p99_ms: number | null
  errors_window: number
  errors_hour: number
  causes_window: Record<string, number>
  causes_hour: Record<string, number>
  /** Requests sent since the pool started, and ejections since then. */
  requests_total: number
  ejections: number
}

/** One upstream of `GET /stats`, its endpoints worst first. */
export interface UpstreamStats {
  name: string
  load_balancing: string
  severity: Severity
  /** Retries since the pool started and the retry budget in use now. */
  retries: RetryView
  endpoints: EndpointStats[]
  names: NameView[]
  /** The `portico doctor` command that probes this upstream's endpoints. */
  doctor: string
}

/** One route of `GET /stats`. */
export interface RouteStats {
  name: string
  upstream: string | null
  requests_per_s: number
  requests_hour: number
  /** Whether the route caches responses. */
  cache: boolean
  cache_lookups_hour: number
  cache_hits_hour: number
  /** Hits / lookups over the hour, 0…1; null without lookups. */
  cache_hit_ratio: number | null
  /** Requests refused by a rate limit or an access rule (`http_request_denied`), last minute and last hour. */
  denied_window: number
  denied_hour: number
}

/** One failure of the feed: the access log fields, the cause's words and the doctor command. */
export interface FailureView extends FailureRecord {
  title: string
  hint: string
  /** The `portico doctor` command for the failure's upstream, or null when no upstream was chosen. */
  doctor: string | null
}

/** The `GET /stats` document. */
export interface StatsView {
  /** ISO 8601 time of the view. */
  at: string
  bucket_ms: number
  /** Length of the window of rates, error rates and percentiles, in ms. */
  window_ms: number
  upstreams: UpstreamStats[]
  routes: RouteStats[]
  errors: {
    /** Start of each 10 s bucket of the last hour (epoch ms), oldest first. */
    times: number[]
    /** Gateway failures by RFC 9209 type, one count a bucket (the types seen in the hour, in cause table order). */
    causes: Record<string, number[]>
    /** Gateway failures of the hour by endpoint, most first. */
    by_endpoint: Array<{ upstream: string; endpoint: string; total: number; causes: Record<string, number> }>
  }
  /** Gateway failures in the last minute, all endpoints. */
  errors_window: number
  /** The latest failures, newest first (at most {@link FEED_SIZE}). */
  failures: FailureView[]
  /** Failures since start. */
  failures_total: number
}

/** Failures the feed shows. */
export const FEED_SIZE = 50

/** The state of each endpoint as last sampled, to say since when it holds. Bounded by the endpoints in force. */
export class StateSince {
  readonly #seen = new Map<string, { state: LiveState; reason: string | null; since: number }>()
  readonly #start: number

  /** @param start epoch ms Portico started: the `since` of states held from the start */
  constructor(start = Date.now()) {
    this.#start = start
  }

  /** Notes the state of `key` now; returns since when (epoch ms) it holds. */
  note(key: string, state: LiveState, reason: string | null, now: number): number {
    const prev = this.#seen.get(key)
    if (prev !== undefined && prev.state === state && prev.reason === reason) return prev.since
    // A key seen for the first time in `up` has been up since start (or since it was added).
    const since = prev === undefined && state === 'up' ? Math.min(this.#start, now) : now
    this.#seen.set(key, { state, reason, since })
    return since
  }

  /** Forgets keys not in `keys` (endpoints gone). */
  keep(keys: ReadonlySet<string>): void {
    for (const k of this.#seen.keys()) if (!keys.has(k)) this.#seen.delete(k)
  }
}

interface Row {
  key: string
  upstream: string
  address: string
  url: string | null
  state: LiveState
  reason: string | null
  reason_detail: string | null
  in_flight: number
  requests_total: number
  ejections: number
}

function nameOf(n: NameStatus[], host: string | null): NameStatus | undefined {
  return host === null ? undefined : n.find((x) => x.name === host)
}

function endpointRow(pool: UpstreamPool, e: Endpoint, names: NameStatus[], draining: boolean, now: number): Row {
  const failingName = nameOf(names, e.resolvedFrom)
  let state: LiveState = 'up'
  let reason: string | null = null
  let detail: string | null = null
  if (draining) {
    state = 'draining'
  } else if (!e.healthy) {
    state = 'down'
    reason = e.downReason
    detail = e.downDetail
  } else if (e.ejectedUntil > now) {
    state = 'ejected'
    reason = e.downReason
    detail = e.downDetail
  } else if (failingName?.reason != null) {
    state = 'dns_failing'
    reason = failingName.reason
    detail = failingName.reasonDetail
  }
  return {
    key: `${pool.name}\n${e.label}`, upstream: pool.name, address: e.label, url: e.url, state, reason, reason_detail: detail,
    in_flight: e.inFlight, requests_total: e.requests, ejections: e.ejections,
  }
}

/** The rows of one pool: its endpoints, then its failing names that have no address left. */
function poolRows(pool: UpstreamPool, draining: boolean, now: number): { rows: Row[]; names: NameStatus[] } {
  const names = pool.names()
  const rows = pool.endpoints.map((e) => endpointRow(pool, e, names, draining, now))
  for (const n of names) {
    if (n.reason === null || n.addresses.length > 0) continue
    const url = pool.config.endpoints.find((e) => new URL(e.url).hostname === n.name)?.url ?? null
    rows.push({ key: `${pool.name}\n${n.name}`, upstream: pool.name, address: n.name, url, state: draining ? 'draining' : 'dns_failing', reason: n.reason, reason_detail: n.reasonDetail, in_flight: 0, requests_total: 0, ejections: 0 })
  }
  return { rows, names }
}

/**
 * Notes the state of every endpoint now (the admin API does it every second), so that
 * `since` is known to the second even between views.
 */
export function sampleStates(src: StatsSource, since: StateSince, now = Date.now()): void {
  const keys = new Set<string>()
  const draining = src.draining === true
  const current = [...src.runtime.pools.values()]
  const retiring = (src.retiringPools?.() ?? []).filter((p) => src.runtime.pools.get(p.name) !== p)
  for (const [i, pool] of [...current, ...retiring].entries()) {
    for (const r of poolRows(pool, draining || i >= current.length, now).rows) {
      keys.add(r.key)
      since.note(r.key, r.state, r.reason, now)
    }
  }
  since.keep(keys)
}

/** The shell-quoted word, when it needs quoting. */
function sh(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

/**
 * The `portico doctor` command that probes `urls` (one endpoint, or every endpoint of an
 * upstream), reading the access log file when Portico writes one.
 */
export function doctorCommand(urls: readonly string[], accessLogPath: string | null): string {
  const parts = ['portico', 'doctor', '--upstream', ...urls.map((u) => sh(u.endsWith('/') ? u : `${u}/`))]
  if (accessLogPath !== null && accessLogPath !== '-') parts.push('--log', sh(accessLogPath), '--since', '15m')
  return parts.join(' ')
}

function severityOf(state: LiveState, errorRate: number | null, errors: number): Severity {
  if (state === 'down' || state === 'dns_failing' || state === 'ejected') return 'bad'
  if (errorRate !== null && errorRate >= 0.5 && errors > 0) return 'bad'
  if (state === 'draining' || errors > 0) return 'warn'
  return 'ok'
}

const RANK: Record<Severity, number> = { bad: 0, warn: 1, ok: 2 }

const EMPTY: Omit<LiveEndpointSummary, 'upstream' | 'endpoint'> = {
  requests_per_s: 0, error_rate: null, p50_ms: null, p99_ms: null, requests_window: 0, errors_window: 0, errors_hour: 0, causes_hour: {}, causes_window: {},
}

/**
 * Builds the `GET /stats` document.
 *
 * @param since the state sampler (also fed here, so states seen by a view are never older than it)
 * @param now epoch ms
 */
export function statsView(src: StatsSource, since: StateSince, now = Date.now()): StatsView {
  const rt = src.runtime
  const live = src.live !== undefined ? summarizeLive(src.live.export(now)) : null
  const summaries = new Map<string, LiveEndpointSummary>()
  for (const e of live?.endpoints ?? []) summaries.set(`${e.upstream}\n${e.endpoint}`, e)
  const logPath = rt.config.access_log.path
  const keys = new Set<string>()
  const draining = src.draining === true
  const current = [...rt.pools.values()]
  const retiring = (src.retiringPools?.() ?? []).filter((p) => rt.pools.get(p.name) !== p)
  const upstreams: UpstreamStats[] = []
  for (const [i, pool] of [...current, ...retiring].entries()) {
    const isRetiring = i >= current.length
    const { rows, names } = poolRows(pool, draining || isRetiring, now)
    const endpoints: EndpointStats[] = rows.map((r) => {
      keys.add(r.key)
      const s = summaries.get(r.key) ?? EMPTY
      const sinceMs = since.note(r.key, r.state, r.reason, now)
      return {
        address: r.address, url: r.url, state: r.state, severity: severityOf(r.state, s.error_rate, s.errors_window),
        reason: r.reason, reason_detail: r.reason_detail, since: new Date(sinceMs).toISOString(),
        in_flight: r.in_flight, requests_per_s: s.requests_per_s, error_rate: s.error_rate, p50_ms: s.p50_ms, p99_ms: s.p99_ms,
        errors_window: s.errors_window, errors_hour: s.errors_hour, causes_window: s.causes_window, causes_hour: s.causes_hour,
        requests_total: r.requests_total, ejections: r.ejections,
      }
    })
    // Failures before any endpoint was chosen (no endpoint available, a name without addresses).
    const none = summaries.get(`${pool.name}\n`)
    if (none !== undefined && none.errors_hour + none.requests_window > 0) {
      endpoints.push({
        address: '(no endpoint)', url: null, state: 'up', severity: none.errors_window > 0 ? 'bad' : 'ok', reason: null, reason_detail: 'requests failed before an endpoint was chosen',
        since: new Date(now).toISOString(), in_flight: 0, requests_per_s: none.requests_per_s, error_rate: none.error_rate, p50_ms: none.p50_ms, p99_ms: none.p99_ms,
        errors_window: none.errors_window, errors_hour: none.errors_hour, causes_window: none.causes_window, causes_hour: none.causes_hour, requests_total: 0, ejections: 0,
      })
    }
    endpoints.sort((a, b) => RANK[a.severity] - RANK[b.severity] || b.errors_window - a.errors_window)
    upstreams.push({
      name: isRetiring ? `${pool.name} (draining)` : pool.name,
      load_balancing: pool.config.load_balancing,
      severity: endpoints.reduce<Severity>((w, e) => (RANK[e.severity] < RANK[w] ? e.severity : w), 'ok'),
      retries: retryView(pool),
      endpoints,
      names: names.map(nameView),
      doctor: doctorCommand(pool.config.endpoints.map((e) => e.url), logPath),
    })
  }
  since.keep(keys)
  upstreams.sort((a, b) => RANK[a.severity] - RANK[b.severity])

  const routes: RouteStats[] = rt.config.routes.map((r, i) => {
    // The router's default name (src/routing/router.ts), as in the access log's `route`.
    const name = r.name ?? `route${i}`
    const s = live?.routes.find((x) => x.route === name)
    return {
      name, upstream: r.upstream, cache: r.cache.enabled,
      requests_per_s: s?.requests_per_s ?? 0, requests_hour: s?.requests_hour ?? 0,
      cache_lookups_hour: s?.cache_lookups_hour ?? 0, cache_hits_hour: s?.cache_hits_hour ?? 0, cache_hit_ratio: s?.cache_hit_ratio ?? null,
      denied_window: s?.denied_window ?? 0, denied_hour: s?.denied_hour ?? 0,
    }
  })

  const causes: Record<string, number[]> = {}
  for (const type of CAUSE_TYPES) if (live?.causes[type] !== undefined) causes[type] = live.causes[type]
  for (const [type, c] of Object.entries(live?.causes ?? {})) causes[type] ??= c
  const byEndpoint = (live?.endpoints ?? [])
    .filter((e) => e.errors_hour > 0)
    .map((e) => ({ upstream: e.upstream, endpoint: e.endpoint === '' ? '(no endpoint)' : e.endpoint, total: e.errors_hour, causes: e.causes_hour }))
    .sort((a, b) => b.total - a.total)

  const failures = src.failures.list().slice(-FEED_SIZE).reverse().map((f) => failureView(f, rt, logPath))
  return {
    at: new Date(now).toISOString(),
    bucket_ms: live?.bucket_ms ?? 10_000,
    window_ms: live?.window_ms ?? 0,
    upstreams,
    routes,
    errors: { times: live?.times ?? [], causes, by_endpoint: byEndpoint },
    errors_window: (live?.endpoints ?? []).reduce((n, e) => n + e.errors_window, 0),
    failures,
    failures_total: src.failures.total,
  }
}

/** A failure of the feed with the words of its cause and the doctor command for its endpoint (else its upstream). */
export function failureView(f: FailureRecord, rt: Pick<Runtime, 'pools'>, logPath: string | null): FailureView {
  const cause = (CAUSES as Record<string, { title: string; hint: string } | undefined>)[f.error]
  const pool = f.upstream === null ? undefined : rt.pools.get(f.upstream)
  let doctor: string | null = null
  if (pool !== undefined) {
    const ep = pool.endpoints.find((e) => e.label === f.endpoint)
    doctor = doctorCommand(ep !== undefined ? [ep.url] : pool.config.endpoints.map((e) => e.url), logPath)
  }
  return { ...f, title: cause?.title ?? f.error, hint: cause?.hint ?? '', doctor }
}

/** The title of a cause, or the type itself when the table has no such row. */
export function causeTitle(type: string): string {
  return (CAUSES as Record<string, { title: string } | undefined>)[type as CauseType]?.title ?? type
}
