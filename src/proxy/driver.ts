/**
 * The lifecycle driver: runs the phases of one request in order
 * (accept → parse → route → select endpoint → connect → send → await header → stream → log)
 * and loops back to endpoint selection when a failure may be retried.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Client } from 'undici'
import { CAUSES, isRetryable, type CauseType } from '../failures/causes.ts'
import { proxyStatusError } from '../failures/proxy-status.ts'
import { prefersJson, renderErrorPage } from '../failures/error-page.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { Route } from '../routing/router.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { RetryPolicy, UpstreamPool } from '../upstream/pool.ts'
import { createConnector } from '../upstream/connector.ts'
import { RequestContext } from './context.ts'
import { ClientClosedError, UpstreamExchange, type TryFailure, type TryInput } from './exchange.ts'
import { IDEMPOTENT_METHODS, isValidRequestId, upstreamRequestHeaders } from './headers.ts'
import type { Runtime } from './runtime.ts'
import { cacheLookup, type CachePlan } from '../cache/phase.ts'
import { fetchFromPool } from '../cache/refresh.ts'

/** Seconds a client is told to wait after `destination_unavailable` (RFC 9110 §10.2.3). */
const RETRY_AFTER_S = '5'

/**
 * Phase "parse": builds the request context. Runs first for every request.
 *
 * @returns the context; the request ID is the client's `X-Request-Id` when valid, else a new UUID
 */
export function parseRequest(req: IncomingMessage): RequestContext {
  const incoming = req.headers['x-request-id']
  const id = isValidRequestId(incoming as string | undefined) ? incoming as string : randomUUID()
  return new RequestContext(id, req.socket.remoteAddress ?? '', req.method ?? 'GET', req.headers.host ?? '', req.url ?? '/', `HTTP/${req.httpVersion}`)
}

/**
 * Phase "log": writes the access log line exactly once, when the downstream response is
 * over (finished, or the connection closed). A client that left first is logged as 499.
 */
function logOnClose(ctx: RequestContext, res: ServerResponse, log: AccessLogSink, onClientClose: () => void): void {
  res.once('close', () => {
    if (ctx.logged) return
    ctx.logged = true
    if (!res.writableFinished && ctx.downstream === 'completed') {
      ctx.downstream = 'client_closed'
      ctx.status = 499
      onClientClose()
    }
    log.write(ctx)
  })
}

/**
 * Answers a proxy-generated error: status from the cause table, `Proxy-Status` with the
 * RFC 9209 type, `X-Request-Id`, an HTML or JSON page by `Accept`. If the response has
 * already started, the downstream connection is aborted instead.
 */
export function sendError(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, type: CauseType, detail: string | null, statusOverride?: number): void {
  ctx.error = type
  ctx.details = detail
  if (res.headersSent || res.destroyed) {
    ctx.downstream = 'aborted'
    res.destroy()
    return
  }
  const status = statusOverride ?? CAUSES[type].status ?? 502
  const expose = rt.config.expose_error_details
  const page = renderErrorPage({ type, status, requestId: ctx.requestId, detail, endpoint: ctx.endpoint, expose }, prefersJson(req.headers.accept))
  const body = Buffer.from(page.body)
  const headers: Record<string, string> = {
    'content-type': page.contentType,
    'content-length': String(body.length),
    'cache-control': 'no-store',
    'proxy-status': proxyStatusError(rt.config.proxy_name, type, expose ? detail : null, expose ? ctx.endpoint : null),
    'x-request-id': ctx.requestId,
  }
  if (type === 'destination_unavailable' || type === 'connection_limit_reached') headers['retry-after'] = RETRY_AFTER_S
  ctx.status = status
  res.writeHead(status, headers)
  if (req.method === 'HEAD') {
    res.end()
  } else {
    ctx.bytesSent = body.length
    res.end(body)
  }
}

/**
 * Whether a failed try goes on to another try (Pingora's and Envoy's retry rules):
 * - never once request body bytes were taken from the client;
 * - an upstream status listed in `retries.on` (pre-approved before the try): another try;
 * - `connection_terminated` on a reused keep-alive connection (`reset`): idempotent methods
 *   only, once, on a fresh connection — the keep-alive race, where the upstream closed the
 *   idle connection as the request was written;
 * - nothing sent (`connect_failure`): any method, within `retries.attempts`;
 * - `http_response_timeout` when listed: idempotent methods, within `retries.attempts`.
 */
