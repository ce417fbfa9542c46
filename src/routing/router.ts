/**
 * Routing: the request's host and path select a route, and the route names its upstream.
 */
import type { RouteConfig } from '../config/schema.ts'

/** A compiled route. */
export interface Route {
  /** Name used in logs: the configured name or `route<index>`. */
  readonly name: string
  readonly upstream: string
  readonly preserveHost: boolean
  readonly stripPrefix: boolean
  /** Lower-case exact host, or null when the route matches any host or a suffix. */
  readonly host: string | null
  /** Lower-case suffix including the dot (`.example.com`) for `*.example.com`, or null. */
  readonly hostSuffix: string | null
  /** Path prefix without a trailing slash (`""` for `/`); the exact path as written when {@link exact}. */
  readonly prefix: string
  /** The route matches the path `prefix` exactly (`match.path`) rather than as a prefix. */
  readonly exact: boolean
  /**
   * What replaces the matched `prefix` upstream, without a trailing slash: `""` for
   * `strip_prefix`, the `prefix_rewrite` path, or null to forward the path unchanged.
   */
  readonly prefixRewrite: string | null
  /** `Host` sent upstream whatever the client sent (`host_rewrite`), or null. */
  readonly hostRewrite: string | null
  readonly config: RouteConfig
}

/**
 * Matches requests to routes. Order of precedence, like nginx `server_name` then
 * `location`: exact host over wildcard host over any host; within the same host class an
 * exact path (`location =`) wins, then the longest path prefix; ties go to the first
 * route in the file.
 */
export class Router {
  readonly routes: readonly Route[]

  /** @param routes the `routes` list of the config */
  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map((r, i) => compile(r, i))
  }

  /**
   * Finds the route for a request.
   *
   * @param hostHeader the request's Host (or :authority), possibly with a port
   * @param path the request target's path (query allowed; it is ignored)
   * @returns the route, or null when none matches (the caller answers 404 `destination_not_found`)
   */
  match(hostHeader: string | undefined, path: string): Route | null {
    const host = normalizeHost(hostHeader)
    let best: Route | null = null
    let bestScore = -1
    for (const r of this.routes) {
      let hostClass: number
      if (r.host !== null) {
        if (r.host !== host) continue
        hostClass = 2
      } else if (r.hostSuffix !== null) {
        if (!host.endsWith(r.hostSuffix) || host.length === r.hostSuffix.length) continue
        hostClass = 1
      } else {
        hostClass = 0
      }
      if (r.exact ? !pathEquals(r.prefix, path) : !pathMatches(r.prefix, path)) continue
      // Host class dominates, then exact over prefix, then prefix length; strict > keeps the first of equals.
      const score = hostClass * 100_000 + (r.exact ? 50_000 : 0) + r.prefix.length
      if (score > bestScore) {
        best = r
        bestScore = score
      }
    }
    return best
  }
}

function compile(r: RouteConfig, index: number): Route {
  const h = r.match.host?.toLowerCase() ?? null
  const exact = r.match.path !== undefined
  const prefix = exact ? r.match.path as string : r.match.path_prefix.replace(/\/+$/, '')
  const prefixRewrite = r.prefix_rewrite !== undefined ? r.prefix_rewrite.replace(/\/+$/, '') : r.strip_prefix ? '' : null
  return {
    name: r.name ?? `route${index}`,
    upstream: r.upstream,
    preserveHost: r.preserve_host,
    stripPrefix: r.strip_prefix,
    exact,
    prefixRewrite,
    hostRewrite: r.host_rewrite ?? null,
    host: h && !h.startsWith('*.') ? h : null,
    hostSuffix: h && h.startsWith('*.') ? h.slice(1) : null,
    prefix,
    config: r,
  }
}

/** Lower-cases a Host header and drops its port (`Example.com:8080` → `example.com`, `[::1]:80` → `[::1]`). */
export function normalizeHost(hostHeader: string | undefined): string {
  if (!hostHeader) return ''
  let h = hostHeader
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    h = end > 0 ? h.slice(0, end + 1) : h
  } else {
    const colon = h.indexOf(':')
    if (colon >= 0) h = h.slice(0, colon)
  }
  return h.toLowerCase().replace(/\.$/, '')
}

/** Exact path match, query ignored: `/health` matches `/health` and `/health?x`, not `/health/`. */
export function pathEquals(exact: string, path: string): boolean {
  if (!path.startsWith(exact)) return false
  return path.length === exact.length || path.charCodeAt(exact.length) === 63 /* ? */
}

/** Prefix match on segment boundaries: `/v1` matches `/v1`, `/v1/x`, `/v1?q`, not `/v10`. */
export function pathMatches(prefix: string, path: string): boolean {
  if (prefix === '') return true
  if (!path.startsWith(prefix)) return false
  if (path.length === prefix.length) return true
  const next = path.charCodeAt(prefix.length)
  return next === 47 /* / */ || next === 63 /* ? */
}
