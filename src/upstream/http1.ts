/**
 * Portico's HTTP/1.1 client: the keep-alive connection pool of one endpoint.
 *
 * It speaks undici's dispatcher interface (`dispatch(options, handler)` with the
 * controller-style handler: `onRequestStart`, `onResponseStart`, `onResponseData`,
 * `onResponseEnd`, `onResponseError`, `onRequestUpgrade`), so undici's `request()` and
 * friends work on it, and adds what the proxy needs at each step of an exchange:
 * `onSocket(socket)` before the first request byte is written, a connection limit with a
 * FIFO queue whose entries can be cancelled without costing a connection, and
 * `fresh: true` for a try that must not reuse a pooled connection (the keep-alive race).
 *
 * Why not undici's own Pool: per request it costs about 1.4× what this does on a
 * small response (measured side by side, see bench/README.md), and the proxy owns every
 * timer anyway. Framing follows RFC 9112: §4 status line, §5 field lines (obs-fold and
 * whitespace before the colon rejected), §6 body length (Transfer-Encoding over
 * Content-Length; both present is refused as smuggling), §7.1 chunked coding with
 * trailers, §9.3 persistence (`Connection: close`, HTTP/1.0), and `Keep-Alive:
 * timeout=N` honoured as undici and nginx do. Request heads and body chunks are written
 * coalesced per event-loop turn ({@link coalesceWrites}): the requests of one turn reach
 * the endpoint back to back, one wake-up of it for all of them.
 */
import net from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import { Dispatcher, type buildConnector } from 'undici'
import { coalesceWrites } from '../lib/coalesce.ts'
import { SlotSet } from '../lib/slot-set.ts'

/** Options of an {@link Http1Pool}. */
export interface Http1PoolOptions {
  /** `http:` or `https:`. */
  protocol: 'http:' | 'https:'
  /** Host name or IP literal to connect to (IPv6 without brackets). */
  hostname: string
  port: number
  /** `Host` field sent when a request carries none: `host[:port]` as in the URL. */
  host: string
  /** Opens a connection (TCP, or TLS for https:), undici's connector signature. */
  connect: buildConnector.connector
  /** Most connections open at once (nginx `max_conns`); requests beyond wait in a FIFO queue. */
  connections: number
  /** How long an idle connection is kept, in ms (nginx `keepalive_timeout` of an upstream block). */
  keepAliveTimeoutMs: number
  /** Subtracted from an upstream's `Keep-Alive: timeout=N`, in ms, so Portico closes first. */
  keepAliveTimeoutThresholdMs: number
  /** Largest response header section accepted, in bytes (status line and fields). */
  maxHeaderSize: number
}

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

/** Connection and queue counts, named as undici's `Pool.stats`. */
export interface Http1PoolStats {
  /** Connections open (idle or busy). */
  connected: number
  /** Idle connections. */
  free: number
  /** Requests waiting for a connection. */
  pending: number
  /** Requests being exchanged on a connection (or opening the fresh connection they asked for). */
  running: number
  /** Requests waiting or running. */
  size: number
}

/**
 * An error in the upstream's HTTP/1.1 framing. `code` is the llhttp name of the problem
 * (`HPE_INVALID_STATUS`, `HPE_HEADER_OVERFLOW`, ...), as Node's own client reports it.
 */
export class UpstreamParseError extends Error {
  override readonly name = 'HTTPParserError'
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.code = code
  }
}

/** The upstream closed the connection (or it broke) before the exchange was complete. */
export class UpstreamClosedError extends Error {
  readonly code = 'UND_ERR_SOCKET'
  constructor(message: string) {
    super(message)
  }
}

