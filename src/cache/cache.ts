/**
 * The RFC 9111 shared cache: keys, lookup with `Vary` variants, storing, invalidation,
 * request collapsing and purge, around `http-cache-semantics` (`shared: true`), which
 * decides storability (§3), freshness (§4.2) and revalidation (§4.3).
 */
import CachePolicy from 'http-cache-semantics'
import type { IncomingHttpHeaders } from 'node:http'
import { policyRequestHeaders, policyResponse } from './fields.ts'
import { MemoryStore, type CacheStore, type StoredHeaders, type StoredResponse } from './store.ts'

/** Options every policy is made with: a shared cache (RFC 9111 §1: `private`, `s-maxage`, `Authorization` rules apply). */
const POLICY_OPTIONS: CachePolicy.Options = { shared: true }

/** The request as the cache sees it. */
export interface CacheRequest {
  method: string
  /** `http` or `https`: the listener's scheme. */
  scheme: string
  /** The `Host` header as sent, lower-cased by the cache. */
  host: string
  /** The request target: path and query as the client sent them. */
  target: string
  headers: IncomingHttpHeaders
}

/**
 * The primary cache key (RFC 9111 §2): `<scheme>://<host><path and query> <method>`.
 * HEAD is looked up under GET (§4: a stored GET response may answer HEAD).
 */
export function primaryKey(scheme: string, host: string, target: string, method = 'GET'): string {
  return `${scheme}://${host.toLowerCase()}${target} ${method === 'HEAD' ? 'GET' : method}`
}

/**
 * The request in the shape `http-cache-semantics` reads, its fields in the policy view
 * (see `policyRequestHeaders`); HEAD is presented as GET so stored GET responses match it.
 */
export function policyRequest(r: CacheRequest): CachePolicy.HttpRequest {
  return { url: r.target, method: r.method === 'HEAD' ? 'GET' : r.method, headers: { ...policyRequestHeaders(r.headers), host: r.host.toLowerCase() } }
}

/** Policies already restored, by the stored object they came from (which is replaced, never changed, when a response is freshened). */
const restored = new WeakMap<CachePolicy.CachePolicyObject, CachePolicy>()

/** Restores a stored response's policy; once per stored object, not on every hit. */
export function policyOf(v: StoredResponse): CachePolicy {
  let policy = restored.get(v.policy)
  if (policy === undefined) {
    policy = CachePolicy.fromObject(v.policy)
    restored.set(v.policy, policy)
  }
  return policy
}

/** Remaining freshness of a stored response in whole seconds; negative when stale (RFC 9211 §2.3 `ttl`). */
export function ttlSeconds(policy: CachePolicy): number {
  return Math.round(policy.maxAge() - policy.age())
}

/** What a lookup found. */
export type Lookup =
  /** Fresh (or allowed stale by the request's `max-stale`): serve it. */
  | { kind: 'hit'; key: string; variant: StoredResponse; policy: CachePolicy }
  /** Stale within `stale-while-revalidate` (RFC 5861 §3): serve it and refresh in the background. */
  | { kind: 'stale-while-revalidate'; key: string; variant: StoredResponse; policy: CachePolicy; revalidationHeaders: CachePolicy.Headers }
  /** Stored but not usable without asking the origin (stale, `no-cache`, request directives): revalidate (RFC 9111 §4.3). */
  | { kind: 'revalidate'; key: string; variant: StoredResponse; policy: CachePolicy; revalidationHeaders: CachePolicy.Headers }
  /** Nothing stored for this URL (`uri-miss`) or no variant matches the request (`vary-miss`), RFC 9211 §2.2. */
  | { kind: 'uri-miss' | 'vary-miss'; key: string }

/**
 * Picks the variant that matches the request's `Vary`-nominated header fields
 * (RFC 9111 §4.1), newest first, and evaluates it.
 */
