/**
 * An upstream pool: the endpoints of one upstream and the policy that picks among them.
 */
import type { UpstreamConfig } from '../config/schema.ts'
import type { CauseType } from '../failures/causes.ts'
import type { Balancer } from './balancers/balancer.ts'
import { LeastRequestBalancer } from './balancers/least-request.ts'
import { RandomBalancer } from './balancers/random.ts'
import { RoundRobinBalancer } from './balancers/round-robin.ts'
import { Endpoint } from './endpoint.ts'
import { startHealth, type PoolHealth } from './health/index.ts'

/** Creates the balancer named by `load_balancing`. */
export function createBalancer(policy: UpstreamConfig['load_balancing']): Balancer {
  switch (policy) {
    case 'least_request': return new LeastRequestBalancer()
    case 'random': return new RandomBalancer()
    default: return new RoundRobinBalancer()
  }
}

/** `retries.on` compiled for the driver. */
export interface RetryPolicy {
  /** Retry failures where nothing was sent (DNS, refused, connect timeout, TLS). */
  connect: boolean
  /** Retry `connection_terminated` on a reused connection once on a fresh one (idempotent methods). */
  reset: boolean
  /** Retry `http_response_timeout` (idempotent methods). */
  timeout: boolean
  /** Upstream statuses to retry (idempotent methods without a body). */
  statuses: ReadonlySet<number>
}

/** Compiles `retries.on`. */
export function compileRetryPolicy(on: UpstreamConfig['retries']['on']): RetryPolicy {
  return {
    connect: on.includes('connect_failure'),
    reset: on.includes('reset'),
    timeout: on.includes('http_response_timeout'),
    statuses: new Set(on.filter((c): c is number => typeof c === 'number')),
  }
}

/** One upstream: a named pool of endpoints. */
export class UpstreamPool {
  readonly name: string
  readonly config: UpstreamConfig
  readonly endpoints: readonly Endpoint[]
  readonly balancer: Balancer
  readonly retryPolicy: RetryPolicy
  /** Requests being proxied to this upstream now (until their response header). */
  active = 0
  /** Of those, requests that have gone on to a retry. */
  retrying = 0
  /** Active health checks and outlier detection, running from construction until close(). */
  readonly health: PoolHealth

  constructor(name: string, config: UpstreamConfig) {
    this.name = name
    this.config = config
    this.endpoints = config.endpoints.map((e) => new Endpoint(e.url, e.weight, config))
    this.balancer = createBalancer(config.load_balancing)
    this.retryPolicy = compileRetryPolicy(config.retries.on)
    this.health = startHealth(this)
  }

  /**
   * Whether one more request may go on to a retry under the retry budget: retries at once
   * stay within `max(budget.min_concurrency, budget.ratio × active requests)` (Envoy retry_budget).
   */
  retryAllowed(): boolean {
    const b = this.config.retries.budget
    return this.retrying < Math.max(b.min_concurrency, b.ratio * this.active)
  }

  /**
   * Picks the endpoint for the next try, among the available endpoints (healthy, not
   * ejected) this request has not tried yet; an endpoint already tried is picked again
   * only when no other is available. In panic (the share of available endpoints below
   * `panic_threshold` percent, Envoy's healthy panic threshold), every endpoint counts
   * as available: spreading load over all of them beats overloading the few left.
   *
   * @param tried endpoints this request already tried
   * @param now epoch ms
   * @returns an endpoint, or null when none is available (the caller answers 503
   *   `destination_unavailable`)
   */
  select(tried: readonly Endpoint[] | null, now = Date.now()): Endpoint | null {
    const all = this.endpoints
    let candidates: Endpoint[] = []
    let fallback: Endpoint[] = []
    const threshold = this.config.panic_threshold
    const panic = threshold > 0 && all.filter((e) => e.isAvailable(now)).length * 100 < threshold * all.length
    for (const e of all) {
      if (!panic && !e.isAvailable(now)) continue
      if (tried !== null && tried.includes(e)) fallback.push(e)
      else candidates.push(e)
    }
    if (candidates.length === 0) candidates = fallback
    if (candidates.length === 0) return null
    return this.balancer.pick(candidates)
  }

  /**
   * Tells the pool how a try on one of its endpoints ended, for passive health
   * (outlier ejection). Called once per try.
   *
   * @param endpoint the endpoint tried
   * @param failure the gateway failure of the try, or null when a response header arrived
   * @param status the upstream status when a response header arrived
   */
  report(endpoint: Endpoint, failure: CauseType | null, status: number | null): void {
    this.outcomeListener?.(endpoint, failure, status)
  }

  /** Receives every try's outcome (passive health checking subscribes here). */
  outcomeListener: ((endpoint: Endpoint, failure: CauseType | null, status: number | null) => void) | null = null

  #closed: Promise<void> | null = null

  /** Stops health checking, then closes every endpoint's connections gracefully. Idempotent. */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      await this.health.stop()
      await Promise.all(this.endpoints.map((e) => e.close()))
    })()
  }
}
