/**
 * Rate limits of a route: the Generic Cell Rate Algorithm (GCRA), which is nginx
 * `limit_req rate=R burst=B nodelay` computed without a timer. Each key has a theoretical
 * arrival time (TAT); a request is admitted when it arrives no earlier than
 * `TAT - burst × interval`, and then pushes the TAT one `interval` (1/rate) further. So a
 * quiet key may send `burst + 1` requests at once, and then one each `interval`: the
 * long-run rate never exceeds `rate`. A request over the limit is refused at once, never
 * delayed (nginx without `nodelay` would queue it).
 *
 * Where the TATs live is a {@link RateLimitStore}: this process's memory (`local`; with
 * worker processes, one copy per worker kept in step through the primary, see
 * {@link HostLimitFeed}), or Redis (`redis`, src/protect/redis-store.ts) for one limit
 * across a fleet.
 */

/** A rate limit's numbers, as the stores need them. */
export interface GcraPolicy {
  /** Time between two admitted requests at the sustained rate (1 / rate), in ms. */
  readonly intervalMs: number
  /** Requests over the sustained rate admitted at once (nginx `burst`). */
  readonly burst: number
}

/**
 * The decision of a store for one request. Reused by the local store (read it before the
 * next call); a Redis decision is a new object.
 */
export interface LimitDecision {
  allowed: boolean
  /** Requests the key may still send at once after this one (the `r` of the RateLimit field). */
  remaining: number
  /** Time until the key's allowance is whole again, in ms (the `t` of the RateLimit field). */
  resetMs: number
  /** When refused: time until one more request would be admitted, in ms (`Retry-After`). */
  retryAfterMs: number
}

/**
 * Where TATs are kept. `take` records one request for `key` when admitted (a refused request
 * changes nothing) and returns the decision; it may answer at once (memory) or later (Redis).
 * A rejected promise is a store failure: the caller applies `on_store_error`.
 */
export interface RateLimitStore {
  take(key: string, policy: GcraPolicy): LimitDecision | Promise<LimitDecision>
}

/** Computes a GCRA decision from the key's stored TAT (`tat`, or NaN for none) at `now`; returns the TAT to store, or NaN when refused. */
export function gcra(tat: number, now: number, p: GcraPolicy, out: LimitDecision): number {
  const start = tat > now ? tat : now
  // Written as start − burst × interval (not next − (burst + 1) × interval) so that a fresh key's allowAt is `now` exactly, never a rounding above it.
  const allowAt = start - p.burst * p.intervalMs
  if (now < allowAt) {
    out.allowed = false
    out.remaining = 0
    out.retryAfterMs = allowAt - now
    out.resetMs = start - now
    return NaN
  }
  const next = start + p.intervalMs
  out.allowed = true
  // The epsilon keeps float rounding of large clock values from losing a whole request.
  out.remaining = Math.floor((now - allowAt) / p.intervalMs + 1e-9)
  out.retryAfterMs = 0
  out.resetMs = next - now
  return next
}

/**
 * How the `local` limits of the worker processes of one host make one limit (DESIGN §8): each
 * worker decides at once from its own copy of the host's TATs and reports what it admitted;
 * the primary keeps the host's TATs and sends every worker the new TAT of each key that
 * moved. No request waits for the primary; two workers may admit the same last request of a
 * key within one IPC hop of each other, so the host may overshoot by that much.
 */
export interface HostLimitFeed {
  /** A request of `key` was admitted under the limit `id` at `at` (ms since the epoch); `intervalMs` is the limit's 1/rate. */
  admitted(id: string, key: string, intervalMs: number, at: number): void
  /** `store` takes the host's TATs of limit `id` from now on (replacing an earlier store of that id). */
  subscribe(id: string, store: LocalStore): void
}

/**
 * TATs in this process's memory, one store per rate limit (nginx's shared-memory zone).
 * Keys whose TAT has passed are forgotten (they are as good as new) by a sweep that runs
 * when the map has doubled since the last one; past `maxKeys` the oldest keys are dropped
 * (nginx drops the least recently used states of a full zone too). In a worker process, the
 * store is one copy of the host's ({@link HostLimitFeed}): times are then ms since the epoch,
 * which every process of the host reads alike.
 */