export function evaluate(key: string, variants: readonly StoredResponse[], req: CacheRequest): Lookup {
  const preq = policyRequest(req)
  for (const variant of variants) {
    const policy = policyOf(variant)
    const selected = varySelection(policy, variant, preq)
    if (selected === null) continue
    // The library compares the nominated fields byte for byte: it gets the stored values once they matched normalised.
    const r = policy.evaluateRequest({ ...preq, headers: { ...preq.headers, ...selected } })
    if (r.revalidation === undefined || freshDespiteMustRevalidate(policy, preq)) return { kind: 'hit', key, variant, policy }
    if (r.response !== undefined && !r.revalidation.synchronous) {
      return { kind: 'stale-while-revalidate', key, variant, policy, revalidationHeaders: r.revalidation.headers }
    }
    return { kind: 'revalidate', key, variant, policy, revalidationHeaders: r.revalidation.headers }
  }
  return { kind: variants.length === 0 ? 'uri-miss' : 'vary-miss', key }
}

/**
 * `http-cache-semantics` revalidates every response with `must-revalidate`, but RFC 9111
 * §5.2.2.2 only forbids serving it once stale: a fresh one is a hit unless the request
 * asks otherwise.
 */
function freshDespiteMustRevalidate(policy: CachePolicy, req: CachePolicy.HttpRequest): boolean {
  if (!policy.toObject().rescc['must-revalidate'] || policy.stale()) return false
  const cc = headerString(req.headers['cache-control']) ?? ''
  return !/no-cache|max-age|min-fresh/.test(cc)
}

/** Whether `Vary` selects this variant for the request (§4.1); `Vary: *` never matches. */
function varyMatches(policy: CachePolicy, variant: StoredResponse, req: CachePolicy.HttpRequest): boolean {
  return varySelection(policy, variant, req) !== null
}

/**
 * The stored request's values of the fields `Vary` nominates, when the request's values
 * match them once normalised (§4.1); null when they do not, or for `Vary: *`.
 */
function varySelection(policy: CachePolicy, variant: StoredResponse, req: CachePolicy.HttpRequest): CachePolicy.Headers | null {
  const vary = headerString(variant.headers.vary)
  const selected: CachePolicy.Headers = {}
  if (vary === undefined) return selected
  const stored = variant.policy.reqh ?? {}
  for (const raw of vary.toLowerCase().split(',')) {
    const name = raw.trim()
    if (name === '') continue
    if (name === '*') return null
    if (normalizeField(name, stored[name]) !== normalizeField(name, req.headers[name])) return null
    if (stored[name] !== undefined) selected[name] = stored[name]
  }
  return selected
}

/**
 * A header value compared for `Vary` (RFC 9111 §4.1): list members trimmed, whitespace
 * around commas ignored. Accept-Language members are also compared without regard to
 * case or order: language ranges are case-insensitive and their weights, not their order,
 * say which is preferred (RFC 9110 §12.4.2, §12.5.4).
 */
function normalizeField(name: string, v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined
  const members = (Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim())
  if (name !== 'accept-language') return members.join(',')
  return members.map((m) => m.toLowerCase().replace(/\s+/g, '')).filter((m) => m !== '').sort().join(',')
}

/** The first value of a header field, as a string. */
export function headerString(v: string | string[] | number | undefined): string | undefined {
  if (v === undefined) return undefined
  return Array.isArray(v) ? v.join(', ') : String(v)
}

/** Response header fields a cache never stores (hop-by-hop, RFC 9111 §3.1), nor Portico's per-response fields. */
const NOT_STORED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authentication-info', 'x-request-id', 'proxy-status', 'cache-status'])

/** Copies response header fields for storing: without hop-by-hop fields, nor those the `Connection` field names (RFC 9111 §3.1). */
export function storableHeaders(headers: IncomingHttpHeaders): StoredHeaders {
  const named = new Set((headerString(headers.connection) ?? '').toLowerCase().split(',').map((s) => s.trim()))
  const out: StoredHeaders = {}
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || NOT_STORED.has(k) || named.has(k)) continue
    out[k] = v
  }
  return out
}

/**
 * Whether a response received for a stored one (a 304, or a 200 to HEAD) describes the same
 * representation: each validator it carries (ETag, Last-Modified) agrees with the stored
 * one (RFC 9111 §4.3.4, §4.3.5). ETags are compared weakly (RFC 9110 §8.8.3.2), as origins
 * that weaken the ETag of a compressed 200 may send the strong one in the 304. A response
 * with no validator answers the cache's own conditional request, made from the stored
 * response's validators, so it selects that response (§4.3.3).
 */
