/**
 * The runtime: what one config generation serves with (routes, upstream pools). A reload
 * builds a new runtime and swaps it in; requests keep the one they started with.
 */
import { HttpCache } from '../cache/cache.ts'
import { createCacheStore } from '../cache/redis-store.ts'
import type { Config } from '../config/schema.ts'
import { Filters } from '../protect/filter.ts'
import type { HostLimitFeed } from '../protect/rate-limit.ts'
import { Router } from '../routing/router.ts'
import { HeaderRules } from './header-rules.ts'
import { sameUpstreamConfig, UpstreamPool, type PoolOptions } from '../upstream/pool.ts'

/** The routes and pools of one config generation. */
export interface Runtime {
  readonly config: Config
  readonly router: Router
  readonly pools: ReadonlyMap<string, UpstreamPool>
  /** The RFC 9111 shared cache of the routes with `cache.enabled`; kept across reloads while `cache.max_size` and `cache.store` are unchanged. */
  readonly cache: HttpCache
  /** Access rules, rate limits, `limit_conn` and trusted proxies of this generation. */
  readonly filters: Filters
  /** Header rules by route name; routes without any are absent. */
  readonly headerRules: ReadonlyMap<string, RouteHeaderRules>
}

/** The header rules of one route, each direction or null. */
export interface RouteHeaderRules {
  readonly request: HeaderRules | null
  readonly response: HeaderRules | null
}

/**
 * Builds a runtime from a validated config.
 *
 * @param reuse pools of the previous runtime; an upstream whose config is unchanged keeps
 *   its pool (connections, counters)
 * @param cache the previous runtime's cache, kept when the store size is unchanged
 * @param poolOptions given to every new pool (the DNS resolver of names, for tests)
 * @param filters the previous runtime's filters: unchanged rate limits keep their local counts, an unchanged `redis` its connection
 * @param hostLimits in a worker process, how local rate limits are kept in step with the other workers
 * @throws {Error} naming the file when an upstream's `tls` PEM file cannot be read
 */
export function buildRuntime(config: Config, reuse?: ReadonlyMap<string, UpstreamPool>, cache?: HttpCache, poolOptions?: PoolOptions, filters?: Filters, hostLimits?: HostLimitFeed): Runtime {
  const pools = new Map<string, UpstreamPool>()
  for (const [name, up] of Object.entries(config.upstreams)) {
    const old = reuse?.get(name)
    pools.set(name, old && sameUpstreamConfig(old.config, up) ? old : new UpstreamPool(name, up, poolOptions))
  }
  const keepCache = cache !== undefined && cache.maxSize === config.cache.max_size && JSON.stringify(cache.storeConfig) === JSON.stringify(config.cache.store)
  const router = new Router(config.routes)
  const headerRules = new Map<string, RouteHeaderRules>()
  for (const r of router.routes) {
    const c = r.config
    if (c.request_headers || c.response_headers) {
      headerRules.set(r.name, {
        request: c.request_headers ? new HeaderRules(c.request_headers) : null,
        response: c.response_headers ? new HeaderRules(c.response_headers) : null,
      })
    }
  }
  return {
    config,
    router,
    pools,
    cache: keepCache ? cache : new HttpCache(createCacheStore(config.cache.max_size, config.cache.store.redis), config.cache.max_size, config.cache.store),
    filters: new Filters(config, router.routes.map((r) => r.name), filters, hostLimits ?? null),
    headerRules,
  }
}

/** Closes the pools of `old` that `next` no longer uses. */
export async function retireRuntime(old: Runtime, next: Runtime | null): Promise<void> {
  const keep = new Set(next ? next.pools.values() : [])
  await Promise.all([...old.pools.values()].filter((p) => !keep.has(p)).map((p) => p.close()))
  await old.filters.retire(next ? next.filters : null)
}
