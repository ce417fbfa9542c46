/**
 * An upstream pool: the endpoints of one upstream and the policy that picks among them.
 */
import type { UpstreamConfig } from '../config/schema.ts'
import type { CauseType } from '../failures/causes.ts'
import { logger } from '../lib/logger.ts'
import type { Balancer } from './balancers/balancer.ts'
import { LeastRequestBalancer } from './balancers/least-request.ts'
import { RandomBalancer } from './balancers/random.ts'
import { RoundRobinBalancer } from './balancers/round-robin.ts'
import { createResolver, isWatchedName, systemLookup, type LookupAll, type NameResolver } from './dns.ts'
import { Endpoint, upstreamTlsOptions } from './endpoint.ts'
import { startHealth, type HealthHost, type PoolHealth } from './health/index.ts'
import { NameEndpoints, type NameStatus } from './names.ts'

/** Creates the balancer named by `load_balancing`. */
export function createBalancer(policy: UpstreamConfig['load_balancing']): Balancer {
  switch (policy) {
    case 'least_request': return new LeastRequestBalancer()
    case 'random': return new RandomBalancer()
    default: return new RoundRobinBalancer()
  }
}

/**
 * Whether a pool built for `a` serves `b` unchanged, so a reload keeps it (connections,
 * health and counters): the two configs are equal field for field.
 */
