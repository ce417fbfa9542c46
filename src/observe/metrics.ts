/**
 * Prometheus metrics (prom-client, private registry): requests, gateway errors by RFC 9209
 * type, request durations, endpoint health and the cache, served by the admin API's `GET /metrics`.
 */
import { REFUSALS } from '../failures/refusals.ts'
import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'
import type { Counter as CounterOf, Metric } from 'prom-client'
import { cacheResult } from './cache-status.ts'

// The three classes from their own files: prom-client's index also loads its Pushgateway
// (node:https, so OpenSSL's TLS side, and node:zlib), the cluster aggregator and the default
// process metrics, several MB per process that these metrics never use.
const require = createRequire(import.meta.url)
const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter
const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge
const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry

/** What the response store holds now, as the cache gauges report it. */
export interface StoreUsage {
  /** Bytes held (bodies, fields and overhead; see `entrySize` in src/cache/store.ts). */
  size: number
  /** Entries held: one a URL, each with its `Vary` variants. */
  count: number
  /** The Redis tier (`cache.store.redis`), when there is one: its state and counts since it was made. */
  readonly redis?: { readonly available: boolean; readonly hits: number; readonly misses: number; readonly errors: number; readonly timeouts: number }
}

/** What request and response buffering and the per-connection gates hold, at scrape time. */
export interface BufferUsage {
  /** Bytes of buffered bodies held in memory. */
  memory: number
  /** Bytes of buffered bodies in temporary files. */
  temp: number
  /** Temporary files open. */
  files: number
  /** Temporary files created since start. */
  spills: number
  /** Requests waiting for their turn on their client connection (pipelined HTTP/1.1, HTTP/2 beyond the bound). */
  waiting: number
}

/** What the metrics count of a finished request: fields of its context, named as in its access log record. */
export interface FinishedRequest {
  route: string | null
  upstream: string | null
  /** Status sent downstream. */
  status: number
  /** RFC 9209 error type of a gateway failure, else null. */
  error: string | null
  endpoint: string | null
  /** RFC 9211 Cache-Status value, or null. */
  cache: string | null
  /** Short detail of the failure; a refusal's starts with its name and a colon (`rate_limited: …`). */
  details?: string | null
}

/** A rate limit's store failures, as the `portico_rate_limit_store_errors` gauge reports them. */
export interface RateLimitStoreErrors {
  route: string
  limit: string
  errors: number
}

/** The RFC 9209 types whose failures are refusals of a client request, named first in `details`. */
const REFUSAL_TYPES = new Set(['http_request_denied', 'http_request_error'])

/** One endpoint's health, as the `portico_upstream_endpoint_healthy` gauge reports it. */
export interface EndpointHealth {
  /** Upstream (pool) name. */
  upstream: string
  /** Endpoint `host:port`. */
  endpoint: string
  /** Available for new requests: healthy and not ejected. */
  healthy: boolean
}

/** The retries of one upstream, as `portico_upstream_retries` reports them. */
export interface UpstreamRetries {
  upstream: string
  /** Tries repeated on another endpoint after a failure or a status of `retries.on`. */
  another_endpoint: number
  /** Tries repeated once on a fresh connection after a reused keep-alive connection failed (the keep-alive race). */
  fresh_connection: number
  /** Retries refused because the retry budget was spent. */
  budget_exhausted: number
}

/** Request duration buckets, in seconds (1 ms to 60 s). */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * The counts of one (route, upstream) pair, kept in plain numbers: the request path adds
 * to them without hashing labels (prom-client does, for each `inc` and `observe`), and
 * the metrics read them at scrape time.
 */
class Series {
  readonly route: string
  readonly upstream: string
  /** Requests by status class: index 2 is 2xx (0…9). */
  readonly requests: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
  /** `requests` as last handed to the `portico_requests_total` counter. */
  readonly published: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
  /** Durations per bucket of {@link DURATION_BUCKETS} (not cumulative); the last counts those above every bound. */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1)
  /** Sum of the durations, in seconds. */
  sum = 0
  count = 0

  constructor(route: string, upstream: string) {
    this.route = route
    this.upstream = upstream
  }

  /** Adds one duration, in seconds. */
  observe(seconds: number): void {
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]) i++
    this.buckets[i]++
    this.sum += seconds
    this.count++
  }
}

