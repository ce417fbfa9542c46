/**
 * The lifecycle's cache phases: "cache lookup" (serve from the store, or plan the upstream
 * try: conditional headers, collapsing) and "cache store" (a tee of the upstream response
 * that stores the body while it streams downstream), and serving stale on error.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type CachePolicy from 'http-cache-semantics'
import type { RouteCacheConfig } from '../config/schema.ts'
import type { CauseType } from '../failures/causes.ts'
import type { ResponseObserver } from '../observe/response-observer.ts'
import type { RequestContext } from '../observe/context.ts'
import { headerString, newPolicy, STALE_IF_ERROR_STATUSES, staleIfErrorSeconds, ttlSeconds, validatorsAgree, type CacheRequest, type HttpCache, type Lookup } from './cache.ts'
import { parseHttpDate } from './fields.ts'
import { evaluateRange, sliceBody } from './range.ts'
import { cacheStatus as status } from '../observe/cache-status.ts'
import type { StoredResponse } from './store.ts'

/** The cache's view of the upstream response (phase "cache store"). */
export type ResponseTee = ResponseObserver

/** A complete upstream response, as a background refresh gets it. */
export interface FetchedResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer[]
}

/** What the cache phase needs from the driver. */
export interface CachePhaseInput {
  ctx: RequestContext
  req: IncomingMessage
  res: ServerResponse
  cache: HttpCache
  config: RouteCacheConfig
  /** The listener's scheme, part of the cache key. */
  scheme: string
  /** Fetches the request upstream with extra header fields, outside any client exchange (background refresh). */
  refresh: (extra: Record<string, string>) => Promise<FetchedResponse>
}

/** How the driver's upstream tries take part in caching. */
export interface CachePlan {
  /** Hand to every try of the request. */
  readonly tee: ResponseTee
  /** The upstream request header fields (flat `[name, value, ...]`) with the cache's conditional fields. */
  headers(flat: string[]): string[]
  /** After a failed try with no retry left: serves a stored response stale when allowed (RFC 9111 §4.2.4, RFC 5861 §4). @returns whether it did */
  onFailure(type: CauseType): boolean
  /** The driver is done with its tries (wakes collapsed requests if no response started). */
  finish(): void
}

/** Methods whose responses may be stored or served from the store. */
const CACHEABLE_METHODS = new Set(['GET', 'HEAD'])
/** Methods that are safe (RFC 9110 §9.2.1): they never invalidate. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])
/** Request fields that make a request conditional (RFC 9110 §13.1). */
const CONDITIONAL_FIELDS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range']

/**
 * Phase "cache lookup": runs after routing when the route caches.
 *
 * @returns null when the request was answered from the store, else the plan for the upstream tries
 */
export async function cacheLookup(input: CachePhaseInput, proxyName: string): Promise<CachePlan | null> {
  const { ctx, req, res, cache, config } = input
  const method = req.method ?? 'GET'
  const creq: CacheRequest = { method, scheme: input.scheme, host: req.headers.host ?? '', target: req.url ?? '/', headers: req.headers }
  if (!CACHEABLE_METHODS.has(method)) return passPlan(input, creq, proxyName)

  let found = await cache.lookup(creq)
  let collapsed = false
  let done: (() => void) | null = null
  if (found.kind === 'uri-miss' || found.kind === 'vary-miss') {
    const c = cache.collapse(found.key)
    if (c.leader) {
      done = c.done
      // Across workers: another process may be fetching it already; wait for its response.
      if (cache.shared !== null && await cache.shared.acquire(found.key, config.collapse_timeout)) {
        found = await cache.lookup(creq)
        collapsed = true
      }
    } else {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([c.wait, new Promise<void>((resolve) => { timer = setTimeout(resolve, config.collapse_timeout) })])
      clearTimeout(timer)
      found = await cache.lookup(creq)
      collapsed = true
    }
  }
  if (found.kind === 'hit') {
    // A leader served by another worker's fetch wakes its own followers.
    done?.()
    serveStored(ctx, req, res, found.variant, found.policy, status(proxyName, `hit; ttl=${ttlSeconds(found.policy)}${collapsed ? '; collapsed' : ''}`))
    return null
  }
  if (found.kind === 'stale-while-revalidate') {
    done?.()
    serveStored(ctx, req, res, found.variant, found.policy, status(proxyName, `hit; ttl=${ttlSeconds(found.policy)}; detail=stale-while-revalidate`))
    backgroundRefresh(input, creq, found)
    return null
  }
  return missPlan(input, creq, found, proxyName, done)
}

