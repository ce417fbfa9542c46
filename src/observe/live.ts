/**
 * Live statistics: the last hour of requests and gateway errors in 10 s buckets, per
 * endpoint and per route, in a fixed-size in-memory ring, for the dashboard and
 * `portico top` (the admin API's `GET /stats`).
 *
 * The request path only increments numbers in typed arrays that exist already (one per
 * series, made at its first request). Everything the views show (rates, percentiles,
 * ratios, the time series) is computed at read time from {@link LiveExport}, a plain JSON
 * structure of counts: exports of several processes (workers) sum into one with
 * {@link mergeLiveExports} and the same {@link summarizeLive} reads the sum.
 *
 * Memory: see {@link LiveStats.memoryBytes}; bounded by {@link MAX_LIVE_SERIES} whatever
 * the traffic or the uptime (docs/dashboard.md states the figures).
 */
import { cacheResult } from './cache-status.ts'

/** Width of one bucket of the ring, in ms. */
export const LIVE_BUCKET_MS = 10_000
/** Buckets in the ring: one hour of 10 s buckets. */
export const LIVE_BUCKETS = 360
/** Buckets the rates, error rates and latency percentiles are computed over: the last minute. */
export const LIVE_WINDOW_BUCKETS = 6
/** Most endpoint series and most route series kept; later keys count under `(other)`. */
export const MAX_LIVE_SERIES = 128
/** The key that series beyond {@link MAX_LIVE_SERIES} are folded into. */
export const OTHER = '(other)'

/**
 * Upper bounds of the latency histogram bins, in ms (the last bin counts what lies above
 * the last bound). Percentiles are interpolated inside a bin, so p99 is as exact as a bin
 * is narrow: within 50 % of its value.
 */
export const LATENCY_BOUNDS_MS: readonly number[] = [
  0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
  1000, 1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 30_000, 60_000,
]
const BINS = LATENCY_BOUNDS_MS.length + 1

/** What the live statistics count of a finished request: fields of its context (or its access log record). */
export interface LiveRequest {
  route: string | null
  upstream: string | null
  /** `host:port` of the endpoint tried last, or null when none was. */
  endpoint: string | null
  /** RFC 9209 type of a gateway failure, else null. */
  error: string | null
  /** RFC 9211 Cache-Status value, or null when the route does not cache. */
  cache: string | null
  /** Epoch ms the request started (the context's `startedAt`). */
  startedAt: number
}

/** The counts of one endpoint of one upstream (the endpoint `''` holds failures before any endpoint was chosen). */
class EndpointSeries {
  readonly upstream: string
  readonly endpoint: string
  /** Requests that ended in each bucket. */
  readonly requests = new Uint32Array(LIVE_BUCKETS)
  /** Of those, gateway failures (any RFC 9209 type). */
  readonly errors = new Uint32Array(LIVE_BUCKETS)
  /** Gateway failures by RFC 9209 type, one array a type seen. */
  readonly causes = new Map<string, Uint32Array>()
  /** Latency histograms of the last {@link LIVE_WINDOW_BUCKETS} buckets, `BINS` counts each. */
  readonly latency = new Uint32Array(LIVE_WINDOW_BUCKETS * BINS)

  constructor(upstream: string, endpoint: string) {
    this.upstream = upstream
    this.endpoint = endpoint
  }
}

/** The counts of one route. */
class RouteSeries {
  readonly route: string
  readonly requests = new Uint32Array(LIVE_BUCKETS)
  /** Requests the route's cache looked up (Cache-Status present, `bypass` excluded). */
  readonly lookups = new Uint32Array(LIVE_BUCKETS)
  /** Of those, answered from the cache (`hit` or `stale`). */
  readonly hits = new Uint32Array(LIVE_BUCKETS)
  /** Requests refused by a rate limit or an access rule (`http_request_denied`). */
  readonly denied = new Uint32Array(LIVE_BUCKETS)

  constructor(route: string) {
    this.route = route
  }
}

