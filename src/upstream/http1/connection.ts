/**
 * One HTTP/1.1 connection of Portico's upstream client and the requests exchanged on it.
 *
 * {@link Http1Controller} is a request's controller (undici's `DispatchController`:
 * `abort`, `pause`, `resume`); {@link Http1Connection} writes the request, feeds the bytes
 * read to its {@link ResponseParser} and turns the parser's events into the handler's
 * callbacks, and keeps the books of persistence: whether the connection may go back to
 * the pool (RFC 9112 §9.3, `Keep-Alive: timeout=N` honoured as undici and nginx do, no
 * reuse after bytes beyond the response or a response that came before the whole request
 * body, RFC 9112 §9.5). Request heads and body chunks are written coalesced per
 * event-loop turn ({@link coalesceWrites}): the requests of one turn reach the endpoint
 * back to back, one wake-up of it for all of them.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import { coalesceWrites } from '../../lib/coalesce.ts'
import { NO_TRAILERS, ResponseParser, TOKEN, type ResponseParserHandler, type UpstreamParseError } from './parser.ts'
import type { Http1Pool } from './pool.ts'

/** Dispatch options understood by {@link Http1Pool.dispatch} (a subset of undici's). */
export interface Http1DispatchOptions {
  method: string
  /** Request target: path and query. */
  path: string
  /** Flat `[name, value, ...]` list, or an object of fields. */
  headers?: string[] | Record<string, string | string[] | undefined> | null
  /** Request body; a Readable is streamed with backpressure, and only read once a connection is assigned. */
  body?: Readable | Buffer | string | null
  /** Protocol to upgrade to (e.g. `websocket`): sends `Connection: upgrade` and hands over the socket on 101. */
  upgrade?: string | null
  /** Open a new connection for this request instead of reusing an idle one; it may exceed `connections`. */
  fresh?: boolean
  /** Cancels the request. */
  signal?: AbortSignal | null
}

