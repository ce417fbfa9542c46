/**
 * The admin API: JSON over HTTP on `admin.address` (loopback by default), after Envoy's
 * admin interface (`/clusters`, `/stats/prometheus`, `/config_dump`) and nginx's
 * `-s reload`. It reveals internal addresses: keep it off public interfaces.
 *
 * | method, path       | answers |
 * |---|---|
 * | `GET /upstreams`   | every upstream and endpoint: health, ejection, connections, counters, last error; the resolution of host names |
 * | `GET /failures`    | the last gateway failures (ring of 200), oldest first |
 * | `GET /config`      | the config in force, secrets redacted |
 * | `POST /reload`     | re-reads the config file; 200 with a summary, or 400 with the problems (with workers: 200 once every worker applied it, else 500 naming those that did not) |
 * | `GET /metrics`     | Prometheus text |
 * | `GET /healthz`     | 200 `{"status":"ok"}` |
 * | `GET /workers`     | the worker processes (pid, restarts, last exit) when Portico runs workers; this process alone otherwise |
 * | `GET /stats`       | the live view: upstreams and endpoints with state, rates, latency; errors of the last hour by cause; the failure feed (src/admin/stats.ts) |
 * | `GET /stats/ring`  | the live statistics ring as plain counts, for summing the rings of several processes (src/observe/live.ts) |
 * | `GET /`            | the dashboard (HTML); `GET /dashboard/sections` its live part; `/assets/*` its files (src/admin/dashboard.ts) |
 * | `GET, POST /login` | exchanges the token for a session cookie that opens the reads to a browser |
 * | `GET /cache`       | the cache: memory tier use; Redis tier state (`available`) and counts of hits, misses, writes, errors and timeouts |
 * | `POST /cache/purge` | removes stored responses: `{"url": "..."}` or `{"prefix": "..."}`; 200 `{"purged": N}` |
 *
 * Unknown paths get 404 and known paths with another method 405 (with `Allow`), as JSON.
 *
 * The guard, checked in this order before a handler runs (§9 of DESIGN.md), so that a web
 * page in an operator's browser can neither drive nor read the API:
 * - one `Host` field (else 400), naming the address the API listens on (or `localhost`
 *   when that is loopback) with the admin port, else 421: a DNS name pointing at loopback
 *   (DNS rebinding), `0.0.0.0` and an absolute-form target naming another host are refused;
 * - a present `Origin` must be the API's own (`http://<Host>`), and `Sec-Fetch-Site`, when
 *   sent, `same-origin` or `none`, else 403;
 * - with `admin.token_file`, every request but `GET /healthz` and `/login` needs
 *   `Authorization: Bearer <token>` (RFC 6750), else 401; a `GET` or `HEAD` may carry the
 *   dashboard's session cookie instead (HttpOnly, SameSite=Strict, set by `/login`);
 * - `POST` bodies must be `application/json`, else 415 (HTML forms and `text/plain`
 *   requests are what a page can send cross-site without a CORS preflight); the sign-in
 *   form of `POST /login` is the exception, behind the Origin check.
 *
 * Every refusal and every `POST` is written to the process log (reads at debug level).
 */
import { readFileSync } from 'node:fs'
import { http } from '../lib/node-http.ts'
import net, { type AddressInfo, type Socket } from 'node:net'
import { isLoopbackAddress } from '../config/address.ts'
import type { Config } from '../config/schema.ts'
import { nodeCrypto } from '../lib/lazy-builtins.ts'
import { logger } from '../lib/logger.ts'
import type { FailureRing } from '../observe/failures.ts'
import type { Metrics } from '../observe/metrics.ts'
import { attemptStateOf } from '../proxy/attempt.ts'
import type { RetryCounts } from '../proxy/retries.ts'
import type { Runtime } from '../proxy/runtime.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { NameStatus } from '../upstream/names.ts'
import type { ReloadOutcome } from '../server/reload.ts'
import { cacheView, purge, readAdminBody } from '../cache/admin.ts'
import type { LiveExport } from '../observe/live.ts'
import { DASHBOARD_CSP, dashboardAsset, renderLogin, renderPage, renderSections, sessionCookie, sessionOf, sessionValue } from './dashboard.ts'
import { sampleStates, StateSince, statsView, type StatsSource } from './stats.ts'


