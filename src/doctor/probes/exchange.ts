/** One raw HTTP/1.1 exchange over node:net (or node:tls) that keeps every failure visible: garbage bytes, TLS records, oversized headers. */
import net from 'node:net'
import tls from 'node:tls'
import { createHash } from 'node:crypto'

/** How an exchange ended. */
export type ExchangeOutcome =
  | 'response'
  | 'refused'
  | 'connect_timeout'
  | 'unreachable'
  | 'reset_before_header'
  | 'closed_before_header'
  | 'header_timeout'
  | 'garbage'
  | 'tls_bytes'
  | 'header_too_large'
  | 'tls_error'
  | 'error'

/** What a raw exchange observed. Times are ms from the start of the connect. */
export interface ExchangeResult {
  outcome: ExchangeOutcome
  /** Address connected to. */
  address: string
  port: number
  connectMs?: number
  /** Time to the first response byte, ms from the request write. */
  firstByteMs?: number
  /** Time to the end of the header section, ms from the request write. */
  headerMs?: number
  /** Size of the response header section, bytes, including the status line and the blank line. */
  headerBytes?: number
  status?: number
  /** Header fields in order, names lower-cased. */
  headers?: [string, string][]
  /** First bytes received (at most 16), hex, when they were not HTTP. */
  firstBytesHex?: string
  /** Body SHA-256 (hex) and length in bytes, when the body was read. */
  bodySha256?: string
  bodyBytes?: number
  /** Whether the body ended cleanly (length reached, last chunk, or close for close-delimited bodies); true as well when the size bound stopped the read. */
  bodyComplete?: boolean
  /** How the body read ended; set whenever a body was read. */
  bodyEnd?: BodyEnd
  /** Declared Content-Length, bytes; absent for chunked and close-delimited bodies. */
  contentLength?: number
  /** Whether the body is chunked (RFC 9112 §7.1). */
  chunked?: boolean
  /** Longest silence between the end of the header and a body byte, or between two body reads (the last one until the read ended), ms. */
  bodyMaxGapMs?: number
  /** Time from the end of the header section to the end of the body read, ms. */
  bodyMs?: number
  /** Error code or message for failures. */
  error?: string
  /** Open socket after a complete response when `keepOpen` was asked and the server kept it open. */
  socket?: net.Socket
}

/**
 * How a body read ended: `complete` (length reached, last chunk, or close of a
 * close-delimited body), `limit` (the size bound stopped it), `closed` (FIN before the
 * declared end), `reset` (RST or another socket error before the end), `stalled` (no byte
 * for `bodyIdleTimeoutMs`), `timeout` (still arriving when `bodyTimeoutMs` ran out).
 */
export type BodyEnd = 'complete' | 'limit' | 'closed' | 'reset' | 'stalled' | 'timeout'

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  /** IP address (or host) to connect to, or `unix:/path` for a unix domain socket. */
  address: string
  port: number
  method?: 'GET' | 'HEAD'
  /** Request target; default `/`. */
  path?: string
  /** Host header value. */
  hostHeader: string
  /** Speak TLS: SNI name (omitted for IP literals); certificates are not verified here (the tls probe judges them). */
  tls?: { servername?: string }
  connectTimeoutMs: number
  /** Time allowed from the request write to the end of the header section, ms. */
  headerTimeoutMs: number
  /** Time allowed for the body, ms; default equals headerTimeoutMs. */
  bodyTimeoutMs?: number
  /** Longest silence allowed between body bytes, ms; the read ends as `stalled` after it. Default: only bodyTimeoutMs applies. */
  bodyIdleTimeoutMs?: number
  /** Read the body (GET), hashing it; bounded by maxBodyBytes. */
  readBody?: boolean
  /** Stop reading the body after this many bytes; default 1 MiB. */
  maxBodyBytes?: number
  /** Stop reading the header after this many bytes; default 256 KiB (reported as header_too_large). */
  maxHeaderBytes?: number
  /** Ask for keep-alive and hand back the open socket after a complete response. */
  keepOpen?: boolean
}

