/**
 * Cache test helpers: a config with one caching route, and a loopback origin that counts
 * requests by path and keeps the request fields it saw.
 */
import type http from 'node:http'
import type { ConfigInput } from '../../src/config/schema.ts'
import type { testEnv } from './gateway.ts'

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
