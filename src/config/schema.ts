/**
 * The schema of portico.yaml (zod): validation, defaults, and the JSON Schema exported
 * for editors. Durations and sizes are strings with units and come out in ms and bytes.
 * Every field says what it does and its default; docs/configuration.md mirrors this file.
 */
import net from 'node:net'
import tls from 'node:tls'
import { z } from 'zod'
import { cidrProblem } from '../lib/cidr.ts'
import { parseDuration, parseSize } from './units.ts'
import { isLoopbackAddress } from './address.ts'

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

/**
 * An endpoint URL: `http://host:port` or `https://host:port`, no path; or a unix domain
 * socket, `unix:/absolute/path.sock` (plain HTTP/1.1 over the socket, as gunicorn
 * `--bind unix:` and uvicorn `--uds` serve; nginx writes `http://unix:/path:`).
 */
const endpointUrl = z.string().refine((text) => {
  if (text.startsWith('unix:')) return /^unix:\/[^\0:]*[^\0:/]$/.test(text)
  try {
    const u = new URL(text)
    return (u.protocol === 'http:' || u.protocol === 'https:') && (u.pathname === '/' || u.pathname === '') && !u.search && !u.username
  } catch {
    return false
  }
}, 'expected an endpoint URL "http://host:port" or "https://host:port" with no path, or "unix:/path/to/app.sock"')

/** One endpoint of an upstream pool. */
export const endpointSchema = z.union([
  endpointUrl,
  z.strictObject({
    /** Endpoint URL, `http://host:port` or `https://host:port`, or a unix socket `unix:/path/app.sock`. */
    url: endpointUrl,
    /** Relative share of traffic (1 to 1000). Default 1. */
    weight: z.number().int().min(1).max(1000).default(1),
    /** Backup endpoint: picked only when no other endpoint is available or every other one was tried for this request (nginx `server ... backup`). Default false. */
    backup: z.boolean().default(false),
  }),
]).transform((e) => (typeof e === 'string' ? { url: e, weight: 1, backup: false } : e))

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
})

/** Per-endpoint limits (circuit breaking, Envoy `circuit_breakers`; nginx `max_conns` + `queue`). */
export const limitsSchema = z.strictObject({
  /** Most connections per endpoint, idle and busy together (nginx `max_conns`). Default 256. */
  max_connections: z.number().int().min(1).default(256),
  /** Most requests waiting for a connection of one endpoint; beyond it a request gets 503 `connection_limit_reached` at once. Default 1024 (Envoy `max_pending_requests`). */
  max_pending: z.number().int().min(0).default(1024),
  /** Longest wait for a connection when the endpoint is at `max_connections`; then 503 `connection_limit_reached`. Default `"1s"` (nginx `queue ... timeout=`). */
  queue_timeout: duration.default(1000),
})

/** A retry condition: a failure class or an upstream status (500–599). */
const retryCondition = z.union([
  z.enum(['connect_failure', 'reset', 'http_response_timeout']),
  z.number().int().min(500).max(599),
])

/** Retry budget (Envoy `retry_budget`): retries may be at most a share of active requests, so they cannot amplify an overload. Retries after connect failures (nothing reached an application) are bounded by `attempts` alone. */
export const retryBudgetSchema = z.strictObject({
  /** Share of the upstream's active requests that may be retries at once, 0–1. Default 0.2. */
  ratio: z.number().min(0).max(1).default(0.2),
  /** Retries always allowed at once whatever the ratio says. Default 3 (Envoy `min_retry_concurrency`). */
  min_concurrency: z.number().int().min(0).default(3),
})

/** Retry policy (Envoy `retry_policy`, nginx `proxy_next_upstream`). */
export const retriesSchema = z.strictObject({
  /** Total tries per request including the first (1 = no retry). Default 2 (nginx `proxy_next_upstream_tries`). */
  attempts: z.number().int().min(1).max(10).default(2),
  /**
   * When to try again, on another endpoint when one exists: `connect_failure` (nothing was
   * sent: DNS, refused, connect timeout, TLS; any method), `reset` (`connection_terminated`,
   * idempotent methods: on a reused connection once more on a fresh connection, the
   * keep-alive race; otherwise on another endpoint), `http_response_timeout` (idempotent methods), or an upstream status such as
   * 502, 503, 504 (idempotent methods without a body). Default `[connect_failure, reset]`.
   */
  on: z.array(retryCondition).default(['connect_failure', 'reset']),
  /** Timeout of each try's first byte (replaces `timeouts.response_header` per try when shorter). Default: none. */
  per_try_timeout: duration.optional(),
  budget: retryBudgetSchema.default(() => retryBudgetSchema.parse({})),
})

/** One status code (`204`) or an inclusive range (`"200-399"`), as written in `expected_status`. */
const statusItem = z.union([z.number().int(), z.string()])

/** Parses `expected_status` items into inclusive ranges, naming the item that is wrong. */
function statusRanges(items: Array<number | string>, ctx: z.RefinementCtx): Array<{ min: number; max: number }> {
  const out: Array<{ min: number; max: number }> = []
  for (const item of items) {
    const m = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/.exec(String(item))
    const min = m ? Number(m[1]) : NaN
    const max = m?.[2] !== undefined ? Number(m[2]) : min
    if (!(min >= 100 && max <= 599 && min <= max)) {
      ctx.addIssue({ code: 'custom', message: `invalid status ${JSON.stringify(item)}: expected a code 100-599 or a range such as "200-399"` })
      continue
    }
    out.push({ min, max })
  }
  return out
}

/** `"10%"` of the interval or a duration, parsed to `{ unit: '%' | 'ms', value }`. */
const jitter = z.string({ error: 'expected a percentage of the interval ("10%") or a duration ("500ms")' }).transform((text, ctx) => {
  const pct = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text)
  if (pct) {
    const value = Number(pct[1])
    if (value <= 100) return { unit: '%' as const, value }
    ctx.addIssue({ code: 'custom', message: `invalid jitter "${text}": a percentage is at most 100%` })
    return z.NEVER
  }
  try {
    return { unit: 'ms' as const, value: parseDuration(text) }
  } catch {
    ctx.addIssue({ code: 'custom', message: `invalid jitter "${text}": expected a percentage of the interval ("10%") or a duration ("500ms")` })
    return z.NEVER
  }
})