/** A plan for methods the cache does not store: invalidation after unsafe ones (RFC 9111 §4.4). */
function passPlan(input: CachePhaseInput, creq: CacheRequest, proxyName: string): CachePlan {
  const safe = SAFE_METHODS.has(creq.method)
  return {
    tee: {
      start(code, headers, out) {
        if (!safe && code < 400) void input.cache.invalidate(creq, headerString(headers.location), headerString(headers['content-location'])).catch(() => {})
        out['cache-status'] = input.ctx.cache = status(proxyName, `fwd=method; fwd-status=${code}`)
        return true
      },
      data() {},
      end() {},
      error() {},
    },
    headers: (flat) => flat,
    onFailure: () => false,
    finish() {},
  }
}

/** A plan for a miss or a revalidation: conditional fields, storing tee, stale on error. */
function missPlan(input: CachePhaseInput, creq: CacheRequest, found: Lookup, proxyName: string, done: (() => void) | null): CachePlan {
  const { ctx, req, res, cache, config } = input
  const stored = found.kind === 'revalidate' ? found : null
  const fwd = stored !== null ? 'stale' : found.kind
  let started = false
  let chunks: Buffer[] | null = null
  let size = 0
  let storeStatus = 0
  let storeHeaders: IncomingHttpHeaders = {}
  let policy: CachePolicy | null = null
  const release = (): void => { done?.() }

  /** Serves the stored response stale instead of an error, when every rule allows it. */
  const serveStale = (cause: CauseType | null, code: number | null): boolean => {
    if (stored === null || res.headersSent || res.destroyed) return false
    const p = stored.policy
    const cc = p.toObject().rescc
    // RFC 9111 §4.2.4: never stale against must-revalidate, proxy-revalidate, no-cache or s-maxage (§5.2.2.10).
    if (cc['must-revalidate'] || cc['proxy-revalidate'] || cc['no-cache'] || cc['s-maxage']) return false
    const staleness = p.age() - p.maxAge()
    const configured = (cause !== null && (config.serve_stale_on as Array<string | number>).includes(cause)) ||
      (code !== null && (config.serve_stale_on as Array<string | number>).includes(code))
    const sie = staleIfErrorSeconds(p)
    const allowed = (configured && staleness * 1000 <= config.max_stale) ||
      (sie > 0 && staleness <= sie && (cause !== null || (code !== null && STALE_IF_ERROR_STATUSES.has(code))))
    if (!allowed) return false
    const detail = code !== null ? `fwd-status=${code}` : `detail=${cause}`
    serveStored(ctx, req, res, stored.variant, p, status(proxyName, `fwd=stale; ${detail}; ttl=${ttlSeconds(p)}`))
    return true
  }

  const tee: ResponseTee = {
    start(code, headers, out) {
      started = true
      if (stored !== null && freshens(creq.method, code, headers, stored.variant)) {
        // RFC 9111 §4.3.4, §4.3.5: the response freshens the stored one, which answers the client.
        void cache.freshen(stored.key, stored.variant, creq, headers).then((u) => {
          serveStored(ctx, req, res, u.variant, u.policy, status(proxyName, `fwd=stale; fwd-status=${code}; ttl=${ttlSeconds(u.policy)}`))
        }).catch(() => res.destroy()).finally(release)
        return false
      }
      if (serveStale(null, code)) {
        release()
        return false
      }
      let storable = false
      if (creq.method === 'GET' && code !== 206 && code !== 304) {
        policy = newPolicy(creq, code, headers)
        const length = Number(headerString(headers['content-length']) ?? 0)
        storable = policy.storable() && !(length > config.max_object_size) && !/\*/.test(headerString(headers.vary) ?? '') &&
          (config.store_set_cookie || headers['set-cookie'] === undefined)
      }
      if (storable) {
        chunks = []
        storeStatus = code
        storeHeaders = headers
      }
      out['cache-status'] = ctx.cache = status(proxyName, `fwd=${fwd}; fwd-status=${code}${storable ? '; stored' : ''}`)
      if (!storable) release()
      if (!storable && code < 400 && !SAFE_METHODS.has(creq.method)) void cache.invalidate(creq, undefined, undefined)
      return true
    },
    data(chunk) {
      if (chunks === null) return
      size += chunk.length
      if (size > config.max_object_size) {
        chunks = null
        release()
        return
      }
      chunks.push(chunk)
    },
    end() {
      if (chunks === null || policy === null) return
      const body = chunks
      chunks = null
      void cache.put(found.key, creq, storeStatus, storeHeaders, body, size, policy).catch(() => false).finally(release)
    },
    error() {
      chunks = null
      if (started) release()
    },
  }

  return {
    tee,
    headers(flat) {
      if (stored === null) return flat
      // Revalidation (RFC 9111 §4.3.1): the cache's own validators replace the client's.
      const out: string[] = []
      for (let i = 0; i < flat.length; i += 2) {
        if (!CONDITIONAL_FIELDS.includes(flat[i].toLowerCase())) out.push(flat[i], flat[i + 1])
      }
      for (const name of ['if-none-match', 'if-modified-since']) {
        const v = stored.revalidationHeaders[name]
        if (v !== undefined) out.push(name, headerString(v) as string)
      }
      return out
    },
    onFailure(type) {
      const served = serveStale(type, null)
      if (served) release()
      return served
    },
    finish() {
      if (!started) release()
    },
  }
}

