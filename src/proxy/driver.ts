/**
 * The lifecycle driver: runs the phases of one request in order
 * (accept → parse → route → select endpoint → connect → send → await header → stream → log)
 * and loops back to endpoint selection when a failure may be retried.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CAUSES, isRetryable, type CauseType } from '../failures/causes.ts'
import { proxyStatusError } from '../failures/proxy-status.ts'
import { prefersJson, renderErrorPage } from '../failures/error-page.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { Route } from '../routing/router.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { RetryPolicy, UpstreamPool } from '../upstream/pool.ts'
import { RequestContext } from '../observe/context.ts'
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

/** What the close listener of a proxied response needs; one object per request, on the response. */
interface Proxied {
  readonly ctx: RequestContext
  readonly rt: Runtime
  readonly log: AccessLogSink
  readonly tracker: RequestTracker | undefined
  /** The try in progress, aborted when the client goes away first. */
  current: UpstreamExchange | null
}

/** Where a response keeps its {@link Proxied} (one listener function serves every response). */
const PROXIED = Symbol('portico.proxied')

/**
 * Phase "log": writes the access log line exactly once, when the downstream response is
 * over (finished, or the connection closed). A client that left first is logged as 499
 * and its try is aborted. Registered with `on`, not `once`: 'close' comes once, and
 * `once` would wrap the listener for every request.
 */
function onResponseClose(this: ServerResponse): void {
  const p = (this as ServerResponse & { [PROXIED]?: Proxied })[PROXIED]
  if (p === undefined) return
  p.tracker?.end(p.rt, this)
  const ctx = p.ctx
  if (ctx.logged) return
  ctx.logged = true
  if (!this.writableFinished && ctx.downstream === 'completed') {
    ctx.downstream = 'client_closed'
    ctx.status = 499
    p.current?.abort(new ClientClosedError())
  }
  p.log.write(ctx)
}

/**
 * Told when each proxied request starts and when its response closes (the gateway counts
 * requests per runtime, for graceful reloads and draining). One object for all requests:
 * the request path makes no closure for it.
 */
export interface RequestTracker {
  /** A request starts on runtime `rt`; called before anything is answered. */
  start(rt: Runtime, req: IncomingMessage, res: ServerResponse): void
  /** Its response closed (finished, or the connection went away). */
  end(rt: Runtime, res: ServerResponse): void
}

/** A proxy-generated error response, before it is written. */
export interface ErrorResponse {
  status: number
  /** Lower-case field names: Content-Type, Content-Length, Cache-Control, Proxy-Status, X-Request-Id, and Retry-After when the cause asks for one. */
  headers: Record<string, string>
  body: Buffer
}

/**
 * Builds the error response of a cause (status from the cause table unless overridden,
 * `Proxy-Status` with the RFC 9209 type, `X-Request-Id`, an HTML or JSON page by `Accept`).
 * Changes nothing; {@link sendError} and the upgrade path write it.
 */
