/**
 * The HTTP exchange: one try of a request whose response streams downstream. On top of
 * the try base (timers, counters, classification) it reads the request body from the
 * client only when the upstream takes it, relays interim and final responses with
 * backpressure, and hands the response to the cache's observer when the route caches.
 */
import type { IncomingMessage, ServerResponse, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import { GatewayError } from '../failures/classify.ts'
import { proxyStatusReceived } from '../failures/proxy-status.ts'
import type { RequestContext } from '../observe/context.ts'
import type { ResponseObserver } from '../observe/response-observer.ts'
import type { Endpoint } from '../upstream/endpoint.ts'
import type { Http1Controller } from '../upstream/http1/connection.ts'
import type { Http1Pool } from '../upstream/http1/pool.ts'
import { cleanResponseHeaders, forwardEarlyHints } from './headers.ts'
import type { HeaderRules } from './header-rules.ts'
import type { RetryLease } from './retries.ts'
import { ClientClosedError, UpstreamTry, type TryResult, type TryTimeouts } from './try.ts'
import type { BufferedBody } from '../protect/request-buffer.ts'
import { ResponseBuffer } from '../protect/response-buffer.ts'
import type { BufferBudget } from '../protect/spill.ts'
import { buffersResponse } from './protection.ts'

/** What every try of one request shares. */
export interface ExchangeRequest {
  readonly ctx: RequestContext
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly method: string
  /** Path and query to send upstream. */
  readonly path: string
  /** Whether the request has a body to stream. */
  readonly hasBody: boolean
  /** Largest request body accepted in bytes (nginx `client_max_body_size`), or null. */
  readonly maxBodyBytes: number | null
  /** Longest client silence while its body is read, in ms (`listeners[].timeouts.body_idle`, nginx `client_body_timeout`). */
  readonly bodyIdleMs: number
  readonly proxyName: string
  /** The Via member of this hop, e.g. `1.1 portico`. */
  readonly via: string
  /** Keep the upstream's `Server` field (the route's `pass_server_header`); else it is removed. */
  readonly passServerHeader: boolean
  /** The route's response header rules (remove, set, add), or null. */
  readonly responseRules: HeaderRules | null
  /** Fields added to this response only (never stored): the rate limits' `RateLimit-Policy`/`RateLimit`, or null. */
  readonly rateLimitHeaders: Record<string, string> | null
  /** The cache's view of the response, when the route caches; else null. */
  readonly observer: ResponseObserver | null
  /** The request body read before the first try (request buffering), or null to stream it from the client. */
  readonly body: BufferedBody | null
  /** Buffering caps when the route buffers responses, else null (the response streams with backpressure). */
  readonly responseBudget: BufferBudget | null
}

/** Ends a try whose upstream status is listed in `retries.on`; not a failure. */
class RetryStatusError extends Error {
  constructor(status: number) {
    super(`retrying after upstream status ${status}`)
  }
}

/**
 * A request body read from the client only when the upstream connection asks for it, so
 * that a try that failed before sending anything leaves the body untouched for the next
 * try. The client's silence is bounded by `body_idle` (408 `http_request_error`).
 */
class LazyBody extends Readable {
  readonly #req: IncomingMessage
  readonly #limit: number
  readonly #idleMs: number
  #idle: NodeJS.Timeout | null = null
  /** Whether a read waits for the client. */
  waiting = false
  /** Bytes taken from the client so far. */
  consumed = 0

  /**
   * @param limit most bytes accepted before the body is refused (nginx client_max_body_size)
   * @param idleMs longest client silence, in ms
   */
  constructor(req: IncomingMessage, limit: number | null, idleMs: number) {
    super()
    this.#req = req
    this.#limit = limit ?? Infinity
    this.#idleMs = idleMs
  }

  override _read(): void {
    const req = this.#req
    let chunk: Buffer | null
    while ((chunk = req.read() as Buffer | null) !== null) {
      this.consumed += chunk.length
      if (this.consumed > this.#limit) {
        this.destroy(new GatewayError('http_request_denied.body_too_large', `request body larger than ${this.#limit} bytes`))
        return
      }
      if (!this.push(chunk)) return
    }
    if (req.readableEnded) {
      this.push(null)
      return
    }
    if (!this.waiting) {
      this.waiting = true
      req.once('readable', this.#onReadable)
      req.once('end', this.#onReadable)
      req.once('error', this.#onError)
      if (this.#idle === null) this.#idle = setTimeout(this.#onIdle, this.#idleMs)
      else this.#idle.refresh()
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

  #onIdle = (): void => {
    if (!this.waiting) return
    this.#detach()
    this.destroy(new GatewayError('http_request_error.client_body_timeout', `client sent no request body bytes for ${this.#idleMs}ms (body_idle)`))
  }

  #detach(): void {
    this.waiting = false
    if (this.#idle !== null) clearTimeout(this.#idle)
    this.#req.removeListener('readable', this.#onReadable)
    this.#req.removeListener('end', this.#onReadable)
    this.#req.removeListener('error', this.#onError)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Never destroy the client's request: a later try may still read it.
    this.#detach()
    this.#idle = null
    cb(err)
  }
}

/** One try of a request whose response streams downstream; implements the pool's handler. */
export class HttpExchange extends UpstreamTry {
  readonly #r: ExchangeRequest
  readonly #headers: string[]
  /** Upstream statuses that end this try to try again (discarding the response), or null. */
  readonly #retryStatuses: ReadonlySet<number> | null
  /** The request's place in the retry budget, taken when a status of `retries.on` ends this try. */
  readonly #lease: RetryLease
  #body: LazyBody | null = null
  /** This try's stream of a buffered body, or null. */
  #buffered: { readonly waiting: boolean } | null = null
  /** Where the response body goes when it is buffered. */
  #sink: ResponseBuffer | null = null
  /** Whether the response may be buffered; the buffer is made at the first backpressure, so a client that keeps up costs nothing. */
  #bufferable = false
  /** Set when the observer answered the client itself: the upstream body is read and dropped. */
  #observerAnswered = false

  /**
   * @param headers the upstream request header fields, flat `[name, value, ...]`
   * @param retryStatuses statuses of `retries.on` this try may retry on, or null
   */
  constructor(r: ExchangeRequest, endpoint: Endpoint, timeouts: TryTimeouts, queueTimeoutMs: number | null, headers: string[], retryStatuses: ReadonlySet<number> | null, lease: RetryLease) {
    super(r.ctx, endpoint, timeouts, queueTimeoutMs)
    this.#r = r
    this.#headers = headers
    this.#retryStatuses = retryStatuses
    this.#lease = lease
  }

  override get bodyConsumed(): number {
    // A buffered body is sent again by each try, unless part of it had to be read live.
    if (this.#r.body !== null) return this.#r.body.live
    return this.#body?.consumed ?? 0
  }

  /**
   * Runs the try.
   *
   * @param fresh open a new connection instead of reusing an idle one (the keep-alive race retry)
   * @returns a promise of null once the response header went downstream (the body keeps
   *   streaming), or of the failure when the try failed before that
   */
  run(dispatcher: Http1Pool, fresh: boolean): Promise<TryResult> {
    const r = this.#r
    const buffered = r.body
    this.#body = r.hasBody && buffered === null ? new LazyBody(r.req, r.maxBodyBytes, r.bodyIdleMs) : null
    const stream = buffered !== null ? buffered.open() : null
    this.#buffered = stream
    return this.dispatchTo(dispatcher, { path: r.path, method: r.method, headers: this.#headers, body: stream ?? this.#body, fresh })
  }

  protected override uploads(): boolean {
    return this.#r.hasBody
  }

  protected override waitingOnClient(): boolean {
    return this.#body !== null ? this.#body.waiting : this.#buffered !== null && this.#buffered.waiting
  }

  onResponseStart(controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    const { ctx, res } = this.#r
    if (statusCode < 200) {
      // Interim responses: 103 Early Hints is forwarded when valid; 100 is answered by Portico itself.
      if (statusCode === 103) forwardEarlyHints(this.#r.req, res, headers)
      return
    }
    this.headerTaken(statusCode)
    if (this.#retryStatuses !== null && this.#retryStatuses.has(statusCode) && this.#lease.acquire()) {
      // Discard this response: the attempt loop tries again. Closing the connection is cheaper than draining an unknown body.
      this.settle({ type: null, causeId: null, status: statusCode, detail: `upstream answered ${statusCode}`, sent: true, reused: this.reused })
      controller.abort(new RetryStatusError(statusCode))
      return
    }
    ctx.status = statusCode
    this.pastHeader = true
    this.armBodyIdle()
    const out = cleanResponseHeaders(headers, this.#r.passServerHeader) as OutgoingHttpHeaders
    if (this.#r.responseRules !== null) this.#r.responseRules.applyToObject(out)
    out['proxy-status'] = proxyStatusReceived(this.#r.proxyName, statusCode, headers['proxy-status'])
    out['x-request-id'] = ctx.requestId
    out.via = headers.via ? `${headers.via}, ${this.#r.via}` : this.#r.via
    if (res.destroyed) {
      controller.abort(new ClientClosedError())
      return
    }
    const observer = this.#r.observer
    if (observer !== null && !observer.start(statusCode, out as IncomingHttpHeaders, out)) {
      this.#observerAnswered = true
      this.settle(null)
      return
    }
    // Set on the response, not in `out`: the cache may store `out`, and these fields are this request's.
    const limits = this.#r.rateLimitHeaders
    if (limits !== null) for (const name in limits) res.setHeader(name, limits[name])
    // HTTP/2 has no reason phrase (RFC 9113 §8.3.2); Node warns when one is given.
    if (statusMessage && this.#r.req.httpVersionMajor < 2) res.writeHead(statusCode, statusMessage, out)
    else res.writeHead(statusCode, out)
    this.#bufferable = this.#r.responseBudget !== null && buffersResponse(this.#r.method, statusCode, headers)
    this.settle(null)
  }

  onResponseData(controller: Http1Controller, chunk: Buffer): void {
    this.bodyProgress()
    if (this.#observerAnswered) return
    this.#r.observer?.data(chunk)
    this.ctx.bytesSent += chunk.length
    if (this.#sink !== null) {
      // Buffered: the upstream is read at its own pace unless the caps are reached.
      if (!this.#sink.write(chunk, this.#resume)) controller.pause()
      return
    }
    if (!this.#r.res.write(chunk)) {
      if (this.#bufferable) {
        // The client fell behind: from now on the response is buffered (response-buffer.ts).
        this.#sink = new ResponseBuffer(this.#r.res, this.#r.responseBudget as BufferBudget, true)
        return
      }
      controller.pause()
      this.#r.res.once('drain', this.#resume)
    }
  }

  onResponseEnd(_controller: Http1Controller, trailers: IncomingHttpHeaders): void {
    this.clearTimers()
    if (this.#observerAnswered) {
      this.finish()
      return
    }
    const { res, req } = this.#r
    this.#r.observer?.end()
    const withTrailers = trailers && Object.keys(trailers).length > 0 && (res.chunkedEncoding || req.httpVersionMajor >= 2)
    if (this.#sink !== null) {
      // The upstream side is done now; the response ends once the client took the held bytes.
      this.#sink.end(withTrailers ? trailers as Record<string, string> : null)
    } else {
      if (withTrailers) res.addTrailers(trailers as Record<string, string>)
      res.end()
    }
    this.finish()
  }

  #resume = (): void => {
    this.controller?.resume()
  }

  onResponseError(_controller: Http1Controller, err: Error): void {
    this.clearTimers()
    if (this.#observerAnswered) {
      this.finish()
      return
    }
    this.#r.observer?.error()
    if (err instanceof ClientClosedError || err instanceof RetryStatusError) {
      this.settle(null)
      this.finish()
      return
    }
    const failure = this.failureOf(err)
    if (this.pastHeader) {
      // The status line is gone: abort the downstream connection so the client cannot
      // mistake a truncated body for a complete one.
      const ctx = this.ctx
      ctx.error = failure.type
      ctx.details = failure.detail
      ctx.downstream = 'aborted'
      this.#r.res.destroy()
    } else {
      this.settle(failure)
    }
    this.finish()
  }
}
