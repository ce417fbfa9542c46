/**
 * The filtering phase (DESIGN §9: route → [access rules → rate limits] → [buffer request
 * body] → select endpoint): per route, the access rules, the rate limits and the cap on
 * requests in progress, compiled once per config generation. Each refusal is a refusal of
 * src/failures/refusals.ts (`access_rule` 403, `rate_limited` 429) with its detail and the
 * extra response fields (`Retry-After`, `RateLimit-Policy`, `RateLimit`).
 *
 * The local rate-limit counters of a limit whose settings did not change survive a reload.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Config, LimitConnConfig, RateLimitConfig } from '../config/schema.ts'
import { CidrList } from '../lib/cidr.ts'
import { nodeCrypto } from '../lib/lazy-builtins.ts'
import { logger } from '../lib/logger.ts'
import { REFUSALS, type Refusal } from '../failures/refusals.ts'
import { AccessRules } from './access.ts'
import { ClientLimiter } from './client-limit.ts'
import type { TrustedProxies } from './client-ip.ts'
import { LocalStore, parseRate, type GcraPolicy, type HostLimitFeed, type LimitDecision, type RateLimitStore } from './rate-limit.ts'
import { RedisStore } from './redis-store.ts'

/** A request refused by the filtering phase. */
export interface FilterRefused {
  readonly refusal: Refusal
  /** Short detail for the access log (the refusal's name comes first there). */
  readonly detail: string
  /** Extra response fields (lower-case names), or null. */
  readonly headers: Record<string, string> | null
}

/** What the filtering phase reads of a request. */
export interface FilterFacts {
  readonly method: string
  /** The normalised request target. */
  readonly target: string
  readonly headers: IncomingHttpHeaders
  /** The real client address. */
  readonly clientIp: string
}

/** How a limit names the requests it counts together. */
type KeyKind = { kind: 'client_ip' } | { kind: 'route' } | { kind: 'header'; name: string }

function keyKind(k: RateLimitConfig['key']): KeyKind {
  return typeof k === 'string' ? { kind: k } : { kind: 'header', name: k.header.toLowerCase() }
}

/** The key of a request, or null when it has none (a missing header: not limited). */
function keyOf(k: KeyKind, f: FilterFacts): string | null {
  if (k.kind === 'client_ip') return f.clientIp
  if (k.kind === 'route') return ''
  const v = f.headers[k.name]
  if (v === undefined || v === '') return null
  return Array.isArray(v) ? v.join(', ') : v
}

/** One compiled rate limit of a route. */
export class RateLimit {
  readonly name: string
  readonly route: string
  readonly policy: GcraPolicy
  readonly key: KeyKind
  readonly store: RateLimitStore
  readonly redis: boolean
  readonly failOpen: boolean
  readonly sendHeaders: boolean
  /** The `RateLimit-Policy` field (draft-ietf-httpapi-ratelimit-headers): quota `burst + 1` over the seconds that refill it. */
  readonly policyField: string
  /** Store failures (Redis errors and timeouts) since this limit was built. */
  storeErrors = 0
  #lastWarn = -Infinity
  /** Identity of the settings, to keep the local counters across a reload. */
  readonly identity: string

  /**
   * @param redis the runtime's Redis store, for `scope: redis`
   * @param previous the limits of the config in force, by identity: an unchanged local limit keeps its store
   * @param host the host's feed in a worker process: local counts are kept in step with the other workers
   */
  constructor(route: string, index: number, c: RateLimitConfig, redis: RedisStore | null, previous: ReadonlyMap<string, RateLimit> | undefined, host: HostLimitFeed | null = null) {
    this.name = c.name ?? `limit${index}`
    this.route = route
    const r = parseRate(c.rate)
    this.policy = { intervalMs: r.intervalMs, burst: c.burst }
    this.key = keyKind(c.key)
    this.redis = c.scope === 'redis'
    this.failOpen = c.on_store_error === 'allow'
    this.sendHeaders = c.send_headers
    this.identity = `${route}\n${JSON.stringify(c)}`
    const old = previous?.get(this.identity)
    // The id names the limit to the other workers: the same settings on the same route are the same limit.
    const id = nodeCrypto().createHash('sha256').update(this.identity).digest('base64url').slice(0, 16)
    this.store = this.redis ? redis as RedisStore : old !== undefined && !old.redis ? old.store : new LocalStore(100_000, host === null ? null : { id, feed: host })
    const window = Math.max(1, Math.ceil(((c.burst + 1) * r.intervalMs) / 1000))
    this.policyField = `"${this.name}";q=${c.burst + 1};w=${window}`
  }