/** What the admin API reads and drives in one process; the Gateway implements it. */
export interface AdminTarget {
  /** The runtime in force (config, routes, pools). */
  readonly runtime: Runtime
  readonly failures: FailureRing
  readonly metrics: Metrics
  /** The live statistics ring (the dashboard's counts); a primary gives the sum of its workers'. Without it the views show states only. */
  readonly live?: { export(now?: number): LiveExport }
  /** Whether Portico is stopping: endpoints show as draining. */
  readonly draining?: boolean
  /** Pools replaced by a reload that still have requests in flight. */
  retiringPools?(): UpstreamPool[]
  /** Re-reads the config the gateway was started from and applies it. Never throws for a bad config. */
  reloadFromSource(): Promise<ReloadOutcome>
}

/**
 * What the admin API shows and drives, route by route: one process's gateway
 * ({@link localView} of an {@link AdminTarget}), or the whole host as a cluster primary
 * sees it (src/admin/host.ts: every worker's state merged).
 */
export interface AdminView {
  /** The config in force. */
  readonly config: Config
  /** `GET /upstreams` body. */
  upstreams(): unknown
  /** `GET /failures` body. */
  failures(): unknown
  /** `GET /metrics`: Prometheus text and its content type. */
  metrics(): Promise<{ text: string; contentType: string }>
  /** `POST /reload`: re-reads the config file and applies it; never throws for a bad config. */
  reload(): Promise<Reply>
  /** `POST /cache/purge`. */
  purge(body: string): Promise<Reply>
  /** `GET /cache`: the memory tier's use and the Redis tier's state (a primary: each worker's, and the sums). */
  cache(): unknown
  /** What `GET /stats` and the dashboard read, gathered for one view (a primary asks its workers). */
  stats(): StatsSource | Promise<StatsSource>
  /** `GET /stats/ring`: the live statistics ring as counts, or null. */
  liveExport(): unknown
  /** What the dashboard's state sampler reads every few seconds, synchronously: endpoint states only. */
  readonly states: StatsSource
  /** `GET /workers`: the worker processes, when there are some. */
  workers?(): unknown
}

/** The admin view of one process's gateway. */
export function localView(t: AdminTarget): AdminView {
  return {
    get config() { return t.runtime.config },
    upstreams: () => upstreamsView(t.runtime),
    failures: () => ({ total: t.failures.total, capacity: t.failures.capacity, failures: t.failures.list() }),
    metrics: async () => ({ text: await t.metrics.render(), contentType: t.metrics.contentType }),
    reload: async () => {
      const r = await t.reloadFromSource()
      return r.ok ? { status: 200, body: { ok: true, ...r.summary } } : { status: 400, body: r }
    },
    purge: (body) => purge(t.runtime.cache, body),
    cache: () => cacheView(t.runtime.cache),
    stats: () => t,
    liveExport: () => t.live?.export() ?? null,
    states: t,
  }
}

/** One endpoint in `GET /upstreams`. Times are ISO 8601; counts since the pool was created. */
export interface EndpointView {
  url: string
  /** `host:port`, as in the access log's `endpoint`. */
  address: string
  /** The host name of `url` that `address` was resolved from; null for an IP literal or localhost endpoint. */
  resolved_from: string | null
  weight: number
  /** `healthy`, `unhealthy` (active health checks say down) or `ejected` (outlier ejection). */
  state: 'healthy' | 'unhealthy' | 'ejected'
  /** Whether new requests may go there now: healthy and not ejected. */
  available: boolean
  /** RFC 9209 type a request would have got, when not healthy or ejected. */
  reason: string | null
  /** The same reason in words, when the endpoint says. */
  reason_detail: string | null
  /** Times ejected since the pool started. */
  ejections: number
  ejected_until: string | null
  /** From the endpoint's connection pool (undici `Pool.stats` names): `connected` sockets, `free` (idle) ones, requests `pending` (queued) and `running`. */
  connections: { connected: number; free: number; pending: number; running: number }
  in_flight: number
  requests: number
  last_error: { type: string; at: string; detail: string } | null
}

