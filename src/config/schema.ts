/**
 * The schema of portico.yaml (zod): validation, defaults, and the JSON Schema exported
 * for editors. Durations and sizes are strings with units and come out in ms and bytes.
 * Every field says what it does and its default; docs/configuration.md mirrors this file.
 */
import { z } from 'zod'
import { parseDuration, parseSize } from './units.ts'

/** A duration string (`"250ms"`, `"5s"`, `"2m"`, `"1h"`) parsed to milliseconds. */
export const duration = z.string({ error: 'expected a duration with a unit, e.g. "250ms", "5s", "2m", "1h"' }).transform((text, ctx) => {
  try {
    return parseDuration(text)
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message })
    return z.NEVER
  }
})

/** A size (`"64KiB"`, `"1MiB"`, `"10MB"` or a whole number of bytes) parsed to bytes. */
export const size = z.union([z.string(), z.number()], { error: 'expected a size, e.g. "64KiB", "1MiB", or a whole number of bytes' }).transform((text, ctx) => {
  try {
    return parseSize(text)
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message })
    return z.NEVER
  }
})

/** `host:port` or `[v6]:port`; port 0 picks a free port. */
const address = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:8080"')

/** An endpoint URL: `http://host:port` or `https://host:port`, no path. */
const endpointUrl = z.string().refine((text) => {
  try {
    const u = new URL(text)
    return (u.protocol === 'http:' || u.protocol === 'https:') && (u.pathname === '/' || u.pathname === '') && !u.search && !u.username
  } catch {
    return false
  }
}, 'expected an endpoint URL "http://host:port" or "https://host:port" with no path')

/** One endpoint of an upstream pool. */
export const endpointSchema = z.union([
  endpointUrl,
  z.strictObject({
    /** Endpoint URL, `http://host:port` or `https://host:port`. */
    url: endpointUrl,
    /** Relative share of traffic (1 to 1000). Default 1. */
    weight: z.number().int().min(1).max(1000).default(1),
  }),
]).transform((e) => (typeof e === 'string' ? { url: e, weight: 1 } : e))

/** Upstream timeouts, all enforced by Portico's own timers. */
export const upstreamTimeoutsSchema = z.strictObject({
  /** TCP (and TLS) connect to an endpoint. Default `"2s"` (nginx proxy_connect_timeout is 60s). */
  connect: duration.default(2000),
  /** From the request sent to the first byte of the response header (first-byte timeout). Default `"30s"` (nginx proxy_read_timeout 60s). */
  response_header: duration.default(30_000),
  /** Longest silence between two body chunks, either direction, once the exchange started. Default `"60s"` (nginx proxy_read_timeout/proxy_send_timeout). */
  idle: duration.default(60_000),
  /** Optional cap on the whole exchange with one endpoint, from dispatch to the last body byte. Default: none. */
  total: duration.optional(),
})

/** Keep-alive connection pool to each endpoint. */
export const keepaliveSchema = z.strictObject({
  /** How long an idle upstream connection is kept before Portico closes it. Default `"4s"`, below the 5 s of Node.js and most app servers, so the proxy closes first (avoids the keep-alive race). A shorter `Keep-Alive: timeout=N` from the upstream wins. */
  idle_timeout: duration.default(4000),
  /** Maximum connections per endpoint (idle and busy). Default 256. */
  max_connections: z.number().int().min(1).default(256),
})

/** Retry policy (first cut: connect failures and the keep-alive race). */
export const retriesSchema = z.strictObject({
  /** Total tries per request including the first (1 = no retry). Default 2. */
  attempts: z.number().int().min(1).max(10).default(2),
})

/** An upstream: a named pool of endpoints. */
export const upstreamSchema = z.strictObject({
  /** Endpoints (`"http://host:port"` or `{ url, weight }`). At least one. */
  endpoints: z.array(endpointSchema).min(1, 'an upstream needs at least one endpoint'),
  /** Endpoint selection: `round_robin` (smooth weighted, nginx), `least_request` (power of two choices, Envoy) or `random` (weighted). Default `round_robin`. */
  load_balancing: z.enum(['round_robin', 'least_request', 'random']).default('round_robin'),
  timeouts: upstreamTimeoutsSchema.default(() => upstreamTimeoutsSchema.parse({})),
  keepalive: keepaliveSchema.default(() => keepaliveSchema.parse({})),
  retries: retriesSchema.default(() => retriesSchema.parse({})),
  /** Largest response header section accepted from an endpoint. Default `"16KiB"` (Node's default; nginx proxy_buffer_size is 4k/8k). */
  max_response_header_size: size.default(16 * 1024),
})

