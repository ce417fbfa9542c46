/**
 * Routing: the request's host and path select a route, and the route names its upstream.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { RouteConfig, ValueMatchConfig } from '../config/schema.ts'
import { CidrList } from '../lib/cidr.ts'

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
  /** `match.path_regex` compiled, or null. */
  readonly pathRegex: RegExp | null
  /** The conditions beyond host and path (methods, headers, query, client address), or null when there are none. */
  readonly conditions: RouteConditions | null
  readonly config: RouteConfig
}

/** What a route's extra conditions read from a request. */
export interface RequestFacts {
  readonly method: string
  readonly headers: IncomingHttpHeaders
  /** The real client address (after `trusted_proxies`). */
  readonly clientIp: string
}

/** A compiled header or query condition: `exact`, `regex`, or presence (`present`). */
interface ValueCondition {
  /** Lower-case for a header field, as written for a query parameter. */
  readonly name: string
  readonly exact: string | null
  readonly regex: RegExp | null
  readonly present: boolean
}

/** The compiled conditions of a route beyond host and path; all must hold. */
export class RouteConditions {
  readonly methods: ReadonlySet<string> | null
  readonly headers: readonly ValueCondition[]
  readonly query: readonly ValueCondition[]
  readonly clients: CidrList | null

  constructor(m: RouteConfig['match']) {
    this.methods = m.methods ? new Set(m.methods) : null
    this.headers = (m.headers ?? []).map((h) => valueCondition(h, true))
    this.query = (m.query ?? []).map((q) => valueCondition(q, false))
    this.clients = m.client_ip ? new CidrList(m.client_ip) : null
  }

  /** Whether a request meets every condition. `target` is the request target (its query is read only when a query condition exists). */
  test(facts: RequestFacts, target: string): boolean {
    if (this.methods !== null && !this.methods.has(facts.method)) return false
    for (const c of this.headers) {
      const v = facts.headers[c.name]
      if (!valueMatches(c, v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : v)) return false
    }
    if (this.query.length > 0) {
      const q = target.indexOf('?')
      const params = new URLSearchParams(q < 0 ? '' : target.slice(q + 1))
      for (const c of this.query) if (!valueMatches(c, params.get(c.name) ?? undefined)) return false
    }
    if (this.clients !== null && !this.clients.contains(facts.clientIp)) return false
    return true
  }
}

function valueCondition(m: ValueMatchConfig, header: boolean): ValueCondition {
  return {
    name: header ? m.name.toLowerCase() : m.name,
    exact: m.exact ?? null,
    regex: m.regex !== undefined ? new RegExp(m.regex) : null,
    present: m.present ?? true,
  }
}

function valueMatches(c: ValueCondition, value: string | undefined): boolean {
  if (value === undefined) return !c.present && c.exact === null && c.regex === null
  if (c.exact !== null) return value === c.exact
  if (c.regex !== null) return c.regex.test(value)
  return c.present
}

/**
 * Matches requests to routes. Order of precedence, like nginx `server_name` then
 * `location`: exact host over wildcard host over any host; within the same host class an
 * exact path (`location =`) wins, then a path regex (`location ~`), then the longest path
 * prefix; ties go to the first route in the file. A route whose other conditions
 * (methods, headers, query, client address) do not hold is skipped, so among routes of
 * the same path the first whose conditions hold wins (Envoy's and Traefik's first match).
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
   * @param path the request target's path (query allowed; it is ignored but by query conditions)
   * @param facts what routes with conditions read; without it, such routes never match
   * @returns the route, or null when none matches (the caller answers 404 `destination_not_found`)
   */
  match(hostHeader: string | undefined, path: string, facts?: RequestFacts): Route | null {
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
      let pathClass: number
      if (r.pathRegex !== null) {
        if (!r.pathRegex.test(pathOnly(path))) continue
        pathClass = 40_000
      } else if (r.exact) {
        if (!pathEquals(r.prefix, path)) continue
        pathClass = 50_000
      } else {
        if (!pathMatches(r.prefix, path)) continue
        pathClass = r.prefix.length
      }
      // Host class dominates, then exact over regex over prefix, then prefix length; strict > keeps the first of equals.
      const score = hostClass * 100_000 + pathClass
      if (score <= bestScore) continue
      if (r.conditions !== null && (facts === undefined || !r.conditions.test(facts, path))) continue
      best = r
      bestScore = score
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
    pathRegex: r.match.path_regex !== undefined ? new RegExp(r.match.path_regex) : null,
    conditions: r.match.methods || r.match.headers || r.match.query || r.match.client_ip ? new RouteConditions(r.match) : null,
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

/** The path of a request target, without its query. */
export function pathOnly(target: string): string {
  const q = target.indexOf('?')
  return q < 0 ? target : target.slice(0, q)
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