/**
 * Active health checks: each endpoint probed on a timer; consecutive results flip it
 * up or down (HAProxy `rise`/`fall`, Envoy `healthy_threshold`/`unhealthy_threshold`).
 */
export const healthCheckSchema = z.strictObject({
  /** `http` (a GET whose status must be in `expected_status`) or `tcp` (a connect). Default `http`. */
  type: z.enum(['http', 'tcp']).default('http'),
  /** Path of the HTTP check. Default `"/"`. */
  path: z.string().startsWith('/', 'a health check path starts with "/"').default('/'),
  /** Statuses that pass an HTTP check: a code, a range `"200-399"`, or a list of them. Output: inclusive `{ min, max }` ranges. Default `"200-399"`. */
  expected_status: z.union([statusItem, z.array(statusItem).min(1, 'expected at least one status')])
    .transform((v, ctx) => statusRanges(Array.isArray(v) ? v : [v], ctx))
    .prefault('200-399'),
  /** `Host` header of the HTTP check. Default: the endpoint's `host:port`. */
  host: z.string().min(1).optional(),
  /** Time between two checks of one endpoint, in ms. Default `"5s"`. */
  interval: duration.default(5000),
  /** Time allowed for one check (connect and response header), in ms. Default `"1s"`. */
  timeout: duration.default(1000),
  /** Consecutive passing checks that bring a down endpoint back (HAProxy `rise`). Default 2. */
  healthy_threshold: z.number().int().min(1).default(2),
  /** Consecutive failing checks that mark an endpoint down (HAProxy `fall`). Default 3. */
  unhealthy_threshold: z.number().int().min(1).default(3),
  /** Random extra wait added to each interval so endpoints are not probed in lockstep: a percentage of the interval or a duration. Default `"10%"`. */
  jitter: jitter.prefault('10%'),
})

/**
 * Passive health checking (outlier ejection) on real traffic, after Envoy's outlier
 * detection: endpoints that fail too many tries in a row leave rotation for a while.
 */
export const outlierDetectionSchema = z.strictObject({
  /** Consecutive gateway failures (any failed try: refused, reset, timeout, ...) that eject an endpoint; 0 turns this off. Default 5. */
  consecutive_failures: z.number().int().min(0).default(5),
  /** Consecutive 5xx responses from the endpoint that eject it; 0 (the default) turns this off. */
  consecutive_5xx: z.number().int().min(0).default(0),
  /** Ejection time of a first ejection; the n-th ejection lasts n times this, in ms. Default `"30s"`. */
  base_ejection_time: duration.default(30_000),
  /** Longest ejection, in ms. Default `"300s"`. */
  max_ejection_time: duration.default(300_000),
  /** Largest share of the pool ejected at once, in percent; a pool of two or more may always have one endpoint ejected. Default 50. */
  max_ejection_percent: z.number().int().min(0).max(100).default(50),
})

/** A PEM certificate chain and its private key, by file path. */
export const certificateFilesSchema = z.strictObject({
  /** Path of the PEM certificate, leaf first, then intermediates (nginx `ssl_certificate`). */
  cert: z.string().min(1),
  /** Path of the PEM private key of that certificate (nginx `ssl_certificate_key`). */
  key: z.string().min(1),
})

/** A certificate served by a TLS listener: the files, and an optional OCSP response to staple. */
export const listenerCertificateSchema = certificateFilesSchema.extend({
  /**
   * Path of a DER OCSP response for this certificate, stapled to handshakes of clients that
   * ask (RFC 6066 §8 `status_request`; nginx `ssl_stapling_file`). Re-read on every reload:
   * refresh it before it expires (e.g. `openssl ocsp ... -respout`). Portico never fetches
   * it from the responder itself. Default: none, no stapling.
   */
  ocsp_response: z.string().min(1).optional(),
})

/**
 * TLS to the https:// endpoints of an upstream (nginx `proxy_ssl_*` directives; Envoy
 * `UpstreamTlsContext`). Certificates are verified against the system CAs by default.
 */
export const upstreamTlsSchema = z.strictObject({
  /** Path of a PEM bundle of CA certificates trusted in addition to the system CAs (nginx `proxy_ssl_trusted_certificate`). Default: system CAs only. */
  ca: z.string().min(1).optional(),
  /** Name sent in SNI and checked against the endpoint's certificate (nginx `proxy_ssl_name`). Default: the endpoint's host name (none for an IP literal, whose certificate must then list the IP). */
  servername: z.string().min(1).optional(),
  /** Client certificate presented to endpoints that ask for one (mutual TLS; nginx `proxy_ssl_certificate`/`proxy_ssl_certificate_key`). Default: none. */
  client_certificate: certificateFilesSchema.optional(),
  /** Skip verification of the endpoints' certificates (chain, expiry, name): the connection stays encrypted but anyone in the path may impersonate the endpoint. A warning is logged at start. Default false. */
  insecure_skip_verify: z.boolean().default(false),
})

/** Splits a DNS server `ip`, `ip:port`, `[v6]:port` or bare IPv6 into host and port (53 when left out). */
function splitResolver(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(text)
  return m ? { host: m[1], port: Number(m[2] ?? 53) } : { host: text, port: 53 }
}

/** A DNS server: an IP address with an optional port, as `dns.setServers` takes it. */
const resolverAddress = z.string().refine((text) => {
  const { host, port } = splitResolver(text)
  return net.isIP(host) !== 0 && port >= 1 && port <= 65535
}, 'expected a DNS server IP address with an optional port, e.g. "10.0.0.2", "127.0.0.1:5353" or "[::1]:53"')

/**
 * Re-resolution of endpoints given by host name (nginx `resolver ... valid=`, Envoy
 * `STRICT_DNS` clusters). Each name is resolved (A and AAAA) when the pool starts and
 * again when its TTL runs out, clamped to [`min_ttl`, `max_ttl`]; every address becomes
 * an endpoint. IP literals and `localhost` are never looked up here.
 */