  /**
   * The key sent to the store: the request's key as it is, namespaced in Redis. A header
   * value is hashed in Redis (it may be a secret) and, when longer than 64 characters, in
   * memory too, so that 100,000 remembered keys stay small whatever clients send.
   */
  storeKey(key: string): string {
    const hash = this.key.kind === 'header' && (this.redis || key.length > 64)
    const k = hash ? nodeCrypto().createHash('sha256').update(key).digest('base64url').slice(0, 22) : key
    return this.redis ? `rl:${this.route}:${this.name}:${k}` : k
  }

  /** The `RateLimit` field of a decision: remaining requests and whole seconds until the allowance is whole. */
  field(d: LimitDecision): string {
    return `"${this.name}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`
  }

  /** Logs a store failure at most every 10 s per limit, and counts it. */
  storeFailed(err: Error): void {
    this.storeErrors++
    const now = performance.now()
    if (now - this.#lastWarn < 10_000) return
    this.#lastWarn = now
    logger.warn({ route: this.route, limit: this.name, errors: this.storeErrors, err: err.message },
      `rate limit ${this.name} of route ${this.route}: the store failed, requests are ${this.failOpen ? 'allowed (on_store_error: allow)' : 'refused (on_store_error: deny)'}`)
  }

  /** The 429 of a refused decision. */
  refused(d: LimitDecision, key: string): FilterRefused {
    return {
      refusal: REFUSALS.rate_limited,
      detail: `rate limit ${this.name} (${this.key.kind === 'header' ? `header ${this.key.name}` : this.key.kind}${this.key.kind === 'client_ip' ? ` ${key}` : ''}) exceeded`,
      headers: {
        'retry-after': String(Math.max(1, Math.ceil(d.retryAfterMs / 1000))),
        'ratelimit-policy': this.policyField,
        ratelimit: this.field(d),
      },
    }
  }
}

/**
 * The cap on requests in progress of a route per key (nginx `limit_conn`): the counter of
 * the per-client cap (src/protect/client-limit.ts), keyed by what the route's `limit_conn.key` names.
 */
export class ConnLimit {
  readonly max: number
  readonly key: KeyKind
  readonly #counts: ClientLimiter

  constructor(c: LimitConnConfig) {
    this.max = c.max
    this.key = keyKind(c.key)
    this.#counts = new ClientLimiter(c.max)
  }

  /** Counts a request in under `key` unless the key is at the cap. @returns whether it may go on (then call {@link release}) */
  acquire(key: string): boolean {
    return this.#counts.acquire(key)
  }

  /** Counts a request of `key` out. */
  release(key: string): void {
    this.#counts.release(key)
  }

  /** Requests in progress under `key`. */
  count(key: string): number {
    return this.#counts.count(key)
  }
}

/** A request counted in a {@link ConnLimit}; release it when the response closes. */
export interface ConnSlot {
  readonly limit: ConnLimit
  readonly key: string
}

/** The filters of one route. */
export class RouteFilter {
  readonly access: AccessRules | null
  readonly limits: readonly RateLimit[]
  readonly conn: ConnLimit | null
  /** Whether some limit sends its fields on admitted responses. */
  readonly sendHeaders: boolean

