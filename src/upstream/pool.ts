/**
 * An upstream pool: the endpoints of one upstream and the policy that picks among them.
 */
import type { UpstreamConfig } from '../config/schema.ts'
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
   * Picks the endpoint for the next try.
   *
   * @param tried endpoints this request already tried; they are skipped while another exists
   * @returns an endpoint, or null when the pool has none to offer
   */
  select(tried: readonly Endpoint[] | null): Endpoint | null {
    const all = this.endpoints
    if (all.length === 0) return null
    if (!tried || tried.length === 0) return this.balancer.pick(all)
    const fresh = all.filter((e) => !tried.includes(e))
    return this.balancer.pick(fresh.length > 0 ? fresh : all)
  }

  /** Closes every endpoint's connections gracefully. */
  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close()))
  }
}
