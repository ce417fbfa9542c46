/**
 * HTTP/1.1 Upgrade (RFC 9110 §7.8), WebSocket first (RFC 6455): the same phases as any
 * request (parse → route → select endpoint → connect), then the upgrade is sent upstream
 * and, on its 101, the two raw connections are joined into a tunnel until either side
 * closes or the tunnel stays idle. One access log line per upgrade, when it ends.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { CAUSES, type CauseId } from '../failures/causes.ts'
import { proxyStatusReceived } from '../failures/proxy-status.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { RequestContext } from '../observe/context.ts'
import type { Route } from '../routing/router.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller } from '../upstream/http1/connection.ts'
import type { Http1Pool } from '../upstream/http1/pool.ts'
import type { UpstreamPool } from '../upstream/pool.ts'
import { runAttempts, type Attempts, type PoolAttemptState } from './attempt.ts'
import { errorResponse, parseRequest, routeRequest, upstreamPath } from './driver.ts'
import { IDEMPOTENT_METHODS, upstreamRequestHeaders } from './headers.ts'
import type { Runtime } from './runtime.ts'
import { refusalResponse, writeOnSocket } from './refuse.ts'
import type { HeaderRules } from './header-rules.ts'
import { checkListenerAccess, filterRequest, isRefused, type Admitted, type FilterFacts, type FilterRefused } from '../protect/filter.ts'
import { ClientClosedError, UpstreamTry, type TryResult, type TryTimeouts } from './try.ts'

/** One upgrade in progress or one open tunnel, as the gateway tracks it for drain and stop. */
export interface UpgradeSession {
  /** Resolves once both connections are closed and the access log line is written. */
  readonly closed: Promise<void>
  /** Closes both connections now (shutdown). */
  destroy(): void
}

/** Handles a server's `'upgrade'` event: `(req, socket, head)` as node:http emits it. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => UpgradeSession

/** Ends a try whose upstream answered something other than 101. */
class RefusedUpgradeError extends Error {
  readonly code = 'PORTICO_UPGRADE_REFUSED'
}

/**
 * One try of an upgrade against one endpoint: the pool writes `Connection: upgrade` and
 * `Upgrade: <protocol>`, and hands over the raw socket on a 101 (`onRequestUpgrade`); any
 * other final status comes through `onResponseStart` and fails the try with
 * `http_upgrade_failed` (RFC 9209 §2.3.15; the upstream's answer is not relayed). The
 * endpoint counts the try in flight until the tunnel closes ({@link tunnelClosed}).
 */
class UpgradeTry extends UpstreamTry {
  readonly #path: string
  readonly #headers: string[]
  readonly #protocol: string
  /** The upstream's 101 fields and raw connection, once upgraded. */
  upgraded: { headers: IncomingHttpHeaders; socket: Duplex } | null = null

  constructor(ctx: RequestContext, endpoint: Endpoint, timeouts: TryTimeouts, queueTimeoutMs: number | null, path: string, headers: string[], protocol: string) {
    super(ctx, endpoint, timeouts, queueTimeoutMs)
    this.#path = path
    this.#headers = headers
    this.#protocol = protocol
  }