export const upstreamDnsSchema = z.strictObject({
  /** Shortest time between two resolutions of a name, in ms, whatever its TTL says (a TTL of 0 would mean a query a request); also the retry interval while a name fails. Default `"1s"`. */
  min_ttl: duration.default(1000),
  /** Longest time between two resolutions of a name, in ms, whatever its TTL says (nginx `resolver ... valid=` overrides the TTL the same way). Default `"5m"`. */
  max_ttl: duration.default(300_000),
  /** How long the last good addresses of a name that stops resolving are kept, in ms (`dns_error` is reported meanwhile); then they are dropped. Default `"5m"`. */
  grace: duration.default(300_000),
  /** DNS servers asked, `ip` or `ip:port` (nginx `resolver`); only these are asked, /etc/hosts is not read. Default: the system's servers (/etc/resolv.conf), then /etc/hosts through getaddrinfo. */
  resolvers: z.array(resolverAddress).min(1, 'list at least one DNS server, or leave resolvers out for the system ones').optional(),
}).refine((d) => d.min_ttl <= d.max_ttl, { message: 'min_ttl is longer than max_ttl', path: ['min_ttl'] })

/** An upstream: a named pool of endpoints. */
export const upstreamSchema = z.strictObject({
  /** Endpoints (`"http://host:port"` or `{ url, weight }`). At least one. */
  endpoints: z.array(endpointSchema).min(1, 'an upstream needs at least one endpoint'),
  /** Endpoint selection: `round_robin` (smooth weighted, nginx), `least_request` (power of two choices, Envoy) or `random` (weighted). Default `round_robin`. */
  load_balancing: z.enum(['round_robin', 'least_request', 'random']).default('round_robin'),
  timeouts: upstreamTimeoutsSchema.default(() => upstreamTimeoutsSchema.parse({})),
  keepalive: keepaliveSchema.default(() => keepaliveSchema.parse({})),
  limits: limitsSchema.default(() => limitsSchema.parse({})),
  retries: retriesSchema.default(() => retriesSchema.parse({})),
  /** Largest response header section accepted from an endpoint. Default `"16KiB"` (Node's default; nginx proxy_buffer_size is 4k/8k). */
  max_response_header_size: size.default(16 * 1024),
  /** Active health checks; omitted means none (endpoints stay up unless ejected). */
  health_check: healthCheckSchema.optional(),
  /** Outlier ejection on real traffic; on by default (Envoy's defaults). */
  outlier_detection: outlierDetectionSchema.default(() => outlierDetectionSchema.parse({})),
  /** Panic threshold in percent (Envoy `healthy_panic_threshold`): below this share of available endpoints, every endpoint is tried as if healthy. Default 0 (off: a pool with none available answers 503). */
  panic_threshold: z.number().int().min(0).max(100).default(0),
  /** TLS settings of the https:// endpoints. Default: verify against the system CAs, SNI from the endpoint's host name. */
  tls: upstreamTlsSchema.optional(),
  /** Re-resolution of endpoints given by host name: TTL bounds, grace period, DNS servers. */
  dns: upstreamDnsSchema.default(() => upstreamDnsSchema.parse({})),
})

/** An address range: a CIDR (`"10.0.0.0/8"`, `"2001:db8::/32"`), one address, or `"all"`. Host bits must be zero. */
export const cidr = z.string({ error: 'expected an address range, e.g. "10.0.0.0/8", "2001:db8::/32", "192.0.2.1" or "all"' }).superRefine((text, ctx) => {
  const problem = cidrProblem(text)
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem })
})

/** One or more address ranges: a single range or a list. Output: a list. */
const cidrList = z.union([cidr, z.array(cidr).min(1, 'list at least one address range')]).transform((v) => (Array.isArray(v) ? v : [v]))

/** A regular expression (ECMAScript syntax, as JavaScript's `RegExp` reads it), checked when the config is loaded. */
export const regex = z.string().superRefine((text, ctx) => {
  try {
    new RegExp(text)
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `invalid regular expression ${JSON.stringify(text)}: ${(e as Error).message.replace(/^Invalid regular expression: \/.*\/\w*: /, '')}` })
  }
})

/** A field name token (RFC 9110 §5.1). */
const fieldName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected a header field name, e.g. "X-Api-Key"')

/** An HTTP method name in upper case. */
const methodName = z.string().regex(/^[A-Z]+$/, 'expected a method name in upper case, e.g. "GET"')

/**
 * A condition on a request header field or query parameter (Envoy `HeaderMatcher`, Traefik
 * `Header`/`HeaderRegexp`/`Query`): `exact` value, `regex` (searched in the value, anchor it
 * with `^…$` for a whole match), or `present` (true: it is there with any value; false: it is
 * absent). With none of the three, `present: true`. Several fields of one name are one value
 * joined with `", "` (RFC 9110 §5.3); a query parameter's value is percent-decoded, the first of its name.
 */
const valueMatchFields = {
  /** Header field name (case-insensitive) or query parameter name (case-sensitive). */
  name: z.string().min(1),
  /** The value must equal this (case-sensitive). */
  exact: z.string().optional(),
  /** The value must match this regular expression. */
  regex: regex.optional(),
  /** true: present with any value; false: absent. */
  present: z.boolean().optional(),
}
const oneValueCondition = (m: { exact?: string; regex?: string; present?: boolean }) => [m.exact, m.regex, m.present].filter((v) => v !== undefined).length <= 1
export const valueMatchSchema = z.strictObject(valueMatchFields).refine(oneValueCondition, { message: 'set one of exact, regex and present', path: ['exact'] })
/** A condition on a request header field: {@link valueMatchSchema} with a field name token. */
const headerMatchSchema = z.strictObject({ ...valueMatchFields, name: fieldName }).refine(oneValueCondition, { message: 'set one of exact, regex and present', path: ['exact'] })

/**
 * Route match: all given conditions must hold (AND). Among the routes that match, the most
 * specific wins: exact host over wildcard host over any host; then an exact `path`, then a
 * `path_regex`, then the longest `path_prefix`; ties go to the route first in the file (first
 * match, as Envoy and Traefik read their routes), so a route with more conditions belongs
 * above a route of the same path without them.
 */