function retryDecision(f: TryFailure, policy: RetryPolicy, idempotent: boolean, bodyConsumed: number, attempts: number, maxAttempts: number, raceRetried: boolean): 'another' | 'fresh' | 'no' {
  if (bodyConsumed > 0) return 'no'
  if (f.type === null) return 'another'
  if (f.type === 'connection_terminated') {
    return policy.reset && !raceRetried && isRetryable(f.type, idempotent, f.reused) ? 'fresh' : 'no'
  }
  if (attempts >= maxAttempts) return 'no'
  if (!f.sent && isRetryable(f.type, idempotent, f.reused)) return policy.connect ? 'another' : 'no'
  if (f.type === 'http_response_timeout' && policy.timeout && idempotent) return 'another'
  return 'no'
}

/**
 * Creates the request handler of the listeners: the lifecycle driver.
 *
 * @param getRuntime returns the runtime (routes, pools, config) in force; read once per
 *   request so a reload never changes a request mid-flight
 * @param log the access log
 * @param opts the listener's scheme and limits
 */
export function createProxyHandler(getRuntime: () => Runtime, log: AccessLogSink, opts: HandlerOptions) {
  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const rt = getRuntime()
    const ctx = parseRequest(req)
    let current: UpstreamExchange | null = null
    logOnClose(ctx, res, log, () => current?.abort(new ClientClosedError()))

    // Phase "route".
    const target = req.url ?? '/'
    if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
      // Absolute-form is for forward proxies; a gateway only accepts origin-form (RFC 9112 §3.2.1).
      ctx.status = 400
      res.writeHead(400, { 'content-type': 'text/plain', 'x-request-id': ctx.requestId, 'content-length': '12' })
      res.end('bad request\n')
      return
    }
    const route = rt.router.match(req.headers.host, target)
    if (route === null) {
      sendError(ctx, req, res, rt, 'destination_not_found', `no route for host "${req.headers.host ?? ''}" and path "${target}"`)
      return
    }
    ctx.route = route.name
    ctx.upstream = route.upstream
    const pool = rt.pools.get(route.upstream)
    if (pool === undefined) {
      sendError(ctx, req, res, rt, 'proxy_configuration_error', `route ${route.name} names unknown upstream ${route.upstream}`)
      return
    }
    proxy(ctx, req, res, rt, route, pool, opts, (ex) => { current = ex }).catch((err: Error) => {
      sendError(ctx, req, res, rt, 'proxy_internal_error', err.message)
    })
  }
}

/** Listener-level limits the driver enforces. */
export interface HandlerOptions {
  /** `http` or `https`, the scheme clients use on this listener. */
  scheme: string
  /** Largest request body accepted in bytes (413 beyond), or null. */
  maxBodyBytes: number | null
}

