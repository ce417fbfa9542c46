/**
 * HTTP/1.1 Upgrade (RFC 9110 §7.8), WebSocket first (RFC 6455): the same phases as any
 * request (parse → route → select endpoint → connect), then the upgrade is sent upstream
 * and, on its 101, the two raw connections are joined into a tunnel until either side
 * closes or the tunnel stays idle. One access log line per upgrade, when it ends.
 */
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { classify, GatewayError } from '../failures/classify.ts'
import type { CauseType } from '../failures/causes.ts'
import { proxyStatusReceived } from '../failures/proxy-status.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { Route } from '../routing/router.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller, Http1Handler, Http1Pool } from '../upstream/http1.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { RequestContext } from '../observe/context.ts'
import { recordConnection } from '../upstream/connector.ts'
import { enterRetry, errorResponse, parseRequest, retryDecision, routeRequest, upstreamPath } from './driver.ts'
import type { TryFailure } from './exchange.ts'
import { IDEMPOTENT_METHODS, upstreamRequestHeaders } from './headers.ts'
import type { Runtime } from './runtime.ts'

/** One upgrade in progress or one open tunnel, as the gateway tracks it for drain and stop. */
export interface UpgradeSession {
  /** Resolves once both connections are closed and the access log line is written. */
  readonly closed: Promise<void>
  /** Closes both connections now (shutdown). */
  destroy(): void
}

/** Handles a server's `'upgrade'` event: `(req, socket, head)` as node:http emits it. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => UpgradeSession

/** How the upstream answered an upgrade: its 101 and the raw connection, or why not. */
type UpgradeResult =
  | { ok: true; headers: IncomingHttpHeaders; socket: Duplex }
  | { ok: false; failure: TryFailure }

/** The client went away while the upgrade was on its way upstream. */
class ClientGoneError extends Error {
  readonly code = 'PORTICO_CLIENT_CLOSED'
  constructor() {
    super('client closed the connection')
  }
}

/** Ends a try whose upstream answered something other than 101. */
class RefusedUpgradeError extends Error {
  readonly code = 'PORTICO_UPGRADE_REFUSED'
}


/**
 * One try of an upgrade against one endpoint, as an undici dispatch handler: undici
 * writes `Connection: upgrade` and `Upgrade: <protocol>`, and hands over the raw socket
 * on a 101 (`onRequestUpgrade`); any other final status comes through `onResponseStart`.
 */
class UpgradeTry implements Http1Handler {
  readonly #ctx: RequestContext
  readonly #headerTimeoutMs: number
  readonly #start = performance.now()
  #controller: Http1Controller | null = null
  #socket: Duplex | null = null
  #reused = false
  #timer: NodeJS.Timeout | null = null
  #settled = false
  #resolve: (r: UpgradeResult) => void = () => {}

  constructor(ctx: RequestContext, headerTimeoutMs: number) {
    this.#ctx = ctx
    this.#headerTimeoutMs = headerTimeoutMs
  }