export const matchSchema = z.strictObject({
  /** Host to match (port ignored, case-insensitive): exact `api.example.com` or suffix `*.example.com` (matches sub-domains only). Default: any host. */
  host: z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'expected a host name, optionally starting with "*."').optional(),
  /** Path prefix, matched on segment boundaries (`/v1` matches `/v1` and `/v1/x`, not `/v10`). Default `"/"`. */
  path_prefix: z.string().startsWith('/', 'a path prefix starts with "/"').default('/'),
  /** Exact path (query ignored) instead of a prefix; it wins over every prefix of the same host class (nginx `location = /path`, Envoy `path`). Default: none. */
  path: z.string().startsWith('/', 'a path starts with "/"').optional(),
  /** Regular expression the normalised path (query excluded) must match, instead of a prefix (nginx `location ~`, Envoy `safe_regex`); anchor it with `^`. It wins over every prefix of the same host class. Default: none. */
  path_regex: regex.optional(),
  /** Request methods matched (upper case, e.g. `[GET, HEAD]`). Default: any method. */
  methods: z.array(methodName).min(1, 'list at least one method').optional(),
  /** Conditions on request header fields, all of which must hold. Default: none. */
  headers: z.array(headerMatchSchema).optional(),
  /** Conditions on query parameters, all of which must hold. Default: none. */
  query: z.array(valueMatchSchema).optional(),
  /** Client addresses matched (CIDRs or addresses): the real client address, after `trusted_proxies`. Default: any client. */
  client_ip: cidrList.optional(),
}).refine((m) => m.path === undefined || m.path_prefix === '/', { message: 'set either path (exact) or path_prefix, not both', path: ['path'] })
  .refine((m) => m.path_regex === undefined || (m.path === undefined && m.path_prefix === '/'), { message: 'set one of path, path_prefix and path_regex', path: ['path_regex'] })

/**
 * One access rule (nginx `allow`/`deny`): `allow` or `deny` an address range list, when the
 * request also matches the rule's optional `methods`, `path_prefix` and `path_regex`. Rules
 * are read in order and the first that matches decides; a request no rule matches is allowed
 * (nginx's order semantics). A denied request gets 403 (`access_rule`).
 *
 * @example
 *   - { deny: all, methods: [DELETE] }
 *   - { allow: [10.0.0.0/8, 192.168.0.0/16] }
 *   - { deny: all }
 */
export const accessRuleSchema = z.strictObject({
  /** Client address ranges this rule allows (`all` for any client). */
  allow: cidrList.optional(),
  /** Client address ranges this rule denies (`all` for any client). */
  deny: cidrList.optional(),
  /** The rule applies to these methods only. Default: any method. */
  methods: z.array(methodName).min(1, 'list at least one method').optional(),
  /** The rule applies under this path prefix only (segment boundaries, normalised path). Default: any path. */
  path_prefix: z.string().startsWith('/', 'a path prefix starts with "/"').optional(),
  /** The rule applies to paths (query excluded) matching this regular expression only. Default: any path. */
  path_regex: regex.optional(),
}).refine((r) => (r.allow === undefined) !== (r.deny === undefined), { message: 'an access rule has exactly one of allow and deny', path: ['allow'] })

/** What a rate limit counts requests by. */
const rateLimitKey = z.union([
  z.enum(['client_ip', 'route']),
  z.strictObject({
    /** Requests are counted by the value of this request header field (an API key, a tenant); requests without it are not limited by this rule (nginx: an empty key is not counted). */
    header: fieldName,
  }),
], { error: 'expected client_ip, route, or { header: NAME }' })

/** An nginx rate: `"10r/s"` or `"600r/m"`. */
const rate = z.string().superRefine((text, ctx) => {
  if (!/^\s*\d+(?:\.\d+)?\s*r\/(s|m)\s*$/.test(text) || !(parseFloat(text) > 0)) {
    ctx.addIssue({ code: 'custom', message: `invalid rate "${text}": expected requests per second or per minute, e.g. "10r/s" or "600r/m" (nginx limit_req_zone rate=)` })
  }
})

/**
 * A rate limit of a route: GCRA, the same limit as nginx `limit_req rate=R burst=B nodelay`.
 * A key that has been quiet may send `burst + 1` requests at once, then one every `1/rate`;
 * a request over the limit is answered at once with 429 (`rate_limited`), `Retry-After` and
 * the `RateLimit-Policy`/`RateLimit` fields (IETF httpapi ratelimit-headers draft), never delayed.
 */
export const rateLimitSchema = z.strictObject({
  /** Name in `RateLimit-Policy`, logs and Redis keys. Default: `limit<index>`. */
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'expected letters, digits, "_", "." and "-"').optional(),
  /** What requests are counted by: `client_ip` (the real client address), `route` (the route as a whole), or `{ header: NAME }`. Default `client_ip`. */
  key: rateLimitKey.default('client_ip'),
  /** Sustained rate, `"10r/s"` or `"600r/m"` (nginx `rate=`). */
  rate,
  /** Requests over the rate admitted at once after a quiet spell (nginx `burst=`, served as with `nodelay`). Default 0. */
  burst: z.number().int().min(0).default(0),
  /** Where the counts live: `local` (this host's memory) or `redis` (the top-level `redis`, one limit for every host that shares it). Default `local`. */
  scope: z.enum(['local', 'redis']).default('local'),
  /** When Redis fails or does not answer within `redis.timeout`: `allow` the request (fail open, logged and counted) or `deny` it with 429. Default `allow`. */
  on_store_error: z.enum(['allow', 'deny']).default('allow'),
  /** Send `RateLimit-Policy` and `RateLimit` on admitted responses too, not only on 429s. Default false. */
  send_headers: z.boolean().default(false),
})

/** A cap on the requests in progress at once of a route, per key (nginx `limit_conn`, counting requests, so HTTP/1.1 and HTTP/2 count alike). */
export const limitConnSchema = z.strictObject({
  /** What requests are counted by: `client_ip`, `route`, or `{ header: NAME }`. Default `client_ip`. */
  key: rateLimitKey.default('client_ip'),
  /** Most requests in progress at once per key; one more gets 429 (`rate_limited`) at once (nginx `limit_conn zone N`, with `limit_conn_status 429`). */
  max: z.number().int().min(1),
})