/** Route match: all given conditions must hold. */
export const matchSchema = z.strictObject({
  /** Host to match (port ignored, case-insensitive): exact `api.example.com` or suffix `*.example.com` (matches sub-domains only). Default: any host. */
  host: z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'expected a host name, optionally starting with "*."').optional(),
  /** Path prefix, matched on segment boundaries (`/v1` matches `/v1` and `/v1/x`, not `/v10`). Default `"/"`. */
  path_prefix: z.string().startsWith('/', 'a path prefix starts with "/"').default('/'),
})

/** A route: a request match and the upstream it goes to. */
export const routeSchema = z.strictObject({
  /** Name used in logs and metrics. Default: `route<index>`. */
  name: z.string().optional(),
  match: matchSchema.default(() => matchSchema.parse({})),
  /** Name of the upstream that serves the route (a key of `upstreams`). */
  upstream: z.string(),
  /** Keep the client's `Host` header upstream (true) or send the endpoint's host:port (false). Default true (Traefik passHostHeader; nginx proxy_set_header Host $host). */
  preserve_host: z.boolean().default(true),
  /** Strip the matched path prefix before forwarding. Default false. */
  strip_prefix: z.boolean().default(false),
})

/** Downstream (client-side) timeouts. */
export const listenerTimeoutsSchema = z.strictObject({
  /** Time allowed to receive the whole request header section (slowloris guard; nginx client_header_timeout). Default `"10s"`. */
  header_read: duration.default(10_000),
  /** Idle time allowed on a client keep-alive connection between requests (nginx keepalive_timeout). Default `"75s"`. */
  keepalive: duration.default(75_000),
  /** Longest silence while reading a request body from the client (nginx client_body_timeout). Default `"60s"`. */
  body_idle: duration.default(60_000),
})

/** A listener: where Portico accepts client connections. */
export const listenerSchema = z.strictObject({
  /** `host:port` to listen on. */
  address,
  timeouts: listenerTimeoutsSchema.default(() => listenerTimeoutsSchema.parse({})),
  /** Largest request header section accepted from clients; larger gets 431. Default `"16KiB"`. */
  max_header_size: size.default(16 * 1024),
})

/** Access log settings (DESIGN.md §4). */
export const accessLogSchema = z.strictObject({
  /** `json` (one JSON object a line) or `text` (for humans). Default `json`. */
  format: z.enum(['json', 'text']).default('json'),
  /** File to append to, or `"-"` for standard output. Default `"-"`. */
  path: z.string().default('-'),
})

/** Admin API settings. */
export const adminSchema = z.strictObject({
  /** `host:port` of the admin API; loopback by default. */
  address: address.default('127.0.0.1:9901'),
})

/** The whole portico.yaml. */
export const configSchema = z.strictObject({
  listeners: z.array(listenerSchema).min(1, 'at least one listener is needed'),
  routes: z.array(routeSchema).min(1, 'at least one route is needed'),
  upstreams: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'upstream names use letters, digits, "_", "." and "-"'), upstreamSchema),
  access_log: accessLogSchema.default(() => accessLogSchema.parse({})),
  /** Admin API; omitted means no admin listener. */
  admin: adminSchema.optional(),
  /** Put internal addresses and raw error text in error responses (`Proxy-Status` details and next-hop, error page). Default false: the backend is masked. */
  expose_error_details: z.boolean().default(false),
  /** Name this proxy uses in `Proxy-Status` and `Via`. Default `"portico"`. */
  proxy_name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'expected a token of letters, digits, "_", "." and "-" (RFC 9209 proxy name)').default('portico'),
}).superRefine((cfg, ctx) => {
  // Runs even when other keys failed (see `when`), so the input may be partial: guard every step.
  if (!Array.isArray(cfg.routes)) return
  const upstreams: object = cfg.upstreams !== null && typeof cfg.upstreams === 'object' ? cfg.upstreams : {}
  cfg.routes.forEach((r, i) => {
    // Object.hasOwn, not `in`: a route to "toString" or "constructor" must not pass.
    if (typeof r?.upstream === 'string' && !Object.hasOwn(upstreams, r.upstream)) {
      ctx.addIssue({
        code: 'custom',
        path: ['routes', i, 'upstream'],
        message: `unknown upstream "${r.upstream}"; defined: ${Object.keys(upstreams).join(', ') || 'none'}`,
      })
    }
  })
}, { when: () => true })

/** A validated config with defaults applied: durations in ms, sizes in bytes. */
export type Config = z.output<typeof configSchema>
export type UpstreamConfig = z.output<typeof upstreamSchema>
export type RouteConfig = z.output<typeof routeSchema>
export type ListenerConfig = z.output<typeof listenerSchema>
export type EndpointConfig = z.output<typeof endpointSchema>
/** The config as written in YAML, before defaults. */
export type ConfigInput = z.input<typeof configSchema>
