/**
 * The runtime: what one config generation serves with (routes, upstream pools). A reload
 * builds a new runtime and swaps it in; requests keep the one they started with.
 */
import type { Config } from '../config/schema.ts'
import { Router } from '../routing/router.ts'
import { UpstreamPool } from '../upstream/pool.ts'

/** The routes and pools of one config generation. */
export interface Runtime {
  readonly config: Config
  readonly router: Router
  readonly pools: ReadonlyMap<string, UpstreamPool>
}

/**
 * Builds a runtime from a validated config.
 *
 * @param reuse pools of the previous runtime; an upstream whose config is unchanged keeps
 *   its pool (connections, counters)
 */
export function buildRuntime(config: Config, reuse?: ReadonlyMap<string, UpstreamPool>): Runtime {
  const pools = new Map<string, UpstreamPool>()
  for (const [name, up] of Object.entries(config.upstreams)) {
    const old = reuse?.get(name)
    pools.set(name, old && JSON.stringify(old.config) === JSON.stringify(up) ? old : new UpstreamPool(name, up))
  }
  return { config, router: new Router(config.routes), pools }
}

/** Closes the pools of `old` that `next` no longer uses. */
export async function retireRuntime(old: Runtime, next: Runtime | null): Promise<void> {
  const keep = new Set(next ? next.pools.values() : [])
  await Promise.all([...old.pools.values()].filter((p) => !keep.has(p)).map((p) => p.close()))
}