/** One endpoint series in a {@link LiveExport}: arrays oldest bucket first, ending with the bucket `head`. */
export interface LiveEndpointExport {
  upstream: string
  endpoint: string
  requests: number[]
  errors: number[]
  /** Gateway failures by RFC 9209 type. */
  causes: Record<string, number[]>
  /** Latency histogram over the last {@link LIVE_WINDOW_BUCKETS} buckets, one count a bin of `latency_bounds_ms` (plus the overflow bin). */
  latency: number[]
}

/** One route series in a {@link LiveExport}. */
export interface LiveRouteExport {
  route: string
  requests: number[]
  cache_lookups: number[]
  cache_hits: number[]
  /** Requests refused by a rate limit or an access rule (`http_request_denied`). */
  denied: number[]
}

/**
 * The ring as plain JSON: counts only, so that the exports of several processes add up
 * ({@link mergeLiveExports}). Arrays have `buckets` entries, oldest first; the last is
 * the bucket `head` (the bucket of `at`, still filling).
 */
export interface LiveExport {
  /** Epoch ms the export was taken. */
  at: number
  bucket_ms: number
  buckets: number
  window_buckets: number
  /** Number of the newest bucket: `floor(at / bucket_ms)`; bucket `n` starts at `n × bucket_ms`. */
  head: number
  latency_bounds_ms: readonly number[]
  endpoints: LiveEndpointExport[]
  routes: LiveRouteExport[]
}

/**
 * The ring of live statistics. Feed it every finished request with {@link LiveStats.observe}.
 *
 * @example
 *   const live = new LiveStats()
 *   live.observe(ctx, durationMs)           // from the access log observer
 *   summarizeLive(live.export(Date.now())) // at read time
 */
export class LiveStats {
  readonly #endpoints = new Map<string, Map<string, EndpointSeries>>()
  #endpointCount = 0
  readonly #routes = new Map<string, RouteSeries>()
  /** Number of the newest bucket written (or cleared) so far; -1 before any. */
  #head = -1
  readonly #clock: () => number

  /** @param clock epoch ms now, for exports (tests inject one); the request path uses the request's own times */
  constructor(clock: () => number = Date.now) {
    this.#clock = clock
  }

  /**
   * Counts one finished request in the bucket of its end (`startedAt + durationMs`).
   * Requests older than the ring are dropped.
   *
   * @param durationMs the request's `duration_ms`
   */
  observe(r: LiveRequest, durationMs: number): void {
    const bucket = Math.floor((r.startedAt + durationMs) / LIVE_BUCKET_MS)
    if (bucket > this.#head) this.#advance(bucket)
    else if (bucket <= this.#head - LIVE_BUCKETS) return
    const slot = bucket % LIVE_BUCKETS
    const s = this.#endpointSeries(r.upstream ?? '', r.endpoint ?? '')
    s.requests[slot]++
    if (r.error !== null) {
      s.errors[slot]++
      let c = s.causes.get(r.error)
      if (c === undefined) s.causes.set(r.error, c = new Uint32Array(LIVE_BUCKETS))
      c[slot]++
    }
    if (bucket > this.#head - LIVE_WINDOW_BUCKETS) {
      let bin = 0
      while (bin < LATENCY_BOUNDS_MS.length && durationMs > LATENCY_BOUNDS_MS[bin]) bin++
      s.latency[(bucket % LIVE_WINDOW_BUCKETS) * BINS + bin]++
    }
    if (r.route !== null) {
      const rs = this.#routeSeries(r.route)
      rs.requests[slot]++
      if (r.error === 'http_request_denied') rs.denied[slot]++
      if (r.cache !== null) {
        const result = cacheResult(r.cache)
        if (result !== 'bypass') {
          rs.lookups[slot]++
          if (result === 'hit' || result === 'stale') rs.hits[slot]++
        }
      }
    }
  }

  #endpointSeries(upstream: string, endpoint: string): EndpointSeries {
    let byEndpoint = this.#endpoints.get(upstream)
    let s = byEndpoint?.get(endpoint)
    if (s !== undefined) return s
    if (this.#endpointCount >= MAX_LIVE_SERIES) {
      upstream = endpoint = OTHER
      byEndpoint = this.#endpoints.get(OTHER)
      s = byEndpoint?.get(OTHER)
      if (s !== undefined) return s
    }
    if (byEndpoint === undefined) this.#endpoints.set(upstream, byEndpoint = new Map())
    byEndpoint.set(endpoint, s = new EndpointSeries(upstream, endpoint))
    this.#endpointCount++
    return s
  }

  #routeSeries(route: string): RouteSeries {
    let s = this.#routes.get(route)
    if (s !== undefined) return s
    if (this.#routes.size >= MAX_LIVE_SERIES) {
      s = this.#routes.get(OTHER)
      if (s !== undefined) return s
      route = OTHER
    }
    this.#routes.set(route, s = new RouteSeries(route))
    return s
  }