  constructor(access: AccessRules | null, limits: readonly RateLimit[], conn: ConnLimit | null) {
    this.access = access
    this.limits = limits
    this.conn = conn
    this.sendHeaders = limits.some((l) => l.sendHeaders)
  }
}

/**
 * The outcome of the filtering phase for one request: go on (`null`, or the rate-limit fields
 * to add to the response and the conn slot to release), or a refusal.
 */
export interface Admitted {
  /** `RateLimit-Policy`/`RateLimit` for the response, when a limit sends them; else null. */
  headers: Record<string, string> | null
  /** The `limit_conn` slot taken, released when the response closes; else null. */
  slot: ConnSlot | null
}

/** An admitted request with nothing to add or release: shared, never changed. */
export const ADMITTED: Admitted = Object.freeze({ headers: null, slot: null }) as Admitted

/** The filters of a config generation: the listeners' access rules, each route's filters, the trusted proxies and the Redis store. */
export class Filters {
  /** Access rules by listener address; listeners without rules are absent. */
  readonly listeners: ReadonlyMap<string, AccessRules>
  /** Filters by route name; routes without any are absent. */
  readonly routes: ReadonlyMap<string, RouteFilter>
  readonly trusted: TrustedProxies | null
  readonly redis: RedisStore | null
  /** Every rate limit, by identity (for reuse at the next reload, and metrics). */
  readonly limits: ReadonlyMap<string, RateLimit>

  /**
   * @param config the validated config
   * @param previous the filters of the config in force, whose local counters and Redis connection are kept when unchanged
   * @param routeNames the name of each route, in config order (`route<index>` when unnamed)
   * @param host the host's feed of local limits, in a worker process
   */
  constructor(config: Config, routeNames: readonly string[], previous?: Filters, host: HostLimitFeed | null = null) {
    const listeners = new Map<string, AccessRules>()
    for (const l of config.listeners) if (l.access.length > 0) listeners.set(l.address, new AccessRules(l.access, `listener ${l.address}`))
    this.listeners = listeners
    this.trusted = config.trusted_proxies.length > 0 ? { list: new CidrList(config.trusted_proxies), header: config.real_ip_header } : null
    const needRedis = config.routes.some((r) => r.rate_limits.some((l) => l.scope === 'redis'))
    const r = config.redis
    const same = previous?.redis != null && r !== undefined && previous.redis.options.url === r.url && previous.redis.options.timeoutMs === r.timeout && previous.redis.options.keyPrefix === r.key_prefix
    this.redis = !needRedis || r === undefined ? null : same ? previous!.redis : new RedisStore({ url: r.url, timeoutMs: r.timeout, keyPrefix: r.key_prefix })
    const routes = new Map<string, RouteFilter>()
    const limits = new Map<string, RateLimit>()
    config.routes.forEach((rc, i) => {
      const name = routeNames[i]
      const access = rc.access.length > 0 ? new AccessRules(rc.access, `route ${name}`) : null
      const rls = rc.rate_limits.map((c, j) => new RateLimit(name, j, c, this.redis, previous?.limits, host))
      for (const l of rls) limits.set(l.identity, l)
      const conn = rc.limit_conn ? new ConnLimit(rc.limit_conn) : null
      if (access !== null || rls.length > 0 || conn !== null) routes.set(name, new RouteFilter(access, rls, conn))
    })
    this.routes = routes
    this.limits = limits
  }