  run(dispatcher: Http1Pool, fresh: boolean): Promise<TryResult> {
    return this.dispatchTo(dispatcher, { path: this.#path, method: 'GET', headers: this.#headers, upgrade: this.#protocol, fresh })
  }

  onRequestUpgrade(_controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.clearTimers()
    this.headerTaken(statusCode)
    if (this.settled) {
      socket.destroy()
      this.finish()
      return
    }
    this.upgraded = { headers, socket }
    this.settle(null)
  }

  onResponseStart(controller: Http1Controller, statusCode: number): void {
    if (statusCode < 200) return
    this.clearTimers()
    this.headerTaken(statusCode)
    this.settle({ type: 'http_upgrade_failed', causeId: 'http_upgrade_failed', status: statusCode, detail: `upstream answered ${statusCode} instead of 101`, sent: true, reused: this.reused })
    controller.abort(new RefusedUpgradeError(`upstream answered ${statusCode}`))
  }

  onResponseData(): void {}

  onResponseEnd(): void {
    this.finish()
  }

  onResponseError(_controller: Http1Controller, err: Error): void {
    if (!this.settled && !(err instanceof ClientClosedError)) this.settle(this.failureOf(err))
    else this.settle({ type: null, causeId: null, status: null, detail: err.message, sent: this.socket !== null, reused: this.reused })
    this.finish()
  }

  /** The tunnel of a successful try closed: the endpoint no longer counts it. */
  tunnelClosed(): void {
    this.finish()
  }
}

/** One upgrade as the attempt loop drives it. */
class UpgradeRequest implements Attempts<UpgradeTry> {
  readonly ctx: RequestContext
  readonly pool: UpstreamPool
  readonly idempotent: boolean
  readonly #req: IncomingMessage
  readonly #route: Route
  readonly #path: string
  readonly #protocol: string
  readonly #requestRules: HeaderRules | null
  readonly via: string
  current: UpgradeTry | null = null

  constructor(ctx: RequestContext, req: IncomingMessage, rt: Runtime, route: Route, pool: UpstreamPool) {
    this.ctx = ctx
    this.pool = pool
    this.#req = req
    this.#route = route
    this.idempotent = IDEMPOTENT_METHODS.has(req.method ?? 'GET')
    this.#path = upstreamPath(route, req.url ?? '/')
    this.#protocol = String(req.headers.upgrade ?? 'websocket')
    this.via = `${req.httpVersion} ${rt.config.proxy_name}`
    this.#requestRules = rt.headerRules.get(route.name)?.request ?? null
  }

  newTry(ep: Endpoint, queueTimeoutMs: number | null, state: PoolAttemptState): UpgradeTry {
    const req = this.#req
    const host = req.headers.host ?? ''
    // Upgrade, Connection and the Sec-WebSocket-* fields: the pool writes `Connection: upgrade`
    // and `Upgrade`; the rest are end-to-end and pass as they are.
    const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
      host: this.#route.hostRewrite ?? (this.#route.preserveHost && host ? host : ep.authority),
      forwardedHost: host,
      proto: (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
      clientIp: this.ctx.clientIp,
      peerIp: this.ctx.peer,
      trustedPeer: this.ctx.trustedPeer,
      forwarded: this.#route.config.forwarded,
      requestId: this.ctx.requestId,
      via: this.via,
      clientHeaders: this.#route.config.forwarded_headers,
    })
    const rules = this.#requestRules
    const t = new UpgradeTry(this.ctx, ep, state.timeouts, queueTimeoutMs, this.#path, rules ? rules.applyToList(headers) : headers, this.#protocol)
    this.current = t
    return t
  }

  abandoned(): boolean {
    return this.ctx.downstream === 'client_closed'
  }
}

/** The 101 head sent downstream: the upstream's fields (less Server unless passed), plus Proxy-Status, X-Request-Id and Via. */
function switchingHead(headers: IncomingHttpHeaders, ctx: RequestContext, rt: Runtime, via: string, passServer: boolean): string {
  let head = 'HTTP/1.1 101 Switching Protocols\r\n'
  const add = (name: string, value: string | string[] | undefined) => {
    if (value === undefined) return
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`
  }
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'proxy-status' || name === 'x-request-id' || name === 'via' || (name === 'server' && !passServer)) continue
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
export function createUpgradeHandler(getRuntime: () => Runtime, log: AccessLogSink, listener?: string): UpgradeHandler {
  return function handleUpgrade(req, socket, head) {
    const rt = getRuntime()
    const ctx = parseRequest(req, rt.filters.trusted)
    let request: UpgradeRequest | null = null
    let upstream: Duplex | null = null
    let resolveClosed: () => void = () => {}
    const closed = new Promise<void>((resolve) => { resolveClosed = resolve })
    const finish = () => {
      if (ctx.logged) return
      ctx.logged = true
      log.write(ctx)
      resolveClosed()
    }
    const fail = (id: CauseId, detail: string) => {
      ctx.error = CAUSES[id].type
      ctx.details = detail
      const r = errorResponse(ctx, req, rt, id, detail)
      ctx.status = r.status
      ctx.bytesSent = r.body.length
      writeOnSocket(socket, r, true)
    }
    const refuse = (r: FilterRefused) => {
      const out = refusalResponse(ctx, req.headers.accept, rt, r, true, null)
      if (r.headers !== null) Object.assign(out.headers, r.headers)
      writeOnSocket(socket, out, req.method !== 'HEAD')
    }
    let admitted: Admitted | null = null
    socket.on('error', () => {})
    socket.once('close', () => {
      if (admitted?.slot) admitted.slot.limit.release(admitted.slot.key)
      if (upstream !== null && ctx.details === null) ctx.details = 'tunnel closed by the client'
      if (upstream === null && ctx.status === 0) {
        ctx.status = 499
        ctx.downstream = 'client_closed'
        request?.current?.abort(new ClientClosedError())
      }
      upstream?.destroy()
      finish()
    })

    const facts: FilterFacts = { method: ctx.method, target: req.url ?? '/', headers: req.headers, clientIp: ctx.clientIp }
    const listenerRules = listener !== undefined ? rt.filters.listeners.get(listener) : undefined
    const denied = listenerRules !== undefined ? checkListenerAccess(listenerRules, facts) : null
    const routed = denied === null ? routeRequest(ctx, req, rt, facts) : null
    if (denied !== null) {
      refuse(denied)
    } else if (routed === null) {
      // Unreachable: routed is set whenever nothing was denied.
    } else if (routed.kind === 'bad_request') {
      fail('http_request_error.target_form', routed.detail)
    } else if (routed.kind === 'error') {
      fail(routed.type, routed.detail)
    } else {
      const rf = rt.filters.routes.get(routed.route.name)
      const outcome = rf === undefined ? null : filterRequest(rf, facts)
      // Phases "access rules → rate limits" of the route; Redis limits answer later.
      Promise.resolve(outcome).then((o) => {
        if (o !== null && isRefused(o)) return refuse(o)
        if (o !== null && o.slot !== null) {
          if (socket.destroyed) return o.slot.limit.release(o.slot.key)
          admitted = o
        }
        return open(routed.route, routed.pool)
      }, (err: Error) => fail('proxy_internal_error', err.message))
    }
    function open(route: Route, pool: UpstreamPool): void {
      const u = request = new UpgradeRequest(ctx, req, rt, route, pool)
      runAttempts(u).then((end) => {
        if (end.kind === 'abandoned') return
        if (end.kind === 'failed') {
          if (ctx.downstream === 'completed') fail(end.causeId, end.detail)
          return
        }
        const t = end.try
        const up = t.upgraded as { headers: IncomingHttpHeaders; socket: Duplex }
        up.socket.once('close', () => t.tunnelClosed())
        if (socket.destroyed) {
          up.socket.destroy()
          return
        }
        upstream = up.socket
        ctx.status = 101
        tunnel(ctx, socket, head, up.socket, up.headers, rt, pool.config.timeouts.idle, u.via, route.config.pass_server_header)
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

/**
 * Phase "stream" of an upgrade: writes the 101 downstream, `head` upstream, then copies
 * bytes both ways with backpressure. Closing or an error on either side closes the other;
 * so does `idleMs` without a byte in either direction. Subprotocol and extension
 * negotiation (Sec-WebSocket-Protocol, Sec-WebSocket-Extensions, RFC 6455 §4.2.2) is
 * between the two ends: the bytes pass untouched.
 */
function tunnel(ctx: RequestContext, client: Duplex, head: Buffer, upstream: Duplex, headers: IncomingHttpHeaders, rt: Runtime, idleMs: number, via: string, passServer: boolean): void {
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
  client.write(switchingHead(headers, ctx, rt, via, passServer))
  if (head.length > 0) upstream.write(head)
  upstream.on('data', (chunk: Buffer) => {
    ctx.bytesSent += chunk.length
    refresh()
  })
  client.on('data', refresh)
  upstream.pipe(client)
  client.pipe(upstream)
}
