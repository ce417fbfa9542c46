/**
 * Cache test helpers: a config with one caching route, and a loopback origin that counts
 * requests by path and keeps the request fields it saw.
 */
import type http from 'node:http'
import { primaryKey } from '../../src/cache/cache.ts'
import type { StoredResponse } from '../../src/cache/store.ts'
import type { ConfigInput } from '../../src/config/schema.ts'
import type { testEnv, TestGateway } from './gateway.ts'

type RouteCache = NonNullable<ConfigInput['routes'][number]['cache']>

/** A config with one caching route to `url`, with `cache` settings of the route, top-level overrides and upstream timeouts. */
export function cached(url: string, cache: Partial<RouteCache> = {}, top: Partial<ConfigInput> = {}, timeouts?: Record<string, string>): ConfigInput {
  return {
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'default', upstream: 'default', cache: { enabled: true, ...cache } }],
    upstreams: { default: { endpoints: [url], retries: { attempts: 1 }, ...(timeouts ? { timeouts } : {}) } },
    ...top,
  }
}

/** An origin counting requests. */
export interface CountingOrigin {
  url: string
  /** Requests seen for `path` (path and query). */
  count(path: string): number
  /** Requests seen in all. */
  total(): number
  /** The request fields of every request, in order. */
  seen: http.IncomingHttpHeaders[]
  /** The method of every request, in order. */
  methods: string[]
}

/**
 * Starts an origin (closed after the test) that answers with `respond`, where `n` counts
 * the requests for the same path and query from 1.
 */
export async function countingOrigin(env: ReturnType<typeof testEnv>, respond: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void): Promise<CountingOrigin> {
  const counts = new Map<string, number>()
  const seen: http.IncomingHttpHeaders[] = []
  const methods: string[] = []
  const url = await env.upstream((req, res) => {
    const n = (counts.get(req.url ?? '') ?? 0) + 1
    counts.set(req.url ?? '', n)
    seen.push(req.headers)
    methods.push(req.method ?? '')
    respond(req, res, n)
  })
  return { url, count: (path) => counts.get(path) ?? 0, total: () => [...counts.values()].reduce((a, b) => a + b, 0), seen, methods }
}

/** The variants the gateway's store holds for a GET of `path` sent by `send` (Host `127.0.0.1:<port>`), newest first. */
export async function storedVariants(gw: TestGateway, path: string): Promise<StoredResponse[]> {
  const entry = await gw.gateway.runtime.cache.store.get(primaryKey('http', `127.0.0.1:${gw.port}`, path))
  return entry?.variants ?? []
}

/**
 * Waits until the store holds a variant for a GET of `path` that `accept` accepts, polling
 * every 5 ms: a response is stored once its body has ended, after the client may have read it.
 *
 * @returns the variant
 * @throws when none appears within `waitMs` ms
 */
export async function whenStored(gw: TestGateway, path: string, accept: (v: StoredResponse) => boolean = () => true, waitMs = 3000): Promise<StoredResponse> {
  const deadline = performance.now() + waitMs
  for (;;) {
    const v = (await storedVariants(gw, path)).find(accept)
    if (v !== undefined) return v
    if (performance.now() > deadline) throw new Error(`timed out after ${waitMs}ms waiting for ${path} to be stored`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/**
 * Waits until the store holds nothing for a GET of `path` (after an invalidation or a purge).
 *
 * @throws when something is still stored after `waitMs` ms
 */
export async function whenNotStored(gw: TestGateway, path: string, waitMs = 3000): Promise<void> {
  const deadline = performance.now() + waitMs
  while ((await storedVariants(gw, path)).length > 0) {
    if (performance.now() > deadline) throw new Error(`timed out after ${waitMs}ms waiting for ${path} to leave the store`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** A stored variant's body as text. */
export function bodyText(v: StoredResponse): string {
  return Buffer.concat(v.body).toString()
}
