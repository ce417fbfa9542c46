/**
 * Health of one upstream pool: active checks (when `health_check` is set) and outlier
 * detection (unless turned off), started with the pool and stopped when it closes.
 */
import type { UpstreamConfig } from '../../config/schema.ts'
import type { CauseType } from '../../failures/causes.ts'
import type { Endpoint } from '../endpoint.ts'
import { ActiveHealthChecker, type CheckedPool } from './active.ts'
import { OutlierDetector } from './outlier.ts'

export { ActiveHealthChecker, jitterMs, type HealthTransition, type CheckedPool } from './active.ts'
export { OutlierDetector, type Ejection } from './outlier.ts'
export { fedHealth, verdictsOf, type EndpointVerdict, type HealthFeed, type PoolVerdicts } from './fed.ts'
export { startProbe, statusExpected, type ProbeResult, type ProbeTarget, type RunningProbe } from './probe.ts'

/** The health checking of one pool. */
export interface PoolHealth {
  /** Active checks; null when `health_check` is not configured. */
  readonly active: ActiveHealthChecker | null
  /** Outlier detection; null when both of its thresholds are 0. */
  readonly outlier: OutlierDetector | null
  /** Checks an endpoint that joined the pool (a new address of a resolved name), from a fresh state. */
  add(endpoint: Endpoint): void
  /** Stops checking an endpoint that left the pool; resolves when its probe socket, if any, is closed. */
  remove(endpoint: Endpoint): Promise<void>
  /** Stops both; resolves when no timer or probe socket is left. */
  stop(): Promise<void>
}

/** What the pool offers health checking: its endpoints, config, and the outcome hook. */
export interface HealthHost extends CheckedPool {
  readonly config: UpstreamConfig
  outcomeListener: ((endpoint: Endpoint, failure: CauseType | null, status: number | null) => void) | null
}

/**
 * Starts the health checking `pool.config` asks for: subscribes outlier detection to
 * `pool.outcomeListener`, starts the active checks, and lets a passing active check end
 * an ejection that began before it (see {@link OutlierDetector}).
 */
export function startHealth(pool: HealthHost): PoolHealth {
  const cfg = pool.config
  const detector = new OutlierDetector(pool, cfg.outlier_detection)
  const outlier = detector.enabled ? detector : null
  if (outlier !== null) pool.outcomeListener = (endpoint, failure, status) => outlier.observe(endpoint, failure, status)
  const active = cfg.health_check ? new ActiveHealthChecker(pool, cfg.health_check) : null
  if (active !== null) {
    if (outlier !== null) active.onProbe = (endpoint, result, startedAt) => { if (result.ok) outlier.checkPassed(endpoint, startedAt) }
    active.start()
  }
  return {
    active,
    outlier,
    add(endpoint) {
      outlier?.add(endpoint)
      active?.add(endpoint)
    },
    async remove(endpoint) {
      outlier?.remove(endpoint)
      await active?.remove(endpoint)
    },
    async stop() {
      outlier?.stop()
      if (outlier !== null && pool.outcomeListener !== null) pool.outcomeListener = null
      await active?.stop()
    },
  }
}
