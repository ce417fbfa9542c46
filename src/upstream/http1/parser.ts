/**
 * The HTTP/1.1 response parser of Portico's upstream client: bytes in, events out.
 *
 * Pure: no sockets, timers or I/O. Modelled on llhttp's callback style: one parser per
 * connection, fed with {@link ResponseParser.execute}, calls the methods of the handler
 * given at construction (head, body chunks, end with trailers, upgrade, error) and
 * allocates no event objects on the way. Unlike llhttp it keeps the bytes of an unfinished
 * head (or chunk-size line, or trailer section) and joins them with the next read, and a
 * handler stops it by returning false; {@link ResponseParser.resume} goes on from there.
 *
 * Framing follows RFC 9112: §4 status line (a status outside 100–599 refused, RFC 9110
 * §15), §5 field lines (obs-fold and whitespace before the colon rejected), §6 body length
 * (Transfer-Encoding over Content-Length; both present is refused as smuggling, and so is a
 * transfer coding other than chunked alone, which a proxy removing chunked would alter),
 * §7.1 chunked coding with trailers, §9.3 persistence
 * (`Connection: close`, HTTP/1.0). Interim responses (RFC 9110 §15.2) are reported and the
 * final one follows; 101 ends the parse with the bytes read past the head. One response
 * per {@link ResponseParser.reset}: no pipelining.
 */
import type { IncomingHttpHeaders } from 'node:http'

/** The llhttp names of the framing faults the parser reports. */
export type ParseErrorCode =
  | 'HPE_INVALID_CONSTANT'
  | 'HPE_INVALID_STATUS'
  | 'HPE_INVALID_HEADER_TOKEN'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_INVALID_TRANSFER_ENCODING'
  | 'HPE_UNEXPECTED_CONTENT_LENGTH'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_INVALID_CHUNK_SIZE'
  | 'HPE_STRICT'

/**
 * An error in the upstream's HTTP/1.1 framing. `code` is the llhttp name of the problem
 * (`HPE_INVALID_STATUS`, `HPE_HEADER_OVERFLOW`, ...), as Node's own client reports it.
 */
