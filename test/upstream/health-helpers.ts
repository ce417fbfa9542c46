/**
 * Health test helpers: an upstream pool built from a config with its health checking
 * running (closed after the test), and a recorder of every probe and transition.
 */
import { configSchema, type ConfigInput } from '../../src/config/schema.ts'
import type { Endpoint } from '../../src/upstream/endpoint.ts'
import type { HealthTransition, ProbeResult } from '../../src/upstream/health/index.ts'
import { UpstreamPool } from '../../src/upstream/pool.ts'
import { oneUpstream, type testEnv } from '../helpers/gateway.ts'

type UpstreamInput = ConfigInput['upstreams'][string]

/** One probe as seen by the test: its endpoint, result, and the endpoint's state after counting it. */
export interface SeenProbe {
  endpoint: Endpoint
  result: ProbeResult
  healthyAfter: boolean
  startedAt: number
}

/** A pool under test with what its active checker did. */
export interface WatchedPool {
  pool: UpstreamPool
  probes: SeenProbe[]
  transitions: HealthTransition[]
  /** Probes of one endpoint, in order. */
  of(endpoint: Endpoint): SeenProbe[]
}

/**
 * Builds the pool of upstream `default` for `endpoints` with `upstream` settings (health
 * checks start at once), records its probes and transitions, and closes it after the test.
 */
export function watchedPool(env: ReturnType<typeof testEnv>, endpoints: string[], upstream: Partial<UpstreamInput>): WatchedPool {
  const config = configSchema.parse(oneUpstream(endpoints, upstream)).upstreams.default
  const pool = new UpstreamPool('default', config)
  env.defer(() => pool.close())
  const probes: SeenProbe[] = []
  const transitions: HealthTransition[] = []
  const active = pool.health.active
  if (active !== null) {
    const previous = active.onProbe
    active.onProbe = (endpoint, result, startedAt) => {
      previous?.(endpoint, result, startedAt)
      probes.push({ endpoint, result, healthyAfter: endpoint.healthy, startedAt })
    }
    active.onTransition = (t) => transitions.push(t)
  }
  return { pool, probes, transitions, of: (e) => probes.filter((p) => p.endpoint === e) }
}