  /** Moves the head to `bucket`, zeroing the buckets it passes (at most the whole ring). */
  #advance(bucket: number): void {
    const from = Math.max(this.#head + 1, bucket - LIVE_BUCKETS + 1)
    for (let b = from; b <= bucket; b++) {
      const slot = b % LIVE_BUCKETS
      const w = (b % LIVE_WINDOW_BUCKETS) * BINS
      for (const byEndpoint of this.#endpoints.values()) {
        for (const s of byEndpoint.values()) {
          s.requests[slot] = 0
          s.errors[slot] = 0
          for (const c of s.causes.values()) c[slot] = 0
          s.latency.fill(0, w, w + BINS)
        }
      }
      for (const s of this.#routes.values()) s.requests[slot] = s.lookups[slot] = s.hits[slot] = s.denied[slot] = 0
    }
    this.#head = bucket
  }

  /** Bytes held by the counts (typed arrays; the maps and keys add a few hundred bytes a series). */
  memoryBytes(): number {
    let n = 0
    for (const byEndpoint of this.#endpoints.values()) {
      for (const s of byEndpoint.values()) {
        n += s.requests.byteLength + s.errors.byteLength + s.latency.byteLength
        for (const c of s.causes.values()) n += c.byteLength
      }
    }
    for (const s of this.#routes.values()) n += s.requests.byteLength + s.lookups.byteLength + s.hits.byteLength + s.denied.byteLength
    return n
  }

  /** Endpoint series and route series held. */
  get seriesCount(): { endpoints: number; routes: number } {
    return { endpoints: this.#endpointCount, routes: this.#routes.size }
  }

  /**
   * The ring as plain counts, oldest bucket first, up to the bucket of `now`.
   *
   * @param now epoch ms; default the clock given to the constructor
   */
  export(now: number = this.#clock()): LiveExport {
    const head = Math.floor(now / LIVE_BUCKET_MS)
    if (head > this.#head) this.#advance(head)
    const ordered = (a: Uint32Array): number[] => {
      const out = new Array<number>(LIVE_BUCKETS)
      for (let i = 0; i < LIVE_BUCKETS; i++) {
        const b = head - LIVE_BUCKETS + 1 + i
        // Buckets after the head written so far (a clock that went back) read as empty.
        out[i] = b > this.#head ? 0 : a[b % LIVE_BUCKETS]
      }
      return out
    }
    const endpoints: LiveEndpointExport[] = []
    for (const byEndpoint of this.#endpoints.values()) {
      for (const s of byEndpoint.values()) {
        const latency = new Array<number>(BINS).fill(0)
        for (let w = 0; w < LIVE_WINDOW_BUCKETS; w++) for (let i = 0; i < BINS; i++) latency[i] += s.latency[w * BINS + i]
        const causes: Record<string, number[]> = {}
        for (const [type, c] of s.causes) causes[type] = ordered(c)
        endpoints.push({ upstream: s.upstream, endpoint: s.endpoint, requests: ordered(s.requests), errors: ordered(s.errors), causes, latency })
      }
    }
    const routes = [...this.#routes.values()].map((s) => ({ route: s.route, requests: ordered(s.requests), cache_lookups: ordered(s.lookups), cache_hits: ordered(s.hits), denied: ordered(s.denied) }))
    return { at: now, bucket_ms: LIVE_BUCKET_MS, buckets: LIVE_BUCKETS, window_buckets: LIVE_WINDOW_BUCKETS, head, latency_bounds_ms: LATENCY_BOUNDS_MS, endpoints, routes }
  }
}

/** `a` shifted so that its last entry is bucket `head`, given that it ended at `from` (newer buckets read 0). */
function align(a: number[], from: number, head: number): number[] {
  const shift = head - from
  if (shift === 0) return a
  const out = new Array<number>(a.length).fill(0)
  for (let i = shift; i < a.length; i++) if (i - shift >= 0) out[i - shift] = a[i]
  return out
}

function addInto(into: number[], a: number[]): void {
  for (let i = 0; i < into.length; i++) into[i] += a[i] ?? 0
}

/**
 * Sums exports of several processes into one (the whole host's view): series with the
 * same keys add bucket by bucket, aligned on the newest head.
 *
 * @throws {RangeError} when the exports differ in bucket width or count
 */
export function mergeLiveExports(exports: readonly LiveExport[]): LiveExport {
  if (exports.length === 0) return new LiveStats().export()
  const first = exports[0]
  for (const x of exports) {
    if (x.bucket_ms !== first.bucket_ms || x.buckets !== first.buckets || x.latency_bounds_ms.length !== first.latency_bounds_ms.length) {
      throw new RangeError('live statistics exports differ in bucket width, count or latency bins: they cannot be summed')
    }
  }
  const head = Math.max(...exports.map((x) => x.head))
  const at = Math.max(...exports.map((x) => x.at))
  const endpoints = new Map<string, LiveEndpointExport>()
  const routes = new Map<string, LiveRouteExport>()
  const zeros = () => new Array<number>(first.buckets).fill(0)
  for (const x of exports) {
    for (const e of x.endpoints) {
      const key = `${e.upstream}\n${e.endpoint}`
      let m = endpoints.get(key)
      if (m === undefined) endpoints.set(key, m = { upstream: e.upstream, endpoint: e.endpoint, requests: zeros(), errors: zeros(), causes: {}, latency: new Array<number>(e.latency.length).fill(0) })
      addInto(m.requests, align(e.requests, x.head, head))
      addInto(m.errors, align(e.errors, x.head, head))
      for (const [type, c] of Object.entries(e.causes)) addInto(m.causes[type] ??= zeros(), align(c, x.head, head))
      addInto(m.latency, e.latency)
    }
    for (const r of x.routes) {
      let m = routes.get(r.route)
      if (m === undefined) routes.set(r.route, m = { route: r.route, requests: zeros(), cache_lookups: zeros(), cache_hits: zeros(), denied: zeros() })
      addInto(m.requests, align(r.requests, x.head, head))
      addInto(m.denied, align(r.denied, x.head, head))
      addInto(m.cache_lookups, align(r.cache_lookups, x.head, head))
      addInto(m.cache_hits, align(r.cache_hits, x.head, head))
    }
  }
  return { ...first, at, head, endpoints: [...endpoints.values()], routes: [...routes.values()] }
}

/** The latency percentile `q` (0…1) of a histogram, interpolated inside its bin, in ms; null without samples. */
export function percentile(bins: readonly number[], q: number, bounds: readonly number[] = LATENCY_BOUNDS_MS): number | null {
  let total = 0
  for (const n of bins) total += n
  if (total === 0) return null
  const rank = q * total
  let seen = 0
  for (let i = 0; i < bins.length; i++) {
    if (bins[i] === 0) continue
    if (seen + bins[i] >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1]
      // Above the last bound: reported as the last bound (at least that long).
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1]
      return lo + (hi - lo) * Math.max(0, Math.min(1, (rank - seen) / bins[i]))
    }
    seen += bins[i]
  }
  return bounds[bounds.length - 1]
}

/** The live figures of one endpoint, over the last minute (the window) unless named `_hour`. */
export interface LiveEndpointSummary {
  upstream: string
  endpoint: string
  /** Requests ended per second over the window. */
  requests_per_s: number
  /** Gateway failures / requests over the window, 0…1; null without requests. */
  error_rate: number | null
  /** Median and 99th percentile of request durations over the window, in ms; null without requests. */
  p50_ms: number | null
  p99_ms: number | null
  requests_window: number
  errors_window: number
  errors_hour: number
  /** Gateway failures over the hour by RFC 9209 type. */
  causes_hour: Record<string, number>
  /** Gateway failures over the window by RFC 9209 type. */
  causes_window: Record<string, number>
}

/** The live figures of one route. */
export interface LiveRouteSummary {
  route: string
  requests_per_s: number
  requests_hour: number
  /** Cache lookups and hits over the hour. */
  cache_lookups_hour: number
  cache_hits_hour: number
  /** `cache_hits_hour / cache_lookups_hour`, 0…1; null when the cache was not looked up. */
  cache_hit_ratio: number | null
  /** Requests refused by a rate limit or an access rule, over the window and the hour. */
  denied_window: number
  denied_hour: number
}

/** What the dashboard and `portico top` show, computed from a {@link LiveExport}. */
export interface LiveSummary {
  at: number
  bucket_ms: number
  /** Length of the window of rates and percentiles, in ms (shorter just after start of a bucket: the head still fills). */
  window_ms: number
  /** Start (epoch ms) of each bucket, oldest first. */
  times: number[]
  /** Gateway failures of every endpoint by RFC 9209 type, one count a bucket. */
  causes: Record<string, number[]>
  endpoints: LiveEndpointSummary[]
  routes: LiveRouteSummary[]
}

const sum = (a: readonly number[], from = 0): number => {
  let n = 0
  for (let i = from; i < a.length; i++) n += a[i]
  return n
}

/** Rates, error rates, percentiles and the time series by cause, from an export (one process's or a merged one). */
export function summarizeLive(x: LiveExport): LiveSummary {
  const from = x.buckets - x.window_buckets
  // The window: the complete buckets before the head, plus the part of the head elapsed.
  const windowMs = (x.window_buckets - 1) * x.bucket_ms + Math.max(1, x.at - x.head * x.bucket_ms)
  const perS = (n: number) => n / (windowMs / 1000)
  const causes: Record<string, number[]> = {}
  const endpoints = x.endpoints.map((e): LiveEndpointSummary => {
    const requests = sum(e.requests, from)
    const errors = sum(e.errors, from)
    const causesHour: Record<string, number> = {}
    const causesWindow: Record<string, number> = {}
    for (const [type, c] of Object.entries(e.causes)) {
      const hour = sum(c)
      if (hour === 0) continue
      causesHour[type] = hour
      const w = sum(c, from)
      if (w > 0) causesWindow[type] = w
      const into = causes[type] ??= new Array<number>(x.buckets).fill(0)
      addInto(into, c)
    }
    return {
      upstream: e.upstream,
      endpoint: e.endpoint,
      requests_per_s: perS(requests),
      error_rate: requests === 0 ? null : errors / requests,
      p50_ms: percentile(e.latency, 0.5, x.latency_bounds_ms),
      p99_ms: percentile(e.latency, 0.99, x.latency_bounds_ms),
      requests_window: requests,
      errors_window: errors,
      errors_hour: sum(e.errors),
      causes_hour: causesHour,
      causes_window: causesWindow,
    }
  })
  const routes = x.routes.map((r): LiveRouteSummary => {
    const lookups = sum(r.cache_lookups)
    const hits = sum(r.cache_hits)
    return {
      route: r.route, requests_per_s: perS(sum(r.requests, from)), requests_hour: sum(r.requests),
      cache_lookups_hour: lookups, cache_hits_hour: hits, cache_hit_ratio: lookups === 0 ? null : hits / lookups,
      denied_window: sum(r.denied, from), denied_hour: sum(r.denied),
    }
  })
  const times = new Array<number>(x.buckets)
  for (let i = 0; i < x.buckets; i++) times[i] = (x.head - x.buckets + 1 + i) * x.bucket_ms
  return { at: x.at, bucket_ms: x.bucket_ms, window_ms: windowMs, times, causes, endpoints, routes }
}
