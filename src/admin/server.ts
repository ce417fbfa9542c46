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
 * | `POST /reload`     | re-reads the config file; 200 with a summary, or 400 with the problems |
 * | `GET /metrics`     | Prometheus text |
 * | `GET /healthz`     | 200 `{"status":"ok"}` |
 * | `POST /cache/purge` | removes stored responses: `{"url": "..."}` or `{"prefix": "..."}`; 200 `{"purged": N}` |
 *
 * Unknown paths get 404 and known paths with another method 405 (with `Allow`), as JSON.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { FailureRing } from '../observe/failures.ts'
import type { Metrics } from '../observe/metrics.ts'
import { attemptStateOf } from '../proxy/attempt.ts'
import type { RetryCounts } from '../proxy/retries.ts'
import type { Runtime } from '../proxy/runtime.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { NameStatus } from '../upstream/names.ts'
import type { ReloadOutcome } from '../server/reload.ts'
import { purge, readAdminBody } from '../cache/admin.ts'

/** What the admin API reads and drives; the Gateway implements it. */
export interface AdminTarget {
  /** The runtime in force (config, routes, pools). */
  readonly runtime: Runtime
  readonly failures: FailureRing
  readonly metrics: Metrics
  /** Re-reads the config the gateway was started from and applies it. Never throws for a bad config. */
  reloadFromSource(): Promise<ReloadOutcome>
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
  /** Times ejected since the pool started, when the endpoint counts them. */
  ejections: number | null
  ejected_until: string | null
  /** From undici `Pool.stats`: `connected` sockets, `free` (idle) ones, requests `pending` (queued) and `running`. */
  connections: { connected: number; free: number; pending: number; running: number }
  in_flight: number
  requests: number
  last_error: { type: string; at: string; detail: string } | null
}

/** The endpoint state the view is made of: `Endpoint.snapshot()` when it exists, else the public fields. */
interface EndpointState {
  healthy: boolean
  downReason: string | null
  downDetail?: string | null
  ejectedUntil: number
  ejections?: number
  inFlight: number
  requests: number
  lastError: { type: string; at: number; detail: string } | null
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
  const snapshot = (ep as { snapshot?: (now: number) => EndpointState }).snapshot
  const st: EndpointState = typeof snapshot === 'function' ? snapshot.call(ep, now) : ep
  const s = ep.dispatcher.stats
  const ejected = st.ejectedUntil > now
  return {
    url: ep.url,
    address: ep.label,
    resolved_from: ep.resolvedFrom ?? null,
    weight: ep.weight,
    state: !st.healthy ? 'unhealthy' : ejected ? 'ejected' : 'healthy',
    available: st.healthy && !ejected,
    reason: st.downReason,
    reason_detail: st.downDetail ?? null,
    ejections: st.ejections ?? null,
    ejected_until: ejected ? new Date(st.ejectedUntil).toISOString() : null,
    connections: { connected: s.connected, free: s.free, pending: s.pending, running: s.running },
    in_flight: st.inFlight,
    requests: st.requests,
    last_error: st.lastError && { type: st.lastError.type, at: new Date(st.lastError.at).toISOString(), detail: st.lastError.detail },
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
export function upstreamsView(rt: Runtime): { upstreams: Array<{ name: string; load_balancing: string; retries: RetryView; endpoints: EndpointView[]; names: NameView[] }> } {
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

type Reply = { status: number; body: unknown } | { status: number; text: string; contentType: string }
type Handler = (target: AdminTarget, body: string) => Reply | Promise<Reply>

const ROUTES: Record<string, Record<string, Handler>> = {
  '/upstreams': { GET: (t) => ({ status: 200, body: upstreamsView(t.runtime) }) },
  '/failures': { GET: (t) => ({ status: 200, body: { total: t.failures.total, capacity: t.failures.capacity, failures: t.failures.list() } }) },
  '/config': { GET: (t) => ({ status: 200, body: redact(t.runtime.config) }) },
  '/reload': {
    POST: async (t) => {
      const r = await t.reloadFromSource()
      return r.ok ? { status: 200, body: { ok: true, ...r.summary } } : { status: 400, body: r }
    },
  },
  '/metrics': { GET: async (t) => ({ status: 200, text: await t.metrics.render(), contentType: t.metrics.contentType }) },
  '/healthz': { GET: () => ({ status: 200, body: { status: 'ok' } }) },
  '/cache/purge': { POST: (t, body) => purge(t.runtime.cache, body) },
}

/** The admin API server. */
export class AdminServer {
  readonly server: http.Server
  readonly #sockets = new Set<Socket>()

  /** @param target the gateway whose state the API shows */
  constructor(target: AdminTarget) {
    this.server = http.createServer((req, res) => {
      void this.#handle(target, req).then((reply) => send(res, reply), (err: Error) => {
        send(res, { status: 500, body: { error: 'proxy_internal_error', message: err.message } })
      })
    })
    this.server.on('connection', (s: Socket) => {
      this.#sockets.add(s)
      s.once('close', () => this.#sockets.delete(s))
    })
  }

  async #handle(target: AdminTarget, req: http.IncomingMessage): Promise<Reply> {
    const body = await readAdminBody(req)
    const path = new URL(req.url ?? '/', 'http://admin').pathname.replace(/\/+$/, '') || '/'
    const methods = ROUTES[path]
    if (!Object.hasOwn(ROUTES, path)) return { status: 404, body: { error: 'not_found', message: `no admin endpoint ${path}`, endpoints: Object.keys(ROUTES) } }
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET'
    const handler = methods[method]
    if (handler === undefined) return { status: 405, body: { error: 'method_not_allowed', message: `${req.method} not allowed on ${path}`, allow: Object.keys(methods) } }
    return handler(target, body)
  }

  /**
   * Listens on `host:port` (port 0 picks a free one).
   *
   * @returns the bound address
   * @throws {Error} when the address cannot be bound (EADDRINUSE, EACCES)
   */
  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject)
        resolve()
      })
    })
    return this.server.address() as AddressInfo
  }

  /** The bound address, or null before `listen`. */
  get address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null
  }

  /** Stops listening and closes every admin connection at once (admin requests are short). */
  async close(): Promise<void> {
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
  }
  if (reply.status === 405 && 'body' in reply) headers.allow = (reply.body as { allow: string[] }).allow.join(', ')
  res.writeHead(reply.status, headers)
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
