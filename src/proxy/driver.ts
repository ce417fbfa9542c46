/**
 * The lifecycle driver: runs the phases of one request in the order of `LIFECYCLE_PHASES`
 * (src/failures/lifecycle.ts) and loops back to endpoint selection when a failure may be retried.
 */
import { randomRequestId } from '../lib/request-id.ts'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CAUSES, type CauseId } from '../failures/causes.ts'
import { proxyStatusError } from '../failures/proxy-status.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { Route } from '../routing/router.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import { SEND_TIMED_OUT } from '../lib/coalesce.ts'
import { RequestContext } from '../observe/context.ts'
import { runAttempts, type Attempts, type PoolAttemptState } from './attempt.ts'
import { HttpExchange, type ExchangeRequest } from './exchange.ts'
import { fetchFromPool } from './fetch.ts'
import { IDEMPOTENT_METHODS, isValidRequestId, upstreamRequestHeaders } from './headers.ts'
import { statusRetryAllowed, type RetryLease } from './retries.ts'
import type { Runtime } from './runtime.ts'
import { admitRequest, answerRefusal, pageResponse, writeRefusal, type PageResponse } from './refuse.ts'
import { receivedTarget, type RequestRules } from '../protect/validate.ts'
import { clientAddress, type TrustedProxies } from '../protect/client-ip.ts'
import { checkListenerAccess, filterRequest, isRefused, type Admitted, type ConnSlot, type FilterFacts, type FilterRefused } from '../protect/filter.ts'
import type { HeaderRules } from './header-rules.ts'
import { ClientClosedError } from './try.ts'
import { cacheLookup, type CachePlan } from '../cache/phase.ts'
import type { ClientLimiter } from '../protect/client-limit.ts'
import { BufferedBody } from '../protect/request-buffer.ts'
import type { BufferBudget } from '../protect/spill.ts'
import { admitClient, bufferBody, type Protection, type Refusal } from './protection.ts'


/**
 * Phase "parse": builds the request context. Runs first for every request.
 *
 * @param trusted the `trusted_proxies` in force, or null: the client address is then the socket's
 * @returns the context; the request ID is the client's `X-Request-Id` when valid, else a new
 *   UUID; the client address is the real one (src/protect/client-ip.ts)
 */
export function parseRequest(req: IncomingMessage, trusted: TrustedProxies | null = null): RequestContext {
  const incoming = req.headers['x-request-id']
  const id = isValidRequestId(incoming as string | undefined) ? incoming as string : randomRequestId()
  const remote = req.socket.remoteAddress ?? ''
  const ctx = new RequestContext(id, remote, req.method ?? 'GET', req.headers.host ?? '', receivedTarget(req), `HTTP/${req.httpVersion}`)
  if (trusted !== null) {
    const a = clientAddress(remote, req.headers, trusted)
    ctx.clientIp = a.ip
    ctx.peer = a.peer
    ctx.trustedPeer = a.trusted
  }
  return ctx
}

/** What the close listener of a proxied response needs; one object per request, on the response. */
interface Proxied {
  readonly ctx: RequestContext
  readonly rt: Runtime
  readonly log: AccessLogSink
  readonly tracker: RequestTracker | undefined
  /** The try in progress, aborted when the client goes away first. */
  current: { abort(err: Error): void } | null
  /** The per-client cap this request is counted in, or null. */
  clients: ClientLimiter | null
  /** The buffered request body, freed when the response closes. */
  body: BufferedBody | null
  /** The `limit_conn` slot the request holds, released when the response closes. */
  slot: ConnSlot | null
  /** Whether the parser-error handler answered this request on its connection ({@link answerOnConnection}). */
  answered: boolean
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
  if (p.slot !== null) {
    p.slot.limit.release(p.slot.key)
    p.slot = null
  }
  const ctx = p.ctx
  if (p.clients !== null) {
    p.clients.release(ctx.clientIp)
    p.clients = null
  }
  if (p.body !== null) {
    p.body.dispose()
    p.body = null
  }
  if (ctx.logged) return
  ctx.logged = true
  // An HTTP/2 response whose stream was reset says writableFinished without having ended.
  if (!(this.writableEnded && this.writableFinished) && ctx.downstream === 'completed') {
    // A refusal written on the connection by the parser-error handler is the answer, not a client that left.
    if (!p.answered) {
      ctx.downstream = 'client_closed'
      ctx.status = 499
      if ((this.socket as { [SEND_TIMED_OUT]?: boolean } | null)?.[SEND_TIMED_OUT]) ctx.details = 'the client took no response byte within listeners[].timeouts.send; connection closed'
    }
    p.current?.abort(new ClientClosedError())
  }
  p.log.write(ctx)
}