/** Header field rules of one direction (nginx `proxy_set_header`/`add_header`/`proxy_hide_header`, Traefik `headers`). Applied in the order remove, set, add. */
export const headerRulesSchema = z.strictObject({
  /** Field names removed (case-insensitive), e.g. `[X-Powered-By]`. Default: none. */
  remove: z.array(fieldName).default([]),
  /** Fields set, replacing any of the same name: `{ name: value }`. Default: none. */
  set: z.record(fieldName, z.string()).default({}),
  /** Fields added, beside any of the same name: `{ name: value }`. Default: none. */
  add: z.record(fieldName, z.string()).default({}),
})

/**
 * A condition under which a stored response is served stale instead of an error
 * (`routes[].cache.serve_stale_on`): an RFC 9209 error type of a failed try, or an
 * upstream status 500–599.
 */
const serveStaleCondition = z.union([
  z.enum(['connection_refused', 'connection_timeout', 'connection_terminated', 'http_response_timeout', 'destination_unavailable',
    'dns_error', 'dns_timeout', 'destination_ip_unroutable', 'connection_limit_reached', 'tls_protocol_error',
    'tls_certificate_error', 'http_protocol_error', 'http_response_header_section_size']),
  z.number().int().min(500).max(599),
])

/**
 * Per-route RFC 9111 shared cache. Off unless `enabled`; the store is shared by every
 * route and bounded by the top-level `cache.max_size`.
 */
export const routeCacheSchema = z.strictObject({
  /** Store and serve responses of this route (RFC 9111 shared cache). Default false. */
  enabled: z.boolean().default(false),
  /** Largest response body stored, in bytes; a larger response is passed through and not stored. Default `"8MiB"`. */
  max_object_size: size.default(8 * 1024 * 1024),
  /**
   * Failures after which a stored response no older than `max_stale` past its freshness is
   * served instead of the error (RFC 9111 §4.2.4; `stale-if-error`, RFC 5861 §4, also applies):
   * RFC 9209 error types such as `connection_refused`, `connection_timeout`,
   * `http_response_timeout`, `destination_unavailable`, or upstream statuses such as 502, 503, 504. Default `[]`.
   */
  serve_stale_on: z.array(serveStaleCondition).default([]),
  /** Longest staleness (time past freshness) of a response served on error, in ms. Default `"1h"`. */
  max_stale: duration.default(3_600_000),
  /** Longest wait of a request for the one upstream request of concurrent misses of the same key (request collapsing), in ms; then it goes upstream itself. Default `"5s"`. */
  collapse_timeout: duration.default(5000),
  /**
   * Store responses that carry `Set-Cookie` and serve them, cookie included, to every
   * client. RFC 9111 §7.3 allows it; off by default because one user's cookie would reach
   * others, as nginx (which skips such responses unless `proxy_ignore_headers Set-Cookie`)
   * and Varnish also decide. Default false.
   */
  store_set_cookie: z.boolean().default(false),
})