/**
 * `portico_request_duration_seconds{route,upstream}`, a Prometheus histogram read from
 * the {@link Series} at scrape time. It gives the registry what prom-client's own
 * `Histogram` gives (`name`, `help`, `type`, `get`), in the same text.
 */
class DurationHistogram {
  readonly name = 'portico_request_duration_seconds'
  readonly help = 'Time from request accept to the end of the response, in seconds.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #series: Map<string, Map<string, Series>>

  constructor(series: Map<string, Map<string, Series>>) {
    this.#series = series
  }

  /** The values in prom-client's form: `_bucket` per bound (cumulative) and `+Inf`, `_sum`, `_count`. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const values: HistogramValue[] = []
    const bucket = `${this.name}_bucket`
    for (const byUpstream of this.#series.values()) {
      for (const s of byUpstream.values()) {
        const shared = { route: s.route, upstream: s.upstream }
        let acc = 0
        for (let i = 0; i < DURATION_BUCKETS.length; i++) {
          acc += s.buckets[i]
          values.push({ labels: { le: DURATION_BUCKETS[i] }, sharedLabels: shared, value: acc, metricName: bucket })
        }
        values.push(
          { labels: { le: '+Inf' }, sharedLabels: shared, value: s.count, metricName: bucket },
          { labels: {}, sharedLabels: shared, value: s.sum, metricName: `${this.name}_sum` },
          { labels: {}, sharedLabels: shared, value: s.count, metricName: `${this.name}_count` },
        )
      }
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  /** Zeroes every series (the registry's `resetMetrics`). */
  reset(): void {
    for (const byUpstream of this.#series.values()) {
      for (const s of byUpstream.values()) {
        s.buckets.fill(0)
        s.sum = 0
        s.count = 0
      }
    }
  }
}

/** One line of the histogram as prom-client's registry renders it: `metricName{labels,sharedLabels} value`. */
interface HistogramValue {
  labels: Record<string, string | number>
  sharedLabels: Record<string, string>
  value: number
  metricName: string
}

/**
 * The gateway's metrics. Each instance has its own `Registry`, so two gateways in one
 * process (tests, embedding) never share counters or clash on names.
 *
 * - `portico_requests_total{route,upstream,status_class}`: requests by status class
 *   (`2xx`…`5xx`; a client that left is `4xx`, status 499)
 * - `portico_gateway_errors_total{cause,upstream,endpoint}`: gateway failures, `cause` is
 *   the RFC 9209 error type (as Envoy's `upstream_cx_connect_fail` and friends, by name)
 * - `portico_request_duration_seconds{route,upstream}`: histogram of request durations
 * - `portico_upstream_endpoint_healthy{upstream,endpoint}`: 1 when available, else 0,
 *   read from `health()` at scrape time
 * - `portico_cache_requests_total{route,result}`: requests of caching routes by how the
 *   cache answered (`hit`, `stale`, `revalidated`, `miss`, `bypass`; see `CacheResult`)
 * - `portico_upstream_retries{upstream,kind}`: retries by kind (`another_endpoint`,
 *   `fresh_connection`) and retries refused by the budget (`budget_exhausted`), read from
 *   `retries()` at scrape time (counts of the pools in force)
 * - `portico_cache_stored_bytes`, `portico_cache_entries`: what the response store holds,
 *   read from `store()` at scrape time
 * - `portico_buffer_memory_bytes`, `portico_buffer_temp_bytes`, `portico_buffer_temp_files`,
 *   `portico_buffer_spills_total`, `portico_connection_requests_waiting`: request and
 *   response buffering and the per-connection gates, read from `buffers()` at scrape time
 * - `portico_requests_refused_total{route,refusal}`: requests Portico refused, by refusal
 *   name (`access_rule`, `rate_limited`, `method_not_allowed`, …; docs/causes.md)
 * - `portico_rate_limit_store_errors{route,limit}`: store failures (Redis down or slow) of
 *   each rate limit in force, read from `limits()` at scrape time
 * - `portico_cache_redis_up` (1 while the Redis tier is connected, 0 while not or when there
 *   is none), `portico_cache_redis_failures_total{kind}` (`error`, `timeout`: commands that
 *   failed or outlasted `cache.store.redis.timeout`), `portico_cache_redis_lookups_total{result}`
 *   (`hit`, `miss`: memory misses answered by Redis), read from `store().redis` at scrape time
 *
 * Labels with no value (no route matched, no endpoint tried) are the empty string.
 */
