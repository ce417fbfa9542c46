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

/** Creates the balancer named by `load_balancing`. */
export function createBalancer(policy: UpstreamConfig['load_balancing']): Balancer {
  switch (policy) {
    case 'least_request': return new LeastRequestBalancer()
    case 'random': return new RandomBalancer()
    default: return new RoundRobinBalancer()
  }
}

/** One upstream: a named pool of endpoints. */
export class UpstreamPool {
  readonly name: string
  readonly config: UpstreamConfig
  readonly endpoints: readonly Endpoint[]
  readonly balancer: Balancer

  constructor(name: string, config: UpstreamConfig) {
    this.name = name
    this.config = config
    this.endpoints = config.endpoints.map((e) => new Endpoint(e.url, e.weight, config))
    this.balancer = createBalancer(config.load_balancing)
  }

  /**
   * Picks the endpoint for the next try, among the available endpoints (healthy, not
   * ejected) this request has not tried yet; an endpoint already tried is picked again
   * only when no other is available.
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
    for (const e of all) {
      if (!e.isAvailable(now)) continue
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

  /** Closes every endpoint's connections gracefully. */
  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close()))
  }
}