/**
 * Whether an upstream response to a revalidation updates the stored response instead of
 * replacing it: a 304 (RFC 9111 §4.3.4), or a 200 to HEAD whose Content-Length, if any,
 * is the stored body's (§4.3.5); either with validators that agree with the stored ones.
 */
function freshens(method: string, code: number, headers: IncomingHttpHeaders, stored: StoredResponse): boolean {
  if (code === 200 && method === 'HEAD') {
    const length = headerString(headers['content-length'])
    if (length !== undefined && Number(length) !== stored.bodySize) return false
  } else if (code !== 304) {
    return false
  }
  return validatorsAgree(stored.headers, headers)
}

/** `stale-while-revalidate`: one refresh per key in the background (RFC 5861 §3). */
function backgroundRefresh(input: CachePhaseInput, creq: CacheRequest, found: Extract<Lookup, { kind: 'stale-while-revalidate' }>): void {
  const { cache } = input
  if (!cache.claimRefresh(found.key)) return
  const extra: Record<string, string> = {}
  for (const name of ['if-none-match', 'if-modified-since']) {
    const v = found.revalidationHeaders[name]
    if (v !== undefined) extra[name] = headerString(v) as string
  }
  input.refresh(extra).then(async (r) => {
    if (r.status === 304) {
      if (validatorsAgree(found.variant.headers, r.headers)) await cache.freshen(found.key, found.variant, creq, r.headers)
      return
    }
    const p = newPolicy({ ...creq, method: 'GET' }, r.status, r.headers)
    const size = r.body.reduce((a, b) => a + b.length, 0)
    if (p.storable() && size <= input.config.max_object_size && (input.config.store_set_cookie || r.headers['set-cookie'] === undefined)) await cache.put(found.key, creq, r.status, r.headers, r.body, size, p)
  }).catch(() => {}).finally(() => cache.releaseRefresh(found.key))
}

/**
 * Whether the client's conditional fields say it holds the stored response (RFC 9110
 * §13.1.2, §13.1.3, evaluated by a cache as RFC 9111 §4.3.2 says): `If-None-Match` by weak
 * comparison; else `If-Modified-Since` against Last-Modified, or Date when there is none,
 * or the time the response was stored.
 */
function notModified(req: IncomingMessage, v: StoredResponse): boolean {
  const inm = req.headers['if-none-match']
  if (inm !== undefined) {
    const etag = headerString(v.headers.etag)
    if (etag === undefined) return false
    const weak = (s: string): string => s.trim().replace(/^W\//, '')
    return inm.trim() === '*' || inm.split(',').some((t) => weak(t) === weak(etag))
  }
  const ims = req.headers['if-modified-since']
  if (ims === undefined) return false
  const since = parseHttpDate(ims)
  const validator = headerString(v.headers['last-modified']) ?? headerString(v.headers.date)
  const modified = validator !== undefined ? parseHttpDate(validator) : v.storedAt
  return since !== null && modified !== null && modified <= since
}

/**
 * Answers the client with a stored response: the stored fields with `Age` (RFC 9111 §4.2.3,
 * §5.1), `Cache-Status`, `X-Request-Id`; 304 when the client's validators match; a 206 for
 * one byte range of a GET (RFC 9110 §14); no body for HEAD.
 */
export function serveStored(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, v: StoredResponse, policy: CachePolicy, cacheStatus: string): void {
  if (res.headersSent || res.destroyed) return
  const headers: OutgoingHttpHeaders = { ...v.headers }
  delete headers['content-length']
  headers.age = String(Math.round(policy.age()))
  headers['cache-status'] = cacheStatus
  headers['x-request-id'] = ctx.requestId
  ctx.cache = cacheStatus
  let code = v.status
  let body = v.body
  let size = v.bodySize
  if (code === 200 && notModified(req, v)) {
    code = 304
  } else {
    if (code === 200) {
      const r = evaluateRange(req.method ?? 'GET', headerString(req.headers.range), headerString(req.headers['if-range']), v.headers, v.bodySize)
      if (r.kind === 'partial') {
        code = 206
        body = sliceBody(v.body, r.start, r.end)
        size = r.end - r.start + 1
        headers['content-range'] = `bytes ${r.start}-${r.end}/${v.bodySize}`
      }
    }
    headers['content-length'] = String(size)
  }
  ctx.status = code
  res.writeHead(code, headers)
  if (req.method === 'HEAD' || code === 304) {
    res.end()
    return
  }
  for (const c of body) res.write(c)
  ctx.bytesSent += size
  res.end()
}