/**
 * For the parser-error handler (src/proxy/client-error.ts): the context of the proxied
 * request whose response `res` has not started, when the parser fails on that request's
 * own body (a bad chunk size, a forbidden trailer). The handler answers the refusal on the
 * connection and records it in this context; the request's one log line, written when the
 * connection closes, is that refusal, not a 499 beside it.
 *
 * @returns the context, or null when `res` is not a proxied response, has started, or its
 *   request was read whole (the failure is then in a later, pipelined request)
 */
export function answerOnConnection(res: ServerResponse): RequestContext | null {
  const p = (res as ServerResponse & { [PROXIED]?: Proxied })[PROXIED]
  // A request read whole: the parser failed on a later, pipelined one.
  if (p === undefined || res.headersSent || p.ctx.logged || res.req.complete) return null
  p.answered = true
  return p.ctx
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

/**
 * Builds the error response of a row of the cause table ({@link pageResponse}); `Proxy-Status`
 * names the detail and endpoint only when the operator exposes details.
 * Changes nothing; {@link sendError} and the upgrade path write it.
 */
export function errorResponse(ctx: RequestContext, req: IncomingMessage, rt: Runtime, id: CauseId, detail: string | null): PageResponse {
  const expose = rt.config.expose_error_details
  const proxyStatus = proxyStatusError(rt.config.proxy_name, CAUSES[id].type, expose ? detail : null, expose ? ctx.endpoint : null)
  return pageResponse(ctx, req.headers.accept, rt, id, detail, ctx.endpoint, proxyStatus)
}

/**
 * Answers a proxy-generated error for a row of the cause table ({@link errorResponse}).
 * If the response has already started, the downstream connection is aborted instead.
 */
export function sendError(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, id: CauseId, detail: string | null): void {
  ctx.error = CAUSES[id].type
  ctx.details = detail
  if (res.headersSent || res.destroyed) {
    ctx.downstream = 'aborted'
    res.destroy()
    return
  }
  const { status, headers, body } = errorResponse(ctx, req, rt, id, detail)
  ctx.status = status
  res.writeHead(status, headers)
  if (req.method === 'HEAD') {
    res.end()
  } else {
    ctx.bytesSent = body.length
    res.end(body)
  }
}

/** What phase "route" decided: a route and its pool, a malformed target, or a cause to answer with. */
export type RouteOutcome =
  | { kind: 'routed'; route: Route; pool: UpstreamPool }
  | { kind: 'bad_request'; detail: string }
  | { kind: 'error'; type: 'destination_not_found' | 'proxy_configuration_error'; detail: string }

/**
 * Phase "route": matches Host and path against the routes and finds the route's pool.
 * Records the route and upstream names in `ctx`. Runs after "parse".
 *
 * @returns `bad_request` for a target that is not origin-form (absolute-form is for
 *   forward proxies, RFC 9112 §3.2.1); `destination_not_found` when no route matches;
 *   `proxy_configuration_error` when the route names an unknown upstream
 * @param facts the request as the filtering phases read it (built once per request, after "validate request")
 */
export function routeRequest(ctx: RequestContext, req: IncomingMessage, rt: Runtime, facts: FilterFacts): RouteOutcome {
  const target = facts.target
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') return { kind: 'bad_request', detail: 'request target is not in origin-form' }
  const route = rt.router.match(req.headers.host, target, facts)
  if (route === null) return { kind: 'error', type: 'destination_not_found', detail: `no route for host "${req.headers.host ?? ''}" and path "${target}"` }
  ctx.route = route.name
  ctx.upstream = route.upstream
  const pool = rt.pools.get(route.upstream)
  if (pool === undefined) return { kind: 'error', type: 'proxy_configuration_error', detail: `route ${route.name} names unknown upstream ${route.upstream}` }
  return { kind: 'routed', route, pool }
}

/** The path and query sent upstream: the request target, its matched prefix stripped or replaced when the route says so. */
export function upstreamPath(route: Route, target: string): string {
  let path = target
  if (route.prefixRewrite !== null) path = route.prefixRewrite + path.slice(route.prefix.length) || '/'
  if (path.charCodeAt(0) === 63 /* ? */) path = '/' + path
  return path
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
    const ctx = parseRequest(req, rt.filters.trusted)
    const p = new ProxiedRequest(ctx, rt, log, tracker, req, res, opts)
    ;(res as ServerResponse & { [PROXIED]?: Proxied })[PROXIED] = p
    res.on('close', onResponseClose)
    // Phase "client limit" (DESIGN §9): counted out when the response closes.
    const protection = opts.protection
    if (protection) {
      const admitted = admitClient(protection.clients, ctx.clientIp)
      if (admitted === false) p.clients = protection.clients
      else if (admitted !== true) return writeRefusal(ctx, req, res, rt, admitted, null, null)
    }
    // Phase "validate request" (src/protect): refusals, and req.url normalised for routing.
    if (!admitRequest(ctx, req, res, rt, opts.rules)) return
    // Phase "access rules" of the listener, before routing: a denied client learns nothing of the routes.
    // One view of the request for access rules, routing and rate limits.
    const facts: FilterFacts = { method: ctx.method, target: req.url ?? '/', headers: req.headers, clientIp: ctx.clientIp }
    const listenerRules = opts.listener !== undefined ? rt.filters.listeners.get(opts.listener) : undefined
    if (listenerRules !== undefined) {
      const denied = checkListenerAccess(listenerRules, facts)
      if (denied !== null) return answerRefusal(ctx, req, res, rt, denied)
    }

    const routed = routeRequest(ctx, req, rt, facts)
    if (routed.kind === 'bad_request') {
      sendError(ctx, req, res, rt, 'http_request_error.target_form', routed.detail)
      return
    }
    if (routed.kind === 'error') {
      sendError(ctx, req, res, rt, routed.type, routed.detail)
      return
    }
    // Phases "access rules → rate limits" of the route (src/protect/filter.ts).
    const rf = rt.filters.routes.get(routed.route.name)
    if (rf === undefined) {
      void proxy(p, routed.route, routed.pool)
      return
    }
    const outcome = filterRequest(rf, facts)
    if (outcome instanceof Promise) {
      outcome.then((o) => filtered(p, routed.route, routed.pool, o), (err: Error) => sendError(ctx, req, res, rt, 'proxy_internal_error', err.message))
    } else {
      filtered(p, routed.route, routed.pool, outcome)
    }
  }
}