/** `cache.store.redis`: the shared Redis tier of the cache. */
export const redisStoreSchema = z.strictObject({
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. Required. */
  url: z.string().regex(/^rediss?:\/\/[^/?#]+(\/\d*)?$/, 'expected redis://host:port or rediss://host:port (optionally user:password@ and /db)'),
  /** Longest wait for one Redis command on the request path; a slower answer counts as a miss and the request goes on without it. Default `"50ms"`. */
  timeout: duration.default(50),
  /** Prefix of every key written, so several caches can share one Redis. Default `"portico:cache:"`. */
  key_prefix: z.string().default('portico:cache:'),
})

/** The shared cache store (all routes). */
export const cacheStoreSchema = z.strictObject({
  /** Most bytes held by the in-memory store (bodies and headers); least recently used responses are evicted beyond it. Default `"256MiB"`. */
  max_size: size.default(256 * 1024 * 1024),
  /** Where stored responses live besides memory. Default: memory only. */
  store: z.strictObject({
    /** A second tier in Redis behind the memory store, shared by every Portico host that names the same Redis (node-redis). Optional. */
    redis: redisStoreSchema.optional(),
  }).default(() => ({})),
})

/**
 * Buffering of one route (nginx `proxy_request_buffering`, `proxy_buffering`): on by
 * default so slow clients hold no upstream connection; turn off for streaming (SSE,
 * long polls, gRPC-web, uploads that the application reads as they come).
 */
export const routeBufferingSchema = z.strictObject({
  /** Read the whole request body (memory, then a temporary file) before an endpoint is chosen; the body is then sent again on a retry. Default true. */
  request: z.boolean().default(true),
  /** Read the response body at the upstream's pace, holding what the client has not taken yet (memory, then a temporary file), so the upstream connection is freed early. Always off for `text/event-stream` responses. Default true. */
  response: z.boolean().default(true),
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
  /** Replace the matched path prefix (or exact path) with this path before forwarding: `/v2/` turns `/api/x` matched by `/api` into `/v2/x` (nginx `proxy_pass http://b/v2/;` in `location /api/`, Envoy `prefix_rewrite`). Default: none. */
  prefix_rewrite: z.string().startsWith('/', 'a prefix rewrite starts with "/"').optional(),
  /** `Host` header sent upstream whatever the client sent; overrides `preserve_host` (nginx `proxy_set_header Host name`, and the upstream block name nginx sends by default; Envoy `host_rewrite_literal`). Default: none. */
  host_rewrite: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?$/, 'expected a host name with an optional port, e.g. "app.internal" or "app:8080"').optional(),
  /** RFC 9111 shared cache of this route; off by default. */
  cache: routeCacheSchema.default(() => routeCacheSchema.parse({})),
  /**
   * Upgrade protocols (RFC 9110 §7.8) tunnelled for this route, by `Upgrade` token,
   * case-insensitive. Another token, or an upgrade on a method other than GET (RFC 6455
   * §4.1), goes upstream as a plain request without `Upgrade`. `h2c` is never tunnelled:
   * its connection would bypass routing. Default `[websocket]`.
   */
  upgrades: z.array(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected a protocol name token, e.g. "websocket"')
    .refine((p) => p.toLowerCase() !== 'h2c', 'h2c is never tunnelled: after its 101 the connection would bypass routing'))
    .default(['websocket']),
  /**
   * Client-sent `X-Real-IP`, `True-Client-IP` and `Forwarded`: `strip` drops them and sets
   * `X-Real-IP` to the client's address (nginx `proxy_set_header X-Real-IP $remote_addr`);
   * `pass` forwards them unchanged (set `X-Real-IP` only when absent), for a Portico behind
   * a proxy that sets them. A peer in `trusted_proxies` is treated as `pass`.
   * `X-Forwarded-For` is appended to either way. Default `strip`.
   */
  forwarded_headers: z.enum(['strip', 'pass']).default('strip'),
  /** Pass the upstream's `Server` response header to clients (nginx `proxy_pass_header Server`). Default false: it is removed, masking the backend. */
  pass_server_header: z.boolean().default(false),
  /** Request and response buffering of this route; both on by default. */
  buffering: routeBufferingSchema.default(() => routeBufferingSchema.parse({})),
  /**
   * Add an RFC 7239 `Forwarded` element (`for`, `host`, `proto`) upstream: appended to the
   * received field when the peer is a trusted proxy, replacing it otherwise. Default false.
   */
  forwarded: z.boolean().default(false),
  /** Access rules of this route, after the listener's (nginx `allow`/`deny` in a `location`): first match decides, 403 when it denies. Default: none. */
  access: z.array(accessRuleSchema).default([]),
  /** Rate limits of this route; a request must pass every one. Default: none. */
  rate_limits: z.array(rateLimitSchema).default([]),
  /** Cap on the requests in progress at once of this route per key (nginx `limit_conn`). Default: none. */
  limit_conn: limitConnSchema.optional(),
  /** Rules for the request header fields sent upstream, applied after Portico's own (Host, X-Forwarded-*, Via). Default: none. */
  request_headers: headerRulesSchema.optional(),
  /** Rules for the response header fields sent to the client from upstream responses (not Portico's own error responses); `remove: [X-Powered-By]` hides what the backend runs. Default: none. */
  response_headers: headerRulesSchema.optional(),
}).refine((r) => !(r.strip_prefix && r.prefix_rewrite !== undefined), { message: 'set either strip_prefix or prefix_rewrite, not both', path: ['prefix_rewrite'] })

/** Downstream (client-side) timeouts. */
export const listenerTimeoutsSchema = z.strictObject({
  /** Time allowed to receive the whole request header section (slowloris guard; nginx client_header_timeout). Default `"10s"`. */
  header_read: duration.default(10_000),
  /** Idle time allowed on a client keep-alive connection between requests (nginx keepalive_timeout). Default `"75s"`. */
  keepalive: duration.default(75_000),
  /** Longest silence while reading a request body from the client (nginx client_body_timeout). Default `"60s"`. */
  body_idle: duration.default(60_000),
  /** Longest time a client may take no byte of a response Portico has for it (nginx send_timeout): the connection is then closed. HTTP/1.1 connections. Default `"60s"`. */
  send: duration.default(60_000),
})

/**
 * The TLS 1.2 cipher suites of Mozilla's "intermediate" server profile (version 5.7) less
 * its DHE suites: ECDHE key exchange and AEAD ciphers only, ECDSA first.
 */
export const INTERMEDIATE_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

/** Whether OpenSSL knows at least one TLS 1.2 suite of `list` (`tls.createSecureContext` throws `no cipher match` otherwise). */
function validCipherList(list: string): boolean {
  try {
    tls.createSecureContext({ ciphers: list })
    return true
  } catch {
    return false
  }
}

/** `Strict-Transport-Security` of a TLS listener (RFC 6797 §6.1). */
export const hstsSchema = z.strictObject({
  /** How long browsers remember to use https only for this host (`max-age`, sent in whole seconds). Default `"8760h"` (one year). */
  max_age: duration.default(31_536_000_000),
  /** Apply to every sub-domain too (`includeSubDomains`). Default false. */
  include_subdomains: z.boolean().default(false),
  /** Add `preload`, asking to be listed in browsers' preload lists (hstspreload.org needs `include_subdomains` and a max_age of a year or more). Default false. */
  preload: z.boolean().default(false),
})

/** HTTP/2 settings of a TLS listener (RFC 9113 §6.5.2). */
export const listenerHttp2Schema = z.strictObject({
  /** SETTINGS_MAX_CONCURRENT_STREAMS: most streams (requests) a client may have open at once on one connection; more are refused with `RST_STREAM(REFUSED_STREAM)`, which clients retry. Default 128 (nginx `http2_max_concurrent_streams`). */
  max_concurrent_streams: z.number().int().min(1).max(2 ** 31 - 1).default(128),
})

/**
 * TLS termination of a listener (RFC 8446; nginx `listen ... ssl`, `ssl_*` directives).
 * Certificates are re-read from disk on every reload.
 */
export const listenerTlsSchema = z.strictObject({
  /**
   * Certificates served; at least one. The first is the default (clients without SNI, or
   * a name no certificate has); the others are chosen by SNI from the DNS names of their
   * subjectAltName (or CN when there is none), `*.example.com` wildcards included.
   */
  certificates: z.array(listenerCertificateSchema).min(1, 'a TLS listener needs at least one certificate'),
  /** Oldest TLS version accepted, `TLSv1.2` or `TLSv1.3` (nginx `ssl_protocols`). Default `TLSv1.2`. */
  min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  /** Application protocols offered by ALPN (RFC 7301), `h2` (HTTP/2, RFC 9113) and `http/1.1`. Default `[h2, http/1.1]`. */
  alpn: z.array(z.enum(['h2', 'http/1.1'])).min(1, 'offer at least one protocol').default(['h2', 'http/1.1']),
  /**
   * TLS 1.2 cipher suites offered, an OpenSSL cipher list (nginx `ssl_ciphers`). Default:
   * Mozilla's "intermediate" profile without DHE: ECDHE key exchange (forward secrecy) with
   * AEAD ciphers (AES-GCM, ChaCha20-Poly1305) only. TLS 1.3 suites are not set here: they
   * are Node's defaults, all AEAD with forward secrecy.
   */
  ciphers: z.string().min(1).refine(validCipherList, 'no TLS 1.2 cipher suite of this list is known to OpenSSL (expected a list such as "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")').default(INTERMEDIATE_CIPHERS),
  /**
   * `Strict-Transport-Security` added to every response of this listener (RFC 6797;
   * nginx `add_header Strict-Transport-Security ... always`), so browsers use https only.
   * Default: none.
   */
  hsts: hstsSchema.optional(),
})

/** A listener: where Portico accepts client connections. */
export const listenerSchema = z.strictObject({
  /** `host:port` to listen on. */
  address,
  timeouts: listenerTimeoutsSchema.default(() => listenerTimeoutsSchema.parse({})),
  /** Largest request header section accepted from clients; larger gets 431. Default `"16KiB"`. */
  max_header_size: size.default(16 * 1024),
  /** Largest request body accepted; larger gets 413 (nginx `client_max_body_size`). Default: no limit. */
  max_request_body_size: size.optional(),
  /** Most client connections open at once on this listener; more are refused at accept. Default: no limit. */
  max_connections: z.number().int().min(1).optional(),
  /**
   * Request methods answered with 405 before routing (nginx denies TRACE always). CONNECT
   * is refused whatever this says: Portico is not a forward proxy. Default `[TRACE]`.
   */
  deny_methods: z.array(z.string().regex(/^[A-Z]+$/, 'expected a method name in upper case, e.g. "TRACE"')).default(['TRACE']),
  /**
   * A percent-encoded slash (`%2F`) in a request path: `reject` answers 400
   * (`path_encoded_slash`), as Apache's `AllowEncodedSlashes Off` refuses it; `keep` routes
   * and forwards it still encoded, never as a separator. Default `reject`.
   */
  encoded_slashes: z.enum(['reject', 'keep']).default('reject'),
  /** Access rules of this listener, before routing (nginx `allow`/`deny` in a `server`): first match decides, 403 when it denies. Default: none. */
  access: z.array(accessRuleSchema).default([]),
  /** Terminate TLS on this listener (HTTPS, with HTTP/2 by ALPN). Default: none, plain HTTP. */
  tls: listenerTlsSchema.optional(),
  /** HTTP/2 settings, for a `tls` listener that offers `h2`. */
  http2: listenerHttp2Schema.default(() => listenerHttp2Schema.parse({})),
  /**
   * Answer every request of this plain listener with `308 Permanent Redirect` to the same
   * host and path over https: the HTTPS port, or `true` for 443 (nginx
   * `return 308 https://$host$request_uri`). Default: none (requests are proxied).
   */
  redirect_to_https: z.union([z.literal(true), z.number().int().min(1).max(65535)]).optional(),
}).refine((l) => !(l.tls && l.redirect_to_https !== undefined), { message: 'redirect_to_https is for a plain listener; this one has tls', path: ['redirect_to_https'] })

/** Access log settings (DESIGN.md §4). */
export const accessLogSchema = z.strictObject({
  /** `json` (one JSON object a line) or `text` (for humans). Default `json`. */
  format: z.enum(['json', 'text']).default('json'),
  /** File to append to, or `"-"` for standard output. Default `"-"`. */
  path: z.string().default('-'),
})

/** Admin API settings. */
export const adminSchema = z.strictObject({
  /** `host:port` of the admin API; loopback by default. A non-loopback address needs `token_file`. */
  address: address.default('127.0.0.1:9901'),
  /**
   * Path of a file holding the bearer token every admin request but `GET /healthz` must
   * send (`Authorization: Bearer <token>`, RFC 6750); surrounding white space is ignored.
   * Read at start. Default: none, no token (allowed on a loopback address only).
   */
  token_file: z.string().min(1).optional(),
}).refine((a) => a.token_file !== undefined || isLoopbackAddress(a.address), {
  message: 'the admin API on a non-loopback address needs admin.token_file: anyone who reaches it could read the config and reload it',
  path: ['token_file'],
})

export { isLoopbackAddress } from './address.ts'
/**
 * Limits on what one client may hold at once, across listeners (nginx `limit_conn`;
 * HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` as a per-connection bound).
 */
export const clientLimitsSchema = z.strictObject({
  /** Requests of one HTTP/2 connection handled at once; its other streams wait, in order. HTTP/1.1 connections always handle their pipelined requests one at a time. Default 128 (nginx `http2_max_concurrent_streams`). */
  max_requests_per_connection: z.number().int().min(1).default(128),
  /** Requests of one HTTP/1.1 connection parsed and waiting their turn beyond which Portico stops reading the connection until they drain. Default 16. */
  max_queued_per_connection: z.number().int().min(1).default(16),
  /** Requests one client address may have in progress at once; one more gets 429 `http_request_denied`. Default: no cap (behind a load balancer every client shares its address). */
  max_requests_per_client_ip: z.number().int().min(1).optional(),
})

/**
 * Sizes and caps of request and response buffering (routes turn buffering on or off).
 * Past the caps a request body or a response streams instead of being buffered.
 */
export const bufferingSchema = z.strictObject({
  /** Bytes of one request body or one response held in memory before the rest goes to a temporary file (nginx `client_body_buffer_size`, `proxy_buffers`). Default `"64KiB"`. */
  memory: size.default(64 * 1024),
  /** Largest temporary file of one request body or one response (nginx `proxy_max_temp_file_size`). Default `"1GiB"`. */
  max_temp_file: size.default(1024 ** 3),
  /** Memory held by all buffers of the process together; beyond it buffers go to temporary files at once. Default `"256MiB"`. */
  max_memory: size.default(256 * 1024 ** 2),
  /** Bytes in temporary files of the process together; beyond it request bodies and responses stream unbuffered. Default `"4GiB"`. */
  max_temp_total: size.default(4 * 1024 ** 3),
  /** Directory of the temporary files (created when missing). Each file is unlinked as soon as it is created, so none outlives the process. Default: `portico` in the system temporary directory. */
  temp_dir: z.string().min(1).optional(),
})

/** A Redis server shared by the Portico hosts of a fleet (node-redis). */
export const redisSchema = z.strictObject({
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. */
  url: z.string().regex(/^rediss?:\/\/\S+$/, 'expected a Redis URL, e.g. "redis://127.0.0.1:6379"'),
  /** Longest wait for one Redis command (and for a connect), in ms; beyond it the request goes on as `on_store_error` says. Default `"50ms"`. */
  timeout: duration.default(50),
  /** Prefix of every key Portico writes. Default `"portico:"`. */
  key_prefix: z.string().default('portico:'),
})

/** Graceful shutdown on SIGTERM/SIGINT (drain). */
export const shutdownSchema = z.strictObject({
  /** Longest wait for in-flight requests after Portico stops accepting; connections still open then are closed. Default `"30s"` (Envoy --drain-time-s is 600s, Kubernetes terminationGracePeriodSeconds 30s). */
  drain_timeout: duration.default(30_000),
})

/**
 * Worker processes (`workers`): `auto` is one per CPU the process may use
 * (`os.availableParallelism()`), as Envoy's `--concurrency`, Caddy and Traefik default to;
 * a number is that many (nginx `worker_processes`). With 1 there is no primary process.
 */
export const workersSchema = z.union([z.literal('auto'), z.number().int().min(1).max(256)], { error: 'expected "auto" or a number of worker processes from 1 to 256' })

/** The whole portico.yaml. */
export const configSchema = z.strictObject({
  /** Worker processes serving requests: `auto` (one per CPU, the default) or a number; 1 runs a single process with no primary. Read at start; a reload does not change it. */
  workers: workersSchema.default('auto'),
  listeners: z.array(listenerSchema).min(1, 'at least one listener is needed'),
  routes: z.array(routeSchema).min(1, 'at least one route is needed'),
  upstreams: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'upstream names use letters, digits, "_", "." and "-"'), upstreamSchema),
  access_log: accessLogSchema.default(() => accessLogSchema.parse({})),
  /** Admin API; omitted means no admin listener. */
  admin: adminSchema.optional(),
  shutdown: shutdownSchema.default(() => shutdownSchema.parse({})),
  /** The response store of the routes that cache. */
  cache: cacheStoreSchema.default(() => cacheStoreSchema.parse({})),
  /** What one client connection and one client address may hold at once. */
  limits: clientLimitsSchema.default(() => clientLimitsSchema.parse({})),
  /** Sizes and caps of request and response buffering. */
  buffering: bufferingSchema.default(() => bufferingSchema.parse({})),
  /** Put internal addresses and raw error text in error responses (`Proxy-Status` details and next-hop, error page). Default false: the backend is masked. */
  expose_error_details: z.boolean().default(false),
  /**
   * Peers whose `X-Forwarded-For` (or `Forwarded`) is believed (nginx `set_real_ip_from` with
   * `real_ip_recursive on`): the client address used by rules, limits and logs is found by
   * walking that field from the right past every trusted address. Default: none (the
   * socket's address is the client's).
   */
  trusted_proxies: z.array(cidr).default([]),
  /** Field a trusted proxy names the client in: `x-forwarded-for` or `forwarded` (RFC 7239) (nginx `real_ip_header`). Default `x-forwarded-for`. */
  real_ip_header: z.enum(['x-forwarded-for', 'forwarded']).default('x-forwarded-for'),
  /** The Redis of `scope: redis` rate limits. Default: none. */
  redis: redisSchema.optional(),
  /** Name this proxy uses in `Proxy-Status` and `Via`. Default `"portico"`. */
  proxy_name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'expected a token of letters, digits, "_", "." and "-" (RFC 9209 proxy name)').default('portico'),
}).superRefine((cfg, ctx) => {
  // Runs even when other keys failed (see `when`), so the input may be partial: guard every step.
  if (!Array.isArray(cfg.routes)) return
  const upstreams: object = cfg.upstreams !== null && typeof cfg.upstreams === 'object' ? cfg.upstreams : {}
  cfg.routes.forEach((r, i) => {
    if (Array.isArray(r?.rate_limits) && cfg.redis === undefined) {
      r.rate_limits.forEach((l, j) => {
        if (l?.scope === 'redis') ctx.addIssue({ code: 'custom', path: ['routes', i, 'rate_limits', j, 'scope'], message: 'scope redis needs the top-level redis (url of the Redis server)' })
      })
    }
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
export type ShutdownConfig = z.output<typeof shutdownSchema>
/** The `limits` settings with defaults applied. */
export type ClientLimitsConfig = z.output<typeof clientLimitsSchema>
/** The `buffering` settings with defaults applied: sizes in bytes. */
export type BufferingConfig = z.output<typeof bufferingSchema>
/** An access rule (`listeners[].access[]`, `routes[].access[]`) with defaults applied. */
export type AccessRuleConfig = z.output<typeof accessRuleSchema>
/** A rate limit (`routes[].rate_limits[]`) with defaults applied. */
export type RateLimitConfig = z.output<typeof rateLimitSchema>
export type LimitConnConfig = z.output<typeof limitConnSchema>
export type HeaderRulesConfig = z.output<typeof headerRulesSchema>
export type ValueMatchConfig = z.output<typeof valueMatchSchema>
export type RedisConfig = z.output<typeof redisSchema>
/** A route's cache settings (`routes[].cache`) with defaults applied: sizes in bytes, durations in ms. */
export type RouteCacheConfig = z.output<typeof routeCacheSchema>
/** The store settings (`cache`) with defaults applied. */
export type CacheStoreConfig = z.output<typeof cacheStoreSchema>
export type EndpointConfig = z.output<typeof endpointSchema>
export type HealthCheckConfig = z.output<typeof healthCheckSchema>
export type OutlierDetectionConfig = z.output<typeof outlierDetectionSchema>
/** An upstream's `dns` settings with defaults applied: durations in ms. */
export type UpstreamDnsConfig = z.output<typeof upstreamDnsSchema>
/** The config as written in YAML, before defaults. */
export type ConfigInput = z.input<typeof configSchema>
