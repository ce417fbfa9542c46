/**
 * One try of a request against one endpoint: dispatches to undici, runs Portico's own
 * precise timers (first-byte, idle both ways, total), streams the response downstream
 * with backpressure, and reports how the try ended so the driver can retry or answer.
 */
import type { IncomingMessage, ServerResponse, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { Readable, type Duplex } from 'node:stream'
import type { CauseType } from '../failures/causes.ts'
import { classify, GatewayError, type FailureStage } from '../failures/classify.ts'
import { proxyStatusReceived } from '../failures/proxy-status.ts'
import type { UpstreamConfig } from '../config/schema.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller, Http1Handler, Http1Pool } from '../upstream/http1.ts'
import type { RequestContext } from '../observe/context.ts'
import { recordConnection } from '../upstream/connector.ts'
import { cleanResponseHeaders } from './headers.ts'
import type { ResponseTee } from '../cache/phase.ts'

/** How a try ended before any response header went downstream. */
export interface TryFailure {
  /** The cause, or null when the try ended on an upstream status listed in `retries.on` (the response was discarded to try again). */
  type: CauseType | null
  /** The upstream status that ended the try when `type` is null. */
  status: number | null
  detail: string
  /** Whether request bytes may have reached the upstream (a socket was assigned). */
  sent: boolean
  /** Whether the connection had served earlier requests (keep-alive reuse). */
  reused: boolean
}

/** The result of a try: `null` when the response went downstream (or the client left), else the failure. */
export type TryResult = TryFailure | null

/** Everything a try needs that does not change between tries. */
export interface TryInput {
  ctx: RequestContext
  req: IncomingMessage
  res: ServerResponse
  method: string
  /** Path and query to send upstream. */
  path: string
  /** Upstream request headers, flat `[name, value, ...]`. */
  headers: string[]
  /** Whether the request has a body to stream. */
  hasBody: boolean
  timeouts: UpstreamConfig['timeouts']
  /** First-byte timeout of this try in ms (the shorter of `timeouts.response_header` and `retries.per_try_timeout`). */
  headerTimeoutMs: number
  /** Upstream statuses that end the try to try again (discarding the response), or null when no retry is possible. */
  retryStatuses: ReadonlySet<number> | null
  /** Asked when such a status arrives: whether the retry budget lets this request retry (taking a place in it). */
  retryGate?: () => boolean
  /** When the endpoint is at its connection limit: how long the try may wait for a connection, in ms; else null. */
  queueTimeoutMs: number | null
  /** Largest request body accepted in bytes, or null. */
  maxBodyBytes: number | null
  proxyName: string
  /** The cache's view of the response ("cache store" phase), when the route caches; else absent. */
  tee?: ResponseTee | null
  via: string
}

/** Ends a try whose upstream status is listed in `retries.on`; not a failure. */
class RetryStatusError extends Error {
  constructor(status: number) {
    super(`retrying after upstream status ${status}`)
  }
}

/** The client went away; not an upstream failure. */
export class ClientClosedError extends Error {
  readonly code = 'PORTICO_CLIENT_CLOSED'
  constructor() {
    super('client closed the connection')
  }
}


const TIMER_UPLOAD = 1
const TIMER_HEADER = 2
const TIMER_BODY = 3

/**
 * A request body read from the client only when undici asks for it, so that a try that
 * failed before sending anything leaves the body untouched for the next try.
 */
class LazyBody extends Readable {
  readonly #req: IncomingMessage
  readonly #limit: number
  #waiting = false
  /** Bytes taken from the client so far. */
  consumed = 0

  /** @param limit most bytes accepted before the body is refused (nginx client_max_body_size) */
  constructor(req: IncomingMessage, limit: number | null) {
    super()
    this.#req = req
    this.#limit = limit ?? Infinity
  }

  override _read(): void {
    const req = this.#req
    let chunk: Buffer | null
    while ((chunk = req.read() as Buffer | null) !== null) {
      this.consumed += chunk.length
      if (this.consumed > this.#limit) {
        this.destroy(new GatewayError('http_request_denied', `request body larger than ${this.#limit} bytes`))
        return
      }
      if (!this.push(chunk)) return
    }
    if (req.readableEnded) {
      this.push(null)
      return
    }
    if (!this.#waiting) {
      this.#waiting = true
      req.once('readable', this.#onReadable)
      req.once('end', this.#onReadable)
      req.once('error', this.#onError)
    }
  }

  #onReadable = (): void => {
    this.#detach()
    this._read()
  }

  #onError = (err: Error): void => {
    this.#detach()
    this.destroy(err)
  }

  #detach(): void {
    this.#waiting = false
    this.#req.removeListener('readable', this.#onReadable)
    this.#req.removeListener('end', this.#onReadable)
    this.#req.removeListener('error', this.#onError)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Never destroy the client's request: a later try may still read it.
    this.#detach()
    cb(err)
  }
}

/** One exchange with one endpoint; implements undici's dispatch handler. */
export class UpstreamExchange implements Http1Handler {
  readonly #in: TryInput
  readonly #endpoint: Endpoint
  readonly #start = performance.now()
  #controller: Http1Controller | null = null
  #socket: Duplex | null = null
  #reused = false
  #body: LazyBody | null = null
  /**
   * The one timer of the phase timeouts (upload idle, first byte, body idle). Moving the
   * deadline only sets {@link #deadline}: the timer, when it fires before the deadline,
   * waits again for the rest, so a try creates one timer in the common case instead of
   * one per phase and per chunk.
   */
  #timer: NodeJS.Timeout | null = null
  #timerKind = 0
  /** When the current phase times out, `performance.now()` ms. */
  #deadline = 0
  /** When {@link #timer} fires, `performance.now()` ms. */
  #timerDue = 0
  #totalTimer: NodeJS.Timeout | null = null
  #queueTimer: NodeJS.Timeout | null = null
  /** Whether the try still counts in the endpoint's pending requests (waiting for a connection). */
  #pending = false
  #headerSent = false
  #settled = false
  #resolve: (r: TryResult) => void = () => {}
  #finished = false
  /** Set when the cache answered the client itself: the upstream body is read and dropped. */
  #teeAnswered = false

  constructor(input: TryInput, endpoint: Endpoint) {
    this.#in = input
    this.#endpoint = endpoint
  }

  /** Bytes of the request body taken from the client by this try (0 means the body can be replayed). */
  get bodyConsumed(): number {
    return this.#body?.consumed ?? 0
  }

  /**
   * Runs the try.
   *
   * @param dispatcher the endpoint's connection pool
   * @param fresh open a new connection instead of reusing an idle one (the keep-alive race retry)
   * @returns a promise of null once the response header went downstream (the body keeps
   *   streaming), or of the failure when the try failed before that
   */
  run(dispatcher: Http1Pool, fresh = false): Promise<TryResult> {
    const { timeouts, method, path, headers, hasBody, req } = this.#in
    const promise = new Promise<TryResult>((resolve) => { this.#resolve = resolve })
    this.#endpoint.inFlight++
    this.#endpoint.pending++
    this.#pending = true
    this.#endpoint.requests++
    if (timeouts.total !== undefined) {
      this.#totalTimer = setTimeout(this.#onTotalTimeout, timeouts.total)
    }
    if (this.#in.queueTimeoutMs !== null) {
      this.#queueTimer = setTimeout(this.#onQueueTimeout, this.#in.queueTimeoutMs)
    }
    this.#body = hasBody ? new LazyBody(req, this.#in.maxBodyBytes) : null
    dispatcher.dispatch({
      path,
      method,
      headers,
      body: this.#body,
      fresh,
    }, this)
    return promise
  }

  /** Aborts the exchange (client gone or shutdown); the pool tells `onResponseError`. */
  abort(err: Error): void {
    this.#controller?.abort(err)
  }

  /** Called with the connection the request is about to be written on. */
  onSocket(socket: Duplex): void {
    this.#socket = socket
    this.#leaveQueue()
    this.#reused = recordConnection(this.#in.ctx, socket)
    if (this.#in.hasBody) this.#arm(TIMER_UPLOAD, this.#in.timeouts.idle)
    else this.#arm(TIMER_HEADER, this.#in.headerTimeoutMs)
  }

  /** Called by the pool inside `dispatch`, so every timer of the try finds the controller. */
  onRequestStart(controller: Http1Controller): void {
    this.#controller = controller
  }

  onBodySent(): void {
    if (this.#timerKind === TIMER_UPLOAD) this.#deadline = performance.now() + this.#in.timeouts.idle
  }

  onRequestSent(): void {
    if (this.#timerKind === TIMER_UPLOAD) this.#arm(TIMER_HEADER, this.#in.headerTimeoutMs)
  }

  onResponseStart(controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    const { ctx, res } = this.#in
    if (statusCode < 200) {
      // Interim responses: 103 Early Hints is forwarded; 100 is answered by Portico itself.
      if (statusCode === 103 && headers.link && !res.headersSent) {
        res.writeEarlyHints({ link: headers.link })
      }
      return
    }
    ctx.timings.ttfb_ms = performance.now() - this.#start
    ctx.upstreamStatus = statusCode
    if (this.#in.retryStatuses !== null && this.#in.retryStatuses.has(statusCode) && (this.#in.retryGate?.() ?? true)) {
      // Discard this response: the driver tries again. Closing the connection is cheaper than draining an unknown body.
      this.#settle({ type: null, status: statusCode, detail: `upstream answered ${statusCode}`, sent: true, reused: this.#reused })
      controller.abort(new RetryStatusError(statusCode))
      return
    }
    ctx.status = statusCode
    this.#arm(TIMER_BODY, this.#in.timeouts.idle)
    const out = cleanResponseHeaders(headers) as OutgoingHttpHeaders
    out['proxy-status'] = proxyStatusReceived(this.#in.proxyName, statusCode, headers['proxy-status'])
    out['x-request-id'] = ctx.requestId
    out.via = headers.via ? `${headers.via}, ${this.#in.via}` : this.#in.via
    if (res.destroyed) {
      controller.abort(new ClientClosedError())
      return
    }
    if (this.#in.tee && !this.#in.tee.start(statusCode, out as IncomingHttpHeaders, out)) {
      this.#teeAnswered = true
      this.#settle(null)
      return
    }
    this.#headerSent = true
    // HTTP/2 has no reason phrase (RFC 9113 §8.3.2); Node warns when one is given.
    if (statusMessage && this.#in.req.httpVersionMajor < 2) res.writeHead(statusCode, statusMessage, out)
    else res.writeHead(statusCode, out)
    this.#settle(null)
  }

  onResponseData(controller: Http1Controller, chunk: Buffer): void {
    if (this.#timerKind === TIMER_BODY) this.#deadline = performance.now() + this.#in.timeouts.idle
    if (this.#teeAnswered) return
    this.#in.tee?.data(chunk)
    this.#in.ctx.bytesSent += chunk.length
    if (!this.#in.res.write(chunk)) {
      controller.pause()
      this.#in.res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(_controller: Http1Controller, trailers: IncomingHttpHeaders): void {
    this.#clearTimers()
    const res = this.#in.res
    if (this.#teeAnswered) {
      this.#finish()
      return
    }
    this.#in.tee?.end()
    if (trailers && Object.keys(trailers).length > 0 && (res.chunkedEncoding || this.#in.req.httpVersionMajor >= 2)) {
      res.addTrailers(trailers as Record<string, string>)
    }
    res.end()
    this.#finish()
  }

  onResponseError(_controller: Http1Controller, err: Error): void {
    this.#clearTimers()
    const { ctx, res } = this.#in
    if (this.#teeAnswered) {
      this.#finish()
      return
    }
    this.#in.tee?.error()
    if (err instanceof ClientClosedError || err instanceof RetryStatusError) {
      this.#settle(null)
      this.#finish()
      return
    }
    const stage: FailureStage = this.#headerSent ? 'body' : this.#socket ? 'header' : 'connect'
    const c = classify(err, stage)
    this.#endpoint.lastError = { type: c.type, at: Date.now(), detail: c.detail }
    if (this.#headerSent) {
      // The status line is gone: abort the downstream connection so the client cannot
      // mistake a truncated body for a complete one.
      ctx.error = c.type
      ctx.details = c.detail
      ctx.downstream = 'aborted'
      res.destroy()
      this.#finish()
      return
    }
    let detail = c.detail
    if (c.type === 'connection_terminated') detail += this.#reused ? ' (on a reused keep-alive connection)' : ' (on a new connection)'
    this.#settle({ type: c.type, status: null, detail, sent: this.#socket !== null, reused: this.#reused })
    this.#finish()
  }

  #arm(kind: number, ms: number): void {
    this.#timerKind = kind
    this.#deadline = performance.now() + ms
    // A timer due no later than the new deadline stays: when it fires it waits for the rest.
    if (this.#timer !== null) {
      if (this.#timerDue <= this.#deadline) return
      clearTimeout(this.#timer)
    }
    this.#timerDue = this.#deadline
    this.#timer = setTimeout(this.#onTimeout, ms)
  }

  #onTimeout = (): void => {
    // Node's timers count from the event loop's cached clock, which may lag: within 1 ms is due.
    const left = this.#deadline - performance.now()
    if (left > 1) {
      this.#timerDue = this.#deadline
      this.#timer = setTimeout(this.#onTimeout, Math.ceil(left))
      return
    }
    const t = this.#in.timeouts
    const err = this.#timerKind === TIMER_HEADER
      ? new GatewayError('http_response_timeout', `no response header within ${this.#in.headerTimeoutMs}ms`)
      : this.#timerKind === TIMER_BODY
        ? new GatewayError('connection_read_timeout', `response body idle for more than ${t.idle}ms`)
        // An upload that stalls is a slow client, but the exchange still cannot complete.
        : new GatewayError('http_response_timeout', `request body idle for more than ${t.idle}ms`)
    this.#timer = null
    this.abort(err)
  }

  #onTotalTimeout = (): void => {
    this.#totalTimer = null
    const err = new GatewayError(this.#headerSent ? 'connection_read_timeout' : 'http_response_timeout',
      `exchange took longer than the total timeout ${this.#in.timeouts.total}ms`)
    // A queued request leaves the queue; onResponseError settles the try either way.
    this.abort(err)
  }

  #onQueueTimeout = (): void => {
    this.#queueTimer = null
    if (this.#socket !== null) return
    const err = new GatewayError('connection_limit_reached',
      `endpoint ${this.#endpoint.label} stayed at its connection limit for ${this.#in.queueTimeoutMs}ms`)
    // The pool drops it from its queue without opening a connection; onResponseError settles the try.
    this.abort(err)
  }

  #leaveQueue(): void {
    if (this.#queueTimer !== null) {
      clearTimeout(this.#queueTimer)
      this.#queueTimer = null
    }
    if (this.#pending) {
      this.#pending = false
      this.#endpoint.pending--
    }
  }

  #clearTimers(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    if (this.#totalTimer !== null) clearTimeout(this.#totalTimer)
    this.#timer = null
    this.#totalTimer = null
  }

  #settle(r: TryResult): void {
    if (this.#settled) return
    this.#settled = true
    this.#resolve(r)
  }

  #finish(): void {
    if (this.#finished) return
    this.#finished = true
    this.#leaveQueue()
    this.#clearTimers()
    this.#endpoint.inFlight--
  }
}