export function errorResponse(ctx: RequestContext, req: IncomingMessage, rt: Runtime, type: CauseType, detail: string | null, statusOverride?: number): ErrorResponse {
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
  return { status, headers, body }
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
  const { status, headers, body } = errorResponse(ctx, req, rt, type, detail, statusOverride)
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
 * - `connection_terminated` (`reset`), idempotent methods only: on a reused keep-alive
 *   connection once more on a fresh connection (the keep-alive race, where the upstream
 *   closed the idle connection as the request was written); otherwise on another endpoint
 *   within `retries.attempts` (the endpoint crashed or restarted while holding the request);
 * - nothing sent (`connect_failure`): any method, within `retries.attempts`;
 * - `http_response_timeout` when listed: idempotent methods, within `retries.attempts`.
 */
export function retryDecision(f: TryFailure, policy: RetryPolicy, idempotent: boolean, bodyConsumed: number, attempts: number, maxAttempts: number, raceRetried: boolean): 'another' | 'fresh' | 'no' {
  if (bodyConsumed > 0) return 'no'
  if (f.type === null) return 'another'
  if (f.type === 'connection_terminated') {
    if (!policy.reset || !isRetryable(f.type, idempotent)) return 'no'
    // A reused connection the upstream closed while idle (the keep-alive race): once more, on a fresh one.
    if (f.reused && !raceRetried) return 'fresh'
    // The endpoint reset a request it had taken (a crash or a restart): an idempotent request may go elsewhere.
    return attempts < maxAttempts ? 'another' : 'no'
  }
  if (attempts >= maxAttempts) return 'no'
  if (!f.sent && isRetryable(f.type, idempotent)) return policy.connect ? 'another' : 'no'
  if (f.type === 'http_response_timeout' && policy.timeout && idempotent) return 'another'
  return 'no'
}

/** What phase "route" decided: a route and its pool, a malformed target, or a cause to answer with. */
export type RouteOutcome =
  | { kind: 'routed'; route: Route; pool: UpstreamPool }
  | { kind: 'bad_request' }
  | { kind: 'error'; type: 'destination_not_found' | 'proxy_configuration_error'; detail: string }

/**
 * Phase "route": matches Host and path against the routes and finds the route's pool.
 * Records the route and upstream names in `ctx`. Runs after "parse".
 *
 * @returns `bad_request` for a target that is not origin-form (absolute-form is for
 *   forward proxies, RFC 9112 §3.2.1); `destination_not_found` when no route matches;
 *   `proxy_configuration_error` when the route names an unknown upstream
 */
export function routeRequest(ctx: RequestContext, req: IncomingMessage, rt: Runtime): RouteOutcome {
  const target = req.url ?? '/'
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') return { kind: 'bad_request' }
  const route = rt.router.match(req.headers.host, target)
  if (route === null) return { kind: 'error', type: 'destination_not_found', detail: `no route for host "${req.headers.host ?? ''}" and path "${target}"` }
  ctx.route = route.name
  ctx.upstream = route.upstream
  const pool = rt.pools.get(route.upstream)
  if (pool === undefined) return { kind: 'error', type: 'proxy_configuration_error', detail: `route ${route.name} names unknown upstream ${route.upstream}` }
  return { kind: 'routed', route, pool }
}

/** The path and query sent upstream: the request target, less the route's prefix when it strips it. */
export function upstreamPath(route: Route, target: string): string {
  let path = target
  if (route.stripPrefix && route.prefix) path = path.slice(route.prefix.length) || '/'
  if (path.charCodeAt(0) === 63 /* ? */) path = '/' + path
  return path
}

/**
 * Takes a place in the pool's retry budget for a request's first retry; the request keeps
 * it through later retries and gives it back (`pool.retrying--`) when it ends. A failure
 * refused for lack of budget gets that said in its detail.
 *
 * @returns whether the retry may go ahead
 */
export function enterRetry(pool: UpstreamPool, failure: TryFailure): boolean {
  if (failure.type !== null && !pool.retryAllowed()) {
    failure.detail += '; not retried: retry budget exhausted'
    return false
  }
  pool.retrying++
  return true
}

/**
 * Creates the request handler of the listeners: the lifecycle driver.
 *
 * @param getRuntime returns the runtime (routes, pools, config) in force; read once per
 *   request so a reload never changes a request mid-flight
 * @param log the access log
 * @param opts the listener's scheme and limits
 * @param tracker told when each request starts and when its response closes
 */
export function createProxyHandler(getRuntime: () => Runtime, log: AccessLogSink, opts: HandlerOptions, tracker?: RequestTracker) {
  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const rt = getRuntime()
    tracker?.start(rt, req, res)
    const ctx = parseRequest(req)
    const p: Proxied = { ctx, rt, log, tracker, current: null }
    ;(res as ServerResponse & { [PROXIED]?: Proxied })[PROXIED] = p
    res.on('close', onResponseClose)

    const routed = routeRequest(ctx, req, rt)
    if (routed.kind === 'bad_request') {
      ctx.status = 400
      res.writeHead(400, { 'content-type': 'text/plain', 'x-request-id': ctx.requestId, 'content-length': '12' })
      res.end('bad request\n')
      return
    }
    if (routed.kind === 'error') {
      sendError(ctx, req, res, rt, routed.type, routed.detail)
      return
    }
    const { route, pool } = routed
    void proxy(p, req, res, route, pool, opts)
  }
}

/** Listener-level limits the driver enforces. */
export interface HandlerOptions {
  /** `http` or `https`, the scheme clients use on this listener. */
  scheme: string
  /** Largest request body accepted in bytes (413 beyond), or null. */
  maxBodyBytes: number | null
}

/**
 * Phases "select endpoint" to "stream response", with retries: endpoint choice, exchange,
 * retry decision, until a try answers. Never rejects: an unexpected error is answered
 * as `proxy_internal_error`.
 */