/** Goes on after the filtering phase: answers its refusal, or proxies with its slot and fields. */
function filtered(p: ProxiedRequest, route: Route, pool: UpstreamPool, o: Admitted | FilterRefused): void {
  if (isRefused(o)) {
    answerRefusal(p.ctx, p.req, p.res, p.rt, o)
    return
  }
  if (o.slot !== null) {
    // The client left while Redis was asked: the close listener has run already.
    if (p.res.destroyed || p.ctx.logged) {
      o.slot.limit.release(o.slot.key)
      return
    }
    p.slot = o.slot
  }
  p.rateLimitHeaders = o.headers
  void proxy(p, route, pool)
}

/** Listener-level limits the driver enforces. */
export interface HandlerOptions {
  /** `http` or `https`, the scheme clients use on this listener. */
  scheme: string
  /** Largest request body accepted in bytes (413 beyond), or null. */
  maxBodyBytes: number | null
  /**
   * Longest client silence while its request body is read, streamed or buffered, in ms
   * (`listeners[].timeouts.body_idle`; 408 beyond). Read as each request starts: a reload sets it.
   */
  bodyIdleMs: number
  /** The listener's request rules (method deny list, encoded slashes). */
  rules: RequestRules
  /** Buffering caps and the per-client cap; without it nothing is buffered and clients are not counted. */
  protection?: Protection
  /** The listener's address, which names its access rules in the runtime. */
  listener?: string
}