export class LocalStore implements RateLimitStore {
  readonly #tat = new Map<string, number>()
  readonly #out: LimitDecision = { allowed: true, remaining: 0, resetMs: 0, retryAfterMs: 0 }
  readonly #maxKeys: number
  readonly #host: { id: string; feed: HostLimitFeed } | null
  #sweepAt = 1024

  /**
   * @param maxKeys most keys remembered at once
   * @param host the limit's id and the host's feed, in a worker process; else null
   */
  constructor(maxKeys = 100_000, host: { id: string; feed: HostLimitFeed } | null = null) {
    this.#maxKeys = maxKeys
    this.#host = host
    host?.feed.subscribe(host.id, this)
  }

  take(key: string, policy: GcraPolicy): LimitDecision {
    const host = this.#host
    const now = host === null ? performance.now() : performance.timeOrigin + performance.now()
    const stored = this.#tat.get(key)
    const next = gcra(stored ?? NaN, now, policy, this.#out)
    if (next === next) { // not NaN: admitted
      this.#tat.set(key, next)
      host?.feed.admitted(host.id, key, policy.intervalMs, now)
      if (stored === undefined && this.#tat.size > this.#sweepAt) this.#sweep(now)
    }
    return this.#out
  }

  /** The host's TAT of `key` (ms since the epoch), from the primary: kept when later than this copy's. */
  apply(key: string, tat: number): void {
    const mine = this.#tat.get(key)
    if (mine === undefined || tat > mine) this.#tat.set(key, tat)
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#tat.size
  }

  #sweep(now: number): void {
    for (const [k, tat] of this.#tat) if (tat <= now) this.#tat.delete(k)
    if (this.#tat.size > this.#maxKeys) {
      let drop = this.#tat.size - this.#maxKeys
      for (const k of this.#tat.keys()) {
        if (drop-- <= 0) break
        this.#tat.delete(k)
      }
    }
    this.#sweepAt = Math.max(1024, this.#tat.size * 2)
  }
}

/**
 * The host's TATs of the `local` limits, kept by the primary process of a host with workers:
 * each admission a worker reports pushes its key's TAT one interval further, as if the host
 * had admitted it itself.
 */
export class HostLimitTable {
  readonly #tat = new Map<string, number>()
  #sweepAt = 1024

  /**
   * Records the admissions of one report.
   *
   * @param admitted `[limit id, key, interval ms, at]` each, `at` in ms since the epoch
   * @returns the new TAT of each key that moved, `[limit id, key, tat]`, one per key
   */
  admit(admitted: ReadonlyArray<readonly [string, string, number, number]>): Array<[string, string, number]> {
    const moved = new Map<string, [string, string, number]>()
    for (const [id, key, intervalMs, at] of admitted) {
      const k = `${id}\n${key}`
      const tat = Math.max(this.#tat.get(k) ?? 0, at) + intervalMs
      this.#tat.set(k, tat)
      moved.set(k, [id, key, tat])
    }
    if (this.#tat.size > this.#sweepAt) {
      const now = Date.now()
      for (const [k, tat] of this.#tat) if (tat <= now) this.#tat.delete(k)
      this.#sweepAt = Math.max(1024, this.#tat.size * 2)
    }
    return [...moved.values()]
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#tat.size
  }
}

/**
 * Parses an nginx rate, `"10r/s"` or `"600r/m"` (a fraction such as `"0.5r/s"` too), into the
 * interval between two requests, in ms.
 *
 * @throws {Error} with what was expected
 */
export function parseRate(text: string): { perSecond: number; intervalMs: number; window: 1 | 60; quota: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*r\/(s|m)\s*$/.exec(text)
  const n = m ? Number(m[1]) : NaN
  if (!(n > 0)) throw new Error(`invalid rate "${text}": expected requests per second or per minute, e.g. "10r/s" or "600r/m" (nginx limit_req_zone rate=)`)
  const window = m![2] === 's' ? 1 : 60
  return { perSecond: n / window, intervalMs: (window * 1000) / n, window, quota: n }
}