async function proxy(p: Proxied, req: IncomingMessage, res: ServerResponse, route: Route, pool: UpstreamPool, opts: HandlerOptions): Promise<void> {
  const { ctx, rt } = p
  try {
    const method = req.method ?? 'GET'
    const idempotent = IDEMPOTENT_METHODS.has(method)
    const host = req.headers.host ?? ''
    const path = upstreamPath(route, req.url ?? '/')
    const contentLength = req.headers['content-length']
    // HTTP/2 has no Transfer-Encoding: a request without END_STREAM on its HEADERS frame has a body (RFC 9113 §8.1).
    const h2 = req.httpVersionMajor >= 2
    const hasBody = contentLength !== undefined ? contentLength !== '0' : req.headers['transfer-encoding'] !== undefined || (h2 && !(req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders)
    if (opts.maxBodyBytes !== null && contentLength !== undefined && Number(contentLength) > opts.maxBodyBytes) {
      sendError(ctx, req, res, rt, 'http_request_denied', `request body of ${contentLength} bytes is over the limit of ${opts.maxBodyBytes}`, 413)
      return
    }
    const via = `${h2 ? '2' : req.httpVersion} ${rt.config.proxy_name}`
    const cfg = pool.config
    const policy = pool.retryPolicy
    const headerTimeoutMs = pool.headerTimeoutMs
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
          const choice = pool.chooseNow(tried) ?? await pool.choose(tried)
          if (choice.endpoint === null) {
            const none = choice.failure
            // A name that does not resolve is the endpoint that failed: the log names it.
            if (none.endpoint !== null) ctx.beginAttempt(none.endpoint)
            if (plan?.onFailure(none.type)) return
            sendError(ctx, req, res, rt, none.type, none.detail)
            return
          }
          endpoint = choice.endpoint
          tried.push(endpoint)
        }
        const ep = endpoint as Endpoint
        ctx.beginAttempt(ep.label)
        if (ep.pending >= cfg.limits.max_pending) {
          ep.lastError = { type: 'connection_limit_reached', at: Date.now(), detail: 'pending queue full' }
          sendError(ctx, req, res, rt, 'connection_limit_reached', `endpoint ${ep.label} has ${ep.pending} requests waiting for a connection (limits.max_pending ${cfg.limits.max_pending})`)
          return
        }
        const statusRetryOk = policy.statuses.size > 0 && idempotent && !hasBody && ctx.attempts < cfg.retries.attempts
        const input: TryInput = {
          ctx, req, res, method, path, hasBody,
          headers: upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
            host: route.preserveHost && host ? host : ep.authority,
            forwardedHost: host,
            proto: opts.scheme,
            clientIp: ctx.clientIp,
            requestId: ctx.requestId,
            via,
          }),
          timeouts: cfg.timeouts,
          headerTimeoutMs,
          retryStatuses: statusRetryOk ? policy.statuses : null,
          // Decided when the status arrives, so the budget counts the retries really in flight then.
          retryGate: () => {
            if (inRetry) return true
            if (!pool.retryAllowed()) return false
            pool.retrying++
            inRetry = true
            return true
          },
          // With one request per connection, every try beyond max_connections waits for one to free up.
          queueTimeoutMs: ep.inFlight >= cfg.limits.max_connections ? cfg.limits.queue_timeout : null,
          maxBodyBytes: opts.maxBodyBytes,
          proxyName: rt.config.proxy_name,
          via,
        }
        if (plan !== null) {
          input.headers = plan.headers(input.headers)
          input.tee = plan.tee
        }
        const ex = new UpstreamExchange(input, ep)
        p.current = ex
        // The keep-alive race retry must not land on another stale pooled connection.
        const failure = await ex.run(ep.dispatcher, fresh)
        if (ctx.downstream !== 'client_closed') pool.report(ep, failure?.type ?? null, failure === null ? ctx.upstreamStatus : failure.status)
        if (failure === null) return
        if (res.destroyed || ctx.downstream !== 'completed') return
        let decision = retryDecision(failure, policy, idempotent, ex.bodyConsumed, ctx.attempts, cfg.retries.attempts, raceRetried)
        // Tries that never reached an application add no load upstream: only `attempts` bounds their retries.
        if (decision !== 'no' && !inRetry && failure.sent) {
          if (enterRetry(pool, failure)) inRetry = true
          else decision = 'no'
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
  } catch (err) {
    sendError(ctx, req, res, rt, 'proxy_internal_error', (err as Error).message)
  }
}