/** The value that replaces secrets in `GET /config`. */
export const REDACTED = '[redacted]'

/** Key names whose values `GET /config` never shows (TLS keys, certificates, passwords, tokens). */
const SECRET_KEY = /key|secret|password|token|cert/i

/** A deep copy of `value` with the value of every key named like a secret replaced by `"[redacted]"`. */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? REDACTED : redact(v)
  return out
}

/** The admin view of one endpoint (Envoy's `/clusters` per host: health flags, connections, counters). */
export function endpointView(ep: Endpoint, now = Date.now()): EndpointView {
  const st = ep.snapshot(now)
  const s = ep.dispatcher.stats
  const ejected = st.ejectedUntil > now
  return {
    url: st.url,
    address: st.label,
    resolved_from: st.resolvedFrom,
    weight: st.weight,
    state: !st.healthy ? 'unhealthy' : ejected ? 'ejected' : 'healthy',
    available: st.available,
    reason: st.downReason,
    reason_detail: st.downDetail,
    ejections: st.ejections,
    ejected_until: ejected ? new Date(st.ejectedUntil).toISOString() : null,
    connections: { connected: s.connected, free: s.free, pending: s.pending, running: s.running },
    in_flight: st.inFlight,
    requests: st.requests,
    last_error: st.lastError && { ...st.lastError, at: new Date(st.lastError.at).toISOString() },
  }
}

