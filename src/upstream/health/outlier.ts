/**
 * Outlier detection (passive health checking), after Envoy's: every try's outcome on real
 * traffic is counted per endpoint, and an endpoint that fails too many tries in a row is
 * ejected from rotation for a time that grows each time it happens again.
 */
import type { OutlierDetectionConfig } from '../../config/schema.ts'
import type { CauseType } from '../../failures/causes.ts'
import { logger } from '../../lib/logger.ts'
import type { Endpoint } from '../endpoint.ts'
import type { CheckedPool } from './active.ts'
import { setDownReason } from './reason.ts'

/** An ejection, as logged once. */
export interface Ejection {
  upstream: string
  /** `host:port` of the endpoint. */
  endpoint: string
  /** The RFC 9209 type of the last failure, or `5xx` for a run of 5xx responses. */
  reason: string
  detail: string
  /** How long this ejection lasts, ms. */
  durationMs: number
  /** Epoch ms when it ends. */
  until: number
  /** Times ejected so far, this one included. */
  ejections: number
}

/** Per-endpoint counters. */
interface Track {
  /** Consecutive tries that failed (no response header). */
  failures: number
  /** Consecutive responses with a 5xx status. */
  fivexx: number
  /** Multiplier of `base_ejection_time` for the next ejection, minus one. */
  multiplier: number
  /** Epoch ms of the current ejection's start, or of the last return; 0 before any ejection. */
  since: number
  /** Ends the ejection's bookkeeping (reason, log) when its time is up. */
  timer: NodeJS.Timeout | null
}

/**
 * Ejects endpoints on consecutive failures, Envoy-style:
 * - `consecutive_failures` tries in a row that failed before a response header (any
 *   gateway failure the driver reports) eject the endpoint; a try that got a response
 *   header, whatever its status, resets the count;
 * - with `consecutive_5xx` > 0, that many responses in a row with a 5xx status also
 *   eject it; a response below 500 resets that count (failures leave it alone);
 * - the n-th ejection lasts n × `base_ejection_time`, at most `max_ejection_time`; the
 *   multiplier drops by one for each `base_ejection_time` spent in rotation, so an
 *   endpoint that stays well is treated as new again (Envoy decays it the same way);
 * - at most `max_ejection_percent` of the pool is ejected at once (rounded down), but a
 *   pool of two or more may always have one ejected; a failure beyond the cap ejects
 *   nothing and the count stays, so the next failure tries again;
 * - an endpoint returns when its time is up, or earlier when an active health check that
 *   *started after the ejection* passes (Envoy's `successful_active_health_check_uneject_host`):
 *   the check says the endpoint works again, and it must re-earn an ejection from zero.
 * Ejections and returns are logged once each (warn, info).
 */
export class OutlierDetector {
  readonly pool: CheckedPool
  readonly config: OutlierDetectionConfig
  /** Called once per ejection, after it is logged. */
  onEjection: ((e: Ejection) => void) | null = null
  readonly #tracks = new Map<Endpoint, Track>()
  #stopped = false

  constructor(pool: CheckedPool, config: OutlierDetectionConfig) {
    this.pool = pool
    this.config = config
    for (const e of pool.endpoints) this.add(e)
  }