/** Phases "select endpoint" to "stream response", with retries. */
async function proxy(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, route: Route, pool: UpstreamPool, opts: HandlerOptions, setCurrent: (ex: UpstreamExchange | null) => void): Promise<void> {
  const method = req.method ?? 'GET'
  const idempotent = IDEMPOTENT_METHODS.has(method)
  const host = req.headers.host ?? ''
  let path = req.url ?? '/'
  if (route.stripPrefix && route.prefix) path = path.slice(route.prefix.length) || '/'
  if (path.charCodeAt(0) === 63 /* ? */) path = '/' + path
  const contentLength = req.headers['content-length']
  const hasBody = contentLength !== undefined ? contentLength !== '0' : req.headers['transfer-encoding'] !== undefined
  if (opts.maxBodyBytes !== null && contentLength !== undefined && Number(contentLength) > opts.maxBodyBytes) {
    sendError(ctx, req, res, rt, 'http_request_denied', `request body of ${contentLength} bytes is over the limit of ${opts.maxBodyBytes}`, 413)
    return
  }
  const via = `${req.httpVersion} ${rt.config.proxy_name}`
  const cfg = pool.config
  const policy = pool.retryPolicy
  const headerTimeoutMs = cfg.retries.per_try_timeout !== undefined ? Math.min(cfg.retries.per_try_timeout, cfg.timeouts.response_header) : cfg.timeouts.response_header
  // Phase "cache lookup" (src/cache/phase.ts): a stored response answers here; else the plan joins every try.
  let plan: CachePlan | null = null
  if (route.config.cache?.enabled) {
    const refresh = (extra: Record<string, string>) => fetchFromPool(pool, path, upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
      host: host || pool.name, forwardedHost: host, proto: opts.scheme, clientIp: ctx.clientIp, requestId: ctx.requestId, via,
    }), extra, headerTimeoutMs)
    plan = await cacheLookup({ ctx, req, res, cache: rt.cache, config: route.config.cache, scheme: opts.scheme, refresh }, rt.config.proxy_name)
    if (plan === null) return
  }
  const tried: Endpoint[] = []
  let raceRetried = false
  let fresh = false
  let inRetry = false
  let endpoint: Endpoint | null = null
  pool.active++
  try {
    for (;;) {
      if (!fresh) {
        endpoint = pool.select(tried)
        if (endpoint === null) {
          if (plan?.onFailure('destination_unavailable')) return
          sendError(ctx, req, res, rt, 'destination_unavailable', `upstream ${pool.name} has no endpoint available`)
          return
        }
        tried.push(endpoint)
      }
      const ep = endpoint as Endpoint
      ctx.attempts++
      ctx.endpoint = ep.label
      ctx.timings.dns_ms = ctx.timings.connect_ms = ctx.timings.tls_ms = ctx.timings.ttfb_ms = null
      ctx.connectionReused = false
      if (ep.pending >= cfg.limits.max_pending) {
        ep.lastError = { type: 'connection_limit_reached', at: Date.now(), detail: 'pending queue full' }
        sendError(ctx, req, res, rt, 'connection_limit_reached', `endpoint ${ep.label} has ${ep.pending} requests waiting for a connection (limits.max_pending ${cfg.limits.max_pending})`)
        return
      }
      const statusRetryOk = policy.statuses.size > 0 && idempotent && !hasBody && ctx.attempts < cfg.retries.attempts && (inRetry || pool.retryAllowed())
      const input: TryInput = {
        ctx, req, res, method, path, hasBody,
        headers: upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
          host: route.preserveHost && host ? host : ep.label,
          forwardedHost: host,
          proto: opts.scheme,
          clientIp: ctx.clientIp,
          requestId: ctx.requestId,
          via,
        }),
        timeouts: cfg.timeouts,
        headerTimeoutMs,
        retryStatuses: statusRetryOk ? policy.statuses : null,
        queueTimeoutMs: ep.inFlight - ep.pending >= cfg.limits.max_connections ? cfg.limits.queue_timeout : null,
        maxBodyBytes: opts.maxBodyBytes,
        proxyName: rt.config.proxy_name,
        via,
      }
      if (plan !== null) {
        input.headers = plan.headers(input.headers)
        input.tee = plan.tee
      }
      const ex = new UpstreamExchange(input, ep)
      setCurrent(ex)
      let dispatcher: Client | null = null
      if (fresh) {
        // The keep-alive race retry must not land on another stale pooled connection.
        dispatcher = new Client(ep.origin, { connect: createConnector({ connectTimeoutMs: cfg.timeouts.connect }), pipelining: 1, headersTimeout: 0, bodyTimeout: 0, maxHeaderSize: cfg.max_response_header_size })
      }
      const failure = await ex.run(dispatcher ?? ep.dispatcher)
      if (dispatcher) void dispatcher.close().catch(() => {})
      if (ctx.downstream !== 'client_closed') pool.report(ep, failure?.type ?? null, failure === null ? ctx.upstreamStatus : failure.status)
      if (failure === null) return
      if (res.destroyed || ctx.downstream !== 'completed') return
      let decision = retryDecision(failure, policy, idempotent, ex.bodyConsumed, ctx.attempts, cfg.retries.attempts, raceRetried)
      if (decision !== 'no' && !inRetry) {
        if (failure.type !== null && !pool.retryAllowed()) {
          decision = 'no'
          failure.detail += '; not retried: retry budget exhausted'
        } else {
          inRetry = true
          pool.retrying++
        }
      }
      if (decision === 'no') {
        const type = failure.type ?? 'proxy_internal_error'
        if (failure.type !== null && plan?.onFailure(failure.type)) return
        sendError(ctx, req, res, rt, type, failure.detail, type === 'http_request_denied' ? 413 : undefined)
        return
      }
      fresh = decision === 'fresh'
      if (fresh) raceRetried = true
    }
  } finally {
    pool.active--
    if (inRetry) pool.retrying--
    plan?.finish()
  }
}