export function validatorsAgree(stored: StoredHeaders, received: IncomingHttpHeaders): boolean {
  const etag = headerString(received.etag)?.trim()
  const storedEtag = headerString(stored.etag)?.trim()
  if (etag !== undefined) {
    if (storedEtag === undefined) return false
    const opaque = (t: string): string => t.replace(/^W\//, '')
    return opaque(storedEtag) === opaque(etag)
  }
  const lm = headerString(received['last-modified'])
  const storedLm = headerString(stored['last-modified'])
  return lm === undefined || storedLm === undefined || lm === storedLm
}

/**
 * The stored fields updated with those of a newer response for the same representation
 * (RFC 9111 §3.2): each field received replaces the stored one, except Content-Length;
 * Age belongs to the message it came in, so the stored Age is dropped.
 */
export function updatedHeaders(stored: StoredHeaders, received: IncomingHttpHeaders): StoredHeaders {
  const out: StoredHeaders = { ...stored }
  delete out.age
  for (const [k, v] of Object.entries(storableHeaders(received))) {
    if (k !== 'content-length') out[k] = v
  }
  return out
}

/**
 * Request collapsing across processes: a cluster worker asks its primary for the one
 * "fetch lease" of a key before going upstream for a miss, so N workers missing the same
 * URL make one upstream request (see src/cluster/).
 */
export interface SharedCollapse {
  /**
   * Asks for the fetch lease of a primary key, waiting at most `waitMs` when another
   * process holds it.
   *
   * @returns true when another process fetched the response and it is now in this
   *   process's store (look it up again); false when this process should go upstream
   *   itself (it got the lease, the holder stored nothing, or the wait ran out)
   */
  acquire(key: string, waitMs: number): Promise<boolean>
  /** Gives the lease of `key` back, if this process holds it, saying whether a response is now stored under it (the others may ask for it). */
  release(key: string, stored: boolean): void
}

/**
 * The shared cache: a store plus the state that lives beside it (misses in flight for
 * collapsing, background refreshes running).
 */
export class HttpCache {
  readonly store: CacheStore
  /** Primary key → settles when the one upstream request for a miss has ended (stored or not). */
  readonly #inflight = new Map<string, Promise<void>>()
  /** Primary keys with a background refresh running (`stale-while-revalidate`): one per key. */
  readonly #refreshing = new Set<string>()

  /** The store's configured size in bytes (`cache.max_size`). */
  readonly maxSize: number
  /** The `cache.store` config the store was made from (compared on reload); undefined for a store given directly. */
  readonly storeConfig: unknown

  /** Collapsing across worker processes; null in a single process (collapsing stays in-process). */
  shared: SharedCollapse | null = null

  /**
   * @param store where responses live; default an in-memory store of `maxSize` bytes
   * @param maxSize the store's size in bytes; default 256 MiB
   * @param storeConfig the `cache.store` config `store` was made from
   */
  constructor(store?: CacheStore, maxSize = 256 * 1024 * 1024, storeConfig?: unknown) {
    this.store = store ?? new MemoryStore(maxSize)
    this.maxSize = maxSize
    this.storeConfig = storeConfig
  }

  /** Looks the request up (RFC 9111 §4): the usable variant, if any, and what to do with it. */
  async lookup(req: CacheRequest): Promise<Lookup> {
    const key = primaryKey(req.scheme, req.host, req.target, req.method)
    const entry = await this.store.get(key)
    return evaluate(key, entry?.variants ?? [], req)
  }

  /**
   * Stores a complete response as the variant for this request, replacing the variant it
   * makes obsolete: the one with the same `Vary`-selected request fields (§4.1).
   *
   * @returns whether it was stored
   */
  async put(key: string, req: CacheRequest, status: number, headers: IncomingHttpHeaders, body: Buffer[], bodySize: number, policy: CachePolicy): Promise<boolean> {
    const variant: StoredResponse = { status, headers: storableHeaders(headers), body, bodySize, policy: policy.toObject(), storedAt: Date.now() }
    const entry = await this.store.get(key)
    const preq = policyRequest(req)
    const others = (entry?.variants ?? []).filter((v) => !varyMatches(policyOf(v), v, preq)).slice(0, 15)
    await this.store.put(key, { variants: [variant, ...others] })
    return (await this.store.get(key)) !== undefined
  }

  /**
   * Freshens a stored variant with the fields of a 304 or of a 200 to HEAD (RFC 9111
   * §4.3.4, §4.3.5): the fields are updated (see `updatedHeaders`), the freshness is
   * computed anew from now, and the variant replaces the old one in the store.
   *
   * @param received the new response's fields
   * @returns the updated variant and its policy
   */
  async freshen(key: string, old: StoredResponse, req: CacheRequest, received: IncomingHttpHeaders): Promise<{ variant: StoredResponse; policy: CachePolicy }> {
    const headers = updatedHeaders(old.headers, received)
    const policy = newPolicy(req, old.status, headers)
    const updated: StoredResponse = { ...old, headers, policy: policy.toObject(), storedAt: Date.now() }
    const entry = await this.store.get(key)
    if (entry !== undefined) {
      const i = entry.variants.indexOf(old)
      const variants = entry.variants.slice()
      if (i >= 0) variants[i] = updated
      else variants.unshift(updated)
      await this.store.put(key, { variants })
    }
    return { variant: updated, policy }
  }

  /**
   * Invalidates after an unsafe request got a non-error response (RFC 9111 §4.4): the
   * target URI, and `Location` / `Content-Location` when on the same host.
   */
  async invalidate(req: CacheRequest, location: string | undefined, contentLocation: string | undefined): Promise<void> {
    await this.store.delete(primaryKey(req.scheme, req.host, req.target))
    for (const ref of [location, contentLocation]) {
      if (ref === undefined) continue
      let u: URL
      try {
        u = new URL(ref, `${req.scheme}://${req.host}${req.target}`)
      } catch {
        continue
      }
      if (u.host.toLowerCase() !== req.host.toLowerCase()) continue
      await this.store.delete(primaryKey(req.scheme, req.host, u.pathname + u.search))
    }
  }

  /**
   * Purges by URL (`http://host/path?query`) or by URL prefix, as the admin API's
   * `POST /cache/purge` asks.
   *
   * @returns how many entries were removed
   */
  async purge(what: { url: string } | { prefix: string }): Promise<number> {
    if ('url' in what) return (await this.store.delete(`${what.url} GET`)) ? 1 : 0
    return this.store.deletePrefix(what.prefix)
  }

  /**
   * Request collapsing: the first miss for a key becomes the leader and gets a function to
   * call when its upstream request is over; a concurrent miss gets the leader's promise to
   * wait on instead.
   */
  collapse(key: string): { leader: true; done: () => void } | { leader: false; wait: Promise<void> } {
    const running = this.#inflight.get(key)
    if (running !== undefined) return { leader: false, wait: running }
    let done: () => void = () => {}
    const p = new Promise<void>((resolve) => { done = resolve })
    this.#inflight.set(key, p)
    let called = false
    return {
      leader: true,
      done: () => {
        if (called) return
        called = true
        if (this.#inflight.get(key) === p) this.#inflight.delete(key)
        done()
        const shared = this.shared
        if (shared !== null) void this.store.get(key).then((e) => shared.release(key, e !== undefined), () => shared.release(key, false))
      },
    }
  }

  /** Claims the one background refresh of a key; false when one is running already. */
  claimRefresh(key: string): boolean {
    if (this.#refreshing.has(key)) return false
    this.#refreshing.add(key)
    return true
  }

  /** Ends a background refresh claimed with `claimRefresh`. */
  releaseRefresh(key: string): void {
    this.#refreshing.delete(key)
  }
}

/** Makes a policy for a response to a request (`shared: true`), from the policy view of its fields (see `policyResponse`). */
export function newPolicy(req: CacheRequest, status: number, headers: IncomingHttpHeaders | StoredHeaders): CachePolicy {
  return new CachePolicy(policyRequest(req), policyResponse(status, headers), POLICY_OPTIONS)
}

/** Status codes a cache may serve stale after (RFC 5861 §4: `stale-if-error` covers 500, 502, 503 and 504). */
export const STALE_IF_ERROR_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504])

/** Seconds of `stale-if-error` in a stored response's `Cache-Control` (RFC 5861 §4), or 0. */
export function staleIfErrorSeconds(policy: CachePolicy): number {
  const v = policy.toObject().rescc['stale-if-error']
  const n = Number(v)
  return Number.isFinite(n) && n > 0 ? n : 0
}