export function sameUpstreamConfig(a: UpstreamConfig, b: UpstreamConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** What a pool may be given beyond its config, to resolve names (tests inject loopback resolvers here). */
export interface PoolOptions {
  /**
   * Makes the resolver of a pool with endpoints given by host name, once per pool.
   * Default {@link createResolver}: a `dns.promises.Resolver` asking `servers`, or the
   * system's (/etc/resolv.conf) when undefined.
   *
   * @param servers the upstream's `dns.resolvers`, undefined when not set
   * @param timeoutMs query timeout in ms (the upstream's `timeouts.connect`)
   */
  resolverFactory?: (servers: readonly string[] | undefined, timeoutMs: number) => NameResolver
  /** getaddrinfo fallback for names the DNS does not know (/etc/hosts); null for none. Default: `dns.lookup` when `dns.resolvers` is not set, none when it is. */
  lookup?: LookupAll | null
  /**
   * Starts the health checking of a pool. Default {@link startHealth}: active checks and
   * outlier detection in this process. A cluster worker gives `fedHealth(...)` instead:
   * the primary checks and decides for every worker.
   */
  health?: (pool: HealthHost) => PoolHealth
}

/** Why no endpoint can be selected: the cause a request gets instead. */
export interface NoEndpoint {
  /** `dns_error` / `dns_timeout` when the pool is empty because names do not resolve, else `destination_unavailable`. */
  type: CauseType
  detail: string
  /** For a DNS cause, the configured `name:port` that does not resolve (logged as the endpoint tried); else null. */
  endpoint: string | null
}

/** What {@link UpstreamPool.choose} found: an endpoint, or why there is none. */
export type Choice = { endpoint: Endpoint; failure: null } | { endpoint: null; failure: NoEndpoint }

/** A configured endpoint: fixed (IP literal, localhost), or those of its name's addresses. */
type Slot = { fixed: Endpoint } | { name: NameEndpoints; index: number; authority: string }

/** One upstream: a named pool of endpoints. */
export class UpstreamPool {
  readonly name: string
  readonly config: UpstreamConfig
  readonly balancer: Balancer
  /** First-byte timeout of each try in ms: the shorter of `timeouts.response_header` and `retries.per_try_timeout` (Envoy `per_try_timeout`). */
  readonly headerTimeoutMs: number
  /** Active health checks and outlier detection, running from construction until close(). */
  readonly health: PoolHealth

  readonly #slots: Slot[]
  /** The host names resolved by the pool, each once. */
  readonly #names = new Map<string, NameEndpoints>()
  #endpoints: readonly Endpoint[] = []
  /** The endpoints that are not `backup`, and those that are (empty when none is: then selection uses #endpoints alone). */
  #primaries: readonly Endpoint[] = []
  #backups: readonly Endpoint[] = []
  /** Settles when every name has had its first answer; null then. */
  #firstAnswers: Promise<void> | null = null
  /** Endpoints that left the pool, closing once their requests end. */
  readonly #leaving = new Set<Promise<void>>()
  #resolver: NameResolver | null = null
  /** Whether the pool made its resolver itself (so close() may cancel its queries). */
  readonly #ownResolver: boolean

  /**
   * Builds the endpoints and starts health checking. Endpoints given by IP literal or
   * localhost exist at once; host names start resolving now (without blocking) and get
   * one endpoint per address, followed through TTL-bounded re-resolution (`dns`).
   *
   * @throws {Error} naming the file when a `tls` CA bundle or client certificate cannot be read
   */
  constructor(name: string, config: UpstreamConfig, options: PoolOptions = {}) {
    this.name = name
    this.config = config
    this.#ownResolver = options.resolverFactory === undefined
    // PEM files read once for every endpoint, including those of addresses that come later.
    const tls = config.endpoints.some((e) => e.url.startsWith('https:')) ? upstreamTlsOptions(config.tls) : undefined
    const pending: NameEndpoints[] = []
    this.#slots = config.endpoints.map((e): Slot => {
      if (e.url.startsWith('unix:')) return { fixed: new Endpoint(e.url, e.weight, config, { tls }) }
      const u = new URL(e.url)
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
      if (!isWatchedName(host)) return { fixed: new Endpoint(e.url, e.weight, config, { tls }) }
      let watched = this.#names.get(host)
      if (watched === undefined) {
        this.#resolver ??= (options.resolverFactory ?? createResolver)(config.dns.resolvers, config.timeouts.connect)
        const lookup = options.lookup !== undefined ? options.lookup : config.dns.resolvers === undefined ? systemLookup : null
        const settings = { minTtlMs: config.dns.min_ttl, maxTtlMs: config.dns.max_ttl, graceMs: config.dns.grace }
        watched = new NameEndpoints(host, settings, this.#resolver, lookup, {
          upstream: name,
          make: (url, weight, address) => new Endpoint(url, weight, config, { address, tls }),
          changed: (added, removed) => this.#changed(added, removed),
        })
        this.#names.set(host, watched)
        pending.push(watched)
      }
      const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80)
      return { name: watched, index: watched.addSlot(e.url, e.weight), authority: `${host}:${port}` }
    })
    this.#rebuild()
    this.balancer = createBalancer(config.load_balancing)
    this.headerTimeoutMs = Math.min(config.retries.per_try_timeout ?? Infinity, config.timeouts.response_header)
    this.health = (options.health ?? startHealth)(this)
    if (pending.length > 0) this.#firstAnswers = Promise.all(pending.map((n) => n.started)).then(() => { this.#firstAnswers = null })
  }

  /**
   * The endpoints now, in config order (the addresses of a name in address order). The
   * array is replaced, never changed, when a name's addresses change.
   */
  get endpoints(): readonly Endpoint[] {
    return this.#endpoints
  }

  /** The resolution state of each host name of the pool, in config order (empty when all are IP literals). */
  names(): NameStatus[] {
    return [...this.#names.values()].map((n) => n.status())
  }

  #rebuild(): void {
    const of = (s: Slot) => ('fixed' in s ? [s.fixed] : s.name.endpointsOf(s.index))
    this.#endpoints = this.#slots.flatMap(of)
    const backup = this.config.endpoints.map((e) => e.backup)
    this.#primaries = backup.includes(true) ? this.#slots.filter((_, i) => !backup[i]).flatMap(of) : this.#endpoints
    this.#backups = backup.includes(true) ? this.#slots.filter((_, i) => backup[i]).flatMap(of) : []
  }

  /**
   * New addresses join selection and health checking (fresh state); gone ones leave
   * selection at once and close their connections once their requests in flight end
   * (undici `Pool.close`), so no request fails because its address went away.
   */
  #changed(added: Endpoint[], removed: Endpoint[]): void {
    for (const e of added) this.health.add(e)
    this.#rebuild()
    for (const e of removed) {
      const leaving: Promise<void> = Promise.all([this.health.remove(e), e.close()])
        .then(() => {}, (err: Error) => logger.warn({ err, upstream: this.name, endpoint: e.label }, `closing endpoint ${e.label} of upstream ${this.name} failed: ${err.message}`))
        .finally(() => this.#leaving.delete(leaving))
      this.#leaving.add(leaving)
    }
  }

  /**
   * Picks the endpoint for the next try, among the available endpoints (healthy, not
   * ejected) this request has not tried yet; an endpoint already tried is picked again
   * only when no other is available. In panic (the share of available endpoints below
   * `panic_threshold` percent, Envoy's healthy panic threshold), every endpoint counts
   * as available: spreading load over all of them beats overloading the few left.
   * Backup endpoints are picked only when no other is available or untried.
   *
   * @param tried endpoints this request already tried
   * @param now epoch ms
   * @returns an endpoint, or null when none is available (the caller answers 503
   *   `destination_unavailable`)
   */
  select(tried: readonly Endpoint[] | null, now = Date.now()): Endpoint | null {
    if (this.#backups.length === 0) return this.#selectAmong(this.#endpoints, tried, now, true)
    // nginx `backup`: the backups serve only when no primary is available or every
    // available one was tried by this request; a tried primary is the last resort.
    return this.#selectAmong(this.#primaries, tried, now, false)
      ?? this.#selectAmong(this.#backups, tried, now, false)
      ?? this.#selectAmong(this.#endpoints, tried, now, true)
  }

  /** {@link select} over one group of endpoints; `retryTried` lets an already tried endpoint be picked when no other is available. */
  #selectAmong(all: readonly Endpoint[], tried: readonly Endpoint[] | null, now: number, retryTried: boolean): Endpoint | null {
    const threshold = this.config.panic_threshold
    let available = 0
    for (let i = 0; i < all.length; i++) if (all[i].isAvailable(now)) available++
    const panic = threshold > 0 && available * 100 < threshold * all.length
    // The common case, a first try with every endpoint available (or all in panic): no arrays built.
    if ((available === all.length || panic) && (tried === null || tried.length === 0)) return all.length > 0 ? this.balancer.pick(all) : null
    let candidates: Endpoint[] = []
    let fallback: Endpoint[] = []
    for (const e of all) {
      if (!panic && !e.isAvailable(now)) continue
      if (tried !== null && tried.includes(e)) fallback.push(e)
      else candidates.push(e)
    }
    if (candidates.length === 0 && retryTried) candidates = fallback
    if (candidates.length === 0) return null
    return this.balancer.pick(candidates)
  }

  /**
   * {@link select}, waiting first, when the pool has no endpoint yet because its names are
   * being resolved for the first time, for those answers (at most `timeouts.connect`).
   *
   * @param tried endpoints this request already tried
   * @returns the endpoint, or the cause to answer with: `dns_error` / `dns_timeout` of a
   *   name when no name gave an address and the pool has no other endpoint, else
   *   `destination_unavailable`
   */
  async choose(tried: readonly Endpoint[] | null): Promise<Choice> {
    const now = this.chooseNow(tried)
    if (now !== null) return now
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#firstAnswers, new Promise((resolve) => { timer = setTimeout(resolve, this.config.timeouts.connect) })])
    clearTimeout(timer)
    const endpoint = this.select(tried)
    return endpoint !== null ? { endpoint, failure: null } : { endpoint: null, failure: this.#noEndpoint() }
  }

  /**
   * {@link choose} without waiting: the choice when it needs no wait for first DNS
   * answers, else null (then `await choose(tried)`). Saves the request path a promise.
   */
  chooseNow(tried: readonly Endpoint[] | null): Choice | null {
    const endpoint = this.select(tried)
    if (endpoint !== null) return { endpoint, failure: null }
    return this.#firstAnswers !== null ? null : { endpoint: null, failure: this.#noEndpoint() }
  }

  #noEndpoint(): NoEndpoint {
    if (this.#endpoints.length === 0) {
      for (const s of this.#slots) {
        if ('fixed' in s) continue
        const st = s.name.status()
        if (st.reason !== null) return { type: st.reason, detail: st.reasonDetail ?? st.reason, endpoint: s.authority }
        if (st.resolving) return { type: 'dns_timeout', detail: `resolving ${st.name} took longer than ${this.config.timeouts.connect}ms`, endpoint: s.authority }
      }
    }
    return { type: 'destination_unavailable', detail: `upstream ${this.name} has no endpoint available`, endpoint: null }
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

  /** Stops resolving names and health checking, then closes every endpoint's connections gracefully. Idempotent. */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      for (const n of this.#names.values()) n.stop()
      if (this.#ownResolver) this.#resolver?.cancel?.()
      await this.health.stop()
      await Promise.all([...this.#endpoints.map((e) => e.close()), ...this.#leaving])
    })()
  }
}