export class Metrics {
  /** The private registry the admin API renders. */
  readonly registry = new Registry()
  readonly #requests: CounterOf<'route' | 'upstream' | 'status_class'>
  readonly #errors: CounterOf<'cause' | 'upstream' | 'endpoint'>
  /** Counts by route, then upstream: plain numbers on the request path, read at each scrape. */
  readonly #series = new Map<string, Map<string, Series>>()
  readonly #cache: CounterOf<'route' | 'result'>
  readonly #refused: CounterOf<'route' | 'refusal'>

  /**
   * @param health the endpoints and their health now; called at each scrape
   * @param store what the response store holds now; called at each scrape
   * @param retries the retry counts of each upstream; called at each scrape
   * @param buffers what buffering and the per-connection gates hold; called at each scrape
   * @param limits the store failures of each rate limit in force; called at each scrape
   */
  constructor(health: () => Iterable<EndpointHealth>, store: () => StoreUsage = () => ({ size: 0, count: 0 }), retries: () => Iterable<UpstreamRetries> = () => [], buffers: () => BufferUsage = () => ({ memory: 0, temp: 0, files: 0, spills: 0, waiting: 0 }), limits: () => Iterable<RateLimitStoreErrors> = () => []) {
    const registers = [this.registry]
    const series = this.#series
    this.#requests = new Counter({
      name: 'portico_requests_total',
      help: 'Requests answered, by route, upstream and status class.',
      labelNames: ['route', 'upstream', 'status_class'],
      registers,
      // The request path counts in Series; each scrape adds what was counted since the last.
      collect() {
        for (const byUpstream of series.values()) {
          for (const s of byUpstream.values()) {
            for (let c = 0; c < s.requests.length; c++) {
              const delta = s.requests[c] - s.published[c]
              if (delta === 0) continue
              this.inc({ route: s.route, upstream: s.upstream, status_class: `${c}xx` }, delta)
              s.published[c] = s.requests[c]
            }
          }
        }
      },
    })
    this.#errors = new Counter({
      name: 'portico_gateway_errors_total',
      help: 'Gateway failures by RFC 9209 error type (cause), upstream and endpoint.',
      labelNames: ['cause', 'upstream', 'endpoint'],
      registers,
    })
    this.registry.registerMetric(new DurationHistogram(this.#series) as unknown as Metric)
    new Gauge({
      name: 'portico_upstream_endpoint_healthy',
      help: '1 when the endpoint is available for new requests (healthy, not ejected), else 0.',
      labelNames: ['upstream', 'endpoint'],
      registers,
      // Across workers (prom-client's AggregatorRegistry) an endpoint is available only if every worker sees it so.
      aggregator: 'min',
      collect() {
        this.reset()
        for (const h of health()) this.set({ upstream: h.upstream, endpoint: h.endpoint }, h.healthy ? 1 : 0)
      },
    })
    new Gauge({
      // Counts of the pools in force, since each was built (a reload that replaces a pool starts it from 0): a gauge, not a counter.
      name: 'portico_upstream_retries',
      help: 'Retries by upstream and kind: another_endpoint, fresh_connection (the keep-alive race), and budget_exhausted (retries refused by the retry budget).',
      labelNames: ['upstream', 'kind'],
      registers,
      collect() {
        this.reset()
        for (const r of retries()) {
          this.set({ upstream: r.upstream, kind: 'another_endpoint' }, r.another_endpoint)
          this.set({ upstream: r.upstream, kind: 'fresh_connection' }, r.fresh_connection)
          this.set({ upstream: r.upstream, kind: 'budget_exhausted' }, r.budget_exhausted)
        }
      },
    })
    this.#cache = new Counter({
      name: 'portico_cache_requests_total',
      help: 'Requests of caching routes by how the cache answered: hit, stale, revalidated, miss or bypass.',
      labelNames: ['route', 'result'],
      registers,
    })
    this.#refused = new Counter({
      name: 'portico_requests_refused_total',
      help: 'Requests Portico refused itself, by route and refusal name (access_rule, rate_limited, method_not_allowed, ...).',
      labelNames: ['route', 'refusal'],
      registers,
    })
    new Gauge({
      // Counts of the limits in force, since each was built: a gauge, not a counter.
      name: 'portico_rate_limit_store_errors',
      help: 'Store failures (Redis errors and timeouts) of each rate limit in force; requests went on as on_store_error says.',
      labelNames: ['route', 'limit'],
      registers,
      collect() {
        this.reset()
        for (const l of limits()) this.set({ route: l.route, limit: l.limit }, l.errors)
      },
    })
    new Gauge({
      name: 'portico_cache_stored_bytes',
      help: 'Bytes held by the response store (bodies and header fields).',
      registers,
      collect() { this.set(store().size) },
    })
    new Gauge({
      name: 'portico_cache_entries',
      help: 'Entries held by the response store: one a URL, each with its Vary variants.',
      registers,
      collect() { this.set(store().count) },
    })
    new Gauge({
      name: 'portico_buffer_memory_bytes',
      help: 'Bytes of buffered request and response bodies held in memory (cap: buffering.max_memory).',
      registers,
      collect() { this.set(buffers().memory) },
    })
    new Gauge({
      name: 'portico_buffer_temp_bytes',
      help: 'Bytes of buffered request and response bodies in temporary files (cap: buffering.max_temp_total).',
      registers,
      collect() { this.set(buffers().temp) },
    })
    new Gauge({
      name: 'portico_buffer_temp_files',
      help: 'Temporary files of buffering open now.',
      registers,
      collect() { this.set(buffers().files) },
    })
    let spillsPublished = 0
    new Counter({
      name: 'portico_buffer_spills_total',
      help: 'Request and response bodies that outgrew buffering.memory and went to a temporary file.',
      registers,
      collect() {
        const n = buffers().spills
        if (n > spillsPublished) this.inc(n - spillsPublished)
        spillsPublished = n
      },
    })
    new Gauge({
      name: 'portico_connection_requests_waiting',
      help: 'Requests waiting for their turn on their client connection: pipelined HTTP/1.1 requests, HTTP/2 streams beyond limits.max_requests_per_connection.',
      registers,
      collect() { this.set(buffers().waiting) },
    })
    new Gauge({
      name: 'portico_cache_redis_up',
      help: 'Whether the Redis tier of the cache is connected (1) or not (0); 0 when there is none. Over the workers of a host: the lowest (0 while any is not connected).',
      registers,
      aggregator: 'min',
      collect() { this.set(store().redis?.available === true ? 1 : 0) },
    })
    new Counter({
      name: 'portico_cache_redis_failures_total',
      help: 'Redis tier commands that failed (kind="error") or outlasted cache.store.redis.timeout (kind="timeout"); the request went on without Redis.',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        const r = store().redis
        this.reset()
        if (r === undefined) return
        this.inc({ kind: 'error' }, r.errors)
        this.inc({ kind: 'timeout' }, r.timeouts)
      },
    })
    new Counter({
      name: 'portico_cache_redis_lookups_total',
      help: 'Memory misses looked up in the Redis tier, by result: hit (copied to memory) or miss.',
      labelNames: ['result'] as const,
      registers,
      collect() {
        const r = store().redis
        this.reset()
        if (r === undefined) return
        this.inc({ result: 'hit' }, r.hits)
        this.inc({ result: 'miss' }, r.misses)
      },
    })
  }

  /**
   * Counts one finished request; pass every one (the access log's observer does).
   *
   * @param r the request's context (or its access log record: the same field names)
   * @param durationMs its `duration_ms`
   */
  observe(r: FinishedRequest, durationMs: number): void {
    const route = r.route ?? ''
    const upstream = r.upstream ?? ''
    let byUpstream = this.#series.get(route)
    if (byUpstream === undefined) this.#series.set(route, byUpstream = new Map())
    let series = byUpstream.get(upstream)
    if (series === undefined) byUpstream.set(upstream, series = new Series(route, upstream))
    series.requests[Math.min(9, Math.max(0, Math.floor(r.status / 100)))]++
    series.observe(durationMs / 1000)
    if (r.error !== null) {
      this.#errors.inc({ cause: r.error, upstream, endpoint: r.endpoint ?? '' })
      if (REFUSAL_TYPES.has(r.error) && r.details) {
        const colon = r.details.indexOf(':')
        const name = colon > 0 ? r.details.slice(0, colon) : ''
        if (Object.hasOwn(REFUSALS, name)) this.#refused.inc({ route, refusal: name })
      }
    }
    if (r.cache !== null) this.#cache.inc({ route, result: cacheResult(r.cache) })
  }

  /** The Prometheus text exposition (format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics()
  }

  /** Content-Type of {@link Metrics.render}'s output. */
  get contentType(): string {
    return this.registry.contentType
  }
}