/** One host name of an upstream in `GET /upstreams`: its resolution state. Times are ISO 8601. */
export interface NameView {
  name: string
  /** Addresses in use (during the grace period, the last good ones). */
  addresses: string[]
  /** TTL of the last good answer in ms, before clamping to `dns.min_ttl`/`dns.max_ttl`; null before any. */
  ttl_ms: number | null
  resolved_at: string | null
  /** When the name is resolved next; null while a resolution runs. */
  next_resolution: string | null
  /** `dns_error` or `dns_timeout` while the name fails to resolve, else null. */
  reason: string | null
  reason_detail: string | null
  /** While failing with addresses kept: when they are dropped. */
  grace_until: string | null
  /** The latest failed resolution, kept after the name resolves again. */
  last_error: { type: string; at: string; detail: string } | null
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/** The admin view of one host name's resolution. */
export function nameView(n: NameStatus): NameView {
  return {
    name: n.name,
    addresses: n.addresses,
    ttl_ms: n.ttlMs,
    resolved_at: iso(n.resolvedAt),
    next_resolution: iso(n.nextAt),
    reason: n.reason,
    reason_detail: n.reasonDetail,
    grace_until: iso(n.graceUntil),
    last_error: n.lastError && { type: n.lastError.type, at: new Date(n.lastError.at).toISOString(), detail: n.lastError.detail },
  }
}

/** The retries of one upstream in `GET /upstreams`: counts since its pool was created, and the budget in use now. */
export interface RetryView extends RetryCounts {
  /** Requests in flight to the upstream now (until their response header). */
  active: number
  /** Of those, requests holding a place in the retry budget. */
  retrying: number
}

/** The retry counts and budget of `pool`. */
export function retryView(pool: UpstreamPool): RetryView {
  const r = attemptStateOf(pool).retry
  return { ...r.counts, active: r.active, retrying: r.retrying }
}

/** `GET /upstreams` body: every upstream with its endpoints and the resolution state of its host names (`names`, empty for IP literals). */
export function upstreamsView(rt: Pick<Runtime, 'pools'>): { upstreams: Array<{ name: string; load_balancing: string; retries: RetryView; endpoints: EndpointView[]; names: NameView[] }> } {
  const now = Date.now()
  return {
    upstreams: [...rt.pools.values()].map((p) => ({
      name: p.name,
      load_balancing: p.config.load_balancing,
      retries: retryView(p),
      endpoints: p.endpoints.map((e) => endpointView(e, now)),
      names: p.names().map(nameView),
    })),
  }
}

/** An admin answer: a status and a JSON body, or text with its content type. */
export type Reply = ({ status: number; body: unknown } | { status: number; text: string | Buffer; contentType: string }) & { headers?: Record<string, string> }
/** What a handler gets beyond the target and the body. */
interface Call {
  req: http.IncomingMessage
  url: URL
  since: StateSince
  /** The token in force, or null. */
  token: string | null
}
type Handler = (view: AdminView, body: string, call: Call) => Reply | Promise<Reply>

/**
 * An HTML reply of the dashboard, with its own policy, no sniffing, and no referrer to
 * other sites (`same-origin`: with `no-referrer` the sign-in form would be posted with
 * `Origin: null`, which the guard refuses).
 */
function html(status: number, text: string, headers: Record<string, string> = {}): Reply {
  const own = { 'content-security-policy': DASHBOARD_CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' }
  return { status, text, contentType: 'text/html; charset=utf-8', headers: { ...own, ...headers } }
}

/** `GET /login?token=` or the `POST /login` form: a session cookie and a redirect to the dashboard, or the form again. */
function login(body: string, call: Call): Reply {
  if (call.token === null) return { status: 303, text: '', contentType: 'text/plain', headers: { location: '/' } }
  const given = call.req.method === 'POST' ? new URLSearchParams(body).get('token') : call.url.searchParams.get('token')
  if (given === null || given === '') return html(200, renderLogin(null))
  if (!nodeCrypto().timingSafeEqual(digest(given.trim()), digest(call.token))) {
    logger.warn({ admin: { path: '/login', status: 401, client_ip: call.req.socket.remoteAddress } }, 'admin API: dashboard sign-in with a wrong token')
    return html(401, renderLogin('That is not the token of admin.token_file.'))
  }
  return { status: 303, text: '', contentType: 'text/plain', headers: { location: '/', 'set-cookie': sessionCookie(call.token) } }
}

function asset(path: string): Handler {
  return () => {
    const a = dashboardAsset(path)
    return a === null ? { status: 404, body: { error: 'not_found' } } : { status: 200, text: a.body, contentType: a.contentType, headers: { 'x-content-type-options': 'nosniff' } }
  }
}

const ROUTES: Record<string, Record<string, Handler>> = {
  '/upstreams': { GET: async (v) => ({ status: 200, body: await v.upstreams() }) },
  '/failures': { GET: async (v) => ({ status: 200, body: await v.failures() }) },
  '/config': { GET: (v) => ({ status: 200, body: redact(v.config) }) },
  '/reload': { POST: (v) => v.reload() },
  '/metrics': { GET: async (v) => ({ status: 200, ...await v.metrics() }) },
  '/healthz': { GET: () => ({ status: 200, body: { status: 'ok' } }) },
  '/workers': {
    GET: async (v) => v.workers !== undefined
      ? { status: 200, body: await v.workers() }
      : { status: 200, body: { workers: [{ pid: process.pid, primary: false }] } },
  },
  '/stats': { GET: async (v, _b, c) => ({ status: 200, body: statsView(await v.stats(), c.since) }) },
  '/stats/ring': { GET: async (v) => ({ status: 200, body: await v.liveExport() }) },
  '/': { GET: async (v, _b, c) => html(200, renderPage(statsView(await v.stats(), c.since))) },
  '/dashboard/sections': { GET: async (v, _b, c) => html(200, renderSections(statsView(await v.stats(), c.since))) },
  '/login': { GET: (_t, b, c) => login(b, c), POST: (_t, b, c) => login(b, c) },
  '/assets/dashboard.js': { GET: asset('/assets/dashboard.js') },
  '/assets/dashboard.css': { GET: asset('/assets/dashboard.css') },
  '/assets/uPlot.iife.min.js': { GET: asset('/assets/uPlot.iife.min.js') },
  '/assets/uPlot.min.css': { GET: asset('/assets/uPlot.min.css') },
  '/cache': { GET: async (v) => ({ status: 200, body: await v.cache() }) },
  '/cache/purge': { POST: (v, body) => v.purge(body) },
}

/** Paths open without the token: liveness probes carry no secret; the sign-in checks the token itself. */
const OPEN_PATHS = new Set(['/healthz', '/login'])

/** Why the guard refused a request: the JSON `error` code, the status and the words. */
export interface AdminRefusal {
  /** `bad_request` (400), `misdirected_request` (421), `forbidden_origin` (403), `unauthorized` (401) or `unsupported_media_type` (415). */
  error: 'bad_request' | 'misdirected_request' | 'forbidden_origin' | 'unauthorized' | 'unsupported_media_type'
  status: 400 | 421 | 403 | 401 | 415
  message: string
}

/**
 * Reads the admin bearer token from `path`: the file's text without surrounding white space.
 *
 * @throws {Error} naming the file when it cannot be read or holds no token
 */
export function readAdminToken(path: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`cannot read admin.token_file: ${(err as Error).message}`, { cause: err })
  }
  const token = text.trim()
  if (token === '') throw new Error(`admin.token_file ${path} is empty: put a long random token in it, e.g. \`openssl rand -hex 32 > ${path}\``)
  if (!/^[\x21-\x7e]+$/.test(token)) throw new Error(`admin.token_file ${path}: the token must be printable ASCII without spaces (RFC 6750 b64token)`)
  return token
}