  /** Closes what `next` does not keep (the Redis connection). */
  async retire(next: Filters | null): Promise<void> {
    if (this.redis !== null && next?.redis !== this.redis) await this.redis.close()
  }
}

/**
 * Phase "access rules" of a listener, before routing.
 *
 * @returns null when allowed, else the 403 refusal
 */
export function checkListenerAccess(rules: AccessRules, f: FilterFacts): FilterRefused | null {
  const denied = rules.check(f.clientIp, f.method, f.target)
  return denied === null ? null : { refusal: REFUSALS.access_rule, detail: `client ${f.clientIp} denied by ${denied}`, headers: null }
}

/**
 * Phases "access rules → rate limits" of a route: the access rules, then each rate limit in
 * order, then the cap on requests in progress. Answers at once unless a limit is in Redis.
 *
 * @returns {@link ADMITTED} (or an {@link Admitted} with fields to add and a slot to
 *   release), a refusal, or a promise of either when a Redis limit is asked
 */
export function filterRequest(rf: RouteFilter, f: FilterFacts): Admitted | FilterRefused | Promise<Admitted | FilterRefused> {
  if (rf.access !== null) {
    const denied = rf.access.check(f.clientIp, f.method, f.target)
    if (denied !== null) return { refusal: REFUSALS.access_rule, detail: `client ${f.clientIp} denied by ${denied}`, headers: null }
  }
  return runLimits(rf, f, 0, null)
}

/** The RateLimit fields gathered from the limits that send them: every policy, and the limit with the fewest requests left. */
interface Fields {
  policy: string
  field: string
  remaining: number
}

/** Runs the rate limits from `from` on; goes async at the first Redis limit. */
function runLimits(rf: RouteFilter, f: FilterFacts, from: number, fields: Fields | null): Admitted | FilterRefused | Promise<Admitted | FilterRefused> {
  const limits = rf.limits
  for (let i = from; i < limits.length; i++) {
    const l = limits[i]
    const key = keyOf(l.key, f)
    if (key === null) continue
    const d = l.store.take(l.storeKey(key), l.policy)
    if (d instanceof Promise) return d.then((dec) => afterDecision(rf, f, i, fields, l, key, dec), (err: Error) => afterStoreError(rf, f, i, fields, l, err))
    if (!d.allowed) return l.refused(d, key)
    if (l.sendHeaders) fields = addFields(fields, l, d)
  }
  return admit(rf, f, fields === null ? null : { 'ratelimit-policy': fields.policy, ratelimit: fields.field })
}

function afterDecision(rf: RouteFilter, f: FilterFacts, i: number, fields: Fields | null, l: RateLimit, key: string, d: LimitDecision): Admitted | FilterRefused | Promise<Admitted | FilterRefused> {
  if (!d.allowed) return l.refused(d, key)
  if (l.sendHeaders) fields = addFields(fields, l, d)
  return runLimits(rf, f, i + 1, fields)
}

function afterStoreError(rf: RouteFilter, f: FilterFacts, i: number, fields: Fields | null, l: RateLimit, err: Error): Admitted | FilterRefused | Promise<Admitted | FilterRefused> {
  l.storeFailed(err)
  if (!l.failOpen) {
    return { refusal: REFUSALS.rate_limited, detail: `rate limit ${l.name}: the store failed (${err.message}); on_store_error is deny`, headers: { 'retry-after': '1', 'ratelimit-policy': l.policyField } }
  }
  return runLimits(rf, f, i + 1, fields)
}

/** Adds a limit's decision: its policy is listed, and `RateLimit` names the limit with the fewest requests left. */
function addFields(fields: Fields | null, l: RateLimit, d: LimitDecision): Fields {
  if (fields === null) return { policy: l.policyField, field: l.field(d), remaining: d.remaining }
  fields.policy += `, ${l.policyField}`
  if (d.remaining < fields.remaining) {
    fields.field = l.field(d)
    fields.remaining = d.remaining
  }
  return fields
}

/** The cap on requests in progress, last: a request refused by a limit never holds a slot. */
function admit(rf: RouteFilter, f: FilterFacts, headers: Record<string, string> | null): Admitted | FilterRefused {
  const conn = rf.conn
  if (conn === null) return headers === null ? ADMITTED : { headers, slot: null }
  const key = keyOf(conn.key, f)
  if (key === null) return headers === null ? ADMITTED : { headers, slot: null }
  if (!conn.acquire(key)) {
    return {
      refusal: REFUSALS.rate_limited,
      detail: `limit_conn: ${conn.count(key)} requests in progress (${conn.key.kind === 'client_ip' ? `client ${key}` : conn.key.kind === 'route' ? 'route' : `header ${conn.key.name}`}), max ${conn.max}`,
      headers: { 'retry-after': '1' },
    }
  }
  return { headers, slot: { limit: conn, key } }
}

/** Whether an outcome of {@link filterRequest} is a refusal. */
export function isRefused(o: Admitted | FilterRefused): o is FilterRefused {
  return (o as FilterRefused).refusal !== undefined
}