  run(dispatcher: Http1Pool, path: string, headers: string[], protocol: string, fresh: boolean): Promise<UpgradeResult> {
    const promise = new Promise<UpgradeResult>((resolve) => { this.#resolve = resolve })
    dispatcher.dispatch({ path, method: 'GET', headers, upgrade: protocol, fresh }, this)
    return promise
  }

  abort(err: Error): void {
    this.#controller?.abort(err)
  }

  /** Called with the connection the request is about to be written on. */
  onSocket(socket: Duplex): void {
    this.#socket = socket
    this.#reused = recordConnection(this.#ctx, socket)
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.abort(new GatewayError('http_response_timeout', `no answer to the upgrade within ${this.#headerTimeoutMs}ms`))
    }, this.#headerTimeoutMs)
  }

  /** Called by the pool inside `dispatch`, before anything can abort the try. */
  onRequestStart(controller: Http1Controller): void {
    this.#controller = controller
  }

  onRequestUpgrade(_controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#clearTimer()
    this.#ctx.timings.ttfb_ms = performance.now() - this.#start
    this.#ctx.upstreamStatus = statusCode
    if (this.#settled) {
      socket.destroy()
      return
    }
    this.#settled = true
    this.#resolve({ ok: true, headers, socket })
  }

  onResponseStart(controller: Http1Controller, statusCode: number): void {
    if (statusCode < 200) return
    this.#clearTimer()
    this.#ctx.timings.ttfb_ms = performance.now() - this.#start
    this.#ctx.upstreamStatus = statusCode
    // RFC 9209 §2.3.15: the upgrade did not happen; the upstream's answer is not relayed.
    this.#settle({ type: 'http_upgrade_failed', status: statusCode, detail: `upstream answered ${statusCode} instead of 101`, sent: true, reused: this.#reused })
    controller.abort(new RefusedUpgradeError(`upstream answered ${statusCode}`))
  }

  onResponseData(): void {}

  onResponseEnd(): void {}

  onResponseError(_controller: Http1Controller, err: Error): void {
    this.#clearTimer()
    if (this.#settled) return
    if (err instanceof ClientGoneError) {
      this.#settle({ type: null, status: null, detail: err.message, sent: this.#socket !== null, reused: this.#reused })
      return
    }
    const c = classify(err, this.#socket ? 'header' : 'connect')
    let detail = c.detail
    if (c.type === 'connection_terminated') detail += this.#reused ? ' (on a reused keep-alive connection)' : ' (on a new connection)'
    this.#settle({ type: c.type, status: null, detail, sent: this.#socket !== null, reused: this.#reused })
  }

  #settle(failure: TryFailure): void {
    if (this.#settled) return
    this.#settled = true
    this.#resolve({ ok: false, failure })
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }
}

/**
 * Writes a response on the raw client connection (the HTTP server no longer owns it once
 * it emitted 'upgrade') and closes it after the bytes are out.
 */
function writeRaw(socket: Duplex, status: number, headers: Record<string, string>, body: Buffer, sendBody: boolean): void {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  head += 'connection: close\r\n\r\n'
  if (socket.destroyed) return
  socket.write(sendBody ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : head)
  socket.end()
  // Do not wait for the client to close its side of a half-open connection.
  socket.once('finish', () => socket.destroy())
}

/** The 101 head sent downstream: the upstream's fields untouched, plus Proxy-Status, X-Request-Id and Via. */
function switchingHead(headers: IncomingHttpHeaders, ctx: RequestContext, rt: Runtime, via: string): string {
  let head = 'HTTP/1.1 101 Switching Protocols\r\n'
  const add = (name: string, value: string | string[] | undefined) => {
    if (value === undefined) return
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`
  }
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'proxy-status' || name === 'x-request-id' || name === 'via') continue
    add(name, value)
  }
  add('proxy-status', proxyStatusReceived(rt.config.proxy_name, 101, headers['proxy-status']))
  add('x-request-id', ctx.requestId)
  add('via', headers.via ? `${headers.via}, ${via}` : via)
  return head + '\r\n'
}

/**
 * Creates the handler of the listeners' `'upgrade'` event.
 *
 * Failures before the tunnel opens are answered on the raw connection like any gateway
 * error (`Proxy-Status: portico; error=<type>`, `X-Request-Id`): 404 `destination_not_found`,
 * 503 `destination_unavailable`, connect causes (e.g. 502 `connection_refused`, retried
 * on another endpoint per `retries` when nothing was sent), and 502 `http_upgrade_failed`
 * when the upstream answers anything but 101 (RFC 9209 §2.3.15).
 * Once open, the tunnel closes when either side closes or errors, or when neither side
 * sends for the upstream's `timeouts.idle` (ms).
 *
 * @param getRuntime the runtime in force, read once per upgrade
 * @param log the access log; one line per upgrade (status 101 and the tunnel's duration
 *   and bytes sent downstream, or the error)
 * @returns the handler; X-Forwarded-Proto is `https` when the client connection is TLS
 */
export function createUpgradeHandler(getRuntime: () => Runtime, log: AccessLogSink): UpgradeHandler {
  return function handleUpgrade(req, socket, head) {
    const rt = getRuntime()
    const ctx = parseRequest(req)
    let current: UpgradeTry | null = null
    let upstream: Duplex | null = null
    let resolveClosed: () => void = () => {}
    const closed = new Promise<void>((resolve) => { resolveClosed = resolve })
    const finish = () => {
      if (ctx.logged) return
      ctx.logged = true
      log.write(ctx)
      resolveClosed()
    }
    const fail = (type: CauseType, detail: string) => {
      ctx.error = type
      ctx.details = detail
      const r = errorResponse(ctx, req, rt, type, detail)
      ctx.status = r.status
      ctx.bytesSent = r.body.length
      writeRaw(socket, r.status, r.headers, r.body, true)
    }
    socket.on('error', () => {})
    socket.once('close', () => {
      if (upstream !== null && ctx.details === null) ctx.details = 'tunnel closed by the client'
      if (upstream === null && ctx.status === 0) {
        ctx.status = 499
        ctx.downstream = 'client_closed'
        current?.abort(new ClientGoneError())
      }
      upstream?.destroy()
      finish()
    })

    const routed = routeRequest(ctx, req, rt)
    if (routed.kind === 'bad_request') {
      ctx.status = 400
      writeRaw(socket, 400, { 'content-type': 'text/plain', 'content-length': '12', 'x-request-id': ctx.requestId }, Buffer.from('bad request\n'), true)
    } else if (routed.kind === 'error') {
      fail(routed.type, routed.detail)
    } else {
      connect(ctx, req, rt, routed.route, routed.pool, (t) => { current = t }).then((r) => {
        if (r.kind === 'error') {
          if (ctx.downstream === 'completed') fail(r.type, r.detail)
          return
        }
        if (r.kind === 'gone') return
        if (socket.destroyed) {
          r.socket.destroy()
          r.endpoint.inFlight--
          return
        }
        upstream = r.socket
        ctx.status = 101
        tunnel(ctx, socket, head, r.socket, r.headers, rt, r.idleMs, r.via)
        r.socket.once('close', () => { r.endpoint.inFlight-- })
      }, (err: Error) => fail('proxy_internal_error', err.message))
    }
    return {
      closed,
      destroy: () => {
        socket.destroy()
        upstream?.destroy()
      },
    }
  }
}

/** What phases "select endpoint" and "connect" ended with. */
type ConnectOutcome =
  | { kind: 'upgraded'; socket: Duplex; headers: IncomingHttpHeaders; endpoint: Endpoint; idleMs: number; via: string }
  | { kind: 'error'; type: CauseType; detail: string }
  | { kind: 'gone' }

/** Phases "select endpoint" and "connect" for an upgrade, with the pool's retry rules. */
async function connect(ctx: RequestContext, req: IncomingMessage, rt: Runtime, route: Route, pool: UpstreamPool, setCurrent: (t: UpgradeTry) => void): Promise<ConnectOutcome> {
  const cfg = pool.config
  const host = req.headers.host ?? ''
  const path = upstreamPath(route, req.url ?? '/')
  const via = `${req.httpVersion} ${rt.config.proxy_name}`
  const idempotent = IDEMPOTENT_METHODS.has(req.method ?? 'GET')
  const protocol = String(req.headers.upgrade ?? 'websocket')
  const headerTimeoutMs = pool.headerTimeoutMs
  const tried: Endpoint[] = []
  let endpoint: Endpoint | null = null
  let fresh = false
  let raceRetried = false
  let inRetry = false
  pool.active++
  try {
    for (;;) {
      if (!fresh) {
        const choice = pool.chooseNow(tried) ?? await pool.choose(tried)
        if (choice.endpoint === null) {
          if (choice.failure.endpoint !== null) ctx.beginAttempt(choice.failure.endpoint)
          return { kind: 'error', type: choice.failure.type, detail: choice.failure.detail }
        }
        endpoint = choice.endpoint
        tried.push(endpoint)
      }
      const ep = endpoint as Endpoint
      ctx.beginAttempt(ep.label)
      // Upgrade, Connection and the Sec-WebSocket-* fields: undici writes `Connection: upgrade`
      // and `Upgrade`; the rest are end-to-end and pass as they are.
      const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
        host: route.preserveHost && host ? host : ep.authority,
        forwardedHost: host,
        proto: (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
        clientIp: ctx.clientIp,
        requestId: ctx.requestId,
        via,
      })
      const attempt = new UpgradeTry(ctx, headerTimeoutMs)
      setCurrent(attempt)
      ep.inFlight++
      ep.requests++
      const r = await attempt.run(ep.dispatcher, path, headers, protocol, fresh)
      if (r.ok) {
        pool.report(ep, null, 101)
        return { kind: 'upgraded', socket: r.socket, headers: r.headers, endpoint: ep, idleMs: cfg.timeouts.idle, via }
      }
      ep.inFlight--
      const f = r.failure
      if (ctx.downstream === 'client_closed') return { kind: 'gone' }
      const type = f.type ?? 'proxy_internal_error'
      // A refused upgrade is the application's answer, not a failure of the endpoint.
      pool.report(ep, type === 'http_upgrade_failed' ? null : type, f.status)
      if (type !== 'http_upgrade_failed') ep.lastError = { type, at: Date.now(), detail: f.detail }
      let decision = type === 'http_upgrade_failed' ? 'no' : retryDecision(f, pool.retryPolicy, idempotent, 0, ctx.attempts, cfg.retries.attempts, raceRetried)
      if (decision !== 'no' && !inRetry) {
        if (enterRetry(pool, f)) inRetry = true
        else decision = 'no'
      }
      if (decision === 'no') return { kind: 'error', type, detail: f.detail }
      fresh = decision === 'fresh'
      if (fresh) raceRetried = true
    }
  } finally {
    pool.active--
    if (inRetry) pool.retrying--
  }
}

/**
 * Phase "stream" of an upgrade: writes the 101 downstream, `head` upstream, then copies
 * bytes both ways with backpressure. Closing or an error on either side closes the other;
 * so does `idleMs` without a byte in either direction. Subprotocol and extension
 * negotiation (Sec-WebSocket-Protocol, Sec-WebSocket-Extensions, RFC 6455 §4.2.2) is
 * between the two ends: the bytes pass untouched.
 */
function tunnel(ctx: RequestContext, client: Duplex, head: Buffer, upstream: Duplex, headers: IncomingHttpHeaders, rt: Runtime, idleMs: number, via: string): void {
  const idle = setTimeout(() => {
    ctx.details = `tunnel closed after ${idleMs}ms without traffic (timeouts.idle)`
    client.destroy()
    upstream.destroy()
  }, idleMs)
  const refresh = () => { idle.refresh() }
  const onClose = (side: 'client' | 'upstream', other: Duplex) => () => {
    clearTimeout(idle)
    if (ctx.details === null) ctx.details = `tunnel closed by the ${side}`
    other.destroy()
  }
  const onError = (side: 'client' | 'upstream') => (err: Error) => {
    if (ctx.details === null) ctx.details = `tunnel ended by a ${side} error: ${(err as NodeJS.ErrnoException).code ?? err.message}`
  }
  upstream.on('error', onError('upstream'))
  client.on('error', onError('client'))
  upstream.once('close', onClose('upstream', client))
  client.once('close', onClose('client', upstream))
  if ('setNoDelay' in client) (client as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true)
  if ('setTimeout' in client) (client as unknown as { setTimeout(ms: number): void }).setTimeout(0)
  client.write(switchingHead(headers, ctx, rt, via))
  if (head.length > 0) upstream.write(head)
  upstream.on('data', (chunk: Buffer) => {
    ctx.bytesSent += chunk.length
    refresh()
  })
  client.on('data', refresh)
  upstream.pipe(client)
  client.pipe(upstream)
}