/** SHA-256 of a token: compared in constant time, whatever the lengths. */
function digest(text: string): Buffer {
  return nodeCrypto().createHash('sha256').update(text).digest()
}

/**
 * Whether `host` (a `Host` header) names the admin API listening on `port`: an IP literal
 * or `localhost`, with that port (80 when left out, RFC 9110 §7.2). A DNS name is refused
 * even when it resolves to this machine: that is how DNS rebinding reaches loopback.
 *
 * With `bound`, the address the API listens on, the name must also be that address:
 * the same IP (any IP but 0.0.0.0 and :: when it listens on all interfaces), or
 * `localhost` when it listens on loopback. `0.0.0.0` never names it: browsers have
 * reached loopback services through it from public pages.
 *
 * @param bound the IP address the API is bound to (`server.address().address`)
 */
export function adminHostAllowed(host: string | undefined, port: number, bound?: string): boolean {
  if (host === undefined) return false
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?$/.exec(host)
  if (!m) return false
  const name = (m[1] ?? m[2]).toLowerCase()
  if ((m[1] !== undefined ? !net.isIPv6(name) : !(net.isIPv4(name) || name === 'localhost'))) return false
  if (Number(m[3] ?? 80) !== port) return false
  if (bound === undefined) return true
  const all = bound === '0.0.0.0' || bound === '::'
  if (name === 'localhost') return all || isLoopbackAddress(net.isIPv6(bound) ? `[${bound}]:${port}` : `${bound}:${port}`)
  const ip = canonicalIp(name)
  if (ip === '0.0.0.0' || ip === '::') return false
  return all || ip === canonicalIp(bound)
}

/** An IP address in one spelling (`::0:1` and `::1` alike), by the WHATWG URL parser. */
function canonicalIp(ip: string): string {
  return net.isIPv6(ip) ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip
}

/**
 * The authority a request names (RFC 9112 §3.2.2): its absolute-form target's, which wins
 * over Host, else its one Host field; null when it sends more than one Host field.
 */
function requestAuthority(req: http.IncomingMessage): string | null | undefined {
  const raw = req.rawHeaders
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++
  if (hosts > 1) return null
  const target = req.url ?? '/'
  if (target.charCodeAt(0) === 47 /* / */) return req.headers.host
  try {
    return new URL(target).host
  } catch {
    return undefined
  }
}

/**
 * The guard of one request (see the module doc), before its body is read.
 *
 * @param token the digest of the bearer token, or null when none is configured
 * @param port the port the admin API listens on
 * @param session the dashboard session cookie value that opens reads (see {@link sessionValue}), or null
 * @param bound the IP address the API is bound to; Host must name it ({@link adminHostAllowed})
 * @returns why it is refused, or null to go on
 */
