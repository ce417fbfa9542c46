/**
 * The runtime: what one config generation serves with (routes, upstream pools). A reload
 * builds a new runtime and swaps it in; requests keep the one they started with.
 */
import { HttpCache } from '../cache/cache.ts'
import { MemoryStore } from '../cache/store.ts'
import type { Config } from '../config/schema.ts'
import { Router } from '../routing/router.ts'
import { UpstreamPool, type PoolOptions } from '../upstream/pool.ts'

/** The routes and pools of one config generation. */
export interface Runtime {
  readonly config: Config
  readonly router: Router
  readonly pools: ReadonlyMap<string, UpstreamPool>
  /** The RFC 9111 shared cache of the routes with `cache.enabled`; kept across reloads while `cache.max_size` is unchanged. */
  readonly cache: HttpCache
}

/**
 * Builds a runtime from a validated config.
 *
 * @param reuse pools of the previous runtime; an upstream whose config is unchanged keeps
 *   its pool (connections, counters)
 * @param cache the previous runtime's cache, kept when the store size is unchanged
 * @param poolOptions given to every new pool (the DNS resolver of names, for tests)
 * @throws {Error} naming the file when an upstream's `tls` PEM file cannot be read
 */
export function buildRuntime(config: Config, reuse?: ReadonlyMap<string, UpstreamPool>, cache?: HttpCache, poolOptions?: PoolOptions): Runtime {
  const pools = new Map<string, UpstreamPool>()
  for (const [name, up] of Object.entries(config.upstreams)) {
    const old = reuse?.get(name)
    pools.set(name, old && JSON.stringify(old.config) === JSON.stringify(up) ? old : new UpstreamPool(name, up, poolOptions))
  }
  const keepCache = cache !== undefined && cache.maxSize === config.cache.max_size
  return { config, router: new Router(config.routes), pools, cache: keepCache ? cache : new HttpCache(new MemoryStore(config.cache.max_size), config.cache.max_size) }
}

/** Closes the pools of `old` that `next` no longer uses. */
export async function retireRuntime(old: Runtime, next: Runtime | null): Promise<void> {
  const keep = new Set(next ? next.pools.values() : [])
  await Promise.all([...old.pools.values()].filter((p) => !keep.has(p)).map((p) => p.close()))
}