export class UpstreamParseError extends Error {
  override readonly name = 'HTTPParserError'
  readonly code: ParseErrorCode
  constructor(code: ParseErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

/**
 * What a {@link ResponseParser} calls, in order: `onInformational` for each interim
 * response, then `onHead`, `onBody` for each run of body bytes and `onEnd`; or
 * `onUpgrade` instead of all but the interim ones; or `onError` at any point, after which
 * nothing more is called until `reset`. A method returning false stops the parser after
 * it (the bytes not yet parsed are kept for `resume`); but when no byte is missing for the
 * end (a response without a body, the last byte of a Content-Length body), `onEnd`
 * follows whatever the method before it returned.
 */
export interface ResponseParserHandler {
  /** An interim response (1xx other than 101). */
  onInformational(status: number, headers: IncomingHttpHeaders, reason: string): boolean
  /** The final response's status line and fields; {@link ResponseParser.keepAlive} is set. */
  onHead(status: number, headers: IncomingHttpHeaders, reason: string): boolean
  /** Body bytes (a view of the bytes read, chunked coding removed). */
  onBody(chunk: Buffer): boolean
  /** The response is complete; {@link ResponseParser.extra} says whether bytes followed it. */
  onEnd(trailers: IncomingHttpHeaders): void
  /** 101 Switching Protocols to a request that asked for an upgrade; `rest` holds the bytes read past the head. */
  onUpgrade(headers: IncomingHttpHeaders, rest: Buffer | null): void
  /** A framing fault: the connection cannot be used any more. */
  onError(err: UpstreamParseError): void
}

/** A field name (RFC 9110 §5.1 token). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** What Node's http server refuses in a field value (`checkInvalidHeaderChar`). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/
/** A Content-Length value of one number. */
const DIGITS = /^\d{1,15}$/
const STATUS_CODE = /^\d{3}$/
const CHUNK_SIZE = /^[0-9A-Fa-f]{1,12}$/
const HAS_KEEP_ALIVE = /(^|,)\s*keep-alive\s*(,|$)/i
const HAS_CLOSE = /(^|,)\s*close\s*(,|$)/i
/** `Transfer-Encoding: chunked` and no other coding. */
const ONLY_CHUNKED = /^\s*chunked\s*$/i
const TIMEOUT_PARAM = /timeout\s*=\s*(\d+)/i
const CRLF = Buffer.from('\r\n')
const CRLFCRLF = Buffer.from('\r\n\r\n')
const EMPTY = Buffer.alloc(0)
/** The trailers of a response that had none (shared, frozen). */
export const NO_TRAILERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders
/** Longest chunk-size line accepted (size, extensions and CRLF), in bytes. */
const MAX_CHUNK_LINE = 4096

// Parser states.
const S_HEAD = 0
const S_LENGTH = 1
const S_CLOSE = 2
const S_CHUNK_SIZE = 3
const S_CHUNK_DATA = 4
const S_CHUNK_CRLF = 5
const S_TRAILERS = 6
const S_DONE = 7
const S_ERROR = 8

/** Parser of the responses read from one connection, one at a time. */
export class ResponseParser {
  readonly #handler: ResponseParserHandler
  readonly #maxHeaderSize: number
  #state = S_HEAD
  /** Bytes read and not yet parsed start at #off. */
  #buf: Buffer = EMPTY
  #off = 0
  /** Index in #buf up to which the head was searched for its end. */
  #scan = 0
  /** Body bytes (or bytes of the current chunk) still to come. */
  #remaining = 0
  #headRequest = false
  #upgradeRequest = false
  #keepAlive = false
  #keepAliveTimeout = -1
  #extra = 0
  // Framing fields of the last field section parsed (RFC 9112 §6, §9.3).
  #connection: string | null = null
  #keepAliveField: string | null = null
  #transferEncoding: string | null = null
  #contentLength = -1

  /**
   * @param handler called for every event, synchronously from `execute`, `resume` and `finish`
   * @param maxHeaderSize largest header (or trailer) section accepted, in bytes (status line and fields)
   */
  constructor(handler: ResponseParserHandler, maxHeaderSize: number) {
    this.#handler = handler
    this.#maxHeaderSize = maxHeaderSize
  }

  /**
   * After `onHead`: whether the connection may carry another exchange once the response
   * is complete (RFC 9112 §9.3): HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
   * `Connection: keep-alive`, and a body that is not delimited by the close.
   */
  get keepAlive(): boolean { return this.#keepAlive }

  /** After `onHead` of a keep-alive response: the `timeout` of its `Keep-Alive` field, in seconds; -1 when none. */
  get keepAliveTimeout(): number { return this.#keepAliveTimeout }

  /** In `onEnd`: how many bytes were read past the end of the response (0 when none). */
  get extra(): number { return this.#extra }

  /** Bytes read and not yet parsed (a handler stopped the parser, or they do not complete a unit). */
  get pending(): number { return this.#buf.length - this.#off }

  /** Whether a byte of the response (or of an interim one before it) has been read since `reset`. */
  get started(): boolean { return this.#state !== S_HEAD || this.#buf.length !== 0 }

  /** Whether the response ended (or switched protocols); bytes after that are not the parser's. */
  get finished(): boolean { return this.#state === S_DONE }

  /**
   * Starts on a new response.
   *
   * @param headRequest the request was HEAD: the response has no body (RFC 9110 §9.3.2)
   * @param upgradeRequest the request asked for an upgrade: 101 is accepted (RFC 9110 §7.8)
   */
  reset(headRequest: boolean, upgradeRequest: boolean): void {
    this.#state = S_HEAD
    this.#buf = EMPTY
    this.#off = 0
    this.#scan = 0
    this.#extra = 0
    this.#headRequest = headRequest
    this.#upgradeRequest = upgradeRequest
  }

  /** Adds bytes read to those not yet parsed, and parses as far as they go. */
  execute(chunk: Buffer): void {
    this.push(chunk)
    this.resume()
  }

  /** Adds bytes read to those not yet parsed, without parsing (the consumer is paused). */
  push(chunk: Buffer): void {
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
  }

  /** Parses the bytes not yet parsed, after a handler stopped the parser. */
  resume(): void {
    try {
      while (this.#step()) { /* next unit */ }
    } catch (err) {
      if (!(err instanceof UpstreamParseError)) throw err
      this.#state = S_ERROR
      this.#buf = EMPTY
      this.#off = 0
      this.#handler.onError(err)
    }
  }

  /**
   * The connection was closed by the upstream (EOF). Ends a body delimited by the close
   * (RFC 9112 §6.3 rule 8) with `onEnd`.
   *
   * @returns true when that completed the response; false when the close came before its end
   */
  finish(): boolean {
    if (this.#state !== S_CLOSE) return false
    this.#end(NO_TRAILERS)
    return true
  }

  /** One unit of the response (head, run of body bytes, chunk-size line...); false to stop. */
  #step(): boolean {
    const buf = this.#buf
    const avail = buf.length - this.#off
    switch (this.#state) {
      case S_HEAD: {
        if (avail === 0) return false
        const from = Math.max(this.#off, this.#scan - 3)
        const end = buf.indexOf(CRLFCRLF, from)
        const max = this.#maxHeaderSize
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
        return this.#head(text)
      }
      case S_LENGTH: {
        if (avail === 0) return false
        const n = Math.min(avail, this.#remaining)
        const chunk = buf.subarray(this.#off, this.#off + n)
        this.#off += n
        this.#remaining -= n
        const go = this.#handler.onBody(chunk)
        if (this.#remaining === 0) {
          this.#end(NO_TRAILERS)
          return false
        }
        return go
      }
      case S_CLOSE: {
        if (avail === 0) return false
        const chunk = this.#off === 0 ? buf : buf.subarray(this.#off)
        this.#off = buf.length
        return this.#handler.onBody(chunk)
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
        if (!CHUNK_SIZE.test(hex)) throw new UpstreamParseError('HPE_INVALID_CHUNK_SIZE', `invalid chunk size ${JSON.stringify(line.slice(0, 40))}`)
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
        return this.#handler.onBody(chunk)
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
          this.#end(NO_TRAILERS)
          return false
        }
        const end = buf.indexOf(CRLFCRLF, this.#off)
        if (end < 0) {
          if (avail > this.#maxHeaderSize) throw new UpstreamParseError('HPE_HEADER_OVERFLOW', 'trailer section too large')
          return false
        }
        const trailers: IncomingHttpHeaders = {}
        this.#fields(buf.toString('latin1', this.#off, end), 0, trailers)
        this.#off = end + 4
        this.#end(trailers)
        return false
      }
      default:
        return false
    }
  }

  /** A status line and field section (`text`, without the final CRLFCRLF); true to go on. */
  #head(text: string): boolean {
    const eol = text.indexOf('\r\n')
    const statusLine = eol < 0 ? text : text.slice(0, eol)
    // RFC 9112 §4: HTTP-version SP status-code SP [ reason-phrase ]
    if (!statusLine.startsWith('HTTP/1.') || statusLine.length < 12 || statusLine.charCodeAt(8) !== 32 || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) {
      throw new UpstreamParseError('HPE_INVALID_CONSTANT', `not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 60))}`)
    }
    const minor = statusLine.charCodeAt(7) - 48
    const code = statusLine.slice(9, 12)
    const status = Number(code)
    // RFC 9110 §15: status codes are 100 to 599; nginx passes 600–999 on, a client would take them for 5xx.
    if ((minor !== 0 && minor !== 1) || !(status >= 100 && status <= 599) || !STATUS_CODE.test(code)) {
      throw new UpstreamParseError('HPE_INVALID_STATUS', `invalid status line ${JSON.stringify(statusLine.slice(0, 60))}`)
    }
    const reason = statusLine.length > 13 ? statusLine.slice(13) : ''
    const headers: IncomingHttpHeaders = {}
    this.#fields(text, eol < 0 ? text.length : eol + 2, headers)

    if (status < 200) {
      if (status !== 101) return this.#handler.onInformational(status, headers, reason)
      if (!this.#upgradeRequest) throw new UpstreamParseError('HPE_INVALID_STATUS', '101 Switching Protocols to a request that asked for no upgrade')
      const rest = this.#off < this.#buf.length ? this.#buf.subarray(this.#off) : null
      this.#state = S_DONE
      this.#buf = EMPTY
      this.#off = 0
      this.#handler.onUpgrade(headers, rest)
      return false
    }

    // RFC 9112 §9.3: persistence.
    const connection = this.#connection
    let keepAlive = minor === 0
      ? connection !== null && HAS_KEEP_ALIVE.test(connection)
      : connection === null || !HAS_CLOSE.test(connection)

    // RFC 9112 §6.3: message body length.
    if (this.#headRequest || status === 204 || status === 304) {
      this.#state = S_DONE
    } else if (this.#transferEncoding !== null) {
      if (this.#contentLength !== -1) throw new UpstreamParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'response has both Transfer-Encoding and Content-Length')
      // Portico removes the chunked coding and could not pass another on (nginx 1.23+ refuses them too):
      // a body read to the close, or a gzip coding dropped with the field, would reach the client altered.
      if (!ONLY_CHUNKED.test(this.#transferEncoding)) {
        throw new UpstreamParseError('HPE_INVALID_TRANSFER_ENCODING', `response transfer coding ${JSON.stringify(this.#transferEncoding.slice(0, 40))} is not chunked alone`)
      }
      this.#state = S_CHUNK_SIZE
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message; the connection is closed after it.
      if (minor === 0) keepAlive = false
    } else if (this.#contentLength !== -1) {
      this.#remaining = this.#contentLength
      this.#state = this.#remaining === 0 ? S_DONE : S_LENGTH
    } else {
      this.#state = S_CLOSE
      keepAlive = false
    }
    this.#keepAlive = keepAlive
    this.#keepAliveTimeout = -1
    if (keepAlive && this.#keepAliveField !== null) {
      const m = TIMEOUT_PARAM.exec(this.#keepAliveField)
      if (m !== null) this.#keepAliveTimeout = Number(m[1])
    }

    const bodyless = this.#state === S_DONE
    const go = this.#handler.onHead(status, headers, reason)
    if (!bodyless) return go
    this.#end(NO_TRAILERS)
    return false
  }

  /** The response is complete: the parser lets go of the bytes read, then tells the handler. */
  #end(trailers: IncomingHttpHeaders): void {
    this.#extra = this.#buf.length - this.#off
    this.#state = S_DONE
    this.#buf = EMPTY
    this.#off = 0
    this.#handler.onEnd(trailers)
  }

  /**
   * Parses the field lines of `text` from index `from` (lines separated by CRLF, no final
   * CRLF) into `out` (names lower-cased; repeated names become arrays, `set-cookie` always
   * one) and keeps the framing fields. Values lose their leading and trailing OWS (SP and
   * HTAB, RFC 9110 §5.5).
   *
   * @throws {UpstreamParseError} on obs-fold, whitespace before the colon, an invalid name
   *   or value, or conflicting Content-Length values (RFC 9112 §5.1, §5.2, §6.3)
   */
  #fields(text: string, from: number, out: IncomingHttpHeaders): void {
    this.#connection = null
    this.#keepAliveField = null
    this.#transferEncoding = null
    this.#contentLength = -1
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
          this.#connection = this.#connection === null ? value : `${this.#connection}, ${value}`
          break
        case 'keep-alive':
          this.#keepAliveField = value
          break
        case 'transfer-encoding':
          this.#transferEncoding = this.#transferEncoding === null ? value : `${this.#transferEncoding}, ${value}`
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
          if (this.#contentLength !== -1 && this.#contentLength !== n) throw new UpstreamParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting Content-Length values')
          this.#contentLength = n
          out['content-length'] = String(n)
          continue
        }
      }
      const prev = out[name]
      if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value
      else if (Array.isArray(prev)) prev.push(value)
      else (out as Record<string, string | string[]>)[name] = [prev, value]
    }
  }
}

/** SP or HTAB: optional whitespace around a field value (RFC 9110 §5.6.3). */
function isOws(c: number): boolean {
  return c === 32 || c === 9
}
