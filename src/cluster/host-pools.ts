/**
 * The primary's upstream pools: they resolve names (through the host's DNS cache), run
 * the active health checks and count outliers from the facts workers report, once for
 * the whole host, and publish each pool's verdicts to every worker when they change.
 * No request goes through them.
 */
import type { Config } from '../config/schema.ts'
import type { CauseType } from '../failures/causes.ts'
import { logger } from '../lib/logger.ts'
import { verdictsOf, type PoolVerdicts } from '../upstream/health/index.ts'
import { sameUpstreamConfig, UpstreamPool } from '../upstream/pool.ts'
import type { HostResolver } from './dns-cache.ts'
import type { Fact } from './link.ts'

/** How often verdicts are compared with those last published, in ms (returns at the end of an ejection, addresses that changed). */
const PUBLISH_CHECK_MS = 100

/** The pools of the primary, by upstream name. */
export class HostPools {
  #pools = new Map<string, UpstreamPool>()
  /** The verdicts last published, as JSON, by upstream. */
  readonly #published = new Map<string, string>()
  readonly #resolver: HostResolver
  readonly #publish: (upstream: string, verdicts: PoolVerdicts) => void
  readonly #timer: NodeJS.Timeout

  /**
   * @param publish sends one pool's verdicts to every worker
   */
  constructor(config: Config, resolver: HostResolver, publish: (upstream: string, verdicts: PoolVerdicts) => void) {
    this.#resolver = resolver
    this.#publish = publish
    this.apply(config)
    this.#timer = setInterval(() => this.publishChanges(), PUBLISH_CHECK_MS)
    this.#timer.unref()
  }

  /** The pools in force. */
  get pools(): ReadonlyMap<string, UpstreamPool> {
    return this.#pools
  }

  /**
   * Builds the pools of `config`: an upstream whose config is unchanged keeps its pool
   * (health and ejection state, as a single process's reload does); the others start
   * fresh and the pools no longer used close.
   */
  apply(config: Config): void {
    const next = new Map<string, UpstreamPool>()
    for (const [name, up] of Object.entries(config.upstreams)) {
      const old = this.#pools.get(name)
      if (old !== undefined && sameUpstreamConfig(old.config, up)) {
        next.set(name, old)
        continue
      }
      const pool = new UpstreamPool(name, up, { resolverFactory: (servers, timeoutMs) => this.#resolver.resolverFor(servers, timeoutMs) })
      // Publish at once on a transition or an ejection; the periodic check catches the rest.
      const active = pool.health.active
      if (active !== null) active.onTransition = () => this.#publishPool(pool)
      const outlier = pool.health.outlier
      if (outlier !== null) outlier.onEjection = () => this.#publishPool(pool)
      next.set(name, pool)
    }
    const kept = new Set(next.values())
    const gone = [...this.#pools.values()].filter((p) => !kept.has(p))
    this.#pools = next
    for (const name of [...this.#published.keys()]) if (!next.has(name)) this.#published.delete(name)
    for (const p of gone) void p.close().catch((err: Error) => logger.warn({ err, upstream: p.name }, 'closing a retired pool of the primary failed'))
    this.publishChanges(true)
  }

  /** The verdicts of every pool now (what a new worker is sent first). */
  verdicts(): Array<[string, PoolVerdicts]> {
    return [...this.#pools.values()].map((p) => [p.name, verdictsOf(p)])
  }

  /** Counts the try outcomes a worker reported, as the pool's outlier detection would have in one process. */
  observe(facts: readonly Fact[]): void {
    for (const [upstream, label, failure, status] of facts) {
      const pool = this.#pools.get(upstream)
      const endpoint = pool?.endpoints.find((e) => e.label === label)
      if (pool === undefined || endpoint === undefined) continue
      pool.report(endpoint, failure as CauseType | null, status)
    }
  }

  /** Publishes the pools whose verdicts changed since last published (all of them with `force`). */
  publishChanges(force = false): void {
    for (const p of this.#pools.values()) this.#publishPool(p, force)
  }

  #publishPool(pool: UpstreamPool, force = false): void {
    if (this.#pools.get(pool.name) !== pool) return
    const verdicts = verdictsOf(pool)
    const text = JSON.stringify(verdicts)
    if (!force && this.#published.get(pool.name) === text) return
    this.#published.set(pool.name, text)
    this.#publish(pool.name, verdicts)
  }

  /** Stops checking and closes every pool. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    await Promise.all([...this.#pools.values()].map((p) => p.close()))
  }
}