  /** Counts the tries of an endpoint that joined the pool, from a fresh state (never ejected). */
  add(endpoint: Endpoint): void {
    if (!this.#tracks.has(endpoint)) this.#tracks.set(endpoint, { failures: 0, fivexx: 0, multiplier: 0, since: 0, timer: null })
  }

  /** Forgets an endpoint that left the pool, clearing its return timer. */
  remove(endpoint: Endpoint): void {
    const t = this.#tracks.get(endpoint)
    if (t?.timer) clearTimeout(t.timer)
    this.#tracks.delete(endpoint)
  }

  /** Whether the config ejects on anything (both thresholds 0 turn detection off). */
  get enabled(): boolean {
    return this.config.consecutive_failures > 0 || this.config.consecutive_5xx > 0
  }

  /**
   * Counts one try's outcome (the pool's `outcomeListener`).
   *
   * @param failure the try's gateway failure, or null when a response header arrived
   * @param status the upstream status when a response header arrived
   * @param now epoch ms
   */
  observe(endpoint: Endpoint, failure: CauseType | null, status: number | null, now = Date.now()): void {
    const t = this.#tracks.get(endpoint)
    if (t === undefined || this.#stopped) return
    const cfg = this.config
    if (failure !== null) {
      t.failures++
      if (cfg.consecutive_failures > 0 && t.failures >= cfg.consecutive_failures) {
        this.#eject(endpoint, t, now, failure, `${t.failures} consecutive failed tries, the last ${failure}`)
      }
      return
    }
    t.failures = 0
    if (status === null) return
    if (status < 500) {
      t.fivexx = 0
      return
    }
    t.fivexx++
    if (cfg.consecutive_5xx > 0 && t.fivexx >= cfg.consecutive_5xx) {
      this.#eject(endpoint, t, now, '5xx', `${t.fivexx} consecutive 5xx responses, the last ${status}`)
    }
  }

  /**
   * Ends a running ejection when an active check that started after it passed.
   *
   * @param startedAt epoch ms when the passing check started
   */
  checkPassed(endpoint: Endpoint, startedAt: number, now = Date.now()): void {
    const t = this.#tracks.get(endpoint)
    if (t === undefined || endpoint.ejectedUntil <= now || startedAt < t.since) return
    endpoint.ejectedUntil = 0
    this.#returned(endpoint, t, now, 'an active health check passed')
  }

  /** Clears the return timers; ejections in force simply run out. */
  stop(): void {
    this.#stopped = true
    for (const t of this.#tracks.values()) {
      if (t.timer !== null) clearTimeout(t.timer)
      t.timer = null
    }
  }

  /** How many endpoints may be ejected at once under `max_ejection_percent`. */
  maxEjected(): number {
    const n = this.pool.endpoints.length
    const cap = Math.floor((n * this.config.max_ejection_percent) / 100)
    return n > 1 ? Math.max(1, cap) : cap
  }

  #eject(endpoint: Endpoint, t: Track, now: number, reason: string, detail: string): void {
    if (endpoint.ejectedUntil > now) return
    const ejected = this.pool.endpoints.filter((e) => e.ejectedUntil > now).length
    if (ejected >= this.maxEjected()) return
    const cfg = this.config
    // Decay: one step per base_ejection_time spent in rotation since the last return
    // (the previous ejection's end, when its return timer has not run yet).
    const back = Math.max(t.since, endpoint.ejectedUntil)
    if (t.since > 0) t.multiplier = Math.max(0, t.multiplier - Math.floor((now - back) / cfg.base_ejection_time))
    t.multiplier++
    const durationMs = Math.min(cfg.base_ejection_time * t.multiplier, cfg.max_ejection_time)
    t.failures = 0
    t.fivexx = 0
    t.since = now
    endpoint.ejections++
    endpoint.ejectedUntil = now + durationMs
    setDownReason(endpoint, 'outlier', { type: reason === '5xx' ? 'destination_unavailable' : reason as CauseType, detail }, now)
    if (t.timer !== null) clearTimeout(t.timer)
    t.timer = setTimeout(() => {
      t.timer = null
      this.#returned(endpoint, t, Date.now(), 'ejection time is over')
    }, durationMs)
    t.timer.unref()
    const e: Ejection = { upstream: this.pool.name, endpoint: endpoint.label, reason, detail, durationMs, until: endpoint.ejectedUntil, ejections: endpoint.ejections }
    logger.warn({ upstream: e.upstream, endpoint: e.endpoint, state: 'ejected', reason, detail, ejection_ms: durationMs, ejections: e.ejections },
      `endpoint ${e.endpoint} of upstream ${e.upstream} ejected for ${durationMs}ms: ${detail}`)
    this.onEjection?.(e)
  }

  #returned(endpoint: Endpoint, t: Track, now: number, why: string): void {
    if (t.timer !== null) clearTimeout(t.timer)
    t.timer = null
    t.since = now
    t.failures = 0
    t.fivexx = 0
    setDownReason(endpoint, 'outlier', null, now)
    logger.info({ upstream: this.pool.name, endpoint: endpoint.label, state: 'returned', reason: why },
      `endpoint ${endpoint.label} of upstream ${this.pool.name} is back in rotation: ${why}`)
  }
}