/** Answers a protection refusal (a cause with its status), closing the connection when the request body was left unread. */
function sendRefusal(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, r: Refusal): void {
  if (r.close && req.httpVersionMajor < 2 && !res.headersSent) res.setHeader('connection', 'close')
  sendError(ctx, req, res, rt, r.id, r.detail)
}

/**
 * One proxied request as the attempt loop drives it: the request's fixed parts, shared by
 * every try (one object per request, on the response, so the request path makes no closure).
 */
class ProxiedRequest implements Proxied, Attempts<HttpExchange>, ExchangeRequest {
  readonly ctx: RequestContext
  readonly rt: Runtime
  readonly log: AccessLogSink
  readonly tracker: RequestTracker | undefined
  current: HttpExchange | null = null
  clients: ClientLimiter | null = null
  body: BufferedBody | null = null
  /** Buffering caps when the route buffers responses, else null. */
  responseBudget: BufferBudget | null = null
  readonly protection: Protection | null
  slot: ConnSlot | null = null
  answered = false
  /** `RateLimit-Policy`/`RateLimit` fields added to the response, or null. */
  rateLimitHeaders: Record<string, string> | null = null
  readonly req: IncomingMessage
  readonly res: ServerResponse
  route!: Route
  pool!: UpstreamPool
  readonly method: string
  readonly idempotent: boolean
  path = '/'
  hasBody = false
  readonly maxBodyBytes: number | null
  readonly bodyIdleMs: number
  readonly proxyName: string
  via = ''
  observer: CachePlan['tee'] | null = null
  plan: CachePlan | null = null
  /** `http` or `https`, the scheme clients use on this listener. */
  readonly scheme: string

  constructor(ctx: RequestContext, rt: Runtime, log: AccessLogSink, tracker: RequestTracker | undefined, req: IncomingMessage, res: ServerResponse, opts: HandlerOptions) {
    this.ctx = ctx
    this.rt = rt
    this.log = log
    this.tracker = tracker
    this.req = req
    this.res = res
    this.method = req.method ?? 'GET'
    this.idempotent = IDEMPOTENT_METHODS.has(this.method)
    this.maxBodyBytes = opts.maxBodyBytes
    this.bodyIdleMs = opts.bodyIdleMs
    this.proxyName = rt.config.proxy_name
    this.scheme = opts.scheme
    this.protection = opts.protection ?? null
  }

