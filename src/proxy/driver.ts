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
import type { UpstreamPool } from '../upstream/pool.ts'
import { createConnector } from '../upstream/connector.ts'
import { RequestContext } from './context.ts'
import { ClientClosedError, UpstreamExchange, type TryFailure, type TryInput } from './exchange.ts'
import { IDEMPOTENT_METHODS, isValidRequestId, upstreamRequestHeaders } from './headers.ts'
import type { Runtime } from './runtime.ts'

/** Seconds a client is told to wait after `destination_unavailable` (RFC 9110 §10.2.3). */
const RETRY_AFTER_S = '5'

/**
 * Phase "parse": builds the request context. Runs first for every request.
 *
 * @returns the context; the request ID is the client's `X-Request-Id` when valid, else a new UUID
 */
export function parseRequest(req: IncomingMessage, scheme: string): RequestContext {
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
 * Whether a failed try may go to another try (Pingora's retry rules):
 * - nothing was sent (connect refused/timeout, DNS): any method, within `retries.attempts`;
 * - `connection_terminated` on a reused keep-alive connection: idempotent methods only,
 *   once, on a fresh connection (the keep-alive race: the upstream closed the idle
 *   connection as the request was written);
 * - never once request body bytes were taken from the client.
 */
function retryDecision(f: TryFailure, idempotent: boolean, bodyConsumed: number, attempts: number, maxAttempts: number, raceRetried: boolean): 'another' | 'fresh' | 'no' {
  if (bodyConsumed > 0 || !isRetryable(f.type, idempotent, f.reused)) return 'no'
  if (f.type === 'connection_terminated') return raceRetried ? 'no' : 'fresh'
  return !f.sent && attempts < maxAttempts ? 'another' : 'no'
}

/**
 * Creates the request handler of the listeners: the lifecycle driver.
 *
 * @param getRuntime returns the runtime (routes, pools, config) in force; read once per
 *   request so a reload never changes a request mid-flight
 * @param log the access log
 * @param scheme `http` or `https`, the scheme clients use on this listener
 */
export function createProxyHandler(getRuntime: () => Runtime, log: AccessLogSink, scheme: string) {
  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const rt = getRuntime()
    const ctx = parseRequest(req, scheme)
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
    proxy(ctx, req, res, rt, route, pool, scheme, (ex) => { current = ex }).catch((err: Error) => {
      sendError(ctx, req, res, rt, 'proxy_internal_error', err.message)
    })
  }
}

/** Phases "select endpoint" to "stream response", with retries. */
async function proxy(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, route: Route, pool: UpstreamPool, scheme: string, setCurrent: (ex: UpstreamExchange | null) => void): Promise<void> {
  const method = req.method ?? 'GET'
  const idempotent = IDEMPOTENT_METHODS.has(method)
  const host = req.headers.host ?? ''
  let path = req.url ?? '/'
  if (route.stripPrefix && route.prefix) path = path.slice(route.prefix.length) || '/'
  if (path.charCodeAt(0) === 63 /* ? */) path = '/' + path
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined
  const via = `${req.httpVersion} ${rt.config.proxy_name}`
  const tried: Endpoint[] = []
  let raceRetried = false
  let fresh = false
  let endpoint: Endpoint | null = null

  for (;;) {
    if (!fresh) {
      endpoint = pool.select(tried)
      if (endpoint === null) {
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
    const input: TryInput = {
      ctx, req, res, method, path, hasBody,
      headers: upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
        host: route.preserveHost && host ? host : ep.label,
        forwardedHost: host,
        proto: scheme,
        clientIp: ctx.clientIp,
        requestId: ctx.requestId,
        via,
      }),
      timeouts: pool.config.timeouts,
      proxyName: rt.config.proxy_name,
      via,
    }
    const ex = new UpstreamExchange(input, ep)
    setCurrent(ex)
    let dispatcher: Client | null = null
    if (fresh) {
      // The keep-alive race retry must not land on another stale pooled connection.
      dispatcher = new Client(ep.origin, { connect: createConnector({ connectTimeoutMs: pool.config.timeouts.connect }), pipelining: 1, headersTimeout: 0, bodyTimeout: 0, maxHeaderSize: pool.config.max_response_header_size })
    }
    const failure = await ex.run(dispatcher ?? ep.dispatcher)
    if (dispatcher) void dispatcher.close().catch(() => {})
    if (ctx.downstream !== 'client_closed') pool.report(ep, failure?.type ?? null, failure === null ? ctx.upstreamStatus : null)
    if (failure === null) return
    if (res.destroyed || ctx.downstream !== 'completed') return
    const decision = retryDecision(failure, idempotent, ex.bodyConsumed, ctx.attempts, pool.config.retries.attempts, raceRetried)
    if (decision === 'no') {
      sendError(ctx, req, res, rt, failure.type, failure.detail)
      return
    }
    fresh = decision === 'fresh'
    if (fresh) raceRetried = true
  }
}
