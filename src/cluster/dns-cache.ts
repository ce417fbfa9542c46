/**
 * DNS once per host: the primary resolves upstream names for its own health checks and
 * answers every worker's questions from the same cache, so N workers following a name
 * make one query per TTL, not N. Answers are kept for their TTL and handed out with the
 * TTL left (as a caching resolver does); failures are kept for a second.
 */
import { createResolver, type NameResolver } from '../upstream/dns.ts'

/** How long a failed resolution is answered from the cache, in ms. */
const NEGATIVE_TTL_MS = 1000

type Records = { address: string; ttl: number }[]

interface Cached {
  /** Epoch ms when the answer was received (or the query started, while pending). */
  at: number
  /** Epoch ms after which it is asked again. */
  expires: number
  answer: Promise<Records>
}

/** The host's DNS cache, shared by the primary's pools and its workers. */
export class HostResolver {
  readonly #cache = new Map<string, Cached>()
  readonly #resolvers = new Map<string, NameResolver>()
  /** Queries sent to a DNS server so far (tests and the admin API read it). */
  queries = 0
  readonly #factory: (servers: readonly string[] | undefined, timeoutMs: number) => NameResolver

  /** @param factory makes the resolver asking `servers` (default `createResolver`) */
  constructor(factory: (servers: readonly string[] | undefined, timeoutMs: number) => NameResolver = createResolver) {
    this.#factory = factory
  }

  /**
   * The A or AAAA records of `host` with the TTL left, in seconds, from the cache or from
   * one query shared by every caller asking meanwhile.
   *
   * @throws the resolver's error (`ENOTFOUND`, `ETIMEOUT`, ...)
   */
  resolve(kind: 'A' | 'AAAA', host: string, servers: readonly string[] | undefined, timeoutMs: number): Promise<Records> {
    const key = `${kind} ${host} ${servers?.join(',') ?? ''} ${timeoutMs}`
    const now = Date.now()
    const hit = this.#cache.get(key)
    if (hit !== undefined && hit.expires > now) {
      const age = Math.floor((now - hit.at) / 1000)
      return hit.answer.then((records) => records.map((r) => ({ address: r.address, ttl: Math.max(0, r.ttl - age) })))
    }
    const rkey = `${servers?.join(',') ?? ''} ${timeoutMs}`
    let resolver = this.#resolvers.get(rkey)
    if (resolver === undefined) this.#resolvers.set(rkey, resolver = this.#factory(servers, timeoutMs))
    this.queries++
    const answer = kind === 'A' ? resolver.resolve4(host, { ttl: true }) : resolver.resolve6(host, { ttl: true })
    // Pending: every caller shares this query until it settles.
    const entry: Cached = { at: now, expires: Infinity, answer }
    this.#cache.set(key, entry)
    answer.then((records) => {
      entry.at = Date.now()
      entry.expires = entry.at + Math.min(...records.map((r) => r.ttl), 3600) * 1000
    }, () => {
      entry.expires = Date.now() + NEGATIVE_TTL_MS
    })
    return answer
  }

  /** A resolver for the primary's own pools, asking through this cache. */
  resolverFor(servers: readonly string[] | undefined, timeoutMs: number): NameResolver {
    return {
      resolve4: (host) => this.resolve('A', host, servers, timeoutMs),
      resolve6: (host) => this.resolve('AAAA', host, servers, timeoutMs),
    }
  }

  /** Cancels queries under way and forgets every answer. */
  close(): void {
    for (const r of this.#resolvers.values()) r.cancel?.()
    this.#resolvers.clear()
    this.#cache.clear()
  }
}