/** What the pool calls; undici's `Dispatcher.DispatchHandler` plus `onSocket`. */
export interface Http1Handler {
  onRequestStart?(controller: Http1Controller, context: unknown): void
  /** The connection the request is about to be written on; its first byte is not yet sent. */
  onSocket?(socket: Duplex): void
  onBodySent?(chunk: Buffer): void
  onRequestSent?(): void
  onResponseStart?(controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void
  onResponseData?(controller: Http1Controller, chunk: Buffer): void
  onResponseEnd?(controller: Http1Controller, trailers: IncomingHttpHeaders): void
  onResponseError?(controller: Http1Controller, err: Error): void
  onRequestUpgrade?(controller: Http1Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void
}

/** The upstream closed the connection (or it broke) before the exchange was complete. */
export class UpstreamClosedError extends Error {
  readonly code = 'UND_ERR_SOCKET'
  constructor(message: string) {
    super(message)
  }
}

/** CR, LF or NUL: never allowed in a request field we write. */
const BAD_OUT = /[\r\n\0]/
const CRLF = Buffer.from('\r\n')
const BODYLESS_METHODS_NEED_LENGTH = new Set(['POST', 'PUT', 'PATCH'])

/**
 * One request through the pool, and the controller its handler steers it with (undici's
 * `DispatchController`: `abort`, `pause`, `resume`).
 */
export class Http1Controller {
  readonly options: Http1DispatchOptions
  readonly handler: Http1Handler
  /** The connection exchanging it, or null while queued. */
  conn: Http1Connection | null = null
  #aborted = false
  #paused = false
  #reason: Error | null = null
  /** Whether the handler has been told the end (onResponseEnd, onResponseError or onRequestUpgrade). */
  done = false
  /** Whether the pool counts it as running. */
  counted = false
  readonly #pool: Http1Pool

  constructor(pool: Http1Pool, options: Http1DispatchOptions, handler: Http1Handler) {
    this.#pool = pool
    this.options = options
    this.handler = handler
  }

  get aborted(): boolean { return this.#aborted }
  get paused(): boolean { return this.#paused }
  get reason(): Error | null { return this.#reason }
  /** Not kept; undici's raw header list is only read by `responseHeaders: 'raw'`. */
  get rawHeaders(): Buffer[] | null { return null }

  /** Ends the request: the connection (if any) is closed and the handler gets `onResponseError(reason)`. */
  abort(reason?: Error): void {
    if (this.#aborted || this.done) return
    this.#aborted = true
    this.#reason = reason ?? new Error('request aborted')
    if (this.conn === null) this.#pool.unqueue(this)
    else this.conn.destroy()
    this.fail(this.#reason)
  }

  /** Stops reading the response body (backpressure) until {@link resume}. */
  pause(): void {
    this.#paused = true
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    this.conn?.resumeParsing()
  }

  /** Marks the request ended; false when it already was. */
  finish(): boolean {
    if (this.done) return false
    this.done = true
    if (this.counted) this.#pool.settled()
    if (this.#onAbort !== null) {
      this.options.signal?.removeEventListener('abort', this.#onAbort)
      this.#onAbort = null
    }
    return true
  }

  #onAbort: (() => void) | null = null

  /** Aborts the request when `signal` fires, until the request ends. */
  watch(signal: AbortSignal): void {
    this.#onAbort = () => this.abort(signal.reason as Error)
    signal.addEventListener('abort', this.#onAbort, { once: true })
  }

  /** Tells the handler the request failed (once). */
  fail(err: Error): void {
    if (!this.finish()) return
    try { this.handler.onResponseError?.(this, err) } catch (thrown) { handlerThrew(this, thrown) }
  }
}

/**
 * A handler callback threw: the request fails instead of the error reaching the event loop
 * (or, once it has ended, its connection closes). Callbacks are called inside try/catch at
 * each call site, with no closure per call: they run several times for every request.
 */
export function handlerThrew(c: Http1Controller, err: unknown): void {
  if (!c.done) c.abort(err as Error)
  else c.conn?.destroy()
}

/**
 * One connection to the endpoint, one request at a time. It is the handler of its own
 * {@link ResponseParser}: the `on*` methods of {@link ResponseParserHandler} are for the
 * parser only.
 */
export class Http1Connection implements ResponseParserHandler {
  readonly socket: Duplex
  readonly #pool: Http1Pool
  /** The request being exchanged, or null when idle. */
  current: Http1Controller | null = null
  /** `performance.now()` when it last became idle. */
  idleSince = 0
  /** Idle time after which it is closed, in ms (the pool's, or shorter when the upstream said so). */
  keepAliveMs: number
  closed = false

  readonly #parser: ResponseParser
  /** Whether the connection may go back to the pool once the response is complete. */
  #keepAlive = true
  #requestDone = false
  #parsing = false
  #body: Readable | null = null
  /**
   * How the connection ended (FIN, close or an error) while a paused handler still had
   * bytes read but not parsed; acted on once they are, since they may complete the response.
   */
  #ended: 'end' | 'close' | Error | null = null

  constructor(pool: Http1Pool, socket: Duplex) {
    this.#pool = pool
    this.socket = socket
    this.keepAliveMs = pool.options.keepAliveTimeoutMs
    this.#parser = new ResponseParser(this, pool.options.maxHeaderSize)
    socket.on('data', this.#onSocketData)
    socket.on('end', this.#onSocketEnd)
    socket.on('error', this.#onSocketError)
    socket.on('close', this.#onSocketClose)
  }

  /** Writes `c`'s request and reads its response. */
  start(c: Http1Controller): void {
    this.current = c
    c.conn = this
    this.#parser.reset(c.options.method === 'HEAD', Boolean(c.options.upgrade))
    this.#keepAlive = true
    this.#requestDone = false
    try { c.handler.onSocket?.(this.socket) } catch (thrown) { handlerThrew(c, thrown) }
    if (c.done || this.closed) return
    this.#writeRequest(c)
  }

  #writeRequest(c: Http1Controller): void {
    const o = c.options
    const { method, path } = o
    if (BAD_OUT.test(path) || path.includes(' ')) {
      c.abort(new TypeError(`invalid request target ${JSON.stringify(path)}`))
      return
    }
    let head = `${method} ${path} HTTP/1.1\r\n`
    let hasHost = false
    let hasLength = false
    const h = o.headers
    const flat = Array.isArray(h) ? h : h ? flatten(h) : NO_FIELDS
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i]
      const value = flat[i + 1]
      if (!TOKEN.test(name) || BAD_OUT.test(value)) {
        c.abort(new TypeError(`invalid request header ${JSON.stringify(name)}`))
        return
      }
      if (name.length === 4 && name.toLowerCase() === 'host') hasHost = true
      else if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true
      head += `${name}: ${value}\r\n`
    }
    if (!hasHost) head += `host: ${this.#pool.options.host}\r\n`
    if (o.upgrade) head += `connection: upgrade\r\nupgrade: ${o.upgrade}\r\n`
    else head += 'connection: keep-alive\r\n'

    const body = o.body ?? null
    const socket = this.socket
    coalesceWrites(socket)
    if (body === null || typeof body === 'string' || Buffer.isBuffer(body)) {
      const bytes = body === null ? null : typeof body === 'string' ? Buffer.from(body) : body
      if (bytes !== null && !hasLength) head += `content-length: ${bytes.length}\r\n`
      else if (bytes === null && !hasLength && BODYLESS_METHODS_NEED_LENGTH.has(method)) head += 'content-length: 0\r\n'
      socket.write(head + '\r\n', 'latin1')
      if (bytes !== null && bytes.length > 0) {
        socket.write(bytes)
        try { c.handler.onBodySent?.(bytes) } catch (thrown) { handlerThrew(c, thrown) }
      }
      this.#requestDone = true
      if (!c.done) try { c.handler.onRequestSent?.() } catch (thrown) { handlerThrew(c, thrown) }
      return
    }
    const chunked = !hasLength
    if (chunked) head += 'transfer-encoding: chunked\r\n'
    socket.write(head + '\r\n', 'latin1')
    this.#streamBody(c, body, chunked)
  }

  #streamBody(c: Http1Controller, body: Readable, chunked: boolean): void {
    const socket = this.socket
    this.#body = body
    const onDrain = (): void => { body.resume() }
    const detach = (): void => {
      body.removeListener('data', onData)
      body.removeListener('end', onEnd)
      body.removeListener('error', onError)
      socket.removeListener('drain', onDrain)
      if (this.#body === body) this.#body = null
    }
    const onData = (chunk: Buffer): void => {
      if (c.done || this.current !== c) {
        detach()
        return
      }
      if (chunk.length === 0) return
      coalesceWrites(socket)
      let ok: boolean
      if (chunked) {
        socket.cork()
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
        socket.write(chunk)
        ok = socket.write(CRLF)
        socket.uncork()
      } else {
        ok = socket.write(chunk)
      }
      try { c.handler.onBodySent?.(chunk) } catch (thrown) { handlerThrew(c, thrown) }
      if (!ok) {
        body.pause()
        socket.once('drain', onDrain)
      }
    }
    const onEnd = (): void => {
      detach()
      if (c.done || this.current !== c) return
      coalesceWrites(socket)
      if (chunked) socket.write('0\r\n\r\n', 'latin1')
      this.#requestDone = true
      try { c.handler.onRequestSent?.() } catch (thrown) { handlerThrew(c, thrown) }
      // A response that finished before the body did could not free the connection then.
      if (this.#parser.finished) this.#complete(c, NO_TRAILERS)
    }
    const onError = (err: Error): void => {
      detach()
      c.abort(err)
    }
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
  }

  #onSocketData = (chunk: Buffer): void => {
    const c = this.current
    if (c === null || this.#parser.finished) {
      // Bytes nobody asked for: the connection cannot be trusted with another request.
      this.destroy()
      return
    }
    this.#parse(c, chunk)
  }

  /** Continues with buffered bytes after the handler resumed. */
  resumeParsing(): void {
    const c = this.current
    if (c === null || this.#parsing) return
    this.socket.resume()
    this.#parse(c, null)
  }

  /**
   * Feeds `chunk` (null: only the bytes already read) to the parser, unless the handler is
   * paused or a parse is running (then the bytes wait in the parser); then pauses the socket
   * for a paused handler, or acts on an end of the connection that waited for the parse.
   */
  #parse(c: Http1Controller, chunk: Buffer | null): void {
    const parser = this.#parser
    if (this.#parsing || c.paused) {
      if (chunk !== null) parser.push(chunk)
      // The running parse reads them before it returns.
      if (this.#parsing) return
    } else {
      this.#parsing = true
      try {
        if (chunk === null) parser.resume()
        else parser.execute(chunk)
      } catch (err) {
        // Portico's own fault under a parser event (handler errors are caught where called).
        this.destroy()
        c.fail(err as Error)
      } finally {
        this.#parsing = false
      }
    }
    if (c.paused && this.current === c && !c.done) {
      this.socket.pause()
      return
    }
    const ended = this.#ended
    if (ended !== null) {
      this.#ended = null
      if (this.closed) return
      if (ended === 'end') this.#onSocketEnd()
      else if (ended === 'close') this.#onSocketClose()
      else this.#onSocketError(ended)
    }
  }

  /** Whether the parser may go on after an event of the request `c` (it may have ended or paused). */
  #proceed(c: Http1Controller): boolean {
    return !c.done && this.current === c && !c.paused
  }

  /** Parser event: an interim response, told to the handler as a response start. */
  onInformational(status: number, headers: IncomingHttpHeaders, reason: string): boolean {
    const c = this.current
    if (c === null) return false
    try { c.handler.onResponseStart?.(c, status, headers, reason) } catch (thrown) { handlerThrew(c, thrown) }
    return this.#proceed(c)
  }

  /** Parser event: the final response head. Settles persistence (RFC 9112 §9.3) before the handler hears of it. */
  onHead(status: number, headers: IncomingHttpHeaders, reason: string): boolean {
    const c = this.current
    if (c === null) return false
    const parser = this.#parser
    let keepAlive = parser.keepAlive
    const timeout = parser.keepAliveTimeout
    if (keepAlive && timeout >= 0) {
      const ms = timeout * 1000 - this.#pool.options.keepAliveTimeoutThresholdMs
      if (ms <= 0) keepAlive = false
      else this.keepAliveMs = Math.min(this.#pool.options.keepAliveTimeoutMs, ms)
    }
    if (c.options.upgrade) keepAlive = false
    this.#keepAlive = keepAlive
    try { c.handler.onResponseStart?.(c, status, headers, reason) } catch (thrown) { handlerThrew(c, thrown) }
    return this.#proceed(c)
  }

  /** Parser event: response body bytes. */
  onBody(chunk: Buffer): boolean {
    const c = this.current
    if (c === null) return false
    try { c.handler.onResponseData?.(c, chunk) } catch (thrown) { handlerThrew(c, thrown) }
    return this.#proceed(c)
  }

  /** Parser event: the response is complete. Frees the connection (when it may be reused) and tells the handler. */
  onEnd(trailers: IncomingHttpHeaders): void {
    const c = this.current
    if (c === null || c.done) return
    if (this.#parser.extra > 0) this.#keepAlive = false // bytes beyond the response
    if (!this.#requestDone) {
      // The upstream answered before taking the whole body (RFC 9112 §9.5); stop sending it.
      this.#keepAlive = false
      const body = this.#body
      if (body !== null) {
        body.removeAllListeners('data')
        body.pause()
        this.#body = null
      }
      this.#requestDone = true
    }
    this.#complete(c, trailers)
  }

  /** Parser event: a framing fault; the connection is closed and the request fails. */
  onError(err: UpstreamParseError): void {
    const c = this.current
    this.destroy()
    c?.fail(err)
  }

  #complete(c: Http1Controller, trailers: IncomingHttpHeaders): void {
    if (!c.finish()) return
    this.current = null
    c.conn = null
    if (this.#keepAlive && !this.closed && this.#ended === null) this.#pool.release(this)
    else this.destroy()
    try { c.handler.onResponseEnd?.(c, trailers) } catch (thrown) { handlerThrew(c, thrown) }
  }

  /** Parser event: 101 to a request that asked for an upgrade. The socket leaves the pool for the handler. */
  onUpgrade(headers: IncomingHttpHeaders, rest: Buffer | null): void {
    const c = this.current
    if (c === null) return
    const socket = this.socket
    this.#detach()
    this.#pool.forget(this)
    c.finish()
    this.current = null
    c.conn = null
    // Our 'data' listener left the socket flowing: bytes read before the new owner
    // attaches its own listener would be emitted to no one. Back to the initial state,
    // as node:http does for its 'upgrade' event: buffered until read, piped or listened to.
    socket.readableFlowing = null
    if (rest !== null) socket.unshift(rest)
    try {
      if (c.handler.onRequestUpgrade) c.handler.onRequestUpgrade(c, 101, headers, socket)
      else socket.destroy()
    } catch {
      socket.destroy()
    }
  }

  /** Whether the end of the connection must wait for a paused handler's unparsed bytes. */
  #deferEnd(how: 'end' | 'close' | Error): boolean {
    const c = this.current
    if (c === null || c.done || !c.paused || this.#parser.pending === 0) return false
    this.#ended ??= how
    return true
  }

  #onSocketEnd = (): void => {
    if (this.#deferEnd('end')) return
    const c = this.current
    // A body delimited by the close ends here (the parser then calls onEnd).
    if (c !== null && !c.done && this.#parser.finish()) return
    this.#lost(new UpstreamClosedError(c !== null && !this.#parser.started
      ? 'other side closed: the upstream closed the connection without answering'
      : 'other side closed: the upstream closed the connection before the response was complete'))
  }

  #onSocketError = (err: Error): void => {
    if (this.#deferEnd(err)) return
    this.#lost(err)
  }

  #onSocketClose = (): void => {
    if (this.#deferEnd('close')) return
    this.#lost(new UpstreamClosedError('other side closed: the connection closed before the response was complete'))
  }

  /** The connection broke: fail the request on it, if any, and drop it from the pool. */
  #lost(err: Error): void {
    const c = this.current
    this.destroy()
    if (c !== null) c.fail(err)
  }

  /**
   * Closes the connection and removes it from the pool. The request on it (if any) is not
   * told; callers that end a request call its `fail`.
   */
  destroy(): void {
    if (this.closed) return
    this.closed = true
    const c = this.current
    this.current = null
    if (c !== null) c.conn = null
    if (this.#body !== null) {
      this.#body.removeAllListeners('data')
      this.#body.pause()
      this.#body = null
    }
    this.#detach()
    // Errors after this point (a late EPIPE) have no one to tell.
    this.socket.on('error', noop)
    this.socket.destroy()
    this.#pool.forget(this)
  }

  #detach(): void {
    const s = this.socket
    s.removeListener('data', this.#onSocketData)
    s.removeListener('end', this.#onSocketEnd)
    s.removeListener('error', this.#onSocketError)
    s.removeListener('close', this.#onSocketClose)
  }
}

function noop(): void {}

const NO_FIELDS: readonly string[] = []

/** An object of fields as a flat `[name, value, ...]` list (one pair per value of an array). */
function flatten(h: Record<string, string | string[] | undefined>): string[] {
  const flat: string[] = []
  for (const name of Object.keys(h)) {
    const v = h[name]
    if (v === undefined) continue
    if (Array.isArray(v)) for (const one of v) flat.push(name, one)
    else flat.push(name, v)
  }
  return flat
}