/** The pool was closed or destroyed with the request still queued. */
class PoolClosedError extends Error {
  readonly code = 'UND_ERR_CLOSED'
  constructor() {
    super('the endpoint\'s connection pool is closed')
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** What Node's http server refuses in a field value (`checkInvalidHeaderChar`). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/
/** CR, LF or NUL: never allowed in a request field we write. */
const BAD_OUT = /[\r\n\0]/
/** A Content-Length value of one number. */
const DIGITS = /^\d{1,15}$/
const CRLF = Buffer.from('\r\n')
const CRLFCRLF = Buffer.from('\r\n\r\n')
const EMPTY = Buffer.alloc(0)
const NO_TRAILERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders
/** The context given to `onRequestStart` (undici passes per-request state there; this pool has none). */
const NO_CONTEXT = Object.freeze({})
const BODYLESS_METHODS_NEED_LENGTH = new Set(['POST', 'PUT', 'PATCH'])
/** Longest chunk-size line accepted (size, extensions and CRLF), in bytes. */
const MAX_CHUNK_LINE = 4096
const SWEEP_MS = 1000

// Response parser states.
const S_HEAD = 0
const S_LENGTH = 1
const S_CLOSE = 2
const S_CHUNK_SIZE = 3
const S_CHUNK_DATA = 4
const S_CHUNK_CRLF = 5
const S_TRAILERS = 6
const S_DONE = 7

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
function handlerThrew(c: Http1Controller, err: unknown): void {
  if (!c.done) c.abort(err as Error)
  else c.conn?.destroy()
}

/** One connection to the endpoint and the parser of the responses read from it. */
export class Http1Connection {
  readonly socket: Duplex
  readonly #pool: Http1Pool
  /** The request being exchanged, or null when idle. */
  current: Http1Controller | null = null
  /** `performance.now()` when it last became idle. */
  idleSince = 0
  /** Idle time after which it is closed, in ms (the pool's, or shorter when the upstream said so). */
  keepAliveMs: number
  closed = false

  // Parser state of the current response.
  #state = S_HEAD
  #buf: Buffer = EMPTY
  #off = 0
  #scan = 0
  #remaining = 0
  #headResponse = false
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
    socket.on('data', this.#onData)
    socket.on('end', this.#onEnd)
    socket.on('error', this.#onError)
    socket.on('close', this.#onClose)
  }

  /** Writes `c`'s request and reads its response. */
  start(c: Http1Controller): void {
    this.current = c
    c.conn = this
    this.#state = S_HEAD
    this.#scan = 0
    this.#keepAlive = true
    this.#requestDone = false
    this.#headResponse = c.options.method === 'HEAD'
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
      if (this.#state === S_DONE) this.#complete(c)
    }
    const onError = (err: Error): void => {
      detach()
      c.abort(err)
    }
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
  }

  #onData = (chunk: Buffer): void => {
    const c = this.current
    if (c === null || this.#state === S_DONE) {
      // Bytes nobody asked for: the connection cannot be trusted with another request.
      this.destroy()
      return
    }
    if (this.#off < this.#buf.length) {
      // #scan is an index into #buf, which now starts where #off was (e.g. after a 1xx
      // response read from the same chunk as the start of the final head).
      this.#scan = Math.max(0, this.#scan - this.#off)
      this.#buf = Buffer.concat([this.#buf.subarray(this.#off), chunk])
    } else {
      this.#scan = 0
      this.#buf = chunk
    }
    this.#off = 0
    this.#parse(c)
  }

  /** Continues with buffered bytes after the handler resumed. */
  resumeParsing(): void {
    const c = this.current
    if (c === null || this.#parsing) return
    this.socket.resume()
    this.#parse(c)
  }

  #parse(c: Http1Controller): void {
    if (this.#parsing) return
    this.#parsing = true
    try {
      while (!c.done && this.current === c && !c.paused) {
        if (!this.#step(c)) break
      }
    } catch (err) {
      this.destroy()
      c.fail(err as Error)
    } finally {
      this.#parsing = false
    }
    if (c.paused && this.current === c && !c.done) {
      this.socket.pause()
      return
    }
    const ended = this.#ended
    if (ended !== null) {
      this.#ended = null
      if (this.closed) return
      if (ended === 'end') this.#onEnd()
      else if (ended === 'close') this.#onClose()
      else this.#onError(ended)
    }
  }

  /** One step of the response parser; false when it needs more bytes (or the response ended). */
  #step(c: Http1Controller): boolean {
    const buf = this.#buf
    const avail = buf.length - this.#off
    switch (this.#state) {
      case S_HEAD: {
        if (avail === 0) return false
        const from = Math.max(this.#off, this.#scan - 3)
        const end = buf.indexOf(CRLFCRLF, from)
        const max = this.#pool.options.maxHeaderSize
        if (end < 0) {
          if (avail > max) throw new UpstreamParseError('HPE_HEADER_OVERFLOW', `response header section larger than ${max} bytes`)
          // Say at once when the bytes cannot start a response, as llhttp does.
          const n = Math.min(avail, 5)
          if (buf.toString('latin1', this.#off, this.#off + n) !== 'HTTP/'.slice(0, n)) {
            throw new UpstreamParseError('HPE_INVALID_CONSTANT', `not an HTTP/1.x response: ${JSON.stringify(buf.toString('latin1', this.#off, this.#off + Math.min(avail, 60)))}`)
          }
          this.#scan = buf.length
          return false
        }
        if (end - this.#off > max) throw new UpstreamParseError('HPE_HEADER_OVERFLOW', `response header section larger than ${max} bytes`)
        const text = buf.toString('latin1', this.#off, end)
        this.#off = end + 4
        this.#scan = 0
        return this.#onHead(c, text)
      }
      case S_LENGTH: {
        if (avail === 0) return false
        const n = Math.min(avail, this.#remaining)
        const chunk = buf.subarray(this.#off, this.#off + n)
        this.#off += n
        this.#remaining -= n
        this.#deliver(c, chunk)
        if (this.#remaining === 0) this.#finishBody(c, NO_TRAILERS)
        return true
      }
      case S_CLOSE: {
        if (avail === 0) return false
        const chunk = this.#off === 0 ? buf : buf.subarray(this.#off)
        this.#off = buf.length
        this.#deliver(c, chunk)
        return true
      }
      case S_CHUNK_SIZE: {
        const end = buf.indexOf(CRLF, this.#off)
        if (end < 0) {
          if (avail > MAX_CHUNK_LINE) throw new UpstreamParseError('HPE_INVALID_CHUNK_SIZE', 'chunk-size line too long')
          return false
        }
        const line = buf.toString('latin1', this.#off, end)
        this.#off = end + 2
        const semi = line.indexOf(';')
        const hex = (semi < 0 ? line : line.slice(0, semi)).trimEnd()
        if (!/^[0-9A-Fa-f]{1,12}$/.test(hex)) throw new UpstreamParseError('HPE_INVALID_CHUNK_SIZE', `invalid chunk size ${JSON.stringify(line.slice(0, 40))}`)
        const size = parseInt(hex, 16)
        if (size === 0) {
          this.#state = S_TRAILERS
        } else {
          this.#remaining = size
          this.#state = S_CHUNK_DATA
        }
        return true
      }
      case S_CHUNK_DATA: {
        if (avail === 0) return false
        const n = Math.min(avail, this.#remaining)
        const chunk = buf.subarray(this.#off, this.#off + n)
        this.#off += n
        this.#remaining -= n
        if (this.#remaining === 0) this.#state = S_CHUNK_CRLF
        this.#deliver(c, chunk)
        return true
      }
      case S_CHUNK_CRLF: {
        if (avail < 2) return false
        if (buf[this.#off] !== 13 || buf[this.#off + 1] !== 10) throw new UpstreamParseError('HPE_STRICT', 'chunk data not followed by CRLF')
        this.#off += 2
        this.#state = S_CHUNK_SIZE
        return true
      }
      case S_TRAILERS: {
        if (avail < 2) return false
        if (buf[this.#off] === 13 && buf[this.#off + 1] === 10) {
          this.#off += 2
          this.#finishBody(c, NO_TRAILERS)
          return true
        }
        const end = buf.indexOf(CRLFCRLF, this.#off)
        if (end < 0) {
          if (avail > this.#pool.options.maxHeaderSize) throw new UpstreamParseError('HPE_HEADER_OVERFLOW', 'trailer section too large')
          return false
        }
        const trailers: IncomingHttpHeaders = {}
        parseFields(buf.toString('latin1', this.#off, end), 0, trailers)
        this.#off = end + 4
        this.#finishBody(c, trailers)
        return true
      }
      default:
        return false
    }
  }

  /** Handles a parsed status line and field section; true to keep parsing. */
  #onHead(c: Http1Controller, text: string): boolean {
    const eol = text.indexOf('\r\n')
    const statusLine = eol < 0 ? text : text.slice(0, eol)
    // RFC 9112 §4: HTTP-version SP status-code SP [ reason-phrase ]
    if (!statusLine.startsWith('HTTP/1.') || statusLine.length < 12 || statusLine.charCodeAt(8) !== 32 || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) {
      throw new UpstreamParseError('HPE_INVALID_CONSTANT', `not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 60))}`)
    }
    const minor = statusLine.charCodeAt(7) - 48
    const status = Number(statusLine.slice(9, 12))
    if ((minor !== 0 && minor !== 1) || !(status >= 100) || !/^\d{3}$/.test(statusLine.slice(9, 12))) {
      throw new UpstreamParseError('HPE_INVALID_STATUS', `invalid status line ${JSON.stringify(statusLine.slice(0, 60))}`)
    }
    const reason = statusLine.length > 13 ? statusLine.slice(13) : ''
    const headers: IncomingHttpHeaders = {}
    const framing = parseFields(text, eol < 0 ? text.length : eol + 2, headers)

    if (status < 200) {
      if (status === 101) {
        if (!c.options.upgrade) throw new UpstreamParseError('HPE_INVALID_STATUS', '101 Switching Protocols to a request that asked for no upgrade')
        this.#upgrade(c, headers)
        return false
      }
      // Interim response (RFC 9110 §15.2): reported, then the final one follows.
      try { c.handler.onResponseStart?.(c, status, headers, reason) } catch (thrown) { handlerThrew(c, thrown) }
      return true
    }

    // RFC 9112 §9.3: persistence.
    const connection = framing.connection
    if (minor === 0) this.#keepAlive = connection !== null && /(^|,)\s*keep-alive\s*(,|$)/i.test(connection)
    else this.#keepAlive = connection === null || !/(^|,)\s*close\s*(,|$)/i.test(connection)
    if (this.#keepAlive && framing.keepAlive !== null) {
      const m = /timeout\s*=\s*(\d+)/i.exec(framing.keepAlive)
      if (m !== null) {
        const ms = Number(m[1]) * 1000 - this.#pool.options.keepAliveTimeoutThresholdMs
        if (ms <= 0) this.#keepAlive = false
        else this.keepAliveMs = Math.min(this.#pool.options.keepAliveTimeoutMs, ms)
      }
    }
    if (c.options.upgrade) this.#keepAlive = false

    // RFC 9112 §6.3: message body length.
    if (this.#headResponse || status === 204 || status === 304) {
      this.#state = S_DONE
    } else if (framing.transferEncoding !== null) {
      if (framing.contentLength !== null) throw new UpstreamParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'response has both Transfer-Encoding and Content-Length')
      if (/(^|,)\s*chunked\s*$/i.test(framing.transferEncoding)) {
        this.#state = S_CHUNK_SIZE
      } else {
        this.#state = S_CLOSE
        this.#keepAlive = false
      }
    } else if (framing.contentLength !== null) {
      this.#remaining = framing.contentLength
      this.#state = this.#remaining === 0 ? S_DONE : S_LENGTH
    } else {
      this.#state = S_CLOSE
      this.#keepAlive = false
    }

    try { c.handler.onResponseStart?.(c, status, headers, reason) } catch (thrown) { handlerThrew(c, thrown) }
    if (this.#state === S_DONE && !c.done && this.current === c) this.#finishBody(c, NO_TRAILERS)
    return true
  }

  #deliver(c: Http1Controller, chunk: Buffer): void {
    try { c.handler.onResponseData?.(c, chunk) } catch (thrown) { handlerThrew(c, thrown) }
  }

  /** The response is complete: frees the connection (when it may be reused) and tells the handler. */
  #finishBody(c: Http1Controller, trailers: IncomingHttpHeaders): void {
    this.#state = S_DONE
    if (this.#off < this.#buf.length) this.#keepAlive = false // bytes beyond the response
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

  #complete(c: Http1Controller, trailers: IncomingHttpHeaders = NO_TRAILERS): void {
    if (!c.finish()) return
    this.current = null
    c.conn = null
    this.#buf = EMPTY
    this.#off = 0
    if (this.#keepAlive && !this.closed && this.#ended === null) this.#pool.release(this)
    else this.destroy()
    try { c.handler.onResponseEnd?.(c, trailers) } catch (thrown) { handlerThrew(c, thrown) }
  }

  #upgrade(c: Http1Controller, headers: IncomingHttpHeaders): void {
    const socket = this.socket
    const rest = this.#off < this.#buf.length ? this.#buf.subarray(this.#off) : null
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
    if (c === null || c.done || !c.paused || this.#off >= this.#buf.length) return false
    this.#ended ??= how
    return true
  }

  #onEnd = (): void => {
    if (this.#deferEnd('end')) return
    const c = this.current
    if (c !== null && this.#state === S_CLOSE && !c.done) {
      this.#keepAlive = false
      this.#complete(c)
      return
    }
    this.#lost(new UpstreamClosedError(this.#state === S_HEAD && c !== null && this.#buf.length === 0
      ? 'other side closed: the upstream closed the connection without answering'
      : 'other side closed: the upstream closed the connection before the response was complete'))
  }

  #onError = (err: Error): void => {
    if (this.#deferEnd(err)) return
    this.#lost(err)
  }

  #onClose = (): void => {
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
    s.removeListener('data', this.#onData)
    s.removeListener('end', this.#onEnd)
    s.removeListener('error', this.#onError)
    s.removeListener('close', this.#onClose)
  }
}

function noop(): void {}

/** SP or HTAB: optional whitespace around a field value (RFC 9110 §5.6.3). */
function isOws(c: number): boolean {
  return c === 32 || c === 9
}

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

/** The fields that frame the message, collected while parsing. */
interface Framing {
  connection: string | null
  keepAlive: string | null
  transferEncoding: string | null
  contentLength: number | null
}

/**
 * Parses the field lines of `text` from index `from` (lines separated by CRLF, no final
 * CRLF) into `out` (names lower-cased; repeated names become arrays, `set-cookie` always
 * one) and returns the framing fields. Values lose their leading and trailing OWS (SP and
 * HTAB, RFC 9110 §5.5).
 *
 * @throws {UpstreamParseError} on obs-fold, whitespace before the colon, an invalid name
 *   or value, or conflicting Content-Length values (RFC 9112 §5.1, §5.2, §6.3)
 */
function parseFields(text: string, from: number, out: IncomingHttpHeaders): Framing {
  const f: Framing = { connection: null, keepAlive: null, transferEncoding: null, contentLength: null }
  const length = text.length
  for (let pos = from; pos < length;) {
    let eol = text.indexOf('\r\n', pos)
    if (eol < 0) eol = length
    const colon = text.indexOf(':', pos)
    if (colon <= pos || colon > eol) {
      const first = text.charCodeAt(pos)
      if (first === 32 || first === 9) throw new UpstreamParseError('HPE_INVALID_HEADER_TOKEN', 'obsolete line folding in a response field')
      throw new UpstreamParseError('HPE_INVALID_HEADER_TOKEN', `invalid field line ${JSON.stringify(text.slice(pos, Math.min(eol, pos + 60)))}`)
    }
    const rawName = text.slice(pos, colon)
    if (!TOKEN.test(rawName)) throw new UpstreamParseError('HPE_INVALID_HEADER_TOKEN', `invalid field name ${JSON.stringify(rawName.slice(0, 60))}`)
    let start = colon + 1
    let end = eol
    while (start < end && isOws(text.charCodeAt(start))) start++
    while (end > start && isOws(text.charCodeAt(end - 1))) end--
    const value = text.slice(start, end)
    pos = eol + 2
    if (BAD_VALUE.test(value)) throw new UpstreamParseError('HPE_INVALID_HEADER_TOKEN', `invalid characters in the value of ${rawName}`)
    const name = rawName.toLowerCase()
    switch (name) {
      case 'connection':
        f.connection = f.connection === null ? value : `${f.connection}, ${value}`
        break
      case 'keep-alive':
        f.keepAlive = value
        break
      case 'transfer-encoding':
        f.transferEncoding = f.transferEncoding === null ? value : `${f.transferEncoding}, ${value}`
        break
      case 'content-length': {
        // RFC 9110 §8.6: a list of identical values may be taken as one.
        let n = -1
        if (DIGITS.test(value)) n = Number(value)
        else {
          for (const part of value.split(',')) {
            const p = part.trim()
            if (!DIGITS.test(p)) throw new UpstreamParseError('HPE_INVALID_CONTENT_LENGTH', `invalid Content-Length ${JSON.stringify(value.slice(0, 40))}`)
            const v = Number(p)
            if (n !== -1 && v !== n) throw new UpstreamParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting Content-Length values')
            n = v
          }
        }
        if (f.contentLength !== null && f.contentLength !== n) throw new UpstreamParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting Content-Length values')
        f.contentLength = n
        out['content-length'] = String(n)
        continue
      }
    }
    const prev = out[name]
    if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value
    else if (Array.isArray(prev)) prev.push(value)
    else (out as Record<string, string | string[]>)[name] = [prev, value]
  }
  return f
}

/**
 * The keep-alive HTTP/1.1 connection pool of one endpoint, one request per connection at
 * a time (no pipelining).
 */
export class Http1Pool extends Dispatcher {
  readonly options: Http1PoolOptions
  readonly #idle: Http1Connection[] = []
  readonly #all = new SlotSet<Http1Connection>()
  readonly #queue: Http1Controller[] = []
  /** Fresh requests whose own connection is being opened (they are not in the queue). */
  readonly #opening = new Set<Http1Controller>()
  /** Connections being opened, each for the request that asked for it. */
  #connecting = 0
  #running = 0
  #closing: Promise<void> | null = null
  #closeWaiters: (() => void)[] = []
  #destroyed = false
  #sweeper: NodeJS.Timeout | null = null

  constructor(options: Http1PoolOptions) {
    super()
    this.options = options
  }

  /** Whether `close()` or `destroy()` was called (undici's `closed`). */
  get closed(): boolean {
    return this.#closing !== null
  }

  /** Connection and queue counts (undici `Pool.stats` names). */
  get stats(): Http1PoolStats {
    const pending = this.#queue.length
    // #running counts every request not yet ended, queued ones included.
    const running = this.#running - pending
    return { connected: this.#all.size, free: this.#idle.length, pending, running, size: pending + running }
  }

  /**
   * Sends a request. The handler's `onRequestStart` is called at once with the controller
   * (so a queued request can be aborted), `onSocket` once a connection is assigned.
   *
   * @returns false when the pool is closed (the handler got `onResponseError`), else true
   */
  override dispatch(options: Dispatcher.DispatchOptions | Http1DispatchOptions, handler: Dispatcher.DispatchHandler | Http1Handler): boolean {
    const c = new Http1Controller(this, options as Http1DispatchOptions, handler as Http1Handler)
    const signal = (options as Http1DispatchOptions).signal
    if (signal) {
      if (signal.aborted) {
        c.fail(signal.reason as Error)
        return true
      }
      c.watch(signal)
    }
    try { c.handler.onRequestStart?.(c, NO_CONTEXT) } catch (thrown) { handlerThrew(c, thrown) }
    if (c.done) return true
    if (this.#closing !== null || this.#destroyed) {
      c.fail(new PoolClosedError())
      return false
    }
    this.#running++
    c.counted = true
    if (c.options.fresh === true) {
      this.#opening.add(c)
      this.#open(c)
      return true
    }
    const conn = this.#takeIdle()
    if (conn !== null) {
      conn.start(c)
    } else {
      this.#queue.push(c)
      if (this.#all.size + this.#connecting < this.options.connections) this.#open(c)
    }
    return true
  }

  /** An idle connection not past its keep-alive time, or null. */
  #takeIdle(): Http1Connection | null {
    const now = performance.now()
    let conn: Http1Connection | undefined
    while ((conn = this.#idle.pop()) !== undefined) {
      if (now - conn.idleSince < conn.keepAliveMs && !conn.closed) return conn
      conn.destroy()
    }
    return null
  }

  /** Opens a connection on behalf of `c` (queued, or fresh). */
  #open(c: Http1Controller): void {
    this.#connecting++
    const o = this.options
    this.options.connect({ hostname: o.hostname, host: o.host, port: String(o.port), protocol: o.protocol, servername: undefined } as buildConnector.Options, (err, socket) => {
      this.#connecting--
      this.#opening.delete(c)
      if (err !== null || socket === null) {
        // The request it was opened for learns why; others keep waiting for other connections.
        const i = this.#queue.indexOf(c)
        if (i >= 0) this.#queue.splice(i, 1)
        if (c.conn === null) c.fail(err ?? new Error('connect failed'))
        this.#drain()
        return
      }
      const conn = new Http1Connection(this, socket as Duplex)
      this.#all.add(conn)
      if (this.#destroyed) {
        conn.destroy()
        return
      }
      if (c.options.fresh === true && !c.done && c.conn === null) {
        conn.start(c)
        return
      }
      this.release(conn)
    })
  }

  /** A connection finished its exchange and may be reused: serve the queue or keep it idle. */
  release(conn: Http1Connection): void {
    if (this.#all.has(conn) && conn.current === null) {
      const next = this.#queue.shift()
      if (next !== undefined) {
        conn.start(next)
        return
      }
      if (this.#closing !== null || this.#all.size > this.options.connections) {
        conn.destroy()
        return
      }
      conn.idleSince = performance.now()
      this.#idle.push(conn)
      this.#sweeper ??= setInterval(this.#sweep, SWEEP_MS).unref()
    }
    this.#checkClosed()
  }

  /** Removes a closed (or upgraded) connection from the pool's books. */
  forget(conn: Http1Connection): void {
    if (!this.#all.delete(conn)) return
    const i = this.#idle.indexOf(conn)
    if (i >= 0) this.#idle.splice(i, 1)
    this.#drain()
  }

  /** Called by a request's controller when it ends (one way or another). */
  settled(): void {
    this.#running--
  }

  /** Removes a queued request (its controller aborted it). */
  unqueue(c: Http1Controller): void {
    const i = this.#queue.indexOf(c)
    if (i >= 0) this.#queue.splice(i, 1)
  }

  /** Opens connections for queued requests while under the limit. */
  #drain(): void {
    while (this.#queue.length > this.#connecting && this.#all.size + this.#connecting < this.options.connections && !this.#destroyed) {
      const c = this.#queue[this.#connecting]
      if (c === undefined) break
      this.#open(c)
    }
    this.#checkClosed()
  }

  #sweep = (): void => {
    const now = performance.now()
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const conn = this.#idle[i]
      if (now - conn.idleSince >= conn.keepAliveMs) conn.destroy()
    }
    if (this.#idle.length === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper)
      this.#sweeper = null
    }
  }

  #checkClosed(): void {
    if (this.#closing === null) return
    for (const conn of [...this.#idle]) conn.destroy()
    if (this.#all.size === 0 && this.#queue.length === 0 && this.#connecting === 0) {
      if (this.#sweeper !== null) clearInterval(this.#sweeper)
      this.#sweeper = null
      for (const w of this.#closeWaiters.splice(0)) w()
    }
  }

  /** Stops taking requests, closes idle connections, and resolves once busy ones finished. */
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    this.#closing ??= new Promise<void>((resolve) => { this.#closeWaiters.push(resolve) })
    this.#checkClosed()
    if (callback) {
      void this.#closing.then(callback)
      return
    }
    return this.#closing
  }

  /** Closes every connection at once; queued and running requests fail with `err`. */
  override destroy(err?: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(err: Error | null, callback: () => void): void
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b
    const err = (typeof a === 'function' ? null : a) ?? new PoolClosedError()
    this.#destroyed = true
    this.#closing ??= new Promise<void>((resolve) => { this.#closeWaiters.push(resolve) })
    for (const c of this.#queue.splice(0)) c.fail(err)
    for (const c of this.#opening) c.fail(err)
    this.#opening.clear()
    for (const conn of [...this.#all]) {
      const c = conn.current
      conn.destroy()
      c?.fail(err)
    }
    this.#checkClosed()
    if (callback) {
      void this.#closing.then(callback)
      return
    }
    return this.#closing
  }
}

/** The `Host` field value of an endpoint: an IPv6 literal in brackets, the port left out when it is the scheme's default. */
export function hostField(hostname: string, port: number, defaultPort: number): string {
  const h = net.isIPv6(hostname) ? `[${hostname}]` : hostname
  return port === defaultPort ? h : `${h}:${port}`
}