/** Classifies a connect error code. */
export function connectOutcome(code: string | undefined): ExchangeOutcome {
  if (code === 'ECONNREFUSED' || code === 'ENOENT') return 'refused'
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable'
  if (code === 'ETIMEDOUT') return 'connect_timeout'
  return 'error'
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/

/** Parses a header section (without the final blank line); null when it is not HTTP/1.x. */
export function parseHead(head: string): { status: number; headers: [string, string][] } | null {
  const lines = head.split(/\r?\n/)
  const m = STATUS_LINE.exec(lines[0])
  if (!m) return null
  const headers: [string, string][] = []
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i <= 0 || /\s/.test(line.slice(0, i))) return null
    headers.push([line.slice(0, i).toLowerCase(), line.slice(i + 1).trim()])
  }
  return { status: Number(m[1]), headers }
}

/** First value of a header field, or undefined. */
export function header(headers: [string, string][] | undefined, name: string): string | undefined {
  return headers?.find(([n]) => n === name)?.[1]
}

/**
 * Performs one HTTP/1.1 request on a fresh connection and reports what came back,
 * never throwing: every failure is an {@link ExchangeOutcome}. Bounded by the connect,
 * header and body timeouts and by the header and body size limits.
 *
 * Follows RFC 9112 (message framing: Content-Length, chunked, close-delimited).
 */