  /** The upstream request header fields for an endpoint whose authority is `authority`. */
  headersFor(authority: string): string[] {
    const req = this.req
    const host = req.headers.host ?? ''
    const list = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
      host: this.route.hostRewrite ?? (this.route.preserveHost && host ? host : authority),
      forwardedHost: host,
      proto: this.scheme,
      clientIp: this.ctx.clientIp,
      peerIp: this.ctx.peer,
      trustedPeer: this.ctx.trustedPeer,
      forwarded: this.route.config.forwarded,
      requestId: this.ctx.requestId,
      via: this.via,
      clientHeaders: this.route.config.forwarded_headers,
    })
    const rules = this.rt.headerRules.get(this.route.name)?.request
    return rules ? rules.applyToList(list) : list
  }

  /** The route's response header rules, or null. */
  get responseRules(): HeaderRules | null {
    return this.rt.headerRules.get(this.route.name)?.response ?? null
  }

  /** Keep the upstream's `Server` field (the route's `pass_server_header`). */
  get passServerHeader(): boolean {
    return this.route.config.pass_server_header
  }

  newTry(ep: Endpoint, queueTimeoutMs: number | null, state: PoolAttemptState, lease: RetryLease): HttpExchange {
    let headers = this.headersFor(ep.authority)
    if (this.plan !== null) headers = this.plan.headers(headers)
    const retry = state.retry
    const retryStatuses = statusRetryAllowed(retry.policy, this.idempotent, this.hasBody, this.ctx.attempts, this.pool.config.retries.attempts) ? retry.policy.statuses : null
    const t = new HttpExchange(this, ep, state.timeouts, queueTimeoutMs, headers, retryStatuses, lease)
    this.current = t
    return t
  }

  abandoned(): boolean {
    return this.ctx.downstream !== 'completed' || this.res.destroyed
  }
}

/**
 * Phases "cache lookup" to "stream response": the body limit, the cache, then the attempt
 * loop until a try answers. Never rejects: an unexpected error is answered as
 * `proxy_internal_error`.
 */
async function proxy(p: ProxiedRequest, route: Route, pool: UpstreamPool): Promise<void> {
  const { ctx, rt, req, res } = p
  try {
    p.route = route
    p.pool = pool
    p.path = upstreamPath(route, req.url ?? '/')
    const contentLength = req.headers['content-length']
    // HTTP/2 has no Transfer-Encoding: a request without END_STREAM on its HEADERS frame has a body (RFC 9113 §8.1).
    const h2 = req.httpVersionMajor >= 2
    p.hasBody = contentLength !== undefined ? contentLength !== '0' : req.headers['transfer-encoding'] !== undefined || (h2 && !(req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders)
    if (p.maxBodyBytes !== null && contentLength !== undefined && Number(contentLength) > p.maxBodyBytes) {
      sendError(ctx, req, res, rt, 'http_request_denied.body_too_large', `request body of ${contentLength} bytes is over the limit of ${p.maxBodyBytes}`)
      return
    }
    // Phase "buffer request body" (nginx proxy_request_buffering): a slow upload holds no upstream connection.
    const protection = p.protection
    if (p.hasBody && protection !== null && route.config.buffering.request) {
      const read = await bufferBody(req, protection, p.maxBodyBytes, p.bodyIdleMs)
      if (read === 'client_closed') {
        ctx.downstream = 'client_closed'
        ctx.status = 499
        res.destroy()
        return
      }
      if (!(read instanceof BufferedBody)) return sendRefusal(ctx, req, res, rt, read)
      // The client left while the last bytes were stored: the response closed already.
      if (res.destroyed) return read.dispose()
      p.body = read
    }
    if (protection !== null && route.config.buffering.response) p.responseBudget = protection.budget
    p.via = `${h2 ? '2' : req.httpVersion} ${p.proxyName}`
    // Phase "cache lookup" (src/cache/phase.ts): a stored response answers here; else the plan joins every try.
    if (route.config.cache?.enabled) {
      const refresh = (extra: Record<string, string>) => fetchFromPool(ctx, pool, p.path, p.headersFor(pool.name), extra, p.passServerHeader, p.responseRules)
      p.plan = await cacheLookup({ ctx, req, res, cache: rt.cache, config: route.config.cache, scheme: p.scheme, refresh }, rt.config.proxy_name)
      if (p.plan === null) return
      p.observer = p.plan.tee
    }
    try {
      const end = await runAttempts(p)
      if (end.kind !== 'failed') return
      // A stored response may answer instead of the error (stale-if-error, RFC 5861 §4).
      if (p.plan?.onFailure(end.type)) return
      sendError(ctx, req, res, rt, end.causeId, end.detail)
    } finally {
      p.plan?.finish()
    }
  } catch (err) {
    sendError(ctx, req, res, rt, 'proxy_internal_error', (err as Error).message)
  }
}