export function guardAdminRequest(req: http.IncomingMessage, path: string, token: Buffer | null, port: number, session: string | null = null, bound?: string): AdminRefusal | null {
  const host = requestAuthority(req)
  if (host === null) return { error: 'bad_request', status: 400, message: 'more than one Host field (RFC 9112 §3.2)' }
  if (!adminHostAllowed(host, port, bound)) {
    return { error: 'misdirected_request', status: 421, message: `Host ${JSON.stringify(host ?? '')} is not this admin API: use its address or localhost with port ${port}` }
  }
  const origin = req.headers.origin
  if (origin !== undefined && origin.toLowerCase() !== `http://${host}`.toLowerCase()) {
    return { error: 'forbidden_origin', status: 403, message: `requests from ${origin} are refused: the admin API answers no web page` }
  }
  const site = req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return { error: 'forbidden_origin', status: 403, message: `a ${site} request is refused: the admin API answers no web page` }
  }
  if (token !== null && !OPEN_PATHS.has(path) && !sessionOpens(req, session)) {
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
    if (m === null || !nodeCrypto().timingSafeEqual(digest(m[1]), token)) {
      return { error: 'unauthorized', status: 401, message: m === null ? 'this admin API needs Authorization: Bearer <token of admin.token_file>' : 'the bearer token is not the one of admin.token_file' }
    }
  }
  if (req.method === 'POST' && path !== '/login') {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type !== 'application/json') {
      return { error: 'unsupported_media_type', status: 415, message: `POST bodies must be application/json${type ? `, not ${type}` : ' (no Content-Type was sent)'}` }
    }
  }
  return null
}

/** Whether the request is a read carrying the dashboard's session cookie. */
function sessionOpens(req: http.IncomingMessage, session: string | null): boolean {
  if (session === null || (req.method !== 'GET' && req.method !== 'HEAD')) return false
  const given = sessionOf(req.headers.cookie)
  return given !== null && nodeCrypto().timingSafeEqual(digest(given), digest(session))
}

/** How often the admin API notes the state of every endpoint, for the dashboard's "since", in ms. */
export const STATE_SAMPLE_MS = 1000

/** Options of {@link AdminServer}. */
export interface AdminServerOptions {
  /** The bearer token; default: read from the config's `admin.token_file` at `listen`, none without it. */
  token?: string | null
}

/** The admin API server. */
export class AdminServer {
  readonly server: http.Server
  readonly #sockets = new Set<Socket>()
  readonly #view: AdminView
  #token: Buffer | null = null
  #tokenText: string | null = null
  #session: string | null = null
  #tokenGiven: string | null | undefined
  #port = 0
  /** The IP address listened on, which Host must name. */
  #bound: string | undefined = undefined
  readonly #since = new StateSince()
  #sampler: NodeJS.Timeout | null = null