export function exchange(opts: ExchangeOptions): Promise<ExchangeResult> {
  const method = opts.method ?? 'GET'
  const maxHeader = opts.maxHeaderBytes ?? 256 * 1024
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024
  const base: ExchangeResult = { outcome: 'error', address: opts.address, port: opts.port }
  return new Promise((resolve) => {
    const t0 = performance.now()
    let sentAt = 0
    let done = false
    let timer: NodeJS.Timeout | undefined
    let chunks: Buffer[] = []
    let received = 0
    let result: ExchangeResult = base
    let body: BodyReader | null = null
    let bodyStart = 0
    let bodyDeadline = 0
    let lastBodyAt = 0
    let maxGap = 0

    /** Records a body read: the silence before it counts towards the longest gap. */
    const bodyData = (): void => {
      const now = performance.now()
      maxGap = Math.max(maxGap, now - lastBodyAt)
      lastBodyAt = now
    }
    /** The body fields of the result once the read ended, the trailing silence included. */
    const bodyDone = (end: BodyEnd): Partial<ExchangeResult> => {
      const now = performance.now()
      const gap = end === 'complete' || end === 'limit' ? maxGap : Math.max(maxGap, now - lastBodyAt)
      return { ...body?.summary(), bodyEnd: end, bodyMaxGapMs: gap, bodyMs: now - bodyStart }
    }
    /** Waits for the next body bytes: up to the idle bound, never past the body deadline. */
    const armBody = (): void => {
      const left = Math.max(0, bodyDeadline - performance.now())
      const idle = opts.bodyIdleTimeoutMs
      clearTimeout(timer)
      if (idle !== undefined && idle < left) {
        timer = setTimeout(() => finish({ ...bodyDone('stalled'), bodyComplete: false, error: `no body byte for ${idle}ms` }), idle)
      } else {
        timer = setTimeout(() => finish({ ...bodyDone('timeout'), bodyComplete: false, error: 'body timeout' }), left)
      }
    }

    // `unix:/path` addresses are unix domain sockets (nginx `http://unix:/path:`, Portico `unix:/path`).
    const where = opts.address.startsWith('unix:') ? { path: opts.address.slice(5) } : { host: opts.address, port: opts.port }
    const socket: net.Socket = opts.tls
      ? tls.connect({ ...where, servername: opts.tls.servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : net.connect(where)
    const connectEvent = opts.tls ? 'secureConnect' : 'connect'

    const finish = (r: Partial<ExchangeResult>, keep = false): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      Object.assign(result, r)
      if (keep && opts.keepOpen && !socket.destroyed) {
        socket.removeAllListeners('data')
        socket.removeAllListeners('error')
        socket.on('error', () => {})
        result.socket = socket
      } else {
        socket.destroy()
      }
      resolve(result)
    }
    const arm = (ms: number, r: Partial<ExchangeResult>): void => {
      clearTimeout(timer)
      timer = setTimeout(() => finish(r), ms)
    }

    arm(opts.connectTimeoutMs, { outcome: 'connect_timeout', error: `no connection within ${opts.connectTimeoutMs}ms` })
    socket.on(connectEvent, () => {
      result = { ...base, connectMs: performance.now() - t0 }
      sentAt = performance.now()
      arm(opts.headerTimeoutMs, { outcome: 'header_timeout', error: `no complete response header within ${opts.headerTimeoutMs}ms` })
      const connection = opts.keepOpen ? 'keep-alive' : 'close'
      socket.write(`${method} ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${opts.hostHeader}\r\nUser-Agent: portico-doctor\r\nAccept: */*\r\nConnection: ${connection}\r\n\r\n`)
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (result.connectMs === undefined) {
        const tlsFailure = opts.tls && err.code !== 'ECONNREFUSED' && err.code !== 'EHOSTUNREACH' && err.code !== 'ENETUNREACH'
        finish({ outcome: tlsFailure ? 'tls_error' : connectOutcome(err.code), error: err.code ?? err.message })
      } else if (body) {
        finish({ ...bodyDone('reset'), bodyComplete: false, error: err.code ?? err.message })
      } else {
        finish({ outcome: err.code === 'ECONNRESET' ? 'reset_before_header' : 'error', error: err.code ?? err.message })
      }
    })
    socket.on('close', () => {
      if (body) finish({ ...bodyDone(body.closeDelimited ? 'complete' : 'closed'), bodyComplete: body.closeDelimited })
      else if (result.connectMs !== undefined) finish({ outcome: 'closed_before_header', error: received ? `closed after ${received} bytes of header` : 'closed with no bytes' })
      else finish({ outcome: 'error', error: 'closed before connecting' })
    })
    socket.on('data', (data: Buffer) => {
      if (body) {
        bodyData()
        if (body.push(data)) finish({ ...bodyDone(body.limited ? 'limit' : 'complete'), bodyComplete: true }, true)
        else armBody()
        return
      }
      if (received === 0) {
        result.firstByteMs = performance.now() - sentAt
        if (data[0] === 0x15 || data[0] === 0x16) {
          finish({ outcome: 'tls_bytes', firstBytesHex: data.subarray(0, 16).toString('hex'), error: 'TLS record received where HTTP was expected' })
          return
        }
      }
      chunks.push(data)
      received += data.length
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
      chunks = [all]
      const end = findHeadEnd(all)
      if (end < 0) {
        if (received > maxHeader) finish({ outcome: 'header_too_large', headerBytes: received, error: `header section exceeds ${maxHeader} bytes` })
        else if (!isHttpPrefix(all)) {
          finish({ outcome: 'garbage', firstBytesHex: all.subarray(0, 16).toString('hex'), error: 'response does not start with HTTP/1.x' })
        }
        return
      }
      const parsed = parseHead(all.subarray(0, end).toString('latin1'))
      const headerBytes = end + (all[end] === 0x0d ? 4 : 2)
      if (!parsed) {
        finish({ outcome: 'garbage', firstBytesHex: all.subarray(0, 16).toString('hex'), headerBytes, error: 'malformed status line or header field' })
        return
      }
      Object.assign(result, { outcome: 'response', status: parsed.status, headers: parsed.headers, headerBytes, headerMs: performance.now() - sentAt })
      // 1xx interim responses carry no body; the doctor never sends Expect, so only 101/103 could appear and are reported as is.
      if (!opts.readBody && !opts.keepOpen) {
        finish({})
        return
      }
      body = new BodyReader(method, parsed.status, parsed.headers, maxBody)
      bodyStart = lastBodyAt = performance.now()
      bodyDeadline = bodyStart + (opts.bodyTimeoutMs ?? opts.headerTimeoutMs)
      const rest = all.subarray(headerBytes)
      const complete = body.push(rest)
      if (complete) finish({ ...bodyDone(body.limited ? 'limit' : 'complete'), bodyComplete: true }, true)
      else {
        Object.assign(result, body.summary())
        armBody()
      }
    })
  })
}

const HTTP_PREFIX = Buffer.from('HTTP/1.')

/** Whether the bytes so far can still be the start of an HTTP/1.x status line. */
function isHttpPrefix(buf: Buffer): boolean {
  const n = Math.min(buf.length, HTTP_PREFIX.length)
  return buf.subarray(0, n).equals(HTTP_PREFIX.subarray(0, n))
}

/** Index of the blank line ending the header section (CRLFCRLF or LFLF), or -1. */
function findHeadEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n')
  const lf = buf.indexOf('\n\n')
  if (crlf < 0) return lf
  if (lf < 0) return crlf
  return Math.min(crlf, lf)
}

