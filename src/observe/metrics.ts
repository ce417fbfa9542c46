/**
 * Prometheus metrics (prom-client, private registry): requests, gateway errors by RFC 9209
 * type, request durations, endpoint health and the cache, served by the admin API's `GET /metrics`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { cacheResult } from '../cache/status.ts'

/** What the response store holds now, as the cache gauges report it. */
export interface StoreUsage {
  /** Bytes held (bodies, fields and overhead; see `entrySize` in src/cache/store.ts). */
  size: number
  /** Entries held: one a URL, each with its `Vary` variants. */
  count: number
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
}

/** One endpoint's health, as the `portico_upstream_endpoint_healthy` gauge reports it. */
export interface EndpointHealth {
  /** Upstream (pool) name. */
  upstream: string
  /** Endpoint `host:port`. */
  endpoint: string
  /** Available for new requests: healthy and not ejected. */
  healthy: boolean
}

/** Request duration buckets, in seconds (1 ms to 60 s). */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

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
 * - `portico_cache_stored_bytes`, `portico_cache_entries`: what the response store holds,
 *   read from `store()` at scrape time
 *
 * Labels with no value (no route matched, no endpoint tried) are the empty string.
 */
export class Metrics {
  /** The private registry the admin API renders. */
  readonly registry = new Registry()
  readonly #requests: Counter<'route' | 'upstream' | 'status_class'>
  readonly #errors: Counter<'cause' | 'upstream' | 'endpoint'>
  readonly #duration: Histogram<'route' | 'upstream'>
  readonly #series = new Map<string, { requests: { inc(): void }; duration: { observe(v: number): void } }>()
  readonly #cache: Counter<'route' | 'result'>

  /**
   * @param health the endpoints and their health now; called at each scrape
   * @param store what the response store holds now; called at each scrape
   */
  constructor(health: () => Iterable<EndpointHealth>, store: () => StoreUsage = () => ({ size: 0, count: 0 })) {
    const registers = [this.registry]
    this.#requests = new Counter({
      name: 'portico_requests_total',
      help: 'Requests answered, by route, upstream and status class.',
      labelNames: ['route', 'upstream', 'status_class'],
      registers,
    })
    this.#errors = new Counter({
      name: 'portico_gateway_errors_total',
      help: 'Gateway failures by RFC 9209 error type (cause), upstream and endpoint.',
      labelNames: ['cause', 'upstream', 'endpoint'],
      registers,
    })
    this.#duration = new Histogram({
      name: 'portico_request_duration_seconds',
      help: 'Time from request accept to the end of the response, in seconds.',
      labelNames: ['route', 'upstream'],
      buckets: DURATION_BUCKETS,
      registers,
    })
    new Gauge({
      name: 'portico_upstream_endpoint_healthy',
      help: '1 when the endpoint is available for new requests (healthy, not ejected), else 0.',
      labelNames: ['upstream', 'endpoint'],
      registers,
      collect() {
        this.reset()
        for (const h of health()) this.set({ upstream: h.upstream, endpoint: h.endpoint }, h.healthy ? 1 : 0)
      },
    })
    this.#cache = new Counter({
      name: 'portico_cache_requests_total',
      help: 'Requests of caching routes by how the cache answered: hit, stale, revalidated, miss or bypass.',
      labelNames: ['route', 'result'],
      registers,
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
    const statusClass = Math.floor(r.status / 100)
    // Label children resolved once per (route, upstream, status class), not hashed per request.
    const key = `${route}\0${upstream}\0${statusClass}`
    let series = this.#series.get(key)
    if (series === undefined) {
      series = { requests: this.#requests.labels(route, upstream, `${statusClass}xx`), duration: this.#duration.labels(route, upstream) }
      this.#series.set(key, series)
    }
    series.requests.inc()
    series.duration.observe(durationMs / 1000)
    if (r.error !== null) this.#errors.inc({ cause: r.error, upstream, endpoint: r.endpoint ?? '' })
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