  /** @param target the gateway whose state the API shows, or the view of a whole host (a cluster primary) */
  constructor(target: AdminTarget | AdminView, opts: AdminServerOptions = {}) {
    const view = this.#view = 'runtime' in target ? localView(target) : target
    this.#tokenGiven = opts.token
    this.server = http.createServer((req, res) => {
      void this.#handle(view, req, res).then((reply) => send(res, reply), (err: Error) => {
        send(res, { status: 500, body: { error: 'proxy_internal_error', message: err.message } })
      })
    })
    this.server.on('connection', (s: Socket) => {
      this.#sockets.add(s)
      s.once('close', () => this.#sockets.delete(s))
    })
  }

  async #handle(view: AdminView, req: http.IncomingMessage, res: http.ServerResponse): Promise<Reply> {
    const path = new URL(req.url ?? '/', 'http://admin').pathname.replace(/\/+$/, '') || '/'
    const refusal = guardAdminRequest(req, path, this.#token, this.#port, this.#session, this.#bound)
    if (refusal !== null) {
      logger.warn({ admin: { method: req.method, path, status: refusal.status, error: refusal.error, client_ip: req.socket.remoteAddress, host: req.headers.host, origin: req.headers.origin } }, `admin API refused ${req.method} ${path}: ${refusal.message}`)
      // The body is dropped unread and the connection closed after the answer.
      req.resume()
      res.shouldKeepAlive = false
      const headers: Record<string, string> = { connection: 'close' }
      if (refusal.status === 401) headers['www-authenticate'] = 'Bearer realm="portico admin"'
      if (refusal.status === 415) headers.accept = 'application/json'
      // A browser opening the dashboard without a session gets the sign-in form.
      if (refusal.status === 401 && (path === '/' || path === '/dashboard/sections') && req.method === 'GET') return html(401, renderLogin(null), headers)
      return { status: refusal.status, body: { error: refusal.error, message: refusal.message }, headers }
    }
    const body = await readAdminBody(req)
    const methods = ROUTES[path]
    if (!Object.hasOwn(ROUTES, path)) return { status: 404, body: { error: 'not_found', message: `no admin endpoint ${path}`, endpoints: Object.keys(ROUTES) } }
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET'
    const handler = methods[method]
    if (handler === undefined) return { status: 405, body: { error: 'method_not_allowed', message: `${req.method} not allowed on ${path}`, allow: Object.keys(methods) } }
    const url = new URL(req.url ?? '/', 'http://admin')
    const reply = await handler(view, body, { req, url, since: this.#since, token: this.#tokenText })
    if (method === 'POST') {
      logger.info({ admin: { method, path, status: reply.status, client_ip: req.socket.remoteAddress, body: 'body' in reply ? reply.body : undefined } }, `admin API: ${method} ${path} answered ${reply.status}`)
    } else {
      // Reads are logged at debug: a Prometheus scrape every few seconds would fill the log.
      logger.debug({ admin: { method, path, status: reply.status, client_ip: req.socket.remoteAddress } }, `admin API: ${method} ${path} answered ${reply.status}`)
    }
    return reply
  }

  /**
   * Listens on `host:port` (port 0 picks a free one). Reads `admin.token_file` first.
   *
   * @returns the bound address
   * @throws {Error} when the token file cannot be read, when `host` is not loopback and no
   *   token is set (anyone who reaches it could read the config and reload it), or when the
   *   address cannot be bound (EADDRINUSE, EACCES)
   */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const file = this.#view.config.admin?.token_file
    const token = this.#tokenGiven !== undefined ? this.#tokenGiven : file !== undefined ? readAdminToken(file) : null
    const shown = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
    if (token === null && !isLoopbackAddress(shown)) {
      throw new Error(`the admin API on ${shown} is not on loopback and has no token: set admin.token_file, or use a loopback address such as 127.0.0.1:9901`)
    }
    this.#token = token === null ? null : digest(token)
    this.#tokenText = token
    this.#session = token === null ? null : sessionValue(token)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject)
        resolve()
      })
    })
    const address = this.server.address() as AddressInfo
    this.#port = address.port
    this.#bound = address.address
    this.#sampler = setInterval(() => sampleStates(this.#view.states, this.#since), STATE_SAMPLE_MS)
    this.#sampler.unref()
    return address
  }

  /** The bound address, or null before `listen`. */
  get address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null
  }

  /** Stops listening and closes every admin connection at once (admin requests are short). */
  async close(): Promise<void> {
    if (this.#sampler !== null) clearInterval(this.#sampler)
    this.#sampler = null
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const s of this.#sockets) s.destroy()
    await closed
  }
}

function send(res: http.ServerResponse, reply: Reply): void {
  if (res.headersSent) return
  const text = 'text' in reply ? reply.text : JSON.stringify(reply.body, null, 2) + '\n'
  const headers: Record<string, string | string[]> = {
    'content-type': 'text' in reply ? reply.contentType : 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...reply.headers,
  }
  if (reply.status === 405 && 'body' in reply) headers.allow = (reply.body as { allow: string[] }).allow.join(', ')
  res.writeHead(reply.status, headers)
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