/** Reads a response body by its framing (RFC 9112 §6.3), hashing it. */
class BodyReader {
  readonly hash = createHash('sha256')
  bytes = 0
  readonly closeDelimited: boolean
  /** Declared Content-Length, when the body is framed by it. */
  readonly contentLength: number | undefined
  /** Whether the size bound, not the framing, ended the read. */
  limited = false
  private remaining: number
  private chunked: boolean
  private pending = Buffer.alloc(0)
  private readonly max: number

  constructor(method: string, status: number, headers: [string, string][], max: number) {
    this.max = max
    const te = header(headers, 'transfer-encoding')?.toLowerCase()
    const cl = header(headers, 'content-length')
    const noBody = method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)
    this.chunked = !noBody && !!te && te.split(',').map((s) => s.trim()).at(-1) === 'chunked'
    this.remaining = noBody ? 0 : this.chunked ? -1 : cl !== undefined ? Number(cl) : -1
    this.closeDelimited = !noBody && !this.chunked && cl === undefined
    this.contentLength = !noBody && !this.chunked && cl !== undefined ? Number(cl) : undefined
  }

  /** Feeds bytes; true when the body is complete (or the size bound was reached). */
  push(data: Buffer): boolean {
    if (this.chunked) return this.pushChunked(data)
    if (this.remaining === 0) return true
    const take = this.remaining > 0 ? data.subarray(0, this.remaining) : data
    this.take(take)
    if (this.remaining > 0) this.remaining -= take.length
    if (this.remaining === 0) return true
    return this.atLimit()
  }

  private atLimit(): boolean {
    if (this.bytes >= this.max) this.limited = true
    return this.limited
  }

  private take(b: Buffer): void {
    this.hash.update(b)
    this.bytes += b.length
  }

  private pushChunked(data: Buffer): boolean {
    this.pending = Buffer.concat([this.pending, data])
    for (;;) {
      if (this.remaining > 0) {
        const take = this.pending.subarray(0, this.remaining)
        this.take(take)
        this.remaining -= take.length
        this.pending = this.pending.subarray(take.length)
        if (this.remaining > 0) return this.atLimit()
        this.remaining = -2 // expect CRLF after the chunk data
      }
      const eol = this.pending.indexOf('\r\n')
      if (eol < 0) return this.atLimit()
      const line = this.pending.subarray(0, eol).toString('latin1')
      this.pending = this.pending.subarray(eol + 2)
      if (this.remaining === -2) {
        this.remaining = -1
        continue
      }
      const size = parseInt(line.split(';')[0], 16)
      if (Number.isNaN(size)) return true
      if (size === 0) return true // trailers are not read: the last chunk is enough to know the body ended
      this.remaining = size
    }
  }

  summary(): Partial<ExchangeResult> {
    const length = this.contentLength !== undefined ? { contentLength: this.contentLength } : {}
    return { bodySha256: this.hash.copy().digest('hex'), bodyBytes: this.bytes, chunked: this.chunked, ...length }
  }
}
